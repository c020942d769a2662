"""State dicts of the official VLD code (github.com/Visuang/VLD, ``network/model.py`` ``Model``)
-> this plugin's VLD model, so the authors' checkpoints can be evaluated and fine-tuned here.

Official entries with no counterpart are dropped (with a log line): ``logit_scale``,
``ln_post2.*`` and ``classifier_proj_STP.*`` exist in the official model but its forward never
uses them in a loss or a feature.
"""

from __future__ import annotations

import logging
import re

import torch

logger = logging.getLogger(__name__)

__all__ = ["OfficialCheckpointError", "convert_official_state_dict"]

#: (official key pattern, this model's key template), tried in order; \1 is the rest of the key.
KEY_MAP = (
    (r"image_encoder\.(.+)", r"backbone.visual.\1"),
    (r"prompt_embedding", r"backbone.hub"),
    (r"attn\.(.+)", r"backbone.sta.\1"),
    (r"classifier\.BN\.(.+)", r"heads.classifier.bn.\1"),
    (r"classifier\.classifier\.(.+)", r"heads.classifier.linear.\1"),
    (r"classifier_proj\.BN\.(.+)", r"heads.classifier_proj.bn.\1"),
    (r"classifier_proj\.classifier\.(.+)", r"heads.classifier_proj.linear.\1"),
    (r"classifier_STP\.BN\.(.+)", r"heads.classifier_sta.bn.\1"),
    (r"classifier_STP\.classifier\.(.+)", r"heads.classifier_sta.linear.\1"),
    (r"prompt_learner\.cls_ctx", r"heads.prompt_learner.context"),
    (r"prompt_learner\.(token_prefix|token_suffix)", r"heads.prompt_learner.\1"),
    (r"text_encoder\.(transformer\..+|positional_embedding|ln_final\..+|text_projection)",
     r"heads.text_encoder.\1"),
)
#: Official entries its forward never uses.
UNUSED = (r"logit_scale", r"ln_post2\..+", r"classifier_proj_STP\..+")


class OfficialCheckpointError(KeyError):
    """A state dict that is not one of the official VLD ``Model``."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def convert_official_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official ``Model.state_dict()`` (optionally wrapped in ``state_dict``/``model`` or with
    ``module.`` prefixes) -> a state dict loadable into ``build_model(cfg)`` of this plugin
    with the same geometry (configs/VLD/vcm.yml: ViT-B/16, 288x144, T=6, STH at 9, STA)."""
    for wrapper in ("state_dict", "model"):
        if isinstance(state_dict.get(wrapper), dict):
            state_dict = state_dict[wrapper]
    converted, dropped, unknown = {}, [], []
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        new_key = _map_key(key)
        if new_key is not None:
            converted[new_key] = value
        elif any(re.fullmatch(pattern, key) for pattern in UNUSED):
            dropped.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise OfficialCheckpointError(f"not an official VLD Model state dict: {len(unknown)} unknown entries, "
                                      f"e.g. {unknown[:5]}")
    required = ("backbone.visual.conv1.weight", "heads.prompt_learner.context", "heads.text_encoder.text_projection")
    missing = [key for key in required if key not in converted]
    if missing:
        raise OfficialCheckpointError(f"not an official VLD Model state dict: no entry for {missing}")
    if dropped:
        logger.info("Official VLD entries unused by its forward, dropped: %s", ", ".join(sorted(dropped)[:6]))
    return converted


def _map_key(key: str) -> str | None:
    for pattern, template in KEY_MAP:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, template, key)
    return None

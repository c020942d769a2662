"""Builds the open_clip CLIP model VLD starts from, and loads its weights.

The geometry comes from ``MODEL.CLIP.*`` (ViT-B/16 by default; tests and the demo use a tiny
one) and the input size from ``INPUT.SIZE_TRAIN`` (288x144 in the paper: an 18x9 patch grid,
the positional embedding bilinearly resized from the checkpoint's square grid, as the
official code does). Weights come from a local OpenAI JIT ``.pt`` file, an open_clip
checkpoint, or an open_clip pretrained tag such as ``openai`` (needs internet).
"""

from __future__ import annotations

import logging
import os

import open_clip
import torch
import torch.nn.functional as F
from fastreid.config import CfgNode

logger = logging.getLogger(__name__)


def build_clip(cfg: CfgNode) -> open_clip.CLIP:
    """A randomly initialised CLIP of the configured geometry (fp32)."""
    clip = cfg.MODEL.CLIP
    vision = open_clip.CLIPVisionCfg(layers=clip.VISION_LAYERS, width=clip.VISION_WIDTH,
                                     head_width=clip.VISION_WIDTH // clip.VISION_HEADS,
                                     patch_size=clip.PATCH_SIZE, image_size=tuple(cfg.INPUT.SIZE_TRAIN))
    text = open_clip.CLIPTextCfg(context_length=clip.CONTEXT_LENGTH, vocab_size=clip.VOCAB_SIZE,
                                 width=clip.TEXT_WIDTH, heads=clip.TEXT_HEADS, layers=clip.TEXT_LAYERS)
    return open_clip.CLIP(clip.EMBED_DIM, vision, text, quick_gelu=clip.QUICK_GELU)


def load_clip_weights(model: open_clip.CLIP, source: str) -> None:
    """Load ``source`` (a local file, or an open_clip pretrained tag) into ``model``,
    resizing the visual positional embedding to the model's patch grid."""
    state_dict = _read_state_dict(source, model)
    key = "visual.positional_embedding"
    if key in state_dict and state_dict[key].shape != model.visual.positional_embedding.shape:
        state_dict[key] = resize_positional_embedding(state_dict[key], model.visual.grid_size)
    state_dict = {k: v.float() for k, v in state_dict.items() if k not in ("input_resolution", "context_length",
                                                                            "vocab_size")}
    incompatible = model.load_state_dict(state_dict, strict=False)
    if incompatible.missing_keys:
        raise RuntimeError(f"{source}: CLIP weights lack {len(incompatible.missing_keys)} entries of the configured "
                           f"geometry (MODEL.CLIP.*), e.g. {incompatible.missing_keys[:3]}")
    logger.info("Loaded CLIP weights from %s", source)


def _read_state_dict(source: str, model: open_clip.CLIP) -> dict[str, torch.Tensor]:
    if os.path.isfile(source):
        try:  # OpenAI's JIT archive
            return torch.jit.load(source, map_location="cpu").state_dict()
        except RuntimeError:
            checkpoint = torch.load(source, map_location="cpu", weights_only=True)
        checkpoint = checkpoint.get("state_dict", checkpoint)
        return {k.removeprefix("module."): v for k, v in checkpoint.items()}
    if source in open_clip.list_pretrained_tags_by_model("ViT-B-16"):
        pretrained = open_clip.create_model("ViT-B-16", pretrained=source)
        return pretrained.state_dict()
    raise FileNotFoundError(f"MODEL.BACKBONE.PRETRAIN_PATH={source!r}: expected a CLIP weights file (OpenAI JIT .pt "
                            "or open_clip checkpoint) or an open_clip pretrained tag of ViT-B-16 such as 'openai'; "
                            "set MODEL.BACKBONE.PRETRAIN False to build without weights")


def resize_positional_embedding(embedding: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[1 + g*g, W] (square grid) -> [1 + gh*gw, W], bilinear, the class token unchanged."""
    class_token, patches = embedding[:1], embedding[1:]
    side = int(round(patches.shape[0] ** 0.5))
    patches = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=grid, mode="bilinear", align_corners=False)
    return torch.cat([class_token, patches.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)])

"""IMLP: identity-level multimodal language prompts (VLD, TIFS 2025), with VLD's classifiers.

Every identity c gets the prompt ``MODEL.IMLP.PROMPT`` ("A X X X X person observed in both day
and night conditions.") whose X are learnable context vectors ([C, 4, text width], std 0.02).
The frozen CLIP text tower turns the prompts of all C identities into text features [C, E];
the text logits are the tracklet's projected CLS feature times those features. Gradients flow
through the frozen tower into the context vectors only.

The head pools the backbone's per-frame features over the T frames of each tracklet and puts
a BatchNorm + bias-free Linear classifier on the CLS feature, its projection and (STP with STA)
the STA feature. Besides the STP backbone's feature dict it takes the feature map of any
fast-reid backbone (e.g. ``build_resnet_backbone``): pooled by MODEL.HEADS.POOL_LAYER, then
projected to the CLIP embedding width E by a bias-free Linear.
"""

from __future__ import annotations

import open_clip
import torch
import torch.nn.functional as F
from fastreid.config import CfgNode, configurable
from fastreid.layers import pooling
from fastreid.layers.weight_init import weights_init_classifier, weights_init_kaiming
from fastreid.modeling.heads import REID_HEADS_REGISTRY
from torch import nn

from ...distributed import gather_rows, row_shard
from ..attention import adopt_blocks, residual_block
from ..backbones.stp import is_stp_backbone
from ..clip import build_clip_text_tower, clip_model_config, load_clip_weights, read_clip_state_dict

__all__ = ["BNClassifier", "FrozenTextEncoder", "IdentityPromptLearner", "IMLPHead"]

PLACEHOLDER = "X"  # the prompt word that marks a learnable context vector


class BNClassifier(nn.Module):
    """BatchNorm1d (weight 1, bias 0) then a bias-free Linear (std 0.001): [N, D] -> [N, C]."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.linear = nn.Linear(dim, num_classes, bias=False)
        self.bn.apply(weights_init_kaiming)
        self.linear.apply(weights_init_classifier)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.bn(features))


class IdentityPromptLearner(nn.Module):
    """Token embeddings of every identity's prompt, the X slots being learnable.

    ``token_prefix`` / ``token_suffix`` (buffers, [1, *, D]) are the frozen embeddings of the
    prompt tokens before and after the slots (start token and "A"; "person ... ." end token
    and padding); ``context`` [C, n, D] are the learnable vectors, one set per identity.
    Only the positions up to the end-of-text token reach the text feature: the
    prefix is the same for every identity (:meth:`shared`), the rest is per identity (``forward``)."""

    def __init__(self, prompt: str, token_embedding: nn.Embedding, context_length: int, num_classes: int) -> None:
        super().__init__()
        tokenizer = open_clip.SimpleTokenizer(context_length=context_length)
        tokens = tokenizer([prompt])  # [1, L]
        (placeholder,) = tokenizer.encode(PLACEHOLDER)
        slots = (tokens[0] == placeholder).nonzero().flatten().tolist()
        if not slots or slots != list(range(slots[0], slots[0] + len(slots))):
            raise ValueError(f"MODEL.IMLP.PROMPT {prompt!r}: expected one run of consecutive {PLACEHOLDER} words, "
                             "the learnable context vectors")
        with torch.no_grad():
            embedding = token_embedding(tokens)  # [1, L, D]
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("token_prefix", embedding[:, :slots[0]].clone())
        self.register_buffer("token_suffix", embedding[:, slots[-1] + 1:].clone())
        self.context = nn.Parameter(torch.empty(num_classes, len(slots), embedding.shape[-1]))
        nn.init.normal_(self.context, std=0.02)
        end = int(tokens[0].argmax())  # the end-of-text token has the largest id
        self.suffix_length = end - slots[-1]  # suffix tokens up to and including the end-of-text token

    def shared(self) -> torch.Tensor:
        """The prompt positions before the context vectors, the same for every identity: [1, P, D]."""
        return self.token_prefix

    def forward(self, identities: slice = slice(None)) -> torch.Tensor:
        """The positions from the context vectors to the end-of-text token of ``identities`` (all C by
        default): [c, n + S, D]."""
        context = self.context[identities]  # [c, n, D]
        suffix = self.token_suffix[:, :self.suffix_length].expand(context.shape[0], -1, -1)
        return torch.cat([context, suffix], dim=1)


class FrozenTextEncoder(nn.Module):
    """open_clip's CLIP text transformer without its token embedding, frozen: the shared prompt
    positions [1, P, D] and each identity's positions up to its end-of-text token [C, M, D]
    -> text features [C, E], the feature of the last position (the end-of-text token).

    The causal mask makes every position after the end-of-text token irrelevant: they are never
    run. The shared positions run once, as sequence 0 of the batch, and give keys and values to
    every identity; the last block runs the end-of-text position only. The text features are those of the full
    77-position tower (tests/test_fast_path.py). ``grad_checkpoint``: recompute each block in the
    backward pass (MODEL.IMLP.GRAD_CHECKPOINT)."""

    def __init__(self, text_tower: nn.Module, grad_checkpoint: bool = False) -> None:
        super().__init__()
        if getattr(text_tower, "cls_emb", None) is not None or text_tower.pool_type != "argmax":
            raise ValueError("IMLP needs a CLIP text tower pooled at the end-of-text token (pool_type 'argmax')")
        adopt_blocks(text_tower.transformer.resblocks, "text")
        self.transformer = text_tower.transformer
        self.positional_embedding = text_tower.positional_embedding
        self.ln_final = text_tower.ln_final
        self.text_projection = text_tower.text_projection
        self.grad_checkpoint = grad_checkpoint
        self.requires_grad_(False)

    def forward(self, shared: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        num_shared, length = shared.shape[1], prompts.shape[1]
        shared = shared + self.positional_embedding[:num_shared]  # [1, P, D]
        prompts = prompts + self.positional_embedding[num_shared:num_shared + length]  # [C, M, D]
        padded = max(num_shared, length)  # sequences of one length; the causal mask ignores what follows
        x = torch.cat([F.pad(shared, (0, 0, 0, padded - num_shared)),
                       F.pad(prompts, (0, 0, 0, padded - length))])  # [1 + C, padded, D]: the prefix first
        blocks = self.transformer.resblocks
        checkpointed = self.grad_checkpoint and self.training
        for i, block in enumerate(blocks):
            last = i == len(blocks) - 1
            x = residual_block(block, x, shared=num_shared, causal=True, grad_checkpoint=checkpointed,
                               queries=slice(length - 1, length) if last else None)
        x = self.ln_final(x[1:, 0])  # [C, D]: each identity's end-of-text token
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection  # [C, E]


@REID_HEADS_REGISTRY.register()
class IMLPHead(nn.Module):
    """Eval: the tracklet feature [B, D_out] (STP: CLS and STA concatenated, 1536 for ViT-B/16;
    other backbones: the pooled feature). Training: ``{"features": {name: [B, D]},
    "logits": {"cls", "cls_proj", "text"[, "sta"]: [B, C]}, "text_features": [C, E]}``."""

    @configurable
    def __init__(self, *, text_tower: nn.Module, prompt: str, num_classes: int, seq_len: int, feat_dim: int,
                 embed_dim: int, stp_feature_names: tuple[str, ...], pool_layer: nn.Module | None = None,
                 grad_checkpoint: bool = False) -> None:
        """``stp_feature_names``: the keys of the STP backbone's dict, or () for a feature map
        [B*T, feat_dim, h, w] of another backbone, pooled by ``pool_layer`` and projected to ``embed_dim``."""
        super().__init__()
        if num_classes <= 0:
            raise ValueError(f"MODEL.HEADS.NUM_CLASSES {num_classes}: IMLP learns a prompt per identity; "
                             "set it (the trainer sets it from the training set)")
        self.seq_len = seq_len
        self.pool_layer = pool_layer
        self.projection = None if stp_feature_names else nn.Linear(feat_dim, embed_dim, bias=False)
        self.feature_names = stp_feature_names or ("cls", "cls_proj")
        self.classifier = BNClassifier(feat_dim, num_classes)
        self.classifier_proj = BNClassifier(embed_dim, num_classes)
        self.classifier_sta = BNClassifier(feat_dim, num_classes) if "sta" in self.feature_names else None
        self.prompt_learner = IdentityPromptLearner(prompt, text_tower.token_embedding, text_tower.context_length,
                                                    num_classes)
        self.text_encoder = FrozenTextEncoder(text_tower, grad_checkpoint)  # no token embedding: prompts are built

    @property
    def logit_names(self) -> tuple[str, ...]:
        return ("cls", "cls_proj", "text") + (("sta",) if self.classifier_sta is not None else ())

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        stp = is_stp_backbone(cfg)
        clip_config = clip_model_config(cfg)
        text_tower = build_clip_text_tower(cfg)
        if cfg.MODEL.BACKBONE.PRETRAIN:
            key, path = "MODEL.IMLP.TEXT_PRETRAIN_PATH", cfg.MODEL.IMLP.TEXT_PRETRAIN_PATH
            if not path and stp:
                key, path = "MODEL.BACKBONE.PRETRAIN_PATH", cfg.MODEL.BACKBONE.PRETRAIN_PATH
            load_clip_weights(text_tower, read_clip_state_dict(cfg, path, key), "text",
                              cfg.MODEL.CLIP.POS_EMBED_INTERPOLATION, path or cfg.MODEL.CLIP.PRETRAINED)
        sta = ("sta",) if cfg.MODEL.STP.STA else ()
        return {
            "text_tower": text_tower,
            "prompt": cfg.MODEL.IMLP.PROMPT,
            "num_classes": cfg.MODEL.HEADS.NUM_CLASSES,
            "seq_len": cfg.INPUT.SEQ_LEN,
            "feat_dim": clip_config["vision_cfg"]["width"] if stp else cfg.MODEL.BACKBONE.FEAT_DIM,
            "embed_dim": clip_config["embed_dim"],
            "stp_feature_names": ("cls_penultimate", "cls", "cls_proj") + sta if stp else (),
            "pool_layer": None if stp else getattr(pooling, cfg.MODEL.HEADS.POOL_LAYER)(),
            "grad_checkpoint": cfg.MODEL.IMLP.GRAD_CHECKPOINT,
        }

    def frame_features(self, features: dict[str, torch.Tensor] | torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-frame features by name, each [B*T, D]."""
        if self.projection is None:
            return features
        cls = self.pool_layer(features).flatten(1)  # [B*T, C, h, w] -> [B*T, C]
        return {"cls": cls, "cls_proj": self.projection(cls)}

    def tracklet_features(self, features: dict[str, torch.Tensor] | torch.Tensor) -> dict[str, torch.Tensor]:
        """The backbone's per-frame outputs -> each tracklet's features by name, the mean over its T
        frames, [B, D] each: the head's per-tracklet part (VLD gathers it into the global batch)."""
        return {name: f.reshape(-1, self.seq_len, f.shape[-1]).mean(dim=1)  # [B*T, D] -> [B, D]
                for name, f in self.frame_features(features).items()}

    def forward(self, features: dict[str, torch.Tensor] | torch.Tensor
                ) -> dict[str, dict[str, torch.Tensor] | torch.Tensor] | torch.Tensor:
        pooled = self.tracklet_features(features)
        if not self.training:
            return torch.cat([pooled["cls"], pooled["sta"]], dim=1) if "sta" in pooled else pooled["cls"]
        return self.batch_outputs(pooled)

    def batch_outputs(self, pooled: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor] | torch.Tensor]:
        """The training outputs of a batch of :meth:`tracklet_features` (under torch.distributed the
        global batch): the batch-norm classifiers' and the text logits [B, C], and the text features."""
        text = self.text_features()  # [C, E]
        logits = {"cls": self.classifier(pooled["cls"]), "cls_proj": self.classifier_proj(pooled["cls_proj"]),
                  "text": pooled["cls_proj"] @ text.t()}
        if self.classifier_sta is not None:
            logits["sta"] = self.classifier_sta(pooled["sta"])
        return {"features": pooled, "logits": logits, "text_features": text}

    def text_features(self) -> torch.Tensor:
        """Every identity's text feature [C, E]; under torch.distributed each process runs its shard of
        the C prompts through the frozen tower and the shards are gathered with their gradients."""
        num_classes = self.prompt_learner.context.shape[0]
        identities = row_shard(num_classes)
        shard = self.text_encoder(self.prompt_learner.shared(), self.prompt_learner(identities))  # [c, E]
        return gather_rows(shard, num_classes)

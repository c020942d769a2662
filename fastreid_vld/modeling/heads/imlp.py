"""IMLP: identity-level multimodal language prompts (VLD, TIFS 2025) and VLD's classifiers.

Every identity c gets the prompt "A X X X X person observed in both day and night
conditions." whose four X are learnable context vectors (num_ids x 4 x text width). The frozen
CLIP text tower turns all identities' prompts into text features; the text logits are the
projected image feature times those features. Gradients flow through the frozen tower into
the context vectors only.
"""

from __future__ import annotations

import open_clip
import torch
from fastreid.config import CfgNode
from fastreid.modeling.heads import REID_HEADS_REGISTRY
from torch import nn

from ..clip import build_clip, load_clip_weights

PROMPT = "A X X X X person observed in both day and night conditions."
CONTEXT_START, CONTEXT_LENGTH = 2, 4  # after the start token and "A"


class BNClassifier(nn.Module):
    """BatchNorm1d (weight 1, bias 0) then a bias-free Linear (std 0.001): [N, D] -> [N, C]."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.linear = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.linear.weight, std=0.001)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.bn(features))


class TextTower(nn.Module):
    """The CLIP text transformer, frozen: prompt token embeddings [C, L, E] -> text features [C, D]."""

    def __init__(self, clip: open_clip.CLIP) -> None:
        super().__init__()
        self.transformer = clip.transformer
        self.positional_embedding = clip.positional_embedding
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        self.requires_grad_(False)

    def forward(self, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = self.transformer(embeddings + self.positional_embedding, attn_mask=self.attn_mask)
        x = self.ln_final(x)
        end = tokens.argmax(dim=-1).expand(x.shape[0])  # the end-of-text token has the largest id
        return x[torch.arange(x.shape[0]), end] @ self.text_projection


class IdentityPromptLearner(nn.Module):
    """Per identity, the prompt's token embeddings with 4 learnable context vectors: [C, L, E]."""

    def __init__(self, clip: open_clip.CLIP, num_classes: int, context_length: int) -> None:
        super().__init__()
        tokens = open_clip.tokenize([PROMPT], context_length=context_length)  # [1, L]
        with torch.no_grad():
            embedding = clip.token_embedding(tokens)  # [1, L, E]
        self.register_buffer("tokens", tokens)
        self.register_buffer("prefix", embedding[:, :CONTEXT_START].clone())
        self.register_buffer("suffix", embedding[:, CONTEXT_START + CONTEXT_LENGTH:].clone())
        self.context = nn.Parameter(torch.randn(num_classes, CONTEXT_LENGTH, embedding.shape[-1]) * 0.02)

    def forward(self) -> torch.Tensor:
        n = self.context.shape[0]
        return torch.cat([self.prefix.expand(n, -1, -1), self.context, self.suffix.expand(n, -1, -1)], dim=1)


class IMLPHead(nn.Module):
    """Temporal pooling, VLD's classifiers and the identity prompts.

    Takes the backbone's per-frame output: the STP dict, or a CNN feature map [B*T, C, h, w] of a
    fast-reid backbone (pooled, then projected to the text embedding width). Eval: the tracklet
    feature [B, D] (STP: CLS and STA concatenated, 1536 for ViT-B/16). Training: a dict of
    tracklet features and logits for the losses."""

    def __init__(self, clip: open_clip.CLIP, num_classes: int, seq_len: int, feat_dim: int,
                 use_sta: bool, projection: nn.Module | None, context_length: int) -> None:
        super().__init__()
        embed_dim = clip.text_projection.shape[1]
        self.seq_len = seq_len
        self.projection = projection  # only for backbones without CLIP's own projection
        self.classifier = BNClassifier(feat_dim, num_classes)
        self.classifier_proj = BNClassifier(embed_dim, num_classes)
        self.classifier_sta = BNClassifier(feat_dim, num_classes) if use_sta else None
        self.prompt_learner = IdentityPromptLearner(clip, num_classes, context_length)
        self.text_encoder = TextTower(clip)

    def frame_features(self, features: dict[str, torch.Tensor] | torch.Tensor) -> dict[str, torch.Tensor]:
        if isinstance(features, dict):
            return features
        cls = features.mean(dim=(2, 3))  # [B*T, C]
        return {"cls": cls, "cls_proj": self.projection(cls)}

    def forward(self, features: dict[str, torch.Tensor] | torch.Tensor) -> dict[str, torch.Tensor] | torch.Tensor:
        pooled = {name: f.reshape(-1, self.seq_len, f.shape[-1]).mean(dim=1)  # [B*T, D] -> [B, D]
                  for name, f in self.frame_features(features).items()}
        if not self.training:
            return torch.cat([pooled["cls"], pooled["sta"]], dim=1) if "sta" in pooled else pooled["cls"]
        text = self.text_encoder(self.prompt_learner(), self.prompt_learner.tokens)  # [C, E]
        pooled["cls_logits"] = self.classifier(pooled["cls"])
        pooled["proj_logits"] = self.classifier_proj(pooled["cls_proj"])
        pooled["text_logits"] = pooled["cls_proj"] @ text.t()
        pooled["text_features"] = text
        if self.classifier_sta is not None:
            pooled["sta_logits"] = self.classifier_sta(pooled["sta"])
        return pooled


@REID_HEADS_REGISTRY.register()
def build_imlp_head(cfg: CfgNode) -> IMLPHead:
    clip = build_clip(cfg)
    if cfg.MODEL.BACKBONE.PRETRAIN:
        load_clip_weights(clip, cfg.MODEL.HEADS.TEXT_PRETRAIN_PATH or cfg.MODEL.BACKBONE.PRETRAIN_PATH)
    is_stp = cfg.MODEL.BACKBONE.NAME == "build_stp_backbone"
    feat_dim = cfg.MODEL.CLIP.VISION_WIDTH if is_stp else cfg.MODEL.BACKBONE.FEAT_DIM
    projection = None if is_stp else nn.Linear(feat_dim, cfg.MODEL.CLIP.EMBED_DIM, bias=False)
    return IMLPHead(clip, cfg.MODEL.HEADS.NUM_CLASSES, cfg.INPUT.SEQ_LEN, feat_dim,
                    is_stp and cfg.MODEL.STP.STA, projection, cfg.MODEL.CLIP.CONTEXT_LENGTH)

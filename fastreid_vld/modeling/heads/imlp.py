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
from fastreid.config import CfgNode, configurable
from fastreid.layers import pooling
from fastreid.layers.weight_init import weights_init_classifier, weights_init_kaiming
from fastreid.modeling.heads import REID_HEADS_REGISTRY
from torch import nn

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
    """Token embeddings of every identity's prompt, the X slots being learnable: [C, L, D].

    ``token_prefix`` / ``token_suffix`` (buffers, [1, *, D]) are the frozen embeddings of the
    prompt tokens before and after the slots (start token and "A"; "person ... ." end token
    and padding); ``context`` [C, n, D] are the learnable vectors, one set per identity."""

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

    def forward(self) -> torch.Tensor:
        n = self.context.shape[0]
        return torch.cat([self.token_prefix.expand(n, -1, -1), self.context,
                          self.token_suffix.expand(n, -1, -1)], dim=1)  # [C, L, D]


class FrozenTextEncoder(nn.Module):
    """open_clip's CLIP text transformer without its token embedding, frozen:
    prompt token embeddings [C, L, D] and tokens [1, L] -> text features [C, E]."""

    def __init__(self, text_tower: nn.Module) -> None:
        super().__init__()
        if getattr(text_tower, "cls_emb", None) is not None or text_tower.pool_type != "argmax":
            raise ValueError("IMLP needs a CLIP text tower pooled at the end-of-text token (pool_type 'argmax')")
        self.transformer = text_tower.transformer
        self.positional_embedding = text_tower.positional_embedding
        self.ln_final = text_tower.ln_final
        self.text_projection = text_tower.text_projection
        self.register_buffer("attn_mask", text_tower.attn_mask, persistent=False)
        self.requires_grad_(False)

    def forward(self, prompts: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = self.transformer(prompts + self.positional_embedding, attn_mask=self.attn_mask)  # [C, L, D]
        x = self.ln_final(x)
        end = tokens[0].argmax()  # the end-of-text token has the largest id
        x = x[:, end]  # [C, D]
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
                 embed_dim: int, stp_feature_names: tuple[str, ...], pool_layer: nn.Module | None = None) -> None:
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
        self.text_encoder = FrozenTextEncoder(text_tower)  # the token embedding is left out: prompts are built

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
        }

    def frame_features(self, features: dict[str, torch.Tensor] | torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-frame features by name, each [B*T, D]."""
        if self.projection is None:
            return features
        cls = self.pool_layer(features).flatten(1)  # [B*T, C, h, w] -> [B*T, C]
        return {"cls": cls, "cls_proj": self.projection(cls)}

    def forward(self, features: dict[str, torch.Tensor] | torch.Tensor
                ) -> dict[str, dict[str, torch.Tensor] | torch.Tensor] | torch.Tensor:
        pooled = {name: f.reshape(-1, self.seq_len, f.shape[-1]).mean(dim=1)  # [B*T, D] -> [B, D]
                  for name, f in self.frame_features(features).items()}
        if not self.training:
            return torch.cat([pooled["cls"], pooled["sta"]], dim=1) if "sta" in pooled else pooled["cls"]
        text = self.text_encoder(self.prompt_learner(), self.prompt_learner.tokens)  # [C, E]
        logits = {"cls": self.classifier(pooled["cls"]), "cls_proj": self.classifier_proj(pooled["cls_proj"]),
                  "text": pooled["cls_proj"] @ text.t()}
        if self.classifier_sta is not None:
            logits["sta"] = self.classifier_sta(pooled["sta"])
        return {"features": pooled, "logits": logits, "text_features": text}

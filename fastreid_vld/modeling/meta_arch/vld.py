"""VLD: tracklets of both modalities -> backbone (per frame) -> IMLP head -> losses / features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fastreid.config import CfgNode
from fastreid.modeling.backbones import build_backbone
from fastreid.modeling.heads import build_heads
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY
from torch import nn

from ..losses import image_text_supcon, weighted_regularization_triplet


@META_ARCH_REGISTRY.register()
class VLD(nn.Module):
    """``model({"images": x})`` in eval, x [B, T, 3, H, W] in 0..255, returns tracklet features
    [B, D]; in training ``model({"images": x, "targets": pids, ...})`` returns fast-reid's dict of
    named, already weighted losses (visible and infrared tracklets in one concatenated batch)."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        self.backbone = build_backbone(cfg)
        self.heads = build_heads(cfg)
        self.register_buffer("pixel_mean", torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.MODEL.PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        weights = cfg.MODEL.LOSSES.VLD
        self.loss_weights = {"loss_cls": weights.CE, "loss_cls_proj": weights.CE_PROJ, "loss_text": weights.TEXT_CE,
                             "loss_cls_sta": weights.STA_CE, "loss_tri_penultimate": weights.TRI_PENULTIMATE,
                             "loss_tri": weights.TRI, "loss_tri_proj": weights.TRI_PROJ,
                             "loss_tri_sta": weights.TRI_STA, "loss_supcon": weights.SUPCON}

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: dict) -> dict[str, torch.Tensor] | torch.Tensor:
        images = batched_inputs["images"].to(self.device)  # [B, T, 3, H, W], 0..255
        frames = (images.flatten(0, 1) - self.pixel_mean) / self.pixel_std  # [B*T, 3, H, W]
        outputs = self.heads(self.backbone(frames))
        if not self.training:
            return outputs  # [B, D]
        return self.losses(outputs, batched_inputs["targets"].to(self.device))

    def losses(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {
            "loss_cls": lambda: F.cross_entropy(outputs["cls_logits"], targets),
            "loss_cls_proj": lambda: F.cross_entropy(outputs["proj_logits"], targets),
            "loss_text": lambda: F.cross_entropy(outputs["text_logits"], targets),
            "loss_cls_sta": lambda: F.cross_entropy(outputs["sta_logits"], targets),
            "loss_tri_penultimate": lambda: weighted_regularization_triplet(outputs["cls_penultimate"], targets),
            "loss_tri": lambda: weighted_regularization_triplet(outputs["cls"], targets),
            "loss_tri_proj": lambda: weighted_regularization_triplet(outputs["cls_proj"], targets),
            "loss_tri_sta": lambda: weighted_regularization_triplet(outputs["sta"], targets),
            "loss_supcon": lambda: image_text_supcon(outputs["cls_proj"], outputs["text_features"], targets),
        }
        needs = {"loss_cls_sta": "sta_logits", "loss_tri_penultimate": "cls_penultimate", "loss_tri_sta": "sta"}
        return {name: self.loss_weights[name] * term() for name, term in terms.items()
                if self.loss_weights[name] > 0 and needs.get(name, "cls") in outputs}

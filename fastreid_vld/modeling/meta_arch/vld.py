"""VLD: tracklets of both modalities -> backbone (per frame) -> IMLP head -> losses or features."""

from __future__ import annotations

import logging

import torch
from fastreid.config import CfgNode, configurable
from fastreid.modeling.backbones import build_backbone
from fastreid.modeling.heads import build_heads
from fastreid.modeling.losses.cross_entroy_loss import log_accuracy
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY
from fastreid.utils.events import _CURRENT_STORAGE_STACK
from torch import nn

from ..backbones.stp import is_stp_backbone
from ..backbones.width import with_measured_width
from ..global_batch import check_micro_batches, global_batch, per_tracklet_outputs
from ..losses import VLDLoss
from .tracklet_frames import normalised_frames

__all__ = ["VLD"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class VLD(nn.Module):
    """``model({"images": x})`` in eval, x [B, T, 3, H, W] float in 0..255, returns the tracklet
    features [B, D] (STP backbone: CLS and STA concatenated, 1536 for ViT-B/16).

    ``model({"images": x, "targets": pids, "modalities": m})`` in training returns fast-reid's
    dict of named, already weighted losses. Visible and infrared tracklets go through the
    model in one batch, as the official code concatenates them (``modalities`` is not used by
    the model: its BatchNorm statistics span both modalities). The backbone and the head's temporal
    pooling run on this process's tracklets (``micro_batch`` at a time, SOLVER.MICRO_BATCH_SIZE), the
    head's classifiers and the losses on the global batch of every process (global_batch.py).
    """

    @configurable
    def __init__(self, *, backbone: nn.Module, heads: nn.Module, pixel_mean: list[float], pixel_std: list[float],
                 seq_len: int, loss: VLDLoss, micro_batch: int = 0) -> None:
        super().__init__()
        if not hasattr(heads, "logit_names"):
            raise TypeError(f"VLD needs MODEL.HEADS.NAME IMLPHead (its losses read the IMLP outputs), "
                            f"got {type(heads).__name__}")
        check_micro_batches(backbone, micro_batch, "VLD")
        self.backbone = backbone
        self.heads = heads
        self.seq_len = seq_len
        self.loss = loss
        self.micro_batch = micro_batch
        dropped = loss.drop_unavailable(heads.feature_names, heads.logit_names)
        if dropped:
            logger.info("Loss terms dropped, their outputs are not computed by %s with %s: %s",
                        type(backbone).__name__, type(heads).__name__, ", ".join(dropped))
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, -1, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        backbone = build_backbone(cfg)
        if not is_stp_backbone(cfg):  # a fast-reid backbone: the head takes its measured width
            cfg = with_measured_width(cfg, backbone)
        return {"backbone": backbone, "heads": build_heads(cfg), "pixel_mean": cfg.MODEL.PIXEL_MEAN,
                "pixel_std": cfg.MODEL.PIXEL_STD, "seq_len": cfg.INPUT.SEQ_LEN, "loss": VLDLoss.from_config(cfg),
                "micro_batch": cfg.SOLVER.MICRO_BATCH_SIZE}

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: dict) -> dict[str, torch.Tensor] | torch.Tensor:
        frames = self.preprocess_image(batched_inputs)  # [B*T, 3, H, W]
        if not self.training:
            return self.heads(self.backbone(frames))  # [B, D]
        if "targets" not in batched_inputs:
            raise KeyError("VLD training needs batched_inputs['targets'] (identity labels)")
        tracklets = per_tracklet_outputs(self.tracklet_features, frames, self.seq_len, self.micro_batch)
        tracklets, targets = global_batch(tracklets, batched_inputs["targets"].to(self.device))  # [B] each
        outputs = self.heads.batch_outputs(tracklets)
        log_classifier_accuracy(outputs["logits"]["cls"], targets)
        return self.loss(outputs, targets)

    def tracklet_features(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised frames [b*T, 3, H, W] -> the head's tracklet features by name, [b, D] each."""
        return self.heads.tracklet_features(self.backbone(frames))

    def preprocess_image(self, batched_inputs: dict) -> torch.Tensor:
        """images [B, T, 3, H, W] in 0..255 -> normalised frames [B*T, 3, H, W] (a new tensor)."""
        return normalised_frames(batched_inputs["images"], self.seq_len, self.pixel_mean, self.pixel_std, "VLD")


def log_classifier_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> None:
    """fast-reid's ``cls_accuracy`` (as its Baseline logs it): the top-1 accuracy of the CLS classifier's
    logits [B, C] on the batch, in the trainer's event storage; nothing outside a training run."""
    if _CURRENT_STORAGE_STACK:
        log_accuracy(logits.detach(), targets)

"""VideoBaseline: any fast-reid backbone and head on tracklets, trained with fast-reid's Baseline losses.

fast-reid's ``Baseline`` takes images [N, 3, H, W]; a tracklet batch is [B, T, 3, H, W]. VideoBaseline runs
the backbone on the B*T frames, averages each tracklet's T feature maps (temporal average pooling) and
hands the [B, C, h, w] maps to the head, so the head's pooling, neck and classifier and Baseline's losses
(MODEL.LOSSES.NAME, with their fast-reid keys and scales) work unchanged: BoT / AGW / SBS-style models
on HITSZ-VCM and BUPTCampus (configs/VideoBaseline/). With T = 1 it is fast-reid's Baseline.

In training the backbone runs on this process's tracklets and the head (its BNneck, classifier) and
the losses on the maps of the global batch of every process (global_batch.py); the backbone's own
BatchNorm layers see this process's frames.
"""

from __future__ import annotations

from typing import Any

import torch
from fastreid.config import CfgNode, configurable
from fastreid.modeling.heads import build_heads
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY, Baseline

from ...config import ConfigError
from ..backbones.width import with_measured_width
from ..global_batch import check_micro_batches, global_batch, per_tracklet_outputs
from .tracklet_frames import normalised_frames

__all__ = ["VideoBaseline", "temporal_average"]


def temporal_average(feature_maps: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Per-frame feature maps [B*T, C, h, w], each tracklet's T frames in a row (as the frames are
    flattened) -> each tracklet's mean map over its T frames [B, C, h, w]."""
    return feature_maps.unflatten(0, (-1, seq_len)).mean(dim=1)


@META_ARCH_REGISTRY.register()
class VideoBaseline(Baseline):
    """``model({"images": x})`` in eval, x [B, T, 3, H, W] float in 0..255, returns the head's
    tracklet features [B, D] (EmbeddingHead: the pooled map, after the BNneck where it has one).

    ``model({"images": x, "targets": pids})`` in training returns fast-reid's loss dict
    (``loss_cls``, ``loss_triplet``, ``loss_circle``, ``loss_cosface`` as MODEL.LOSSES.NAME
    asks, each times its SCALE), computed by :meth:`Baseline.losses`. Visible and infrared
    tracklets share one batch (and the BatchNorm statistics), as in VLD.
    """

    @configurable
    def __init__(self, *, seq_len: int, micro_batch: int = 0, **baseline_parts: Any) -> None:
        """``baseline_parts``: fast-reid's Baseline arguments (backbone, heads, pixel_mean, pixel_std, loss_kwargs);
        ``micro_batch``: SOLVER.MICRO_BATCH_SIZE (refused for a backbone with BatchNorm layers)."""
        super().__init__(**baseline_parts)
        check_micro_batches(self.backbone, micro_batch, type(self).__name__)
        self.seq_len = seq_len
        self.micro_batch = micro_batch

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        """fast-reid's Baseline parts and loss settings, the head built for the backbone's measured width."""
        if cfg.MODEL.HEADS.NAME == "IMLPHead":
            raise ConfigError("MODEL.HEADS.NAME IMLPHead: its outputs are read by MODEL.META_ARCHITECTURE VLD; "
                              "VideoBaseline takes fast-reid's heads (e.g. EmbeddingHead)")
        parts = super().from_config(cfg)
        measured = with_measured_width(cfg, parts["backbone"])
        if measured is not cfg:  # MODEL.BACKBONE.FEAT_DIM was not the backbone's width
            parts["heads"] = build_heads(measured)
        return {**parts, "seq_len": cfg.INPUT.SEQ_LEN, "micro_batch": cfg.SOLVER.MICRO_BATCH_SIZE}

    def forward(self, batched_inputs: dict) -> dict[str, torch.Tensor] | torch.Tensor:
        frames = self.preprocess_image(batched_inputs)  # [B*T, 3, H, W]
        if not self.training:
            return self.heads(self.tracklet_feature_maps(frames))  # [B, D]
        if "targets" not in batched_inputs:
            raise KeyError("VideoBaseline training needs batched_inputs['targets'] (identity labels)")
        feature_maps = per_tracklet_outputs(self.tracklet_feature_maps, frames, self.seq_len, self.micro_batch)
        feature_maps, targets = global_batch(feature_maps, batched_inputs["targets"].to(self.device))  # [B, ...]
        return self.losses(self.heads(feature_maps, targets), targets)

    def tracklet_feature_maps(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised frames [b*T, 3, H, W] -> the backbone's feature maps of each tracklet's T frames,
        averaged over T: [b, C, h, w]."""
        return temporal_average(self.backbone(frames), self.seq_len)

    def preprocess_image(self, batched_inputs: dict) -> torch.Tensor:
        """images [B, T, 3, H, W] in 0..255 -> normalised frames [B*T, 3, H, W] (a new tensor)."""
        return normalised_frames(batched_inputs["images"], self.seq_len, self.pixel_mean, self.pixel_std,
                                 type(self).__name__)

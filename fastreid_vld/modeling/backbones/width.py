"""The feature-map width of any fast-reid backbone, measured instead of configured.

fast-reid's heads read the backbone's output channels from ``MODEL.BACKBONE.FEAT_DIM``, which the
user must keep in step with MODEL.BACKBONE.NAME / DEPTH / WITH_IBN (a wrong value fails in the
middle of the first step, with a matrix-product shape error). :func:`with_measured_width` runs
the built backbone once on one blank frame instead and hands the heads a config with the width
it measured; :func:`resolve_backbone_width` measures it before a run starts, so the run's
config.yaml records the width its heads use.
"""

from __future__ import annotations

import logging

import torch
from fastreid.config import CfgNode
from fastreid.modeling.backbones import build_backbone
from torch import nn

from .stp import is_stp_backbone

__all__ = ["feature_map_width", "resolve_backbone_width", "with_measured_width"]

#: the meta-architectures whose heads are built for the measured width
MEASURING_META_ARCHITECTURES = ("VLD", "VideoBaseline")

logger = logging.getLogger(__name__)


def feature_map_width(backbone: nn.Module, size: tuple[int, int]) -> int:
    """Channels C of ``backbone``'s output for one blank frame [1, 3, H, W] (``size`` = (H, W)):
    one forward pass in eval mode without gradients; the backbone's mode is restored."""
    was_training = backbone.training
    device = next(backbone.parameters()).device
    backbone.eval()
    try:
        with torch.no_grad():
            output = backbone(torch.zeros(1, 3, *size, device=device))  # [1, C, h, w]
    finally:
        backbone.train(was_training)
    if not (torch.is_tensor(output) and output.dim() == 4):
        found = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
        raise TypeError(f"expected MODEL.BACKBONE.NAME to give a feature map [N, C, h, w], found {found}")
    return output.shape[1]


def with_measured_width(cfg: CfgNode, backbone: nn.Module) -> CfgNode:
    """A copy of ``cfg`` whose MODEL.BACKBONE.FEAT_DIM is ``backbone``'s measured width, with one
    log line when the config said otherwise (the heads are then built from the copy)."""
    width = feature_map_width(backbone, tuple(cfg.INPUT.SIZE_TRAIN))
    if width == cfg.MODEL.BACKBONE.FEAT_DIM:
        return cfg
    _log_replaced(cfg, width)
    measured = cfg.clone()
    measured.defrost()
    measured.MODEL.BACKBONE.FEAT_DIM = width
    return measured


def resolve_backbone_width(cfg: CfgNode) -> None:
    """MODEL.BACKBONE.FEAT_DIM of an unfrozen ``cfg`` set to the measured width of its fast-reid
    backbone, where a meta-architecture of :data:`MEASURING_META_ARCHITECTURES` builds its heads for
    it (the STP backbone has no FEAT_DIM), with one log line when the config said otherwise. The
    backbone is built on the CPU without pretrained weights, torch's random state restored after
    (the run's own model then starts from the same state as without this measurement)."""
    if cfg.MODEL.META_ARCHITECTURE not in MEASURING_META_ARCHITECTURES or is_stp_backbone(cfg):
        return
    unweighted = cfg.clone()
    unweighted.MODEL.BACKBONE.PRETRAIN = False
    unweighted.MODEL.DEVICE = "cpu"
    with torch.random.fork_rng(devices=[]):
        width = feature_map_width(build_backbone(unweighted), tuple(cfg.INPUT.SIZE_TRAIN))
    if width != cfg.MODEL.BACKBONE.FEAT_DIM:
        _log_replaced(cfg, width)
        cfg.MODEL.BACKBONE.FEAT_DIM = width


def _log_replaced(cfg: CfgNode, width: int) -> None:
    logger.info("MODEL.BACKBONE.FEAT_DIM %d replaced by %d, the width of %s (depth %s) measured on one frame",
                cfg.MODEL.BACKBONE.FEAT_DIM, width, cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.DEPTH)

"""VLD's model parts; importing this registers them in fast-reid's registries:
``build_stp_backbone`` (BACKBONE_REGISTRY), ``IMLPHead`` (REID_HEADS_REGISTRY), ``VLD`` and
``VideoBaseline`` (META_ARCH_REGISTRY)."""

from .backbones.stp import STPBackbone, build_stp_backbone
from .convert import convert_official_state_dict
from .heads.imlp import IMLPHead
from .losses import VLDLoss
from .meta_arch.video_baseline import VideoBaseline
from .meta_arch.vld import VLD

__all__ = ["IMLPHead", "STPBackbone", "VLD", "VLDLoss", "VideoBaseline", "build_stp_backbone",
           "convert_official_state_dict"]

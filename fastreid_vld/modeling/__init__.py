"""VLD's model parts, registered in fast-reid's registries on import."""

from .backbones.stp import STPBackbone, build_stp_backbone
from .heads.imlp import IMLPHead, build_imlp_head
from .meta_arch.vld import VLD

__all__ = ["IMLPHead", "STPBackbone", "VLD", "build_imlp_head", "build_stp_backbone"]

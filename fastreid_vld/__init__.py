"""fastreid_vld: VLD (video-level language-driven VI-ReID, TIFS 2025) as a fast-reid plugin.

Importing this package checks that every install step was done (``requirements_check``: one
ImportError naming the missing ones, fastreid 1.4.0 above all), adapts fast-reid to this stack
(``compat``) and registers every data set, backbone, head and meta-architecture of the plugin in
fast-reid's registries.
"""

from .requirements_check import check_requirements

check_requirements()  # before compat: it imports torch, and the registrations import fast-reid

from . import compat  # noqa: E402

compat.apply()

# Registration is the only coupling: importing these fills fast-reid's registries.
from . import data, modeling  # noqa: E402,F401  (VCM, BUPTCampus; build_stp_backbone, IMLPHead, VLD, VideoBaseline)
from .config import add_vld_config  # noqa: E402


def __getattr__(name: str):
    # The trainer pulls in all of fast-reid's engine and evaluation: import it on first use.
    if name == "VLDTrainer":
        from .engine import VLDTrainer

        return VLDTrainer
    raise AttributeError(f"module 'fastreid_vld' has no attribute {name!r}")


__all__ = ["add_vld_config", "VLDTrainer"]
__version__ = "0.1.0"

"""Every config key fastreid_vld adds to fast-reid's defaults, each with its default and meaning.

Usage (as detectron2 projects do)::

    cfg = get_cfg()
    add_vld_config(cfg)
    cfg.merge_from_file("configs/VLD/vcm.yml")

Keys are grouped by concern, one function each; fast-reid's own keys (SOLVER.BASE_LR,
TEST.RERANK.*, ...) keep their meaning and are set in the yml files.
"""

from __future__ import annotations

import os

from fastreid.config import CfgNode as CN


def add_vld_config(cfg: CN) -> CN:
    """Add the fastreid_vld keys to a fast-reid config in place (and return it)."""
    _add_data_config(cfg)
    _add_model_config(cfg)
    _add_solver_config(cfg)
    _add_test_config(cfg)
    return cfg


def _add_data_config(_C: CN) -> None:
    # Folder holding the data sets, each in its own sub-folder. Defaults to the
    # FASTREID_DATASETS environment variable, where fast-reid's own data sets are read from.
    _C.DATASETS.ROOT = os.environ.get("FASTREID_DATASETS", "datasets")
    # T: frames per tracklet fed to the model, at train and test time (paper: 6).
    _C.INPUT.SEQ_LEN = 6


def _add_model_config(_C: CN) -> None:
    pass


def _add_solver_config(_C: CN) -> None:
    # Iterations per epoch (official VLD: 200). 0 keeps fast-reid's len(train set) // IMS_PER_BATCH.
    # Epoch-based keys (MAX_EPOCH, CHECKPOINT_PERIOD, TEST.EVAL_PERIOD) count these epochs.
    _C.SOLVER.ITERS_PER_EPOCH = 0
    # Autocast dtype when SOLVER.AMP.ENABLED: "float16" (with a gradient scaler on CUDA)
    # or "bfloat16" (CUDA or CPU). The official VLD code uses float16 on CUDA.
    _C.SOLVER.AMP.DTYPE = "float16"


def _add_test_config(_C: CN) -> None:
    pass

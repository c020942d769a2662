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
    # How the T training frames are drawn: "restricted_random" (one random frame from each of T
    # equal chunks, official), "random_sorted" (T random frames in order) or "consecutive".
    _C.INPUT.TRAIN_FRAME_RULE = "restricted_random"
    # VI-ReID channel augmentations (the pad/crop/flip use fast-reid's INPUT.PADDING.SIZE).
    _C.INPUT.VVI_AUG = CN()
    _C.INPUT.VVI_AUG.ERASE_PROB = 0.5            # channel random erasing probability (official 0.5)
    _C.INPUT.VVI_AUG.IR_GRAY_PROB = 0.5          # infrared: grayscale probability when no channel is copied
    _C.INPUT.VVI_AUG.SAME_ACROSS_TRACKLET = False  # one draw per tracklet instead of per frame (official)
    # HITSZ-VCM: tracklets shorter than this are left out of train, query and gallery (original: 12).
    _C.DATASETS.VCM = CN()
    _C.DATASETS.VCM.MIN_FRAMES = 12
    _C.DATASETS.BUPT = CN()
    # BUPTCampus: add train_auxiliary.txt to the training set.
    _C.DATASETS.BUPT.AUXILIARY = False
    # BUPTCampus: 64 reproduces the original test sampler, which drops the last len(rgb) % 64
    # visible tracklets of query and gallery (all of them when that is 0); 0 evaluates everything.
    _C.DATASETS.BUPT.DROP_RGB_REMAINDER = 0


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
    # Video cross-modal data sets also accept TEST.METRIC "inner_product" (distance -q.g, the
    # data sets' original evaluation code) besides fast-reid's "cosine" and "euclidean".
    # CMC length: Rank-k reported up to this k (the originals: 20), cut at the gallery size.
    _C.TEST.MAX_RANK = 20
    # Result copied to results["metric"], by which fast-reid keeps model_best.pth
    # (VLD selects by infrared->visible Rank-1).
    _C.TEST.SELECT_BY = "IR->VIS/Rank-1"

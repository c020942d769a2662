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
    # CLIP geometry (defaults: OpenAI ViT-B/16). Input size is INPUT.SIZE_TRAIN (paper 288x144).
    _C.MODEL.CLIP = CN()
    _C.MODEL.CLIP.EMBED_DIM = 512        # joint image-text embedding width (the 512 projected features)
    _C.MODEL.CLIP.VISION_WIDTH = 768     # ViT width (the 768 CLS / STA features)
    _C.MODEL.CLIP.VISION_LAYERS = 12
    _C.MODEL.CLIP.VISION_HEADS = 12
    _C.MODEL.CLIP.PATCH_SIZE = 16
    _C.MODEL.CLIP.TEXT_WIDTH = 512       # IMLP context vectors live in this width
    _C.MODEL.CLIP.TEXT_LAYERS = 12
    _C.MODEL.CLIP.TEXT_HEADS = 8
    _C.MODEL.CLIP.CONTEXT_LENGTH = 77
    _C.MODEL.CLIP.VOCAB_SIZE = 49408     # open_clip's tokenizer vocabulary
    _C.MODEL.CLIP.QUICK_GELU = True      # OpenAI CLIP's activation
    # STP (spatial-temporal prompting) of build_stp_backbone.
    _C.MODEL.STP = CN()
    # Block index (0-based) where the STH hub tokens join; they are transposed across frames before
    # every later block. Official: 9. -1 switches STH (and so STA) off.
    _C.MODEL.STP.STH_START_LAYER = 9
    _C.MODEL.STP.STA = True              # STA: frame CLS queries over the T*T hub tokens after the last block
    _C.MODEL.STP.STA_HEADS = 12          # heads of the STA multi-head attention
    # IMLP head: CLIP weights for its frozen text tower; "" = MODEL.BACKBONE.PRETRAIN_PATH
    # (set it when the backbone is not CLIP, e.g. configs/VLD/r50_imlp_vcm.yml).
    _C.MODEL.HEADS.TEXT_PRETRAIN_PATH = ""
    # VLD loss weights (official training step).
    _C.MODEL.LOSSES.VLD = CN()
    _C.MODEL.LOSSES.VLD.CE = 1.0              # CE on the 768 CLS classifier
    _C.MODEL.LOSSES.VLD.CE_PROJ = 1.0         # CE on the 512 projected-feature classifier
    _C.MODEL.LOSSES.VLD.TEXT_CE = 0.08        # CE on the text logits (weight_a)
    _C.MODEL.LOSSES.VLD.STA_CE = 0.4          # identity-level CE on the STA classifier (weight_b)
    _C.MODEL.LOSSES.VLD.TRI_PENULTIMATE = 1.0  # WRT triplet on the CLS entering the last block
    _C.MODEL.LOSSES.VLD.TRI = 1.0             # WRT triplet on the 768 CLS
    _C.MODEL.LOSSES.VLD.TRI_PROJ = 1.0        # WRT triplet on the 512 projection
    _C.MODEL.LOSSES.VLD.TRI_STA = 1.0         # WRT triplet on the STA feature (weight_c)
    _C.MODEL.LOSSES.VLD.SUPCON = 0.0          # image-text SupCon (defined, off in the official step)


def _add_solver_config(_C: CN) -> None:
    # Iterations per epoch (official VLD: 200). 0 keeps fast-reid's len(train set) // IMS_PER_BATCH.
    # Epoch-based keys (MAX_EPOCH, CHECKPOINT_PERIOD, TEST.EVAL_PERIOD) count these epochs.
    _C.SOLVER.ITERS_PER_EPOCH = 0
    # Autocast dtype when SOLVER.AMP.ENABLED: "float16" (with a gradient scaler on CUDA)
    # or "bfloat16" (CUDA or CPU). The official VLD code uses float16 on CUDA.
    _C.SOLVER.AMP.DTYPE = "float16"
    # VLD schedule (solver.py), stepped per epoch: warm-up epochs, start factor, cosine floor factor.
    _C.SOLVER.VLD_WARMUP_EPOCHS = 3
    _C.SOLVER.VLD_WARMUP_FACTOR = 0.01
    _C.SOLVER.VLD_MIN_LR_FACTOR = 0.01


def _add_test_config(_C: CN) -> None:
    # Video cross-modal data sets also accept TEST.METRIC "inner_product" (distance -q.g, the
    # data sets' original evaluation code) besides fast-reid's "cosine" and "euclidean".
    # CMC length: Rank-k reported up to this k (the originals: 20), cut at the gallery size.
    _C.TEST.MAX_RANK = 20
    # Result copied to results["metric"], by which fast-reid keeps model_best.pth
    # (VLD selects by infrared->visible Rank-1).
    _C.TEST.SELECT_BY = "IR->VIS/Rank-1"

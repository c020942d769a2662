"""Every config key fastreid_vld adds to fast-reid's defaults, each with its default and meaning.

Usage (as detectron2 projects do)::

    cfg = get_cfg()
    add_vld_config(cfg)
    cfg.merge_from_file("configs/VLD/vcm.yml")

Keys are grouped by concern, one function each; fast-reid's own keys (SOLVER.BASE_LR,
TEST.RERANK.*, ...) keep their meaning and are set in the yml files.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from fastreid.config import CfgNode as CN

__all__ = ["ConfigError", "add_vld_config", "check_batch_split", "check_config", "merge_config"]


class ConfigError(ValueError):
    """A config key or value the user can fix (tools/train_net.py reports it in one line)."""


def merge_config(cfg: CN, config_file: str, opts: list[str]) -> CN:
    """``cfg`` merged with ``config_file`` then the ``KEY VALUE`` pairs ``opts``; an integer is
    accepted where the key holds a float (``SOLVER.BASE_LR 1``). Bad files, keys and values are
    one :class:`ConfigError` naming the file or key."""
    if len(opts) % 2:
        raise ConfigError(f"the overrides after the flags must be KEY VALUE pairs; {opts[-1]!r} has no value")
    opts = [item for key, value in zip(opts[0::2], opts[1::2], strict=True)
            for item in (key, _int_as_float(cfg, key, value))]
    for source, merge in ((config_file, lambda: cfg.merge_from_file(config_file)),
                          ("the KEY VALUE overrides", lambda: cfg.merge_from_list(opts))):
        try:
            merge()
        except (KeyError, ValueError, AssertionError, OSError) as error:
            message = str(error) if isinstance(error, OSError) else error.args[0] if error.args else \
                type(error).__name__
            raise ConfigError(f"{source}: {message}") from None
    return cfg


def _int_as_float(cfg: CN, key: str, value: str) -> str:
    """``value`` written as a float where ``key`` holds a float and ``value`` is an integer literal."""
    node = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, CN) else None
    return f"{int(value)}.0" if isinstance(node, float) and value.lstrip("+-").isdigit() else value


#: (key, smallest value): settings below which training cannot run.
MINIMUMS = (("INPUT.SEQ_LEN", 1), ("DATALOADER.NUM_INSTANCE", 1), ("SOLVER.MAX_EPOCH", 1),
            ("SOLVER.ITERS_PER_EPOCH", 0), ("SOLVER.LOG_PERIOD", 1), ("SOLVER.MICRO_BATCH_SIZE", 0),
            ("SOLVER.IMS_PER_BATCH", 1), ("TEST.IMS_PER_BATCH", 1))

#: (key, the values it accepts): choices a build would only refuse at the first batch.
CHOICES = (("INPUT.TRAIN_FRAME_RULE", ("restricted_random", "random_sorted", "consecutive")),
           ("INPUT.TEST_FRAME_RULE", ("", "chunk_first", "linspace")))


#: MODEL.BACKBONE.DEPTH values that fast-reid 1.4.0's builders accept (each looks DEPTH up in
#: tables of its own and fails there with a bare KeyError on any other value).
BACKBONE_DEPTHS = {
    "build_resnet_backbone": ("18x", "34x", "50x", "101x"),
    "build_resnest_backbone": ("50x", "101x", "200x", "269x"),
    "build_resnext_backbone": ("50x", "101x"),
    "build_osnet_backbone": ("x1_0", "x0_75", "x0_5", "x0_25"),
    "build_vit_backbone": ("small", "base"),
}


def config_value(cfg: CN, key: str) -> Any:
    """The value of the dotted ``key`` ("INPUT.SEQ_LEN") in ``cfg``."""
    return functools.reduce(lambda node, part: node[part], key.split("."), cfg)


def check_config(cfg: CN) -> None:
    """Settings fast-reid would only fail on deep inside a build or a step: registry names
    (MODEL.META_ARCHITECTURE, MODEL.BACKBONE.NAME, MODEL.HEADS.NAME, DATASETS.NAMES / TESTS), the
    backbone's DEPTH and counts that must be positive; one :class:`ConfigError` naming the key."""
    from fastreid.data.datasets import DATASET_REGISTRY
    from fastreid.modeling.backbones import BACKBONE_REGISTRY
    from fastreid.modeling.heads import REID_HEADS_REGISTRY
    from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

    names = [("MODEL.META_ARCHITECTURE", META_ARCH_REGISTRY, [cfg.MODEL.META_ARCHITECTURE]),
             ("MODEL.BACKBONE.NAME", BACKBONE_REGISTRY, [cfg.MODEL.BACKBONE.NAME]),
             ("MODEL.HEADS.NAME", REID_HEADS_REGISTRY, [cfg.MODEL.HEADS.NAME]),
             ("DATASETS.NAMES", DATASET_REGISTRY, list(cfg.DATASETS.NAMES)),
             ("DATASETS.TESTS", DATASET_REGISTRY, list(cfg.DATASETS.TESTS))]
    for key, registry, values in names:
        for name in values:
            try:
                registry.get(name)
            except KeyError:
                registered = ", ".join(sorted(registry._obj_map))  # fast-reid's Registry has no name list
                raise ConfigError(f"{key}: nothing named {name!r}; registered: {registered}") from None
    depths = BACKBONE_DEPTHS.get(cfg.MODEL.BACKBONE.NAME, (cfg.MODEL.BACKBONE.DEPTH,))
    if cfg.MODEL.BACKBONE.DEPTH not in depths:
        raise ConfigError(f"MODEL.BACKBONE.DEPTH {cfg.MODEL.BACKBONE.DEPTH!r}: {cfg.MODEL.BACKBONE.NAME} builds "
                          f"the depths {', '.join(depths)}")
    for key, allowed in CHOICES:
        value = config_value(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key} {value!r}: expected one of {', '.join(map(repr, allowed))}")
    for key, smallest in MINIMUMS:
        value = config_value(cfg, key)
        if value < smallest:
            raise ConfigError(f"{key} {value}: expected at least {smallest}")
    check_batch_split(cfg)


def check_batch_split(cfg: CN) -> None:
    """SOLVER.IMS_PER_BATCH is the global batch: on video visible-infrared training sets 2 modalities x
    DATALOADER.NUM_INSTANCE x identities, split evenly over the processes (fastreid_vld/distributed.py);
    TEST.IMS_PER_BATCH gives every process at least one tracklet a batch."""
    from fastreid.utils import comm

    from .data.build import is_vvi_dataset

    world_size, batch, k = comm.get_world_size(), cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE
    if all(is_vvi_dataset(name) for name in cfg.DATASETS.NAMES) and batch % (2 * k):
        raise ConfigError(f"SOLVER.IMS_PER_BATCH {batch}: expected 2 modalities x DATALOADER.NUM_INSTANCE ({k}) x "
                          f"identities per batch, a multiple of {2 * k}")
    if batch % world_size:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH {batch} cannot be split evenly over {world_size} processes: "
                          f"expected a multiple of {world_size} (it is the global batch)")
    if cfg.TEST.IMS_PER_BATCH < world_size:
        raise ConfigError(f"TEST.IMS_PER_BATCH {cfg.TEST.IMS_PER_BATCH}: expected at least one tracklet for each "
                          f"of the {world_size} processes")


def add_vld_config(cfg: CN) -> CN:
    """Add the fastreid_vld keys to a fast-reid config in place (and return it)."""
    _add_data_config(cfg)
    _add_model_config(cfg)
    _add_solver_config(cfg)
    _add_test_config(cfg)
    # Seed of python, numpy and torch at start-up (tools/train_net.py; each process adds its rank),
    # which makes CPU runs repeat exactly; negative: a fresh random seed every run (fast-reid 1.4.0
    # has no such key and always draws one).
    cfg.SEED = -1
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
    # How the T test frames are chosen (data/tracklets.py test_frame_indices): "" each test set's
    # own rule (HITSZ-VCM "chunk_first", BUPTCampus "linspace"; for tracklet folders and frame lists,
    # the rule of the first of DATASETS.TESTS), or "chunk_first" / "linspace" for every one.
    _C.INPUT.TEST_FRAME_RULE = ""
    # How training batches draw their P identities x K tracklets per modality (fastreid_vld/data/samplers.py):
    # "independent" (official HITSZ-VCM: identities drawn afresh for every batch, tracklets with
    # replacement), "distinct_cameras" (official BUPTCampus: K pairs from K different cameras, each
    # pair once per pass, identities seen by fewer cameras never drawn) or "balanced" (every
    # identity once per pass, tracklets without replacement).
    _C.DATALOADER.VVI_SAMPLER = "balanced"
    # VI-ReID channel augmentations; the pad/crop, flip and random erasing before them are fast-reid's
    # INPUT.PADDING.*, INPUT.FLIP.* and INPUT.REA.* (fastreid_vld/data/build.py, transforms.py).
    _C.INPUT.VVI_AUG = CN()
    _C.INPUT.VVI_AUG.IR_GRAY_PROB = 0.5          # infrared: grayscale probability when no channel is copied
    _C.INPUT.VVI_AUG.SAME_ACROSS_TRACKLET = False  # one draw per tracklet instead of per frame (official)
    # HITSZ-VCM: tracklets shorter than this are left out of train, query and gallery (original: 12).
    _C.DATASETS.VCM = CN()
    _C.DATASETS.VCM.MIN_FRAMES = 12
    _C.DATASETS.BUPT = CN()
    # BUPTCampus: add train_auxiliary.txt to the training set.
    _C.DATASETS.BUPT.AUXILIARY = False
    # BUPTCampus: the batch size of the original test sampler, which drops the last len(rgb) % 64
    # visible tracklets of query and gallery (all of them when that is 0). Both test subsets are
    # evaluated: "official" (with that drop; published numbers, model selection) and "all" (every
    # tracklet). 0: "all" only.
    _C.DATASETS.BUPT.DROP_RGB_REMAINDER = 64


def _add_model_config(_C: CN) -> None:
    # VLD also reads fast-reid's MODEL.BACKBONE.PRETRAIN (load CLIP weights; False: random init) and
    # MODEL.BACKBONE.PRETRAIN_PATH (OpenAI JIT .pt or open_clip checkpoint; "": MODEL.CLIP.PRETRAINED).
    # CLIP: the STP backbone's image tower and the IMLP head's frozen text tower, at INPUT.SIZE_TRAIN.
    _C.MODEL.CLIP = CN()
    _C.MODEL.CLIP.NAME = "ViT-B-16"        # open_clip architecture, or an open_clip JSON model config file
    _C.MODEL.CLIP.QUICK_GELU = True        # QuickGELU activations, as OpenAI CLIP was trained (official)
    _C.MODEL.CLIP.PRETRAINED = "openai"    # open_clip pretrained tag downloaded where the weights path is ""
    _C.MODEL.CLIP.POS_EMBED_INTERPOLATION = "bilinear"  # square grid -> input grid resize (official: bilinear)
    # STP (spatial-temporal prompting) of build_stp_backbone.
    _C.MODEL.STP = CN()
    # 0-based block where the STH hub tokens ([T, T, width]) join; they are transposed across the
    # tracklet's frames before every later block. Official: 9 (of 12). -1 switches STH off.
    _C.MODEL.STP.STH_START_LAYER = 9
    _C.MODEL.STP.STA = True                # STA: frame CLS queries over the T*T hub tokens (needs STH)
    _C.MODEL.STP.STA_HEADS = 12            # heads of the STA multi-head attention (official 12)
    # Activation checkpointing of the image tower's blocks: recomputed in the backward pass instead
    # of kept: lower peak memory for one more forward of each block; the same gradients.
    _C.MODEL.STP.GRAD_CHECKPOINT = False
    # IMLP head (MODEL.HEADS.NAME IMLPHead).
    _C.MODEL.IMLP = CN()
    # Identity prompt; each X is a learnable per-identity context vector (official: 4, std 0.02).
    _C.MODEL.IMLP.PROMPT = "A X X X X person observed in both day and night conditions."
    # CLIP weights of the frozen text tower; "": the STP backbone's MODEL.BACKBONE.PRETRAIN_PATH,
    # or, with any other backbone, the MODEL.CLIP.PRETRAINED tag. Loaded when MODEL.BACKBONE.PRETRAIN.
    _C.MODEL.IMLP.TEXT_PRETRAIN_PATH = ""
    # Activation checkpointing of the frozen text tower's blocks (the prompts' gradients pass through
    # them): lower peak memory for one more forward of each block; the same gradients.
    _C.MODEL.IMLP.GRAD_CHECKPOINT = False
    # VLD loss weights (official training step); 0 switches a term off. CE terms use
    # fast-reid's MODEL.LOSSES.CE.EPSILON label smoothing (official 0).
    _C.MODEL.LOSSES.VLD = CN()
    _C.MODEL.LOSSES.VLD.CE = 1.0               # CE on the BN classifier of the CLS feature (768)
    _C.MODEL.LOSSES.VLD.CE_PROJ = 1.0          # CE on the BN classifier of the projected CLS (512)
    _C.MODEL.LOSSES.VLD.TEXT_CE = 0.08         # CE on the IMLP text logits (official weight_a)
    _C.MODEL.LOSSES.VLD.STA_CE = 0.4           # identity-level CE on the STA classifier (official weight_b)
    _C.MODEL.LOSSES.VLD.TRI_PENULTIMATE = 1.0  # WRT triplet on the CLS entering the last block
    _C.MODEL.LOSSES.VLD.TRI = 1.0              # WRT triplet on the CLS feature (768)
    _C.MODEL.LOSSES.VLD.TRI_PROJ = 1.0         # WRT triplet on the projected CLS (512)
    _C.MODEL.LOSSES.VLD.TRI_STA = 1.0          # WRT triplet on the STA feature (official weight_c)
    _C.MODEL.LOSSES.VLD.SUPCON = 0.0           # image<->text SupCon as CLIP-ReID (defined, off officially)


def _add_solver_config(_C: CN) -> None:
    # Iterations per epoch (official VLD: 200). 0 keeps fast-reid's len(train set) // IMS_PER_BATCH.
    # Epoch-based keys (MAX_EPOCH, CHECKPOINT_PERIOD, TEST.EVAL_PERIOD) count these epochs.
    _C.SOLVER.ITERS_PER_EPOCH = 0
    # Iterations between two lines of losses, learning rate and ETA in the log and metrics.json
    # (fast-reid writes every 200, a whole official VLD epoch); they are also written after every epoch.
    _C.SOLVER.LOG_PERIOD = 20
    # Tracklets per backbone forward in training (micro-batches, as GradCache; fastreid_vld/modeling/
    # global_batch.py): the backbone runs this many of the process's tracklets at a time without
    # keeping their activations, the losses once over the whole batch, then each micro-batch's
    # forward again in the backward pass: the loss and gradients of the whole batch, the activation
    # memory of one micro-batch. 0: the process's whole share of SOLVER.IMS_PER_BATCH at once.
    _C.SOLVER.MICRO_BATCH_SIZE = 0
    # Autocast dtype when SOLVER.AMP.ENABLED: "float16" (with a gradient scaler, whose state
    # checkpoints carry) or "bfloat16" (no scaler); both on CUDA or the CPU. The official VLD code
    # uses float16 on CUDA.
    _C.SOLVER.AMP.DTYPE = "float16"
    # SOLVER.SCHED "WarmupCosineEpochLR" (VLD, fastreid_vld/solver.py): set per epoch, linear warm-up
    # over these epochs from WARMUP_FACTOR x BASE_LR (every group), then cosine over MAX_EPOCH down
    # to ETA_MIN_LR. Official: 3 epochs from 0.01 x, floor 0.01 x BASE_LR, 24 epochs.
    _C.SOLVER.WARMUP_EPOCHS = 3


def _add_test_config(_C: CN) -> None:
    # Video cross-modal data sets also accept TEST.METRIC "inner_product" (distance -q.g, the
    # data sets' original evaluation code) besides fast-reid's "cosine" and "euclidean", for plain
    # retrieval; AQE and re-ranking use cosine whatever it says (fastreid_vld/evaluation/distances.py).
    # CMC length: Rank-k reported up to this k (the originals: 20), cut at the gallery size.
    _C.TEST.MAX_RANK = 20
    # Result copied to results["metric"], by which model_best.pth is kept (VLD selects by
    # infrared->visible Rank-1; ties go to the later epoch, as the official code). On a data set
    # with test subsets (BUPTCampus) a direction without a label reads the first subset
    # ("official"); "all/IR->VIS/Rank-1" names another.
    _C.TEST.SELECT_BY = "IR->VIS/Rank-1"

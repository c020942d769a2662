"""Every config key fastreid_vld adds to fast-reid's defaults, each with its default, its meaning and
the rules its value must follow.

Usage (as detectron2 projects do)::

    cfg = get_cfg()
    add_vld_config(cfg)
    cfg.merge_from_file("configs/VLD/vcm.yml")   # or merge_config(cfg, file, opts)
    check_config(cfg)

Keys are grouped by concern, one function each; fast-reid's own keys (SOLVER.BASE_LR,
TEST.RERANK.*, ...) keep their meaning and are set in the yml files.

Start-up rules: a table of :class:`Rule` (key, the rule its value must hold, the message), which
:func:`check_config` runs whole before anything is built. A key's rules sit where the key is
defined: right after each group function (``DATA_RULES``, ``MODEL_RULES``, ...), fast-reid's keys
in ``FASTREID_RULES``. What only the loaded data sets can tell (identities for a batch, the size of
a test set) is :func:`check_config_against_data`. Each broken rule is one line
``KEY VALUE: message`` (mostly ``expected ...``) of one :class:`ConfigError`.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fastreid.config import CfgNode as CN

from .solver import VLD_SCHEDULER

__all__ = ["ConfigError", "RULES", "Rule", "add_vld_config", "at_least", "check_batch_split", "check_config",
           "check_config_against_data", "config_value", "merge_config", "one_of", "registered"]


class ConfigError(ValueError):
    """A config file, key or value the user can fix (tools/train_net.py reports it as ``error:`` lines)."""


# --------------------------------------------------------------------------- config files


def merge_config(cfg: CN, config_file: str, opts: list[str]) -> CN:
    """``cfg`` merged with ``config_file`` then the ``KEY VALUE`` pairs ``opts``; an integer is
    accepted where the key holds a float (``SOLVER.BASE_LR 1``). Bad files (unreadable, not text, a
    YAML error, not a mapping: the file and line, its ``_BASE_`` files too), keys and values are one
    :class:`ConfigError` naming the file or key."""
    if len(opts) % 2:
        raise ConfigError(f"the overrides after the flags must be KEY VALUE pairs; {opts[-1]!r} has no value")
    _check_config_files(config_file)
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


def _check_config_files(config_file: str) -> None:
    """``config_file`` and the ``_BASE_`` files it names are readable UTF-8 YAML, each a mapping of
    config keys; one ConfigError naming the file (and line) otherwise."""
    seen: set[Path] = set()
    file: str | None = config_file
    while file is not None and not file.startswith(URL_PREFIXES):  # fast-reid's PathManager reads those
        path = Path(file).expanduser()
        if path.resolve() in seen:
            raise ConfigError(f"{file}: expected a chain of _BASE_ files that ends, found a cycle")
        seen.add(path.resolve())
        base = _read_yaml_mapping(path).get("_BASE_")
        file = None if base is None else _base_file(file, str(base))


#: config paths fast-reid reads through its PathManager, not as files
URL_PREFIXES = ("https://", "http://")


def _base_file(file: str, base: str) -> str:
    """The ``_BASE_: base`` of config ``file``, found as fast-reid finds it: relative to ``file``
    unless absolute, from the home folder (``~``) or a URL."""
    return base if base.startswith(("/", "~", *URL_PREFIXES)) else os.path.join(os.path.dirname(file), base)


def _read_yaml_mapping(path: Path) -> dict:
    """The mapping the YAML file ``path`` holds; a ConfigError naming the file (and line) otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: expected a YAML config file (text), found binary data (byte "
                          f"0x{error.object[error.start]:02x} at offset {error.start} is not UTF-8)") from None
    except OSError as error:
        raise ConfigError(f"{path}: {error} (expected a readable YAML config file)") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise ConfigError(f"{path}:{mark.line + 1}:{mark.column + 1}: expected a YAML config file, found a "
                          f"YAML error: {error.problem or error.context}") from None
    except yaml.reader.ReaderError as error:  # a control character
        raise ConfigError(f"{path}: expected a YAML config file (text), found the control character "
                          f"#x{error.character:04x} at character {error.position}") from None
    if not isinstance(loaded, dict):
        found = "an empty file" if loaded is None else f"a YAML {type(loaded).__name__} ({str(loaded)[:40]!r})"
        raise ConfigError(f"{path}: expected a YAML mapping of config keys (MODEL: ..., SOLVER: ...), found {found}")
    return loaded


def _int_as_float(cfg: CN, key: str, value: str) -> str:
    """``value`` written as a float where ``key`` holds a float and ``value`` is an integer literal."""
    node = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, CN) else None
    return f"{int(value)}.0" if isinstance(node, float) and value.lstrip("+-").isdigit() else value


# --------------------------------------------------------------------------- the rule machinery


def config_value(cfg: CN, key: str) -> Any:
    """The value of the dotted ``key`` ("INPUT.SEQ_LEN") in ``cfg``."""
    return functools.reduce(lambda node, part: node[part], key.split("."), cfg)


def _always(cfg: CN) -> bool:
    return True


@dataclass(frozen=True)
class Rule:
    """A start-up rule of the config key ``key``: where ``when(cfg)``, ``holds(value, cfg)`` must be
    true, else the error line ``KEY VALUE: message`` (``message(value, cfg)`` where it depends on them).
    A rule that reads another key leaves that key's own breakage to that key's rules (it holds)."""

    key: str
    holds: Callable[[Any, CN], bool]
    message: str | Callable[[Any, CN], str]
    when: Callable[[CN], bool] = _always

    def problem(self, cfg: CN) -> str | None:
        """The error line where ``cfg`` breaks this rule, else None."""
        if not self.when(cfg):
            return None
        value = config_value(cfg, self.key)
        if self.holds(value, cfg):
            return None
        message = self.message(value, cfg) if callable(self.message) else self.message
        return f"{self.key} {value!r}: {message}"


def at_least(key: str, smallest: int, when: Callable[[CN], bool] = _always) -> Rule:
    """``key`` is ``smallest`` or more."""
    return Rule(key, lambda value, cfg: value >= smallest, f"expected at least {smallest}", when)


def one_of(key: str, choices: Sequence[str] | Callable[[CN], Sequence[str]], note: str = "",
           when: Callable[[CN], bool] = _always) -> Rule:
    """``key`` is one of ``choices`` (or of ``choices(cfg)``); ``note`` follows the list."""
    def allowed(cfg: CN) -> Sequence[str]:
        return choices(cfg) if callable(choices) else choices

    return Rule(key, lambda value, cfg: value in allowed(cfg),
                lambda value, cfg: f"expected one of {', '.join(map(repr, allowed(cfg)))}{note}", when)


def registered(key: str, kind: str) -> Rule:
    """Every name ``key`` holds (a name, or a list of names) is registered in fast-reid's ``kind`` registry."""
    def unknown(value: str | Sequence[str]) -> list[str]:
        return [name for name in ([value] if isinstance(value, str) else value) if name not in _registry(kind)]

    def message(value: str | Sequence[str], cfg: CN) -> str:
        names = ", ".join(sorted(_registry(kind)))
        if isinstance(value, str):
            return f"expected a registered {kind}: {names}"
        return f"expected registered {kind}s; nothing is named {unknown(value)[0]!r} (registered: {names})"

    return Rule(key, lambda value, cfg: not unknown(value), message)


def _check_rules(cfg: CN, rules: Iterable[Rule]) -> None:
    """One ConfigError listing every rule of ``rules`` that ``cfg`` breaks, a line each (the first
    line names the first; later lines start ``error:`` as tools print the first)."""
    problems = [problem for rule in rules if (problem := rule.problem(cfg)) is not None]
    if problems:
        raise ConfigError("\nerror: ".join(problems))


def check_config(cfg: CN) -> None:
    """The whole rule table (:data:`RULES`) on ``cfg`` before anything is built: registry names,
    choices, counts, batch splits, what the backbone can take and what the evaluation can name."""
    _check_rules(cfg, RULES)


def check_batch_split(cfg: CN) -> None:
    """SOLVER.IMS_PER_BATCH is the global batch: on video visible-infrared training sets 2 modalities x
    DATALOADER.NUM_INSTANCE x identities, split evenly over the processes (fastreid_vld/distributed.py);
    TEST.IMS_PER_BATCH gives every process at least one tracklet a batch (:data:`BATCH_RULES`)."""
    _check_rules(cfg, BATCH_RULES)


def check_config_against_data(cfg: CN, datasets: Mapping[str, Any]) -> None:
    """The rules only the loaded video data sets can check (:func:`_data_rules`), in the style of
    :func:`check_config`. ``datasets``: the parsed data sets (``VideoCrossModalDataset``) by name; the
    training rules run where every one of DATASETS.NAMES is there with its training split, the test
    rules on each of DATASETS.TESTS that is there."""
    _check_rules(cfg, _data_rules(cfg, datasets))


# --------------------------------------------------------------------------- what rules read


def _registry(kind: str) -> dict[str, Any]:
    """fast-reid's registry of ``kind``, name -> object (fast-reid's Registry has no name list)."""
    from fastreid.data.datasets import DATASET_REGISTRY
    from fastreid.modeling.backbones import BACKBONE_REGISTRY
    from fastreid.modeling.heads import REID_HEADS_REGISTRY
    from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

    registries = {"meta-architecture": META_ARCH_REGISTRY, "backbone": BACKBONE_REGISTRY,
                  "head": REID_HEADS_REGISTRY, "data set": DATASET_REGISTRY}
    return registries[kind]._obj_map


def _video_sets(names: Sequence[str]) -> list[str]:
    """The registered video visible-infrared data sets among ``names``."""
    from .data.build import is_vvi_dataset

    return [name for name in names if name in _registry("data set") and is_vvi_dataset(name)]


def _image_sets(names: Sequence[str]) -> list[str]:
    """The registered fast-reid image data sets among ``names``."""
    video = _video_sets(names)
    return [name for name in names if name in _registry("data set") and name not in video]


def _video_training(cfg: CN) -> bool:
    return bool(cfg.DATASETS.NAMES) and len(_video_sets(cfg.DATASETS.NAMES)) == len(cfg.DATASETS.NAMES)


def _paired(name: str) -> bool:
    """Whether the training set of video data set ``name`` comes in visible/infrared pairs (BUPTCampus)."""
    return getattr(_registry("data set")[name], "paired_train", False)


def _world_size() -> int:
    from fastreid.utils import comm

    return comm.get_world_size()


def _stp(cfg: CN) -> bool:
    return cfg.MODEL.BACKBONE.NAME == "build_stp_backbone"


def _clip_config(cfg: CN) -> dict | None:
    """The open_clip model config MODEL.CLIP.NAME names, None where it names none."""
    from .modeling.clip import clip_model_config

    try:
        return clip_model_config(cfg)
    except (ValueError, OSError):  # no such architecture, file, JSON or CLIP config
        return None


def _vit(cfg: CN) -> dict | None:
    """The ``vision_cfg`` of MODEL.CLIP.NAME where it is a ViT pooled by its class token (what
    modeling/clip.py builds for the STP backbone), else None."""
    vision = (_clip_config(cfg) or {}).get("vision_cfg", {})
    is_vit = (isinstance(vision.get("layers"), int) and vision.get("patch_size") and not vision.get("timm_model_name")
              and not vision.get("attentional_pool") and vision.get("pool_type", "tok") == "tok")
    return vision if is_vit else None


def _stp_vit(cfg: CN) -> bool:
    return _stp(cfg) and _vit(cfg) is not None


def _valid_size(value: Sequence[int]) -> bool:
    return len(value) == 2 and all(isinstance(side, int) and side > 0 for side in value)


def _stp_sized(cfg: CN) -> bool:
    """The STP backbone, at a valid INPUT.SIZE_TRAIN."""
    return _stp(cfg) and _valid_size(cfg.INPUT.SIZE_TRAIN)


# --------------------------------------------------------------------------- fast-reid's keys

#: MODEL.BACKBONE.DEPTH values that fast-reid 1.4.0's builders accept (each looks DEPTH up in
#: tables of its own and fails there with a bare KeyError on any other value).
BACKBONE_DEPTHS = {
    "build_resnet_backbone": ("18x", "34x", "50x", "101x"),
    "build_resnest_backbone": ("50x", "101x", "200x", "269x"),
    "build_resnext_backbone": ("50x", "101x"),
    "build_osnet_backbone": ("x1_0", "x0_75", "x0_5", "x0_25"),
    "build_vit_backbone": ("small", "base"),
}

#: torch.optim optimizers that a training step cannot drive: LBFGS steps with a closure, SparseAdam
#: takes sparse gradients only, Muon 2-D parameters only.
OPTIMIZERS_NOT_STEPPED = ("LBFGS", "SparseAdam", "Muon")
#: SOLVER.SCHED of fast-reid 1.4.0's build_lr_scheduler (it has arguments for these two only) and
#: VLD's epoch schedule (fastreid_vld/solver.py).
SCHEDULERS = ("MultiStepLR", "CosineAnnealingLR", VLD_SCHEDULER)
#: SOLVER.WARMUP_METHOD of fast-reid's WarmupLR.
WARMUP_METHODS = ("linear", "constant", "exp")
#: TEST.RERANK.IMPL values (fastreid_vld/evaluation/distances.py).
RERANK_IMPLS = ("torch", "fastreid")
#: TEST.METRIC of fast-reid's ReidEvaluator (image test sets); video test sets take
#: fastreid_vld/evaluation/distances.py's METRICS.
FASTREID_METRICS = ("cosine", "euclidean")


def _optimizers(cfg: CN) -> tuple[str, ...]:
    """SOLVER.OPT values: the torch.optim optimizers that fast-reid's and VLD's builders construct
    from parameter groups (``getattr(torch.optim, SOLVER.OPT)``) and a training step drives."""
    import torch

    return tuple(sorted(name for name, value in vars(torch.optim).items()
                        if isinstance(value, type) and issubclass(value, torch.optim.Optimizer)
                        and value is not torch.optim.Optimizer and name not in OPTIMIZERS_NOT_STEPPED))


def _test_metrics(cfg: CN) -> tuple[str, ...]:
    """TEST.METRIC values every test set's evaluator takes."""
    from .evaluation.distances import METRICS

    return FASTREID_METRICS if _image_sets(cfg.DATASETS.TESTS) else METRICS


def _device(value: str, cfg: CN) -> bool:
    """cpu, cuda, or cuda:N in one process (under torch.distributed each process takes its local rank's
    GPU), N a GPU of this machine where it has CUDA (without, cuda falls back to the CPU)."""
    import torch

    match = re.fullmatch(r"cpu|cuda(?::(\d+))?", value)
    if match is None or match.group(1) is None:
        return match is not None
    return _world_size() == 1 and (not torch.cuda.is_available() or int(match.group(1)) < torch.cuda.device_count())


def _annealed_epochs(cfg: CN, iters_per_epoch: float) -> int:
    """The T_max of fast-reid's CosineAnnealingLR: SOLVER.MAX_EPOCH less the epochs of warm-up or delay."""
    solver = cfg.SOLVER
    return solver.MAX_EPOCH - max(math.ceil(solver.WARMUP_ITERS / iters_per_epoch), solver.DELAY_EPOCHS)


def _annealing_rule(iters_per_epoch: Callable[[CN], float], when: Callable[[CN], bool]) -> Rule:
    """SOLVER.SCHED CosineAnnealingLR anneals over at least one epoch (fast-reid's T_max 0 divides by
    zero at its first step, when an epoch ends), at ``iters_per_epoch(cfg)`` iterations an epoch
    (infinite: the warm-up is not counted)."""
    def message(value: int, cfg: CN) -> str:
        solver, per_epoch = cfg.SOLVER, iters_per_epoch(cfg)
        counted = per_epoch < math.inf and solver.WARMUP_ITERS > 0
        warmup = (f", SOLVER.WARMUP_ITERS {solver.WARMUP_ITERS}: {math.ceil(solver.WARMUP_ITERS / per_epoch)} "
                  f"epochs of {per_epoch} iteration{'s' * (per_epoch != 1)}" if counted else "")
        return (f"expected more than the {value - _annealed_epochs(cfg, per_epoch)} epochs of delay or warm-up "
                f"(SOLVER.DELAY_EPOCHS {solver.DELAY_EPOCHS}{warmup}): SOLVER.SCHED CosineAnnealingLR anneals over "
                "the epochs after them")

    return Rule("SOLVER.MAX_EPOCH", lambda value, cfg: _annealed_epochs(cfg, iters_per_epoch(cfg)) >= 1, message,
                lambda cfg: cfg.SOLVER.SCHED == "CosineAnnealingLR" and cfg.SOLVER.MAX_EPOCH >= 1 and when(cfg))


def _num_instance(cfg: CN) -> int:
    return cfg.DATALOADER.NUM_INSTANCE


#: The batch splits (:func:`check_batch_split`).
BATCH_RULES = (
    Rule("SOLVER.IMS_PER_BATCH", lambda value, cfg: value % (2 * _num_instance(cfg)) == 0,
         lambda value, cfg: f"expected 2 modalities x DATALOADER.NUM_INSTANCE ({_num_instance(cfg)}) x identities "
                            f"per batch, a multiple of {2 * _num_instance(cfg)}",
         lambda cfg: _num_instance(cfg) >= 1 and _video_training(cfg)),
    Rule("SOLVER.IMS_PER_BATCH", lambda value, cfg: value % _world_size() == 0,
         lambda value, cfg: f"expected a multiple of {_world_size()}: it is the global batch, split evenly over "
                            f"{_world_size()} processes"),
    Rule("TEST.IMS_PER_BATCH", lambda value, cfg: value >= _world_size(),
         lambda value, cfg: f"expected at least one tracklet for each of the {_world_size()} processes",
         lambda cfg: cfg.TEST.IMS_PER_BATCH >= 1),
)

#: fast-reid's own keys (fastreid/config/defaults.py), as fastreid_vld's builders and fast-reid's use them.
FASTREID_RULES = (
    registered("MODEL.META_ARCHITECTURE", "meta-architecture"),
    registered("MODEL.BACKBONE.NAME", "backbone"),
    Rule("MODEL.BACKBONE.DEPTH",
         lambda value, cfg: value in BACKBONE_DEPTHS.get(cfg.MODEL.BACKBONE.NAME, (value,)),
         lambda value, cfg: f"{cfg.MODEL.BACKBONE.NAME} builds the depths "
                            f"{', '.join(BACKBONE_DEPTHS[cfg.MODEL.BACKBONE.NAME])}"),
    registered("MODEL.HEADS.NAME", "head"),
    at_least("MODEL.HEADS.NUM_CLASSES", 0),  # 0: set from the training set (or the evaluated checkpoint)
    Rule("MODEL.DEVICE", _device, "expected cpu, cuda or cuda:N with N a GPU of this machine (cuda under "
                                  "torch.distributed, where each process takes the GPU of its local rank)"),
    Rule("MODEL.PIXEL_MEAN", lambda value, cfg: len(value) == 3, "expected 3 values, one per RGB channel"),
    Rule("MODEL.PIXEL_STD", lambda value, cfg: len(value) == 3 and all(value),
         "expected 3 non-zero values, one per RGB channel (frames are divided by them)"),
    Rule("INPUT.SIZE_TRAIN", lambda value, cfg: _valid_size(value), "expected two positive integers (height, width)",
         lambda cfg: _video_training(cfg) or _stp(cfg)),  # fast-reid's image pipeline takes one value, or 0
    Rule("INPUT.SIZE_TEST", lambda value, cfg: _valid_size(value), "expected two positive integers (height, width)",
         lambda cfg: bool(_video_sets(cfg.DATASETS.TESTS)) or _stp(cfg)),
    Rule("DATASETS.NAMES", lambda value, cfg: len(value) > 0, "expected at least one training set"),
    registered("DATASETS.NAMES", "data set"),
    Rule("DATASETS.NAMES", lambda value, cfg: not (_video_sets(value) and _image_sets(value)),
         "expected training sets of one kind, video visible-infrared or fast-reid's image data sets"),
    Rule("DATASETS.NAMES", lambda value, cfg: len({_paired(name) for name in _video_sets(value)}) <= 1,
         "expected video training sets all paired (BUPTCampus) or all unpaired: one cross-modal sampler draws them"),
    Rule("DATASETS.TESTS", lambda value, cfg: len(value) > 0, "expected at least one test set"),
    registered("DATASETS.TESTS", "data set"),
    at_least("DATALOADER.NUM_INSTANCE", 1),
    at_least("DATALOADER.NUM_WORKERS", 0),
    one_of("SOLVER.OPT", _optimizers, " (torch.optim)"),
    Rule("SOLVER.BASE_LR", lambda value, cfg: value > 0, "expected more than 0"),
    one_of("SOLVER.SCHED", SCHEDULERS),
    at_least("SOLVER.WARMUP_ITERS", 0),
    Rule("SOLVER.WARMUP_ITERS", lambda value, cfg: value == 0,
         "expected 0 with SOLVER.SCHED WarmupCosineEpochLR, which warms up by epoch (SOLVER.WARMUP_EPOCHS)",
         lambda cfg: cfg.SOLVER.SCHED == VLD_SCHEDULER),
    one_of("SOLVER.WARMUP_METHOD", WARMUP_METHODS, when=lambda cfg: cfg.SOLVER.WARMUP_ITERS > 0),
    at_least("SOLVER.DELAY_EPOCHS", 0),
    at_least("SOLVER.MAX_EPOCH", 1),
    _annealing_rule(lambda cfg: cfg.SOLVER.ITERS_PER_EPOCH or math.inf, _always),  # the data sets tell the rest
    at_least("SOLVER.IMS_PER_BATCH", 1),
    *BATCH_RULES,
    at_least("SOLVER.CHECKPOINT_PERIOD", 1),  # epochs; 0 divides by zero when the first epoch ends
    at_least("TEST.IMS_PER_BATCH", 1),
    at_least("TEST.EVAL_PERIOD", 1),  # epochs; fast-reid's EvalHook skips periodic evaluations at 0 but then
    #                                   divides by it after the last epoch
    one_of("TEST.METRIC", _test_metrics),
    at_least("TEST.RERANK.K1", 1, lambda cfg: cfg.TEST.RERANK.ENABLED),
    Rule("TEST.RERANK.K2", lambda value, cfg: 1 <= value <= cfg.TEST.RERANK.K1,
         lambda value, cfg: f"expected 1 to TEST.RERANK.K1 ({cfg.TEST.RERANK.K1}): the query expansion averages "
                            "over K2 of the K1 neighbours",
         lambda cfg: cfg.TEST.RERANK.ENABLED and cfg.TEST.RERANK.K1 >= 1),
    at_least("TEST.AQE.QE_K", 1, lambda cfg: cfg.TEST.AQE.ENABLED),
    one_of("TEST.RERANK.IMPL", RERANK_IMPLS, when=lambda cfg: cfg.TEST.RERANK.ENABLED),
)


# --------------------------------------------------------------------------- fastreid_vld's keys


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
    # Flush subnormal (denormal) floats to zero on the CPU (torch.set_flush_denormal) in training,
    # evaluation and the tools: random or trained weights that produce them otherwise slow CPU
    # matrix products by up to 1.5x (BENCHMARKS.md "Subnormal floats"); False: IEEE arithmetic.
    cfg.FLUSH_DENORMAL = True
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


def _train_samplers(cfg: CN) -> tuple[str, ...]:
    from .data.samplers import TRAIN_SAMPLERS

    return tuple(TRAIN_SAMPLERS)


DATA_RULES = (
    at_least("INPUT.SEQ_LEN", 1),
    one_of("INPUT.TRAIN_FRAME_RULE", ("restricted_random", "random_sorted", "consecutive")),
    one_of("INPUT.TEST_FRAME_RULE", ("", "chunk_first", "linspace")),
    one_of("DATALOADER.VVI_SAMPLER", _train_samplers),
    Rule("DATALOADER.VVI_SAMPLER",
         lambda value, cfg: value != "distinct_cameras" or all(map(_paired, _video_sets(cfg.DATASETS.NAMES))),
         "expected independent or balanced for an unpaired training set: distinct_cameras deals the "
         "visible/infrared pairs of a paired one (BUPTCampus) by camera", _video_training),
    Rule("INPUT.VVI_AUG.IR_GRAY_PROB", lambda value, cfg: 0 <= value <= 1, "expected a probability, 0 to 1"),
    at_least("DATASETS.BUPT.DROP_RGB_REMAINDER", 0),
)


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


def _vit_size(cfg: CN, name: str) -> int:
    """``name`` ("layers", "width", "patch_size") of MODEL.CLIP.NAME's ViT."""
    return _vit(cfg)[name]


MODEL_RULES = (
    Rule("MODEL.CLIP.NAME", lambda value, cfg: _clip_config(cfg) is not None,
         "expected an open_clip architecture (open_clip.list_models()) or an open_clip JSON model config file "
         "(as configs/VLD/clip_tiny.json)", lambda cfg: _stp(cfg) or cfg.MODEL.HEADS.NAME == "IMLPHead"),
    Rule("MODEL.CLIP.NAME", lambda value, cfg: _vit(cfg) is not None,
         "expected a CLIP whose image tower is a ViT pooled by its class token, as the STP backbone runs",
         lambda cfg: _stp(cfg) and _clip_config(cfg) is not None),
    one_of("MODEL.CLIP.POS_EMBED_INTERPOLATION", ("bilinear", "bicubic", "nearest", "nearest-exact", "area"),
           " (torch.nn.functional.interpolate of a grid)", _stp),
    Rule("MODEL.STP.STH_START_LAYER", lambda value, cfg: -1 <= value < _vit_size(cfg, "layers"),
         lambda value, cfg: f"expected -1 (no STH) or a block of MODEL.CLIP.NAME's ViT, 0 to "
                            f"{_vit_size(cfg, 'layers') - 1}", _stp_vit),
    Rule("MODEL.STP.STA", lambda value, cfg: not value or cfg.MODEL.STP.STH_START_LAYER >= 0,
         "expected False without STH (MODEL.STP.STH_START_LAYER -1): STA attends over the hub tokens of STH", _stp),
    Rule("MODEL.STP.STA_HEADS", lambda value, cfg: value >= 1 and _vit_size(cfg, "width") % value == 0,
         lambda value, cfg: f"expected a divisor of the ViT's width {_vit_size(cfg, 'width')} (MODEL.CLIP.NAME): "
                            "the heads split it", lambda cfg: _stp_vit(cfg) and cfg.MODEL.STP.STA),
    Rule("INPUT.SIZE_TRAIN", lambda value, cfg: not any(side % _vit_size(cfg, "patch_size") for side in value),
         lambda value, cfg: f"expected multiples of the ViT's patch size {_vit_size(cfg, 'patch_size')} "
                            "(MODEL.CLIP.NAME): the pixels past the last whole patch would never be seen",
         lambda cfg: _stp_sized(cfg) and _stp_vit(cfg)),
    Rule("INPUT.SIZE_TEST", lambda value, cfg: list(value) == list(cfg.INPUT.SIZE_TRAIN),
         lambda value, cfg: f"expected INPUT.SIZE_TRAIN {list(cfg.INPUT.SIZE_TRAIN)}: the STP backbone's "
                            "positional embedding has one grid",
         lambda cfg: _stp_sized(cfg) and _valid_size(cfg.INPUT.SIZE_TEST)),
)


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


SOLVER_RULES = (
    at_least("SOLVER.ITERS_PER_EPOCH", 0),
    at_least("SOLVER.LOG_PERIOD", 1),
    at_least("SOLVER.MICRO_BATCH_SIZE", 0),
    one_of("SOLVER.AMP.DTYPE", ("float16", "bfloat16")),
    at_least("SOLVER.WARMUP_EPOCHS", 0),
)


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
    # Which k-reciprocal re-ranking computes fast-reid's Jaccard distance (TEST.RERANK.ENABLED):
    # "torch" (fastreid_vld/evaluation/kreciprocal.py: the same distances to float32 rounding,
    # vectorised on the features' device, memory (query + gallery) x K1 x K1 besides the result) or
    # "fastreid" (fast-reid's build_dist(metric="jaccard"): faiss and dense (query + gallery)^2 matrices).
    _C.TEST.RERANK.IMPL = "torch"


def _measures(cfg: CN) -> list[str]:
    """The measures of every direction the video evaluator reports (``IR->VIS/<measure>``)."""
    from .evaluation.vvi_evaluator import REPORTED_RANKS

    return [f"Rank-{k}" for k in REPORTED_RANKS if k <= cfg.TEST.MAX_RANK] + ["mAP", "mINP"]


def _names_a_result(value: str, cfg: CN) -> bool:
    """``[SUBSET/]DIRECTION/MEASURE``; the subset is for the data sets to tell (check_config_against_data)."""
    from .data.datasets.bases import DIRECTIONS, canonical_direction

    parts = canonical_direction(value).split("/")
    return len(parts) in (2, 3) and parts[-2] in DIRECTIONS and parts[-1] in _measures(cfg)


TEST_RULES = (
    at_least("TEST.MAX_RANK", 1),
    Rule("TEST.SELECT_BY", _names_a_result,
         lambda value, cfg: f"expected a result of the video evaluator, [SUBSET/]DIRECTION/MEASURE with DIRECTION "
                            f"IR->VIS or VIS->IR (IR2VIS, VIS2IR) and MEASURE one of {', '.join(_measures(cfg))} "
                            f"(Rank-k up to TEST.MAX_RANK {cfg.TEST.MAX_RANK})",
         lambda cfg: cfg.TEST.MAX_RANK >= 1 and bool(_video_sets(cfg.DATASETS.TESTS))),
)

#: Every start-up rule, in the order check_config reports them.
RULES = FASTREID_RULES + DATA_RULES + MODEL_RULES + SOLVER_RULES + TEST_RULES


# --------------------------------------------------------------------------- rules of the loaded data sets


@dataclass
class _Identity:
    """What the cross-modal samplers can draw of one training identity."""

    visible: int = 0
    infrared: int = 0
    cameras: set = field(default_factory=set)  # of its visible tracklets, which distinct_cameras deals by

    def per_modality(self) -> int:
        """The tracklets (or pairs) it has in each modality."""
        return min(self.visible, self.infrared)


def _training_identities(train_sets: Sequence[Any]) -> list[_Identity]:
    """The identities of the training sets, as build_vvi_train_loader numbers them (data set, pid)."""
    from .data.tracklets import VISIBLE

    identities: dict[tuple[int, Any], _Identity] = defaultdict(_Identity)
    for index, dataset in enumerate(train_sets):
        for tracklet in dataset.train + (dataset.auxiliary or []):
            identity = identities[(index, tracklet.pid)]
            if tracklet.modality == VISIBLE:
                identity.visible += 1
                identity.cameras.add(tracklet.camid)
            else:
                identity.infrared += 1
    return list(identities.values())


def _training_rules(cfg: CN, train_sets: Sequence[Any]) -> tuple[Rule, ...]:
    """DATALOADER.NUM_INSTANCE and SOLVER.IMS_PER_BATCH against the training identities (together they
    make at least one batch of the training set), and CosineAnnealingLR's epochs at SOLVER.ITERS_PER_EPOCH 0
    (len(training set) // SOLVER.IMS_PER_BATCH iterations an epoch)."""
    identities = _training_identities(train_sets)
    by_camera = cfg.DATALOADER.VVI_SAMPLER == "distinct_cameras"
    k = max(cfg.DATALOADER.NUM_INSTANCE, 1)
    most = max((len(i.cameras) if by_camera else i.per_modality() for i in identities), default=0)
    eligible = sum(i.per_modality() >= 1 and (not by_camera or len(i.cameras) >= k) for i in identities)
    which = f"filmed by at least {k} cameras" if by_camera else "with tracklets in both modalities"
    tracklets = sum(len(dataset.train) + len(dataset.auxiliary or []) for dataset in train_sets)
    from_length = tracklets // cfg.SOLVER.IMS_PER_BATCH if cfg.SOLVER.IMS_PER_BATCH >= 1 else 0
    return (
        Rule("DATALOADER.NUM_INSTANCE", lambda value, cfg: value <= most,
             f"expected at most {most}, the most cameras filming a training identity (DATALOADER.VVI_SAMPLER "
             "distinct_cameras takes K pairs from K different cameras)" if by_camera else
             f"expected at most {most}, the most tracklets a training identity has in each modality (more would "
             "repeat tracklets in every batch)", lambda cfg: cfg.DATALOADER.NUM_INSTANCE >= 1),
        Rule("SOLVER.IMS_PER_BATCH", lambda value, cfg: value // (2 * k) <= eligible,
             f"expected at most {2 * k * eligible}: 2 modalities x DATALOADER.NUM_INSTANCE ({k}) x the {eligible} "
             f"training identities {which}", lambda cfg: cfg.DATALOADER.NUM_INSTANCE >= 1),
        _annealing_rule(lambda cfg: from_length, lambda cfg: cfg.SOLVER.ITERS_PER_EPOCH == 0 and from_length > 0),
    )


def _test_rules(cfg: CN, name: str, dataset: Any) -> tuple[Rule, ...]:
    """TEST.SELECT_BY, TEST.RERANK.K1 and TEST.AQE.QE_K against test set ``name``."""
    results = {f"{direction}/{measure}" for direction in dataset.directions for measure in _measures(cfg)}
    direction, (query, gallery) = min(dataset.directions.items(), key=lambda item: sum(map(len, item[1])))
    size = len(query) + len(gallery)
    smallest = f"{name}'s smallest direction ({direction}: {len(query)} queries + {len(gallery)} gallery tracklets)"
    return (
        Rule("TEST.SELECT_BY", lambda value, cfg: dataset.labelled(value) in results,
             f"expected a result of {name}: a direction of {', '.join(dataset.directions)}, then /MEASURE",
             lambda cfg: cfg.TEST.MAX_RANK >= 1),
        Rule("TEST.RERANK.K1", lambda value, cfg: value <= size,
             f"expected at most {size}, the tracklets of {smallest}, among which re-ranking finds K1 neighbours",
             lambda cfg: cfg.TEST.RERANK.ENABLED),
        Rule("TEST.AQE.QE_K", lambda value, cfg: value < size,
             f"expected at most {size - 1}, the other tracklets of {smallest}, whose features AQE averages",
             lambda cfg: cfg.TEST.AQE.ENABLED),
    )


def _data_rules(cfg: CN, datasets: Mapping[str, Any]) -> tuple[Rule, ...]:
    """The rules of :func:`check_config_against_data` for the video data sets ``datasets`` (by name)."""
    names = cfg.DATASETS.NAMES
    train_sets = [datasets[name] for name in names if name in datasets and not datasets[name].test_only]
    rules = _training_rules(cfg, train_sets) if names and len(train_sets) == len(names) else ()
    for name in dict.fromkeys(cfg.DATASETS.TESTS):
        if name in datasets:
            rules += _test_rules(cfg, name, datasets[name])
    return rules

"""The start-up rule table (fastreid_vld/config.py): every rule fails with its one line on a config
that breaks it and only it, valid and shipped configs pass, every key of the table exists, bad config
files are one error naming the file, and the data-set rules read the loaded data sets. In-process
and fast: nothing is built or trained."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO
from fastreid.config import get_cfg
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.modeling.backbones import BACKBONE_REGISTRY
from fastreid.modeling.heads import REID_HEADS_REGISTRY
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY
from fastreid.utils import comm
from tiny_vld import tiny_cfg

from fastreid_vld import add_vld_config
from fastreid_vld.config import (
    RULES,
    ConfigError,
    check_config,
    check_config_against_data,
    config_value,
    merge_config,
)
from fastreid_vld.data.build import load_vvi_dataset
from fastreid_vld.data.synthetic import SyntheticSize, write_bupt, write_vcm


def registered(registry) -> str:
    return ", ".join(sorted(registry._obj_map))


TINY = "configs/VLD/tiny.yml"                     # the tiny VLD, which every case overrides unless it names another
DEMO_R18 = "configs/VideoBaseline/demo_r18.yml"  # a video config without the STP backbone
BASELINE = "tests/configs/baseline_tiny.yml"     # fast-reid's Baseline on an image data set
OPTIMIZERS = ("'ASGD', 'Adadelta', 'Adafactor', 'Adagrad', 'Adam', 'AdamW', 'Adamax', 'NAdam', 'RAdam', 'RMSprop', "
              "'Rprop', 'SGD'")
SELECT_BY = ("expected a result of the video evaluator, [SUBSET/]DIRECTION/MEASURE with DIRECTION IR->VIS or "
             "VIS->IR (IR2VIS, VIS2IR) and MEASURE one of ")

#: case: (overrides, the whole error[, config file[, processes]])
CASES = {
    "meta-architecture": (("MODEL.META_ARCHITECTURE", "VDL"), "MODEL.META_ARCHITECTURE 'VDL': expected a registered "
                          f"meta-architecture: {registered(META_ARCH_REGISTRY)}"),
    "backbone": (("MODEL.BACKBONE.NAME", "build_stp"), "MODEL.BACKBONE.NAME 'build_stp': expected a registered "
                 f"backbone: {registered(BACKBONE_REGISTRY)}"),
    "depth": (("MODEL.BACKBONE.DEPTH", "152x"),
              "MODEL.BACKBONE.DEPTH '152x': build_resnet_backbone builds the depths 18x, 34x, 50x, 101x", DEMO_R18),
    "head": (("MODEL.HEADS.NAME", "IMLP"), f"MODEL.HEADS.NAME 'IMLP': expected a registered head: "
             f"{registered(REID_HEADS_REGISTRY)}"),
    "classes": (("MODEL.HEADS.NUM_CLASSES", -1), "MODEL.HEADS.NUM_CLASSES -1: expected at least 0"),
    "device": (("MODEL.DEVICE", "gpu"), "MODEL.DEVICE 'gpu': expected cpu, cuda or cuda:N with N a GPU of this "
               "machine (cuda under torch.distributed, where each process takes the GPU of its local rank)"),
    "device under torch.distributed": (("MODEL.DEVICE", "cuda:1"), "MODEL.DEVICE 'cuda:1': expected cpu, cuda or "
                                       "cuda:N with N a GPU of this machine (cuda under torch.distributed, where "
                                       "each process takes the GPU of its local rank)", TINY, 2),
    "pixel mean": (("MODEL.PIXEL_MEAN", [128.0, 128.0]),
                   "MODEL.PIXEL_MEAN [128.0, 128.0]: expected 3 values, one per RGB channel"),
    "pixel std": (("MODEL.PIXEL_STD", [58.4, 0.0, 57.4]), "MODEL.PIXEL_STD [58.4, 0.0, 57.4]: expected 3 non-zero "
                  "values, one per RGB channel (frames are divided by them)"),
    "train size": (("INPUT.SIZE_TRAIN", [0, 32]), "INPUT.SIZE_TRAIN [0, 32]: expected two positive integers "
                   "(height, width)"),
    "test size": (("INPUT.SIZE_TEST", [64]), "INPUT.SIZE_TEST [64]: expected two positive integers (height, width)",
                  DEMO_R18),
    "no training set": (("DATASETS.NAMES", ()), "DATASETS.NAMES (): expected at least one training set"),
    "training set": (("DATASETS.NAMES", ("VCMM",)), "DATASETS.NAMES ('VCMM',): expected registered data sets; "
                     f"nothing is named 'VCMM' (registered: {registered(DATASET_REGISTRY)})"),
    "video and image training sets": (("DATASETS.NAMES", ("VCM", "Market1501")), "DATASETS.NAMES ('VCM', "
                                      "'Market1501'): expected training sets of one kind, video visible-infrared "
                                      "or fast-reid's image data sets"),
    "paired and unpaired training sets": (("DATASETS.NAMES", ("VCM", "BUPTCampus")), "DATASETS.NAMES ('VCM', "
                                          "'BUPTCampus'): expected video training sets all paired (BUPTCampus) or "
                                          "all unpaired: one cross-modal sampler draws them"),
    "no test set": (("DATASETS.TESTS", ()), "DATASETS.TESTS (): expected at least one test set"),
    "test set": (("DATASETS.TESTS", ("VCMM",)), "DATASETS.TESTS ('VCMM',): expected registered data sets; "
                 f"nothing is named 'VCMM' (registered: {registered(DATASET_REGISTRY)})"),
    "instances": (("DATALOADER.NUM_INSTANCE", 0), "DATALOADER.NUM_INSTANCE 0: expected at least 1"),
    "workers": (("DATALOADER.NUM_WORKERS", -1), "DATALOADER.NUM_WORKERS -1: expected at least 0"),
    "optimizer": (("SOLVER.OPT", "Adamw"), f"SOLVER.OPT 'Adamw': expected one of {OPTIMIZERS} (torch.optim)"),
    "learning rate": (("SOLVER.BASE_LR", 0.0), "SOLVER.BASE_LR 0.0: expected more than 0"),
    "scheduler": (("SOLVER.SCHED", "CosineLR"), "SOLVER.SCHED 'CosineLR': expected one of 'MultiStepLR', "
                  "'CosineAnnealingLR', 'WarmupCosineEpochLR'"),
    "warm-up iterations": (("SOLVER.SCHED", "MultiStepLR", "SOLVER.WARMUP_ITERS", -1),
                           "SOLVER.WARMUP_ITERS -1: expected at least 0"),
    "warm-up by iteration under the epoch schedule": (("SOLVER.WARMUP_ITERS", 10), "SOLVER.WARMUP_ITERS 10: "
                                                      "expected 0 with SOLVER.SCHED WarmupCosineEpochLR, which warms "
                                                      "up by epoch (SOLVER.WARMUP_EPOCHS)"),
    "warm-up method": (("SOLVER.SCHED", "MultiStepLR", "SOLVER.WARMUP_ITERS", 10, "SOLVER.WARMUP_METHOD", "cosine"),
                       "SOLVER.WARMUP_METHOD 'cosine': expected one of 'linear', 'constant', 'exp'"),
    "delay": (("SOLVER.DELAY_EPOCHS", -1), "SOLVER.DELAY_EPOCHS -1: expected at least 0"),
    "epochs": (("SOLVER.MAX_EPOCH", 0), "SOLVER.MAX_EPOCH 0: expected at least 1"),
    "no epoch to anneal": (("SOLVER.SCHED", "CosineAnnealingLR", "SOLVER.DELAY_EPOCHS", 2), "SOLVER.MAX_EPOCH 2: "
                           "expected more than the 2 epochs of delay or warm-up (SOLVER.DELAY_EPOCHS 2): "
                           "SOLVER.SCHED CosineAnnealingLR anneals over the epochs after them"),
    "batch": (("SOLVER.IMS_PER_BATCH", 0), "SOLVER.IMS_PER_BATCH 0: expected at least 1"),
    "batch of pairs": (("SOLVER.IMS_PER_BATCH", 14), "SOLVER.IMS_PER_BATCH 14: expected 2 modalities x "
                       "DATALOADER.NUM_INSTANCE (2) x identities per batch, a multiple of 4"),
    "batch over the processes": (("SOLVER.IMS_PER_BATCH", 12), "SOLVER.IMS_PER_BATCH 12: expected a multiple of 8: "
                                 "it is the global batch, split evenly over 8 processes", TINY, 8),
    "test batch over the processes": (("TEST.IMS_PER_BATCH", 4), "TEST.IMS_PER_BATCH 4: expected at least one "
                                      "tracklet for each of the 8 processes", TINY, 8),
    "checkpoint period": (("SOLVER.CHECKPOINT_PERIOD", 0), "SOLVER.CHECKPOINT_PERIOD 0: expected at least 1"),
    "test batch": (("TEST.IMS_PER_BATCH", 0), "TEST.IMS_PER_BATCH 0: expected at least 1"),
    "evaluation period": (("TEST.EVAL_PERIOD", 0), "TEST.EVAL_PERIOD 0: expected at least 1"),
    "metric": (("TEST.METRIC", "hamming"), "TEST.METRIC 'hamming': expected one of 'inner_product', 'cosine', "
               "'euclidean'"),
    "metric of an image test set": (("TEST.METRIC", "inner_product"),
                                    "TEST.METRIC 'inner_product': expected one of 'cosine', 'euclidean'", BASELINE),
    "re-ranking neighbours": (("TEST.RERANK.ENABLED", True, "TEST.RERANK.K1", 0),
                              "TEST.RERANK.K1 0: expected at least 1"),
    "re-ranking expansion": (("TEST.RERANK.ENABLED", True, "TEST.RERANK.K2", 30), "TEST.RERANK.K2 30: expected 1 to "
                             "TEST.RERANK.K1 (20): the query expansion averages over K2 of the K1 neighbours"),
    "AQE neighbours": (("TEST.AQE.ENABLED", True, "TEST.AQE.QE_K", 0), "TEST.AQE.QE_K 0: expected at least 1"),
    "re-ranking implementation": (("TEST.RERANK.ENABLED", True, "TEST.RERANK.IMPL", "faiss"),
                                  "TEST.RERANK.IMPL 'faiss': expected one of 'torch', 'fastreid'"),
    "frames": (("INPUT.SEQ_LEN", 0), "INPUT.SEQ_LEN 0: expected at least 1"),
    "training frame rule": (("INPUT.TRAIN_FRAME_RULE", "random"), "INPUT.TRAIN_FRAME_RULE 'random': expected one of "
                            "'restricted_random', 'random_sorted', 'consecutive'"),
    "test frame rule": (("INPUT.TEST_FRAME_RULE", "middle"), "INPUT.TEST_FRAME_RULE 'middle': expected one of '', "
                        "'chunk_first', 'linspace'"),
    "sampler": (("DATALOADER.VVI_SAMPLER", "random"), "DATALOADER.VVI_SAMPLER 'random': expected one of 'balanced', "
                "'independent', 'distinct_cameras'"),
    "sampler of pairs on an unpaired set": (("DATALOADER.VVI_SAMPLER", "distinct_cameras"), "DATALOADER.VVI_SAMPLER "
                                            "'distinct_cameras': expected independent or balanced for an unpaired "
                                            "training set: distinct_cameras deals the visible/infrared pairs of a "
                                            "paired one (BUPTCampus) by camera"),
    "grayscale probability": (("INPUT.VVI_AUG.IR_GRAY_PROB", 1.5), "INPUT.VVI_AUG.IR_GRAY_PROB 1.5: expected a "
                              "probability, 0 to 1"),
    "dropped remainder": (("DATASETS.BUPT.DROP_RGB_REMAINDER", -1), "DATASETS.BUPT.DROP_RGB_REMAINDER -1: expected "
                          "at least 0"),
    "CLIP": (("MODEL.CLIP.NAME", "ViT-X"), "MODEL.CLIP.NAME 'ViT-X': expected an open_clip architecture "
             "(open_clip.list_models()) or an open_clip JSON model config file (as configs/VLD/clip_tiny.json)"),
    "CLIP without a ViT": (("MODEL.CLIP.NAME", "RN50"), "MODEL.CLIP.NAME 'RN50': expected a CLIP whose image tower "
                           "is a ViT pooled by its class token, as the STP backbone runs"),
    "interpolation": (("MODEL.CLIP.POS_EMBED_INTERPOLATION", "linear"), "MODEL.CLIP.POS_EMBED_INTERPOLATION 'linear': "
                      "expected one of 'bilinear', 'bicubic', 'nearest', 'nearest-exact', 'area' "
                      "(torch.nn.functional.interpolate of a grid)"),
    "STH block": (("MODEL.STP.STH_START_LAYER", 4), "MODEL.STP.STH_START_LAYER 4: expected -1 (no STH) or a block of "
                  "MODEL.CLIP.NAME's ViT, 0 to 3"),
    "STA without STH": (("MODEL.STP.STH_START_LAYER", -1), "MODEL.STP.STA True: expected False without STH "
                        "(MODEL.STP.STH_START_LAYER -1): STA attends over the hub tokens of STH"),
    "STA heads": (("MODEL.STP.STA_HEADS", 3), "MODEL.STP.STA_HEADS 3: expected a divisor of the ViT's width 64 "
                  "(MODEL.CLIP.NAME): the heads split it"),
    "size in patches": (("INPUT.SIZE_TRAIN", [64, 40], "INPUT.SIZE_TEST", [64, 40]), "INPUT.SIZE_TRAIN [64, 40]: "
                        "expected multiples of the ViT's patch size 16 (MODEL.CLIP.NAME): the pixels past the last "
                        "whole patch would never be seen"),
    "test size of the ViT": (("INPUT.SIZE_TEST", [64, 48]), "INPUT.SIZE_TEST [64, 48]: expected INPUT.SIZE_TRAIN "
                             "[64, 32]: the STP backbone's positional embedding has one grid"),
    "iterations": (("SOLVER.ITERS_PER_EPOCH", -1), "SOLVER.ITERS_PER_EPOCH -1: expected at least 0"),
    "log period": (("SOLVER.LOG_PERIOD", 0), "SOLVER.LOG_PERIOD 0: expected at least 1"),
    "micro-batch": (("SOLVER.MICRO_BATCH_SIZE", -1), "SOLVER.MICRO_BATCH_SIZE -1: expected at least 0"),
    "AMP dtype": (("SOLVER.AMP.DTYPE", "float32"), "SOLVER.AMP.DTYPE 'float32': expected one of 'float16', "
                  "'bfloat16'"),
    "warm-up epochs": (("SOLVER.WARMUP_EPOCHS", -1), "SOLVER.WARMUP_EPOCHS -1: expected at least 0"),
    "CMC length": (("TEST.MAX_RANK", 0), "TEST.MAX_RANK 0: expected at least 1"),
    "selection": (("TEST.SELECT_BY", "IR->VIS/Rank-2"), "TEST.SELECT_BY 'IR->VIS/Rank-2': " + SELECT_BY +
                  "Rank-1, Rank-5, Rank-10, Rank-20, mAP, mINP (Rank-k up to TEST.MAX_RANK 20)"),
    "selection past the CMC": (("TEST.MAX_RANK", 5, "TEST.SELECT_BY", "vis2ir/Rank-10"), "TEST.SELECT_BY "
                               "'vis2ir/Rank-10': " + SELECT_BY + "Rank-1, Rank-5, mAP, mINP (Rank-k up to "
                               "TEST.MAX_RANK 5)"),
}


def case_config(case: str):
    """The config of ``case`` and the processes it runs in."""
    opts, _, *given = CASES[case]
    config, processes = (*given, *(TINY, 1)[len(given):])
    return tiny_cfg(*opts, config=config), processes


@pytest.mark.parametrize("case", list(CASES))
def test_each_rule_fails_with_its_one_line(case, monkeypatch):
    cfg, processes = case_config(case)
    monkeypatch.setattr(comm, "get_world_size", lambda: processes)
    with pytest.raises(ConfigError) as error:
        check_config(cfg)
    assert str(error.value) == CASES[case][1]


def test_every_rule_of_the_table_has_a_case(monkeypatch):
    broken = set()
    for case in CASES:
        cfg, processes = case_config(case)
        monkeypatch.setattr(comm, "get_world_size", lambda processes=processes: processes)
        broken |= {index for index, rule in enumerate(RULES) if rule.problem(cfg) is not None}
    assert [RULES[index].key for index in sorted(set(range(len(RULES))) - broken)] == []


def test_every_key_of_the_table_is_a_config_key():
    cfg = add_vld_config(get_cfg())
    for rule in RULES:
        config_value(cfg, rule.key)  # a KeyError names a key the config does not define


@pytest.mark.parametrize("config_file", sorted(str(path.relative_to(REPO)) for path in
                                               [*REPO.glob("configs/**/*.yml"), *REPO.glob("tests/configs/*.yml")]))
def test_every_shipped_config_passes(config_file):
    check_config(merge_config(add_vld_config(get_cfg()), str(REPO / config_file), []))


def test_every_broken_rule_is_a_line_the_first_first():
    cfg = tiny_cfg("SOLVER.OPT", "Adamw", "INPUT.SEQ_LEN", 0, "DATALOADER.NUM_INSTANCE", 0)
    with pytest.raises(ConfigError) as error:
        check_config(cfg)
    assert str(error.value) == ("DATALOADER.NUM_INSTANCE 0: expected at least 1\n"
                                f"error: SOLVER.OPT 'Adamw': expected one of {OPTIMIZERS} (torch.optim)\n"
                                "error: INPUT.SEQ_LEN 0: expected at least 1")


# --------------------------------------------------------------------------- config files


FILES = {  # file name: (content, the error after the file's path)
    "syntax.yml": (b"MODEL:\n  DEVICE: cpu\n   BAD: [1, 2\n", ":3:7: expected a YAML config file, found a YAML "
                   "error: mapping values are not allowed here"),
    "tab.yml": (b"MODEL:\n\tDEVICE: cpu\n", ":2:1: expected a YAML config file, found a YAML error: found character "
                "'\\t' that cannot start any token"),
    "binary.yml": (b"MODEL:\n\x80\x81\n", ": expected a YAML config file (text), found binary data (byte 0x80 at "
                   "offset 7 is not UTF-8)"),
    "control.yml": (b"\x00MODEL: 1\n", ": expected a YAML config file (text), found the control character #x0000 at "
                    "character 0"),
    "list.yml": (b"- MODEL\n", ": expected a YAML mapping of config keys (MODEL: ..., SOLVER: ...), found a YAML list "
                 "(\"['MODEL']\")"),
    "empty.yml": (b"", ": expected a YAML mapping of config keys (MODEL: ..., SOLVER: ...), found an empty file"),
    "cycle.yml": (b"_BASE_: cycle.yml\n", ": expected a chain of _BASE_ files that ends, found a cycle"),
}


@pytest.mark.parametrize("name", list(FILES))
def test_a_bad_config_file_is_one_error_naming_it(name, tmp_path):
    content, expected = FILES[name]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ConfigError) as error:
        merge_config(add_vld_config(get_cfg()), str(tmp_path / name), [])
    assert str(error.value) == f"{tmp_path / name}{expected}"


def test_a_bad_base_file_is_named_not_the_file_naming_it(tmp_path):
    (tmp_path / "base.yml").write_bytes(FILES["syntax.yml"][0])
    (tmp_path / "run.yml").write_text("_BASE_: base.yml\nSEED: 1\n")
    with pytest.raises(ConfigError) as error:
        merge_config(add_vld_config(get_cfg()), str(tmp_path / "run.yml"), [])
    assert str(error.value) == f"{tmp_path / 'base.yml'}{FILES['syntax.yml'][1]}"


def test_a_missing_config_file_is_named():
    with pytest.raises(ConfigError, match=r"^configs/VLD/nope.yml: \[Errno 2\] No such file or directory: "
                                          r"'configs/VLD/nope.yml' \(expected a readable YAML config file\)$"):
        merge_config(add_vld_config(get_cfg()), "configs/VLD/nope.yml", [])


# --------------------------------------------------------------------------- rules of the loaded data sets


def write_data_sets(root: Path) -> Path:
    """HITSZ-VCM and BUPTCampus with 4 training identities, 2 cameras, one tracklet per camera and modality."""
    size = SyntheticSize(train_ids=4, test_ids=2, cameras=2, min_frames=2, max_frames=3)
    write_vcm(root / "HITSZ-VCM", size)
    write_bupt(root, size)
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_data_sets(tmp_path_factory.mktemp("datasets"))


def data_cfg(data_root: Path, *opts):
    return tiny_cfg("DATASETS.ROOT", str(data_root), "DATASETS.VCM.MIN_FRAMES", 1, *opts)


def datasets_of(cfg, test_only: bool = False) -> dict:
    return {name: load_vvi_dataset(cfg, name, test_only=test_only) for name in {*cfg.DATASETS.NAMES,
                                                                                  *cfg.DATASETS.TESTS}}


BUPT = ("DATASETS.NAMES", ("BUPTCampus",), "DATASETS.TESTS", ("BUPTCampus",))
DATA_CASES = {  # case: (overrides, the whole error)
    "instances": (("DATALOADER.NUM_INSTANCE", 3), "DATALOADER.NUM_INSTANCE 3: expected at most 2, the most tracklets "
                  "a training identity has in each modality (more would repeat tracklets in every batch)"),
    "identities": (("SOLVER.IMS_PER_BATCH", 24), "SOLVER.IMS_PER_BATCH 24: expected at most 16: 2 modalities x "
                   "DATALOADER.NUM_INSTANCE (2) x the 4 training identities with tracklets in both modalities"),
    "cameras": ((*BUPT, "DATALOADER.VVI_SAMPLER", "distinct_cameras", "DATALOADER.NUM_INSTANCE", 3),
                "DATALOADER.NUM_INSTANCE 3: expected at most 2, the most cameras filming a training identity "
                "(DATALOADER.VVI_SAMPLER distinct_cameras takes K pairs from K different cameras)\n"
                "error: SOLVER.IMS_PER_BATCH 16: expected at most 0: 2 modalities x DATALOADER.NUM_INSTANCE (3) x "
                "the 0 training identities filmed by at least 3 cameras"),
    "warm-up epochs of the data": (("SOLVER.SCHED", "CosineAnnealingLR", "SOLVER.ITERS_PER_EPOCH", 0,
                                    "SOLVER.WARMUP_ITERS", 4), "SOLVER.MAX_EPOCH 2: expected more than the 4 epochs "
                                   "of delay or warm-up (SOLVER.DELAY_EPOCHS 0, SOLVER.WARMUP_ITERS 4: 4 epochs of "
                                   "1 iteration): SOLVER.SCHED CosineAnnealingLR anneals over the epochs after them"),
    "selection": (("TEST.SELECT_BY", "official/IR->VIS/Rank-1"), "TEST.SELECT_BY 'official/IR->VIS/Rank-1': "
                  "expected a result of VCM: a direction of IR->VIS, VIS->IR, then /MEASURE"),
    "selection of a subset": ((*BUPT, "TEST.SELECT_BY", "official/IR->VIS/Rank-1"), "TEST.SELECT_BY "
                              "'official/IR->VIS/Rank-1': expected a result of BUPTCampus: a direction of "
                              "all/IR->VIS, all/VIS->IR, then /MEASURE"),  # too few visible queries for 'official'
    "re-ranking": (("TEST.RERANK.ENABLED", True, "TEST.RERANK.K1", 9), "TEST.RERANK.K1 9: expected at most 8, the "
                   "tracklets of VCM's smallest direction (IR->VIS: 4 queries + 4 gallery tracklets), among which "
                   "re-ranking finds K1 neighbours"),
    "AQE": (("TEST.AQE.ENABLED", True, "TEST.AQE.QE_K", 8), "TEST.AQE.QE_K 8: expected at most 7, the other "
            "tracklets of VCM's smallest direction (IR->VIS: 4 queries + 4 gallery tracklets), whose features AQE "
            "averages"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_each_data_rule_fails_with_its_lines(case, data_root):
    opts, expected = DATA_CASES[case]
    cfg = data_cfg(data_root, *opts)
    with pytest.raises(ConfigError) as error:
        check_config_against_data(cfg, datasets_of(cfg))
    assert str(error.value) == expected


@pytest.mark.parametrize("opts", [(), BUPT, (*BUPT, "DATALOADER.VVI_SAMPLER", "distinct_cameras"),
                                  ("TEST.RERANK.ENABLED", True, "TEST.RERANK.K1", 8, "TEST.AQE.ENABLED", True,
                                   "TEST.AQE.QE_K", 7, "TEST.SELECT_BY", "VIS2IR/mINP")])
def test_a_config_the_data_sets_can_take_passes(opts, data_root):
    cfg = data_cfg(data_root, *opts)
    check_config(cfg)
    check_config_against_data(cfg, datasets_of(cfg))


def test_the_training_rules_wait_for_the_training_split(tmp_path):
    """Evaluation reads the test split alone: nothing to check NUM_INSTANCE or the batch against (a
    folder of its own: a data set loaded whole would serve a test-only load)."""
    cfg = data_cfg(write_data_sets(tmp_path), "DATALOADER.NUM_INSTANCE", 3, "SOLVER.IMS_PER_BATCH", 60)
    check_config_against_data(cfg, datasets_of(cfg, test_only=True))
    check_config_against_data(cfg, {})


def test_training_checks_the_data_rules_before_building_anything(data_root, monkeypatch):
    """VLDTrainer loads the data sets and runs their rules first: the model is never built."""
    from fastreid_vld import VLDTrainer

    def never(*args):
        raise AssertionError("the model was built before the data rules ran")

    monkeypatch.setattr(VLDTrainer, "build_model", classmethod(never))
    with pytest.raises(ConfigError, match=r"^SOLVER.IMS_PER_BATCH 24: expected at most 16: 2 modalities x"):
        VLDTrainer(data_cfg(data_root, "SOLVER.IMS_PER_BATCH", 24))


def test_evaluation_checks_the_test_rules_on_the_test_split(tmp_path, monkeypatch):
    """train_net.py --eval-only runs the test rules on the test split alone: no training index is read
    (here there is none), an impossible re-ranking is one error before any tracklet is evaluated."""
    from conftest import load_tool

    from fastreid_vld import VLDTrainer

    root = write_data_sets(tmp_path)
    (root / "HITSZ-VCM" / "info" / "train_name.txt").unlink()
    train_net = load_tool("train_net")
    monkeypatch.setattr(VLDTrainer, "test", classmethod(lambda *args: pytest.fail("the model was evaluated")))
    args = train_net.parse_args(["--config-file", TINY, "--eval-only", "--untrained", "DATASETS.ROOT", str(root),
                                 "DATASETS.VCM.MIN_FRAMES", "1", "TEST.RERANK.ENABLED", "True", "TEST.RERANK.K1",
                                 "9", "OUTPUT_DIR", str(tmp_path / "run")])
    with pytest.raises(SystemExit, match=r"^error: TEST.RERANK.K1 9: expected at most 8, the tracklets of VCM's"):
        train_net.checked_main(args)

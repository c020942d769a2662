"""Bad input of the inference tools (issue 23, items 9 and 10), in process: an output path that cannot be written
(checked before the work; a full disk at the final write), an unknown --dataset, a model that produces NaN, and
KEY VALUE overrides a tool ignores, each one exact line."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_tool
from PIL import Image
from tiny_vld import tiny_model

from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
from fastreid_vld.engine.feature_files import FeatureSet, write_features
from fastreid_vld.evaluation.metrics import NaNFeaturesError
from fastreid_vld.evaluation.vvi_evaluator import check_finite_test_features

TINY = "configs/VLD/tiny.yml"
SET = SyntheticSize(train_ids=2, test_ids=3, cameras=2, min_frames=10, max_frames=12)
NO_SPACE = "No space left on device"
#: a folder no process writes in, root's included (sysfs)
READ_ONLY = Path("/sys")


@pytest.fixture(scope="module")
def vcm_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_vcm(root / "HITSZ-VCM", SET)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    """A checkpoint of the tiny model ("finite"), and one whose patch embedding is NaN ("nan")."""
    folder = tmp_path_factory.mktemp("weights")
    state = tiny_model(seed=3).state_dict()
    torch.save({"model": state}, folder / "finite.pth")
    state["backbone.visual.conv1.weight"] = torch.full_like(state["backbone.visual.conv1.weight"], float("nan"))
    torch.save({"model": state}, folder / "nan.pth")
    return {name: str(folder / f"{name}.pth") for name in ("finite", "nan")}


@pytest.fixture(scope="module")
def frame(vcm_root) -> str:
    return str(next((vcm_root / "HITSZ-VCM" / "Test").rglob("1.jpg")))


@pytest.fixture(scope="module")
def tracklets(tmp_path_factory, vcm_root) -> Path:
    """Two tracklet folders of one's own."""
    root = tmp_path_factory.mktemp("mine")
    for i, folder in enumerate(sorted((vcm_root / "HITSZ-VCM" / "Test").glob("*/rgb/*"))[:2]):
        shutil.copytree(folder, root / f"track{i}")
    return root


def features_file(path: Path, n: int, frame: str, seed: int = 0) -> Path:
    """Random features [n, 16] with identities, every thumbnail ``frame``."""
    features = np.random.default_rng(seed).normal(size=(n, 16)).astype(np.float32)
    write_features(path, FeatureSet(features, np.asarray([f"t{i}" for i in range(n)]), np.asarray([frame] * n),
                                    pids=np.asarray([str(i % 3) for i in range(n)])))
    return path


def error_of(tool: str, argv: list[str]) -> str:
    """The one line a tool ends with on bad input."""
    with pytest.raises(SystemExit) as exit_info:
        load_tool(tool).main(argv)
    return str(exit_info.value)


# ------------------------------------------------------------------ output paths

#: tool, flag, file name, the name suggested in a folder: the outputs the tools write
OUTPUTS = [("extract_features", "--output", "out.npz", "features.npz"),
           ("export", "--output", "out.onnx", "model.onnx"),
           ("search", "--output", "res.csv", ""), ("search", "--draw", "ranks.png", "ranks.png"),
           ("visualize_ranks", "--draw", "ranks.png", "ranks.png")]


def output_argv(tool: str, flag: str, target: Path, missing: Path) -> list[str]:
    """The tool's command line writing ``target`` with ``flag``, whose inputs are all ``missing`` (an error of its
    own, had the output not been checked first)."""
    model = ["--config-file", TINY, "MODEL.WEIGHTS", str(missing)]
    return {("extract_features", "--output"): ["--input", str(missing), "--output", str(target), *model],
            ("export", "--output"): ["--format", "onnx", "--output", str(target), *model],
            ("search", "--output"): ["--query", str(missing), "--gallery", str(missing), "--output",
                                     str(target.with_suffix(""))],  # OUTPUT: the tool writes OUTPUT.csv
            ("search", "--draw"): ["--query", str(missing), "--gallery", str(missing), "--output",
                                   str(missing.parent / "res"), "--draw", str(target)],
            ("visualize_ranks", "--draw"): ["--draw", str(target), *model]}[(tool, flag)]


@pytest.mark.parametrize("case", ["under a file", "deeper under a file", "a folder", "a read-only folder"])
@pytest.mark.parametrize(("tool", "flag", "name", "example"), OUTPUTS, ids=[f"{t} {f}" for t, f, _, _ in OUTPUTS])
def test_an_output_that_cannot_be_written_is_one_line_before_any_work(tmp_path, tool, flag, name, example, case):
    if case == "a read-only folder" and not READ_ONLY.is_dir():
        pytest.skip("no /sys")
    (tmp_path / "file").write_text("not a folder")
    folder = {"under a file": tmp_path / "file", "deeper under a file": tmp_path / "file" / "sub",
              "a folder": tmp_path, "a read-only folder": READ_ONLY}[case]
    target = folder / name
    if case == "a folder":
        target.mkdir()
        suggestion = f", e.g. {target / example}" if example else ""
        expected = f"error: {flag} {target} is a folder: expected the path of the file to write{suggestion}"
    else:
        reason = "Permission denied" if case == "a read-only folder" else f"{tmp_path / 'file'} is a file"
        expected = f"error: {flag} {target}: {folder}: expected a folder this run can create and write files in " \
                   f"({reason})"
    assert error_of(tool, output_argv(tool, flag, target, tmp_path / "missing.pth")) == expected


def full_disk(*args, **kwargs) -> None:
    raise OSError(errno.ENOSPC, NO_SPACE)


def test_a_full_disk_while_features_are_written_is_one_line_and_leaves_no_file(tracklets, weights, tmp_path,
                                                                               monkeypatch):
    def fills_the_disk(file, **entries) -> None:
        file.write(b"PK" + b"0" * 4096)
        full_disk()

    monkeypatch.setattr(np, "savez", fills_the_disk)
    out = tmp_path / "out" / "feats.npz"
    message = error_of("extract_features", ["--config-file", TINY, "--input", str(tracklets), "--output", str(out),
                                            "MODEL.WEIGHTS", weights["finite"], "MODEL.HEADS.NUM_CLASSES", "0"])
    assert message == f"error: --output {out}: could not be written ({NO_SPACE})"
    assert list(out.parent.iterdir()) == []  # not even the temporary file


def test_a_full_disk_while_an_export_is_written_is_one_line(weights, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.jit.RecursiveScriptModule, "save", full_disk)
    out = tmp_path / "model.pt"
    message = error_of("export", ["--config-file", TINY, "--format", "torchscript", "--output", str(out),
                                  "MODEL.WEIGHTS", weights["finite"]])
    assert message == f"error: --output {out}: could not be written ({NO_SPACE})"
    assert list(tmp_path.iterdir()) == []


#: flag -> the write that fills the disk, and the flag's value
SEARCH_WRITES = {"--output": (Path, "write_text", "res"), "--draw": (Image.Image, "save", "ranks.png")}


@pytest.mark.parametrize("flag", list(SEARCH_WRITES))
def test_a_full_disk_while_search_results_are_written_is_one_line(frame, tmp_path, monkeypatch, flag):
    files = [str(features_file(tmp_path / f"{name}.npz", 4, frame, seed)) for seed, name in enumerate(("q", "g"))]
    owner, write, name = SEARCH_WRITES[flag]
    monkeypatch.setattr(owner, write, full_disk)  # OUTPUT.json, the picture
    out = tmp_path / name
    argv = ["--query", files[0], "--gallery", files[1], "--output", str(tmp_path / "res"), "--draw",
            str(tmp_path / "ranks.png")]
    assert error_of("search", argv) == f"error: {flag} {out}: could not be written ({NO_SPACE})"


def test_a_full_disk_while_rank_lists_are_drawn_is_one_line(vcm_root, weights, tmp_path, monkeypatch):
    monkeypatch.setattr(Image.Image, "save", full_disk)
    out = tmp_path / "ranks.png"
    message = error_of("visualize_ranks", ["--config-file", TINY, "--draw", str(out), "DATASETS.ROOT", str(vcm_root),
                                           "DATASETS.VCM.MIN_FRAMES", "1", "MODEL.WEIGHTS", weights["finite"],
                                           "MODEL.HEADS.NUM_CLASSES", "0"])
    assert message == f"error: --draw {out}: could not be written ({NO_SPACE})"


def test_a_picture_name_without_a_suffix_is_written_as_png(frame, tmp_path):
    files = [str(features_file(tmp_path / f"{name}.npz", 4, frame, seed)) for seed, name in enumerate(("q", "g"))]
    load_tool("search").main(["--query", files[0], "--gallery", files[1], "--output", str(tmp_path / "res"),
                              "--draw", str(tmp_path / "ranks")])
    assert Image.open(tmp_path / "ranks").format == "PNG"


# ------------------------------------------------------------------ data sets

@pytest.mark.parametrize("tool", ["extract_features", "describe_dataset"])
def test_an_unknown_dataset_is_a_usage_error_naming_the_video_data_sets(tmp_path, capsys, tool):
    argv = {"extract_features": ["--config-file", TINY, "--dataset", "Market", "--split", "query", "--output",
                                 str(tmp_path / "q.npz")],
            "describe_dataset": ["--dataset", "Market", "--root", str(tmp_path)]}[tool]
    with pytest.raises(SystemExit) as exit_info:
        load_tool(tool).main(argv)
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith(": error: argument --dataset: invalid choice: 'Market' (choose from 'BUPTCampus', 'VCM')")


def test_visualize_ranks_refuses_a_first_test_set_that_is_no_video_data_set(tmp_path, weights):
    message = error_of("visualize_ranks", ["--config-file", TINY, "--draw", str(tmp_path / "ranks.png"),
                                           "DATASETS.TESTS", "('Market1501',)", "TEST.METRIC", "cosine",
                                           "MODEL.WEIGHTS", weights["finite"]])
    assert message == ("error: DATASETS.TESTS ('Market1501',): visualize_ranks draws the first, expected a registered "
                       "video data set: BUPTCampus, VCM")


# ------------------------------------------------------------------ NaN

def test_an_evaluation_of_a_model_that_produces_nan_is_one_line_of_train_net(vcm_root, weights, tmp_path):
    train_net = load_tool("train_net")
    args = train_net.parse_args(["--config-file", TINY, "--eval-only", "DATASETS.NAMES", "('VCM',)", "DATASETS.TESTS",
                                 "('VCM',)", "DATASETS.ROOT", str(vcm_root), "DATASETS.VCM.MIN_FRAMES", "1",
                                 "MODEL.HEADS.NUM_CLASSES", "0", "MODEL.WEIGHTS", weights["nan"], "OUTPUT_DIR",
                                 str(tmp_path / "eval")])
    with pytest.raises(SystemExit) as exit_info:
        train_net.checked_main(args)
    assert str(exit_info.value) == (
        f"error: VCM with MODEL.WEIGHTS {weights['nan']}: the model produces NaN or infinite features for 12 of 12 "
        "test tracklets (IR->VIS: 6 of 6 queries, 6 of 6 gallery; VIS->IR: 6 of 6 queries, 6 of 6 gallery): NaN "
        "cannot be ranked")
    assert not (tmp_path / "eval" / "eval_results.json").exists()


def test_the_nan_features_of_each_direction_are_counted():
    features = torch.zeros(6, 4)
    features[1, 2], features[4, 0] = float("nan"), float("inf")
    directions = {"IR->VIS": (np.array([0, 1, 2]), np.array([3, 4, 5])), "VIS->IR": (np.array([3, 4]), np.array([0]))}
    with pytest.raises(NaNFeaturesError) as error:
        check_finite_test_features(features, directions, "VCM at iteration 199 (epoch 0)")
    assert str(error.value) == ("VCM at iteration 199 (epoch 0): the model produces NaN or infinite features for 2 of "
                                "6 test tracklets (IR->VIS: 1 of 3 queries, 1 of 3 gallery; VIS->IR: 1 of 2 queries, "
                                "0 of 1 gallery): NaN cannot be ranked")
    check_finite_test_features(torch.zeros(6, 4), directions, "VCM")  # finite: nothing to say


def test_extraction_with_a_model_that_produces_nan_writes_nothing(tracklets, weights, tmp_path):
    out = tmp_path / "feats.npz"
    message = error_of("extract_features", ["--config-file", TINY, "--input", str(tracklets), "--output", str(out),
                                            "MODEL.WEIGHTS", weights["nan"], "MODEL.HEADS.NUM_CLASSES", "0"])
    assert message == (f"error: the model produces NaN or infinite features for 2 of 2 tracklets in {tracklets} with "
                       f"MODEL.WEIGHTS {weights['nan']}")
    assert not out.exists()


def test_search_names_a_features_file_holding_nan(frame, tmp_path):
    query = features_file(tmp_path / "q.npz", 3, frame)
    gallery = FeatureSet(np.ones((5, 16), np.float32), np.asarray([f"g{i}" for i in range(5)]),
                         np.asarray([frame] * 5), weights="diverged.pth")
    gallery.features[[1, 3]] = np.nan
    write_features(tmp_path / "g.npz", gallery)
    message = error_of("search", ["--query", str(query), "--gallery", str(tmp_path / "g.npz"), "--output",
                                  str(tmp_path / "res")])
    assert message == (f"error: {tmp_path / 'g.npz'}: 2 of 5 features hold NaN or infinite values: produced by a "
                       "model that produces NaN (MODEL.WEIGHTS diverged.pth); expected finite features")


def test_export_of_a_model_that_produces_nan_is_one_line(weights, tmp_path):
    out = tmp_path / "model.onnx"
    message = error_of("export", ["--config-file", TINY, "--format", "onnx", "--output", str(out), "MODEL.WEIGHTS",
                                  weights["nan"]])
    assert message == (f"error: the model produces NaN or infinite features for 2 of 2 random tracklets "
                       f"[2, 6, 3, 64, 32] with MODEL.WEIGHTS {weights['nan']}: {out} not written")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ ignored overrides

MODEL_READS = "it reads only the model and test-time keys"
#: tool, its command line but the overrides, the overrides, the warning: keys that are read (NUM_WORKERS,
#: MICRO_BATCH_SIZE, a query folder's TEST.IMS_PER_BATCH) are not named
IGNORED = [
    ("extract_features", ["--input", "{tracklets}", "--output", "{tmp}/f.npz", "--config-file", TINY],
     ["SOLVER.BASE_LR", "0.1", "DATALOADER.VVI_SAMPLER", "balanced", "DATALOADER.NUM_WORKERS", "0"],
     f"warning: SOLVER.BASE_LR, DATALOADER.VVI_SAMPLER ignored by extract_features: {MODEL_READS}"),
    ("extract_features", ["--input", "{tracklets}", "--output", "{tmp}/f.npz", "--config-file", TINY],
     ["DATASETS.ROOT", "elsewhere"],
     "warning: DATASETS.ROOT ignored by extract_features: it reads only the tracklet folders of --input"),
    ("visualize_ranks", ["--draw", "{tmp}/r.png", "--config-file", TINY],
     ["SOLVER.MAX_EPOCH", "3", "SOLVER.MICRO_BATCH_SIZE", "0"],
     f"warning: SOLVER.MAX_EPOCH ignored by visualize_ranks: {MODEL_READS}"),
    ("export", ["--format", "onnx", "--output", "{tmp}/m.onnx", "--config-file", TINY],
     ["TEST.METRIC", "cosine", "DATALOADER.NUM_WORKERS", "0", "SOLVER.MICRO_BATCH_SIZE", "0"],
     "warning: TEST.METRIC, DATALOADER.NUM_WORKERS ignored by export: it reads only the model's keys (MODEL.* but "
     "MODEL.DEVICE: it exports from the CPU), INPUT.SEQ_LEN, INPUT.SIZE_* and SOLVER.MICRO_BATCH_SIZE"),
    ("search", ["--query", "{tracklets}", "--gallery", "{tmp}/none.npz", "--output", "{tmp}/res"],
     ["TEST.RERANK.ENABLED", "True", "TEST.IMS_PER_BATCH", "2"],
     "warning: TEST.RERANK.ENABLED ignored by search: it reads only the model and test-time keys, to extract the "
     "query folder (it ranks by the gallery's TEST.METRIC, TEST.AQE.*, TEST.RERANK.*, or --metric, --aqe, --rerank)"),
]


@pytest.mark.parametrize(("tool", "argv", "opts", "warning"), IGNORED, ids=[f"{t} {o[0]}" for t, _, o, _ in IGNORED])
def test_overrides_a_tool_ignores_are_named_in_one_warning(tracklets, tmp_path, capsys, tool, argv, opts, warning):
    """Each run stops at its missing weights or gallery, after the warning."""
    argv = [arg.format(tracklets=tracklets, tmp=tmp_path) for arg in argv]
    error_of(tool, [*argv, "MODEL.WEIGHTS", str(tmp_path / "none.pth"), *opts])
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")] == [warning]


def test_overrides_of_a_search_of_features_files_are_named_and_change_nothing(frame, tmp_path, capsys):
    files = [str(features_file(tmp_path / f"{name}.npz", 6, frame, seed)) for seed, name in enumerate(("q", "g"))]
    argv = ["--query", files[0], "--gallery", files[1], "--output", str(tmp_path / "res")]
    search = load_tool("search")
    plain = search.main(argv)
    overridden = search.main([*argv, "--config-file", TINY, "TEST.RERANK.ENABLED", "True"])
    assert np.array_equal(plain.indices, overridden.indices)
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "warning: --config-file, TEST.RERANK.ENABLED ignored by search: it reads only the features files and its "
        "flags (--metric, --aqe, --rerank set the ranking; --config-file and KEY VALUE overrides are for a query "
        "folder)")


def test_describe_dataset_names_the_keys_that_are_no_data_set_keys(vcm_root, capsys):
    assert load_tool("describe_dataset").main(["--dataset", "VCM", "--root", str(vcm_root), "--json",
                                               "MODEL.DEVICE", "cpu", "DATASETS.VCM.MIN_FRAMES", "1"]) == 0
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")] == [
        "warning: MODEL.DEVICE ignored by describe_dataset: it reads only the data-set keys (DATASETS.ROOT, "
        "DATASETS.VCM.*, DATASETS.BUPT.*)"]

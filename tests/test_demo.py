"""A miniature of `make demo` (tools/demo.py): the same pipeline on a few identities and iterations."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import load_tool, run_python
from PIL import Image

from fastreid_vld.evaluation.rank_picture import CAPTION_HEIGHT

DIRECTIONS = ("IR->VIS", "VIS->IR")
QUERIES, TOP = 3, 5  # rows and columns of the rank-list picture the demo asks for


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    data, out = root / "data", root / "out"
    args = ["tools/demo.py", "--data-root", str(data), "--output", str(out), "--train-ids", "4", "--test-ids", "3",
            "--cameras", "2", "--tracklets", "1", "--frames", "12", "13", "--rank-queries", str(QUERIES),
            "--rank-top", str(TOP), "SOLVER.MAX_EPOCH", "2", "SOLVER.ITERS_PER_EPOCH", "2",
            "SOLVER.WARMUP_EPOCHS", "0", "SOLVER.IMS_PER_BATCH", "8", "TEST.EVAL_PERIOD", "2"]
    result = run_python(*args, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return data, out, result.stdout, args


def test_demo_writes_the_synthetic_set_in_the_hitsz_vcm_layout(demo):
    data, _, _, _ = demo
    folder = data / "HITSZ-VCM"
    for name in ("train_name.txt", "test_name.txt", "track_train_info.txt", "track_test_info.txt", "query_IDX.txt"):
        assert (folder / "info" / name).stat().st_size > 0, name
    settings = json.loads((folder / "synthetic.json").read_text())
    assert (settings["train_ids"], settings["test_ids"], settings["cameras"]) == (4, 3, 2)
    frames = sorted((folder / "Test").rglob("*.jpg"))
    assert len(frames) >= 3 * 2 * 2 * 12  # ids x cameras x modalities x at least 12 frames
    assert Image.open(frames[0]).size == (32, 64)


def test_demo_evaluates_untrained_trained_and_reranked_in_both_directions(demo):
    _, out, _, _ = demo
    for stage in ("untrained", "", "reranked"):
        scores = json.loads((out / stage / "eval_results.json").read_text())["VCM"]["directions"]
        for direction in DIRECTIONS:
            assert 0 <= scores[direction]["mAP"] <= 100
            assert 0 <= scores[direction]["Rank-1"] <= scores[direction]["Rank-5"] <= 100
    assert (out / "model_final.pth").stat().st_size > 0
    assert list(out.glob("events.out.tfevents.*")), "the training writes tensorboard events"


def test_demo_prints_and_saves_a_table_with_chance_and_target_checks(demo):
    _, out, stdout, _ = demo
    summary = json.loads((out / "demo_results.json").read_text())
    assert list(summary) == list(DIRECTIONS)
    table = (out / "demo_results.md").read_text()
    assert table.strip() in stdout
    for direction, row in summary.items():
        assert row["chance Rank-1"] == pytest.approx(100 / 3)  # 3 test identities, each with an infrared query
        trained = json.loads((out / "eval_results.json").read_text())["VCM"]["directions"][direction]
        assert row["trained"] == {"Rank-1": trained["Rank-1"], "mAP": trained["mAP"]}
        assert row["Rank-1 >= 5x chance"] == (row["trained"]["Rank-1"] >= 5 * row["chance Rank-1"])
        assert re.search(rf"^\| {re.escape(direction)} \| 33\.3 \| .* \| (yes|no) \| (yes|no) \|$", table, re.M)
    assert ("demo targets met" in stdout) != ("demo targets NOT met" in stdout)


def test_demo_draws_the_rank_list_picture(demo):
    _, out, _, _ = demo
    picture = np.asarray(Image.open(out / "ranks_IR-VIS.png").convert("RGB"))
    tile_height, tile_width, border = 128, 64, 4  # tools/visualize_ranks.py's defaults
    framed_height, cell_width = tile_height + 2 * border, tile_width + 2 * border
    cell_height = framed_height + CAPTION_HEIGHT
    assert picture.shape == (QUERIES * cell_height, (1 + TOP) * cell_width + tile_width // 2, 3)
    green, red = (40, 180, 60), (220, 40, 40)
    framed = np.all(picture == green, axis=-1) | np.all(picture == red, axis=-1)
    assert framed.sum() >= QUERIES * TOP * (framed_height * cell_width - tile_height * tile_width)  # every tile framed
    assert not framed[:, :cell_width].any()  # the query column is not
    for row in range(QUERIES):  # every tile captioned (query; rank and distance) in dark text
        captions = picture[row * cell_height + framed_height: (row + 1) * cell_height]
        for column in range(1 + TOP):
            left = column * cell_width + (tile_width // 2 if column else 0)
            assert np.all(captions[:, left: left + cell_width] < 100, axis=-1).any(), (row, column)


def test_the_demo_training_draws_its_curves(demo):
    _, out, stdout, _ = demo
    curves = Image.open(out / "curves.png")
    assert curves.format == "PNG" and curves.size[0] >= 1000
    assert f"curves: {out / 'curves.png'}" in stdout


def test_demo_keeps_a_set_written_with_the_same_settings(demo):
    data, _, _, args = demo
    stamp = data / "HITSZ-VCM" / "synthetic.json"
    before = stamp.stat().st_mtime_ns
    settings = args[args.index("--train-ids"):args.index("--rank-queries")]
    result = run_python("tools/make_synthetic.py", "--root", str(data), "--reuse", *settings)
    assert result.returncode == 0, result.stderr
    assert "kept" in result.stdout and stamp.stat().st_mtime_ns == before
    refused = run_python("tools/make_synthetic.py", "--root", str(data), *settings)
    assert refused.returncode != 0 and "--reuse" in refused.stderr and str(data / "HITSZ-VCM") in refused.stderr


def test_quick_is_a_smaller_set_and_100_iterations_in_folders_of_its_own():
    demo_tool = load_tool("demo")
    quick = demo_tool.parse_args(["--quick", "SOLVER.MAX_EPOCH", "2"])
    assert (str(quick.data_root), str(quick.output), quick.train_ids, quick.test_ids) == \
        ("datasets/demo_quick", "output/demo_quick", 32, 12)
    settings = dict(zip(quick.opts[0::2], quick.opts[1::2], strict=True))  # the later pair of a key wins
    assert (settings["SOLVER.ITERS_PER_EPOCH"], settings["SOLVER.MAX_EPOCH"]) == ("25", "2")
    assert quick.opts[:2] == ["SOLVER.MAX_EPOCH", "4"]  # 4 x 25 = 100 iterations unless overridden
    full = demo_tool.parse_args([])
    assert (str(full.data_root), str(full.output), full.train_ids, full.test_ids, full.opts) == \
        ("datasets/demo", "output/demo", 96, 24, [])

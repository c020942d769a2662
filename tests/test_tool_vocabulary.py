"""One vocabulary across tools/search.py and tools/visualize_ranks.py (issue 22): the same option
names for the same meaning, visualize_ranks' old names as aliases, shell-safe direction names."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import load_tool

from fastreid_vld.engine.feature_files import FeatureSet, write_features
from fastreid_vld.evaluation.rank_picture import gallery_caption

SHARED = ("--topk", "--draw", "--draw-queries", "--direction")
SPELLINGS = [("IR2VIS", "IR->VIS"), ("ir2vis", "IR->VIS"), ("Ir2Vis", "IR->VIS"), ("IR->VIS", "IR->VIS"),
             ("VIS2IR", "VIS->IR"), ("vis2ir", "VIS->IR"), ("vis->ir", "VIS->IR")]
NOT_DIRECTIONS = ["sideways", "IR", "IR2IR", "IR2VIS/Rank-1", ""]


#: each tool's parser, with the options it requires
PARSERS = {"search": (load_tool("search").argument_parser(), ["--query", "q.npz", "--gallery", "g.npz"]),
           "visualize_ranks": (load_tool("visualize_ranks").argument_parser(), ["--config-file", "c.yaml"])}


def parsed(tool: str, *argv: str) -> argparse.Namespace:
    parser, required = PARSERS[tool]
    return parser.parse_args([*required, *argv])


def option(parser: argparse.ArgumentParser, name: str) -> argparse.Action:
    return next(action for action in parser._actions if name in action.option_strings)


@pytest.mark.parametrize("name", SHARED)
def test_both_tools_list_a_shared_meaning_under_one_name(name):
    search, visualize = (option(parser, name) for parser, _ in PARSERS.values())
    assert search.option_strings[0] == visualize.option_strings[0] == name  # the name --help lists first
    assert search.dest == visualize.dest


def test_both_tools_draw_as_many_rows_and_columns_by_default():
    search, visualize = parsed("search"), parsed("visualize_ranks", "--draw", "r.png")
    assert (search.draw_queries, search.topk) == (visualize.draw_queries, visualize.topk) == (6, 10)


def test_visualize_ranks_old_names_are_aliases_of_the_new():
    new = parsed("visualize_ranks", "--draw", "r.png", "--draw-queries", "3", "--topk", "4", "MODEL.WEIGHTS", "w.pth")
    old = parsed("visualize_ranks", "--out", "r.png", "--queries", "3", "--top", "4", "MODEL.WEIGHTS", "w.pth")
    assert new == old and (new.draw, new.draw_queries, new.topk) == (Path("r.png"), 3, 4)
    listed = PARSERS["visualize_ranks"][0].format_help()
    for alias in ("--draw PNG, --out PNG", "--draw-queries N, --queries N", "--topk K, --top K"):
        assert alias in listed  # each alias beside its option, on the option's one entry
    assert "\n  --out" not in listed and "\n  --queries" not in listed and "\n  --top " not in listed


@pytest.mark.parametrize("spelled, direction", SPELLINGS)
def test_both_tools_take_shell_safe_directions_in_any_case(spelled, direction):
    assert parsed("search", "--direction", spelled).direction == direction
    assert parsed("visualize_ranks", "--draw", "r.png", "--direction", spelled).direction == direction
    assert parsed("visualize_ranks", "--draw", "r.png", "--direction", f"all/{spelled}").direction == f"all/{direction}"


def test_the_default_direction_is_infrared_to_visible():
    assert parsed("visualize_ranks", "--draw", "r.png").direction == "IR->VIS"
    assert parsed("search").direction is None  # search: no direction, every query against every gallery entry


@pytest.mark.parametrize("tool", list(PARSERS))
@pytest.mark.parametrize("bad", NOT_DIRECTIONS)
def test_other_directions_are_refused_naming_the_valid_ones(capsys, tool, bad):
    with pytest.raises(SystemExit) as exit_info:
        parsed(tool, "--draw", "r.png", "--direction", bad)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "argument --direction" in error, error
    named = bad.rpartition("/")[2] if tool == "visualize_ranks" else bad  # visualize_ranks: after the subset
    assert f"{named!r} is not a direction: expected IR2VIS or VIS2IR" in error, error


def test_search_refuses_a_test_subset(capsys):
    with pytest.raises(SystemExit):
        parsed("search", "--direction", "all/IR2VIS")  # subsets are a data set's, not a features file's
    assert "expected IR2VIS or VIS2IR" in capsys.readouterr().err


def test_both_direction_spellings_search_the_same_modalities(tmp_path):
    rng = np.random.default_rng(0)
    modalities = np.asarray([0, 1] * 6)  # visible, infrared, ...
    for name in ("q", "g"):
        write_features(tmp_path / f"{name}.npz", FeatureSet(
            rng.normal(size=(12, 8)).astype(np.float32), np.asarray([f"{name}{i}" for i in range(12)]),
            np.asarray(["unused.jpg"] * 12), pids=np.asarray([str(i // 2) for i in range(12)]), modalities=modalities))
    tool = load_tool("search")
    common = ["--query", str(tmp_path / "q.npz"), "--gallery", str(tmp_path / "g.npz"), "--topk", "3"]
    shell_safe = tool.main([*common, "--direction", "vis2ir", "--output", str(tmp_path / "safe")])
    arrow = tool.main([*common, "--direction", "VIS->IR", "--output", str(tmp_path / "arrow")])
    assert np.array_equal(shell_safe.indices, arrow.indices) and np.array_equal(shell_safe.cosines, arrow.cosines)
    rows = list(csv.DictReader(open(tmp_path / "safe.csv")))
    assert len(rows) == 6 * 3
    assert {int(row["query"][1:]) % 2 for row in rows} == {0} and {int(row["gallery"][1:]) % 2 for row in rows} == {1}


def test_a_gallery_caption_reads_rank_distance_then_cosine():
    assert gallery_caption(3, -127.4123, 0.8321) == "#3 -127.4\ncos 0.83"
    assert gallery_caption(10, 0.0451, -0.2) == "#10 0.0451\ncos -0.20"

"""The curves of a run (fastreid_vld/engine/curves.py, tools/plot_run.py): metrics.json lines merged by
iteration, a resumed run replacing what it repeats, every loss, lr, accuracy and evaluation key drawn,
a README-sized PNG, several runs on one figure, and every bad input as one ``error:`` line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import load_tool, run_python
from PIL import Image

from fastreid_vld.engine.curves import MetricsFileError, draw_runs, read_metrics, write_run_curves

DIRECTIONS = ("IR->VIS", "VIS->IR")
RANKS = (1, 5, 10, 20)


def training_line(iteration: int, scale: float = 1.0) -> dict:
    """A VLD-like training line: loss terms, lr, accuracy, and the timing keys."""
    return {"iteration": iteration, "loss_cls": scale * 2 / (1 + iteration), "loss_text": scale * 0.3,
            "loss_triplet": scale * 1.5 / (1 + iteration), "total_loss": scale * (3.8 / (1 + iteration) + 0.3),
            "lr": 1e-4 * (1 + iteration), "cls_accuracy": iteration / 20, "time": 0.2, "data_time": 0.05,
            "eta_seconds": 100.0 - iteration}


def vcm_evaluation(iteration: int, prefix: str = "") -> dict:
    """An evaluation line of the VVI evaluator: both directions, Rank-1/5/10/20, mAP, mINP, and the copy "metric"."""
    line = {"iteration": iteration}
    for index, direction in enumerate(DIRECTIONS):
        line.update({f"{prefix}{direction}/Rank-{k}": 20.0 + iteration + k + index for k in RANKS})
        line.update({f"{prefix}{direction}/mAP": 30.0 + iteration + index, f"{prefix}{direction}/mINP": 10.0 + index})
    line[f"{prefix}metric"] = line[f"{prefix}IR->VIS/Rank-1"]
    return line


def several_test_sets_evaluation(iteration: int) -> dict:
    """VCM, BUPTCampus (two test subsets) and Market1501 (fast-reid's own evaluator) in one line."""
    line = vcm_evaluation(iteration, "VCM/")
    for shift, subset in enumerate(("official", "all"), 1):
        line.update({key.replace("VCM/", f"BUPTCampus/{subset}/"): value + shift for key, value in line.items()
                     if key.startswith("VCM/") and key != "VCM/metric"})
    line["BUPTCampus/metric"] = line["BUPTCampus/official/IR->VIS/Rank-1"]
    line.update({"Market1501/Rank-1": 50.0 + iteration, "Market1501/Rank-5": 60.0, "Market1501/mAP": 40.0,
                 "Market1501/mINP": 20.0, "Market1501/metric": 45.0 + iteration / 2,  # (mAP + Rank-1) / 2
                 "Market1501/TPR@FPR=1e-04": 0.1, "Market1501/TPR@FPR=1e-02": 0.3})
    return line


def write_metrics(folder: Path, lines: list[dict | str]) -> Path:
    """``folder/metrics.json`` with one line per dict (or raw text)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.json"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def vcm_run(folder: Path, scale: float = 1.0, evaluation=vcm_evaluation, drop: tuple[str, ...] = ()) -> Path:
    """10 iterations logged every 2, evaluated at the epochs' last iterations 4 and 9 (their own lines);
    without the ``drop`` keys."""
    lines = []
    for iteration in range(0, 10):
        if iteration % 2 == 0 or iteration == 9:
            lines.append({key: value for key, value in training_line(iteration, scale).items() if key not in drop})
        if iteration in (4, 9):
            lines.append(evaluation(iteration))
    write_metrics(folder, lines)
    return folder


# --- reading ---------------------------------------------------------------------------------------------------


def test_read_metrics_merges_the_lines_of_one_iteration(tmp_path):
    path = write_metrics(tmp_path, [training_line(0), training_line(4), vcm_evaluation(4), training_line(6)])
    series = read_metrics(path)
    assert series["loss_cls"] == [(0, 2.0), (4, 0.4), (6, 2 / 7)]
    assert series["IR->VIS/Rank-1"] == [(4, 25.0)]
    assert series["lr"] == [(0, 1e-4), (4, 5e-4), (6, 7e-4)]
    assert "iteration" not in series


def test_a_resumed_run_replaces_what_it_repeats_and_a_rerun_replaces_everything(tmp_path):
    resumed = write_metrics(tmp_path / "resumed", [
        training_line(0), training_line(2), training_line(4), vcm_evaluation(4), training_line(6),  # killed at 6
        training_line(3, scale=10), training_line(5, scale=10), training_line(5, scale=100),  # resumed from 3
    ])
    series = read_metrics(resumed)
    assert series["loss_text"] == [(0, 0.3), (2, 0.3), (3, 3.0), (5, 30.0)]  # 4 and 6 dropped; 5 merged, last wins
    assert "IR->VIS/Rank-1" not in series  # the evaluation at 4 belonged to the replaced segment
    rerun = write_metrics(tmp_path / "rerun", [training_line(0), training_line(2), vcm_evaluation(2),
                                               training_line(0, scale=2)])
    series = read_metrics(rerun)
    assert series["loss_text"] == [(0, 0.6)] and "metric" not in series


def test_an_unfinished_last_line_is_skipped_with_a_warning_naming_the_file(tmp_path, caplog):
    path = write_metrics(tmp_path, [training_line(0), training_line(2), '{"iteration": 4, "loss_cls": 0.'])
    with caplog.at_level(logging.WARNING, logger="fastreid_vld.engine.curves"):
        series = read_metrics(path)
    assert [iteration for iteration, _ in series["loss_cls"]] == [0, 2]
    assert f"{path}: line 3 is not complete JSON" in caplog.text


@pytest.mark.parametrize("bad, expected", [
    ('{"iteration": 4, "loss_cls": 0.', "metrics.json:2: not a JSON line"),
    ('{"loss_cls": 0.5}', 'metrics.json:2: expected a JSON object with an integer "iteration"'),
    ('[1, 2]', 'metrics.json:2: expected a JSON object with an integer "iteration"'),
    ('{"iteration": "4", "loss_cls": 0.5}', 'metrics.json:2: expected a JSON object with an integer "iteration"'),
])
def test_a_malformed_line_before_the_last_is_an_error_naming_the_file_and_line(tmp_path, bad, expected):
    path = write_metrics(tmp_path, [training_line(0), bad, training_line(2)])
    with pytest.raises(MetricsFileError, match="^" + str(tmp_path).replace("\\", "\\\\")) as error:
        read_metrics(path)
    assert expected in str(error.value)


def test_a_metrics_file_without_scalars_or_missing_is_an_error(tmp_path):
    with pytest.raises(MetricsFileError, match="no scalar at all"):
        read_metrics(write_metrics(tmp_path / "empty", [{"iteration": 0}, {"iteration": 1, "note": "text"}, ""]))
    with pytest.raises(MetricsFileError, match=r"missing/metrics.json: not found"):
        draw_runs([tmp_path / "missing"], tmp_path / "out.png")
    write_metrics(tmp_path / "eta", [{"iteration": 0, "eta_seconds": 10.0}])
    with pytest.raises(MetricsFileError, match="nothing to draw"):
        draw_runs([tmp_path / "eta"], tmp_path / "out.png")


# --- drawing ---------------------------------------------------------------------------------------------------


def drawn_lines(figure) -> dict[str, dict[str, list]]:
    """Axes title -> metrics.json key (the line's gid) -> its (iteration, value) points, as drawn."""
    return {axes.get_title(): {line.get_gid(): list(zip(line.get_xdata(), line.get_ydata(), strict=True))
                               for line in axes.get_lines()} for axes in figure.axes}


def test_draw_runs_draws_every_metric_present(tmp_path):
    run = vcm_run(tmp_path / "run", evaluation=several_test_sets_evaluation)
    series = read_metrics(run / "metrics.json")
    drawing = draw_runs([run], run / "curves.png")
    drawn = drawing.drawn["run"]
    assert drawing.skipped["run"] == {"eta_seconds": "the time left, not a measure of the run",
                                      "VCM/metric": "a copy of VCM/IR->VIS/Rank-1",
                                      "BUPTCampus/metric": "a copy of BUPTCampus/official/IR->VIS/Rank-1"}
    assert sorted(key for keys in drawn.values() for key in keys) == sorted(set(series) - set(drawing.skipped["run"]))
    assert drawing.panels == ["losses", "learning rate", "accuracy", "seconds / iteration", "Rank-1 (%)", "mAP (%)",
                              "mINP (%)", "Rank-5/10/20 (%)", "metric (model selection, %)", "TPR@FPR=1e-04/1e-02"]
    assert drawn["losses"] == ["total_loss", "loss_cls", "loss_text", "loss_triplet"]
    bupt = [f"BUPTCampus/{subset}/{direction}/Rank-1" for subset in ("all", "official") for direction in DIRECTIONS]
    assert drawn["Rank-1 (%)"] == [*bupt, "Market1501/Rank-1", "VCM/IR->VIS/Rank-1", "VCM/VIS->IR/Rank-1"]
    assert drawn["metric (model selection, %)"] == ["Market1501/metric"]  # not a copy: (mAP + Rank-1) / 2
    lines = drawn_lines(drawing.figure)
    assert {title: sorted(keys) for title, keys in lines.items()} == {title: sorted(keys) for title, keys
                                                                      in drawn.items()}
    for keys in lines.values():  # every value at every iteration
        for key, points in keys.items():
            assert points == series[key], key
    evaluation_axes = [axes for axes in drawing.figure.axes if "%" in axes.get_title() or "TPR" in axes.get_title()]
    assert all(line.get_marker() not in (None, "None", "") for axes in evaluation_axes for line in axes.get_lines())
    assert drawing.figure.axes[0].get_yscale() == "log"  # every loss positive


def test_the_png_is_readme_sized(tmp_path):
    run = vcm_run(tmp_path / "run", drop=("cls_accuracy",))  # VLD logs no accuracy
    drawing = draw_runs([run], run / "curves.png")
    assert drawing.panels == ["losses", "learning rate", "seconds / iteration", "Rank-1 (%)", "mAP (%)", "mINP (%)",
                              "Rank-5/10/20 (%)"]
    with Image.open(run / "curves.png") as image:
        image.verify()
    with Image.open(run / "curves.png") as image:
        assert image.format == "PNG" and image.size == (1200, 800)  # 2 rows of 4 columns, the losses two wide
    assert (run / "curves.png").stat().st_size <= 250_000
    assert drawing.figure.texts[0].get_text() == "run"  # titled with the run's folder


def test_several_runs_share_the_panels_with_one_colour_a_run(tmp_path):
    runs = [vcm_run(tmp_path / "a"), vcm_run(tmp_path / "b", scale=2.0)]
    drawing = draw_runs(runs, tmp_path / "compare.png", labels=["baseline", "+STA"])
    assert drawing.panels[:2] == ["losses: baseline", "losses: +STA"]
    assert drawing.drawn["baseline"]["mAP (%)"] == drawing.drawn["+STA"]["mAP (%)"] == ["IR->VIS/mAP", "VIS->IR/mAP"]
    for axes in drawing.figure.axes[2:]:  # the shared panels: one colour a run, one line style a key
        colours = {line.get_label().split(" ")[0]: line.get_color() for line in axes.get_lines()}
        assert set(colours) == {"baseline", "+STA"} and len(set(colours.values())) == 2, axes.get_title()
    mAP = next(axes for axes in drawing.figure.axes if axes.get_title() == "mAP (%)")
    assert {line.get_linestyle() for line in mAP.get_lines()} == {"-", "--"}
    legend = [text.get_text() for text in drawing.figure.legends[0].get_texts()]
    assert legend == ["baseline", "+STA", "IR->VIS", "VIS->IR"]  # the runs' colours, the directions' styles
    assert drawing.figure.texts[0].get_text() == "baseline vs +STA"
    assert draw_runs(runs, tmp_path / "default.png").drawn.keys() == {"a", "b"}  # folder names


def test_labels_must_name_each_run_once(tmp_path):
    runs = [vcm_run(tmp_path / "a"), vcm_run(tmp_path / "b")]
    with pytest.raises(MetricsFileError, match=r"labels \['x'\] for 2 runs: expected one distinct label per run"):
        draw_runs(runs, tmp_path / "out.png", labels=["x"])
    with pytest.raises(MetricsFileError, match="expected one distinct label per run"):
        draw_runs(runs, tmp_path / "out.png", labels=["x", "x"])


def test_write_run_curves_draws_the_output_dir_or_warns(tmp_path, caplog):
    run = vcm_run(tmp_path / "run")
    assert write_run_curves(str(run)) == run / "curves.png" and (run / "curves.png").is_file()
    with caplog.at_level(logging.WARNING, logger="fastreid_vld.engine.curves"):
        assert write_run_curves(tmp_path / "empty") is None
    assert "no curves drawn: " in caplog.text and "empty/metrics.json: not found" in caplog.text


# --- the tool --------------------------------------------------------------------------------------------------


def test_plot_run_cli_writes_the_default_output(tmp_path):
    run = vcm_run(tmp_path / "a")
    process = run_python("tools/plot_run.py", str(run), timeout=120)
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stdout.startswith(f"{run / 'curves.png'}: losses, learning rate")
    assert (run / "curves.png").is_file()


def test_plot_run_cli_several_runs_labels_and_errors(tmp_path, capsys):
    plot_run = load_tool("plot_run")
    runs = [str(vcm_run(tmp_path / "a")), str(vcm_run(tmp_path / "b"))]
    assert plot_run.main([*runs, "--labels", "A", "B"]) == tmp_path / "a" / "curves_compare.png"
    assert plot_run.main([*runs, "--output", str(tmp_path / "ablation.png")]) == tmp_path / "ablation.png"
    assert plot_run.main([str(tmp_path / "b" / "metrics.json")]) == tmp_path / "b" / "curves.png"
    assert (tmp_path / "a" / "curves_compare.png").is_file() and (tmp_path / "ablation.png").is_file()
    with pytest.raises(SystemExit, match=r"^error: labels \['A'\] for 2 runs: expected one distinct label per run"):
        plot_run.main([*runs, "--labels", "A"])
    with pytest.raises(SystemExit, match=f"^error: {tmp_path / 'missing' / 'metrics.json'}: not found; expected "
                                         "the metrics.json fast-reid writes in a run's OUTPUT_DIR$"):
        plot_run.main([runs[0], str(tmp_path / "missing")])
    write_metrics(tmp_path / "c", [training_line(0), "not json", training_line(2)])
    with pytest.raises(SystemExit, match=r"^error: .*c/metrics.json:2: not a JSON line"):
        plot_run.main([str(tmp_path / "c")])

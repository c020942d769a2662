"""What a fast-reid user meets around a run: the shortest runs finish, the plugin's lines reach
log.txt, the writer period is a key, a CUDA config on a CPU machine runs in full precision with as
many loader workers as CPUs, the
environment dump names the installed fastreid, frame problems are all counted in one error, and
the flip test flips tracklets along their width."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import run_python

from fastreid_vld.data.datasets import VCM, DatasetFormatError
from fastreid_vld.data.synthetic import SyntheticSize, write_vcm


@pytest.fixture(scope="module")
def vcm_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vcm")
    write_vcm(root / "HITSZ-VCM", SyntheticSize(train_ids=4, test_ids=6, cameras=2, min_frames=6, max_frames=8))
    return root


def train_net(root, output_dir, *opts: str):
    return run_python("tools/train_net.py", "--config-file", "configs/VLD/tiny.yml", "DATASETS.ROOT", str(root),
                      "DATASETS.NAMES", '("VCM",)', "DATASETS.TESTS", '("VCM",)', "DATASETS.VCM.MIN_FRAMES", "1",
                      "OUTPUT_DIR", str(output_dir), *opts, timeout=300)


@pytest.fixture(scope="module")
def one_iteration_run(vcm_root, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("one-iteration")
    process = train_net(vcm_root, output_dir, "SOLVER.MAX_EPOCH", "1", "SOLVER.ITERS_PER_EPOCH", "1")
    return process, output_dir


def test_a_one_epoch_one_iteration_run_finishes_and_logs_the_plugin_lines(one_iteration_run):
    process, output_dir = one_iteration_run
    assert process.returncode == 0, process.stderr[-3000:]
    log = (output_dir / "log.txt").read_text()
    for logger in ("fastreid_vld.data.build", "fastreid_vld.evaluation.vvi_evaluator"):
        assert f"] {logger} INFO: " in log, logger
    assert "| IR->VIS " in log  # the evaluator's table
    assert (output_dir / "model_final.pth").is_file()


def test_eval_only_with_re_ranking_changes_the_results_of_the_default_distance(vcm_root, one_iteration_run,
                                                                                tmp_path):
    """tiny.yml's TEST.METRIC is the official inner product: re-ranking used to change nothing there."""
    weights = str(one_iteration_run[1] / "model_final.pth")
    results = {}
    for name, opts in (("plain", ()), ("rerank", ("TEST.RERANK.ENABLED", "True"))):
        process = train_net(vcm_root, tmp_path / name, "--eval-only", "MODEL.WEIGHTS", weights, *opts)
        assert process.returncode == 0, process.stderr[-3000:]
        results[name] = json.loads((tmp_path / name / "eval_results.json").read_text())["VCM"]
    assert results["plain"]["settings"] == "distance inner_product"
    assert results["rerank"]["settings"].startswith("distance cosine (TEST.METRIC inner_product is for plain")
    plain, rerank = (results[name]["directions"]["IR->VIS"] for name in ("plain", "rerank"))
    assert (plain["mAP"], plain["cmc"]) != (rerank["mAP"], rerank["cmc"])


def test_losses_are_written_every_log_period_iterations(vcm_root, tmp_path):
    process = train_net(vcm_root, tmp_path, "SOLVER.MAX_EPOCH", "1", "SOLVER.ITERS_PER_EPOCH", "5",
                        "SOLVER.LOG_PERIOD", "2", "TEST.EVAL_PERIOD", "2")
    assert process.returncode == 0, process.stderr[-3000:]
    lines = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    losses = [line["iteration"] for line in lines if "total_loss" in line]
    assert losses == [1, 3, 4]  # every 2nd, and the last (fast-reid: the last only)
    assert [line["iteration"] for line in lines if "metric" in line] == [5]  # the evaluation after training


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback happens only on a machine without CUDA")
def test_a_cuda_config_on_a_cpu_machine_runs_in_full_precision_and_says_so(vcm_root, tmp_path):
    """The paper configs' settings on this machine: CUDA with float16 AMP, 8 workers (here 64)."""
    process = train_net(vcm_root, tmp_path, "SOLVER.MAX_EPOCH", "1", "SOLVER.ITERS_PER_EPOCH", "1",
                        "MODEL.DEVICE", "cuda", "SOLVER.AMP.ENABLED", "True", "DATALOADER.NUM_WORKERS", "64")
    assert process.returncode == 0, process.stderr[-3000:]
    log = (tmp_path / "log.txt").read_text()
    assert "fastreid_vld WARNING: MODEL.DEVICE=cuda but CUDA is not available: using cpu" in log
    assert "fastreid_vld WARNING: SOLVER.AMP.ENABLED turned off on the CPU fallback" in log
    cpus = len(os.sched_getaffinity(0))
    assert f"fastreid_vld INFO: DATALOADER.NUM_WORKERS 64 lowered to {cpus}, the CPUs" in log
    dumped = (tmp_path / "config.yaml").read_text()
    assert "DEVICE: cpu" in dumped and "AMP:\n    DTYPE: float16\n    ENABLED: false" in dumped
    assert f"NUM_WORKERS: {cpus}\n" in dumped


def test_the_environment_dump_names_the_installed_fastreid():
    from importlib.metadata import version

    from fastreid.utils.collect_env import collect_env_info
    (line,) = [line for line in collect_env_info().splitlines() if line.startswith("fastreid ")]
    assert line.split()[1] == version("fastreid") == "1.4.0"


def test_every_missing_frame_is_counted_in_one_error(tmp_path):
    write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=4, test_ids=2, cameras=2, min_frames=6, max_frames=8))
    frames = sorted((tmp_path / "HITSZ-VCM").rglob("*.jpg"))[:13]
    for frame in frames:
        frame.unlink()
    with pytest.raises(DatasetFormatError) as error:
        VCM(root=str(tmp_path), min_frames=1)
    message = str(error.value)
    assert "found 'no such file; 12 more frames fail the same way (" in message and message.endswith(", ...)'")
    assert sum(str(frame) in message for frame in frames) == 11  # the first in full, then 10 of the others


def test_make_synthetic_help_shows_the_whole_description():
    process = run_python("tools/make_synthetic.py", "--help", timeout=60)
    assert "HITSZ-VCM (default) or\nBUPTCampus layout, read back by the same data-set classes" in process.stdout

"""fast-reid's own machinery on this stack: its Baseline (a small random-init ResNet) trained on
CPU through VLDTrainer and tools/train_net.py on a tiny on-disk Market-1501-layout set,
checkpointed, resumed, evaluated by its ReidEvaluator with k-reciprocal re-ranking, and run as
two processes through launch (gloo). Nothing of fast-reid is mocked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_python
from image_sets import write_market1501

CONFIG = "tests/configs/baseline_tiny.yml"
TRAIN_IMAGES, BATCH = 6 * 2 * 2, 8  # train ids x cameras x images per camera; IMS_PER_BATCH
ITERS_PER_EPOCH = TRAIN_IMAGES // BATCH


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    return write_market1501(tmp_path_factory.mktemp("market"))


def train_net(data_root: Path, *args: str):
    result = run_python("tools/train_net.py", "--config-file", CONFIG, *args, "DATASETS.ROOT", str(data_root))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def metrics_lines(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.json").read_text().splitlines()]


def csv_row(log: str) -> dict[str, float]:
    """The values of fast-reid's printed results table (Rank-1, mAP, ...)."""
    header = re.findall(r"^\| Dataset .*$", log, re.M)[-1]
    row = re.findall(r"^\| Market1501 .*$", log, re.M)[-1]
    names = [c.strip() for c in header.strip("|").split("|")][1:]
    values = [float(c) for c in row.strip("|").split("|")[1:]]
    return dict(zip(names, values, strict=True))


@pytest.mark.slow
def test_train_checkpoint_resume_and_evaluate_with_reranking(market, tmp_path):
    out = tmp_path / "out"
    first = train_net(market, "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", str(out))
    assert "Starting training from epoch 0" in first
    assert "Test with rerank setting" in first
    assert (out / "model_final.pth").is_file() and (out / "config.yaml").is_file()
    assert list(out.glob("events.out.tfevents.*")), "tensorboard events"
    first_iters = [m["iteration"] for m in metrics_lines(out)]
    assert max(first_iters) == ITERS_PER_EPOCH - 1

    second = train_net(market, "--resume", "SOLVER.MAX_EPOCH", "2", "OUTPUT_DIR", str(out))
    assert f"Loading checkpoint from {out / 'model_final.pth'}" in second
    assert "Loading optimizer from" in second
    assert "Starting training from epoch 1" in second
    resumed_iters = [m["iteration"] for m in metrics_lines(out)][len(first_iters):]
    assert min(resumed_iters) >= ITERS_PER_EPOCH, "the iteration count continues"
    assert max(resumed_iters) == 2 * ITERS_PER_EPOCH - 1
    trained = csv_row(second)
    assert 0 <= trained["mAP"] <= 100 and 0 <= trained["Rank-1"] <= 100

    evaluated = train_net(market, "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth"),
                          "OUTPUT_DIR", str(tmp_path / "eval"))
    assert "Test with rerank setting" in evaluated
    # the final checkpoint is saved after the final evaluation of the same weights
    assert csv_row(evaluated) == pytest.approx(trained, abs=1e-2)


@pytest.mark.slow
def test_two_processes_through_launch_with_gloo(market, tmp_path):
    out = tmp_path / "out"
    log = train_net(market, "--num-gpus", "2", "--dist-url", "auto",
                    "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", str(out))
    assert "World size: 2" in log
    assert (out / "model_final.pth").is_file()
    # each process takes IMS_PER_BATCH / 2 per step: the epoch length is unchanged
    assert max(m["iteration"] for m in metrics_lines(out)) == ITERS_PER_EPOCH - 1
    assert "Market1501" in log and "mAP" in log


def test_train_net_help():
    result = run_python("tools/train_net.py", "--help")
    assert result.returncode == 0
    for flag in ("--config-file", "--eval-only", "--resume", "--num-gpus"):
        assert flag in result.stdout

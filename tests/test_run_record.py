"""What a run leaves behind, and that it tells the truth: every evaluation in metrics.json, in the
tensorboard events and in eval_results.json, at the iteration it ran; each console line once; a timer
summary that counts what it timed; the seed used; the model's printout in log.txt and its parameter
count on the console; VLD's classifier accuracy; the measured backbone width in config.yaml; an error
once on the console and in log.txt.

The schedule tests drive fast-reid's own training loop (TrainerBase), EvalHook and writers with
VLDTrainer's writer hook and a step that only stores a loss, so vcm.yml's 200-iteration epochs cost
milliseconds; one real tiny training run checks the same through tools/train_net.py.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
from conftest import load_tool, run_python
from fastreid.config import get_cfg
from fastreid.engine import hooks
from fastreid.engine.train_loop import TrainerBase
from fastreid.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_run_ergonomics import train_net, vcm_root  # noqa: F401  (the module's synthetic set fixture)

from fastreid_vld import add_vld_config
from fastreid_vld.config import merge_config
from fastreid_vld.engine.hooks import IterationTimer, RunRecordWriter
from fastreid_vld.modeling import VideoBaseline
from fastreid_vld.modeling.backbones.width import resolve_backbone_width


class StoreLossLoop(TrainerBase):
    """fast-reid's loop with a step that stores one loss; the n-th evaluation scores n (Rank-1) and 2n (mAP)."""

    def __init__(self, iters_per_epoch: int, max_epoch: int) -> None:
        super().__init__()
        self.iters_per_epoch, self.max_epoch, self.max_iter = iters_per_epoch, max_epoch, iters_per_epoch * max_epoch
        self.evaluated_at: list[int] = []

    def run_step(self) -> None:
        self.storage.put_scalars(loss_cls=1.0 / (self.iter + 1))

    def evaluate(self) -> dict:
        self.evaluated_at.append(self.storage.iter)
        return {"IR->VIS": {"Rank-1": float(len(self.evaluated_at)), "mAP": 2.0 * len(self.evaluated_at)}}


def run_schedule(output_dir, iters_per_epoch: int, log_period: int, eval_period: int, max_epoch: int):
    loop = StoreLossLoop(iters_per_epoch, max_epoch)
    writers = [CommonMetricPrinter(loop.max_iter), JSONWriter(str(output_dir / "metrics.json")),
               TensorboardXWriter(str(output_dir))]
    loop.register_hooks([IterationTimer(), hooks.EvalHook(eval_period, loop.evaluate),
                         RunRecordWriter(writers, log_period)])  # fast-reid's order: writers last
    loop.train(0, max_epoch, iters_per_epoch)
    return loop


def metrics_lines(output_dir) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.json").read_text().splitlines()]


def tensorboard_scalars(output_dir) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(output_dir))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


SCHEDULES = {  # (iterations per epoch, SOLVER.LOG_PERIOD, TEST.EVAL_PERIOD, SOLVER.MAX_EPOCH)
    "vcm.yml": (200, 20, 2, 24),
    "demo.yml": (50, 20, 8, 16),
    "tiny.yml": (2, 20, 1, 2),
    "20 iterations, log every 20": (20, 20, 1, 2),
    "log period not dividing the epoch": (7, 3, 1, 3),
    "last epoch not an evaluation epoch": (5, 5, 2, 3),
    "log every iteration": (3, 1, 1, 2),
}


@pytest.mark.parametrize("schedule", SCHEDULES.values(), ids=SCHEDULES.keys())
def test_every_evaluation_is_in_metrics_json_and_tensorboard_at_its_iteration(tmp_path, schedule):
    iters_per_epoch, log_period, eval_period, max_epoch = schedule
    loop = run_schedule(tmp_path, *schedule)
    epoch_ends = [(epoch + 1) * iters_per_epoch - 1 for epoch in range(max_epoch) if (epoch + 1) % eval_period == 0]
    after_training = [] if max_epoch % eval_period == 0 else [loop.max_iter]  # EvalHook.after_train
    assert loop.evaluated_at == epoch_ends + after_training

    written = {}
    for line in metrics_lines(tmp_path):
        if "IR->VIS/Rank-1" in line:
            written[line["iteration"]] = (line["IR->VIS/Rank-1"], line["IR->VIS/mAP"])
    expected = {iteration: (float(n), 2.0 * n) for n, iteration in enumerate(loop.evaluated_at, start=1)}
    assert written == expected
    scalars = tensorboard_scalars(tmp_path)
    assert dict(scalars["IR->VIS/Rank-1"]) == {iteration: rank1 for iteration, (rank1, _) in expected.items()}
    assert dict(scalars["IR->VIS/mAP"]) == {iteration: mean_ap for iteration, (_, mean_ap) in expected.items()}


@pytest.mark.parametrize("schedule", [SCHEDULES["vcm.yml"], SCHEDULES["log period not dividing the epoch"]],
                         ids=["vcm.yml", "log period not dividing the epoch"])
def test_losses_are_written_every_log_period_and_at_every_epoch_end_once(tmp_path, schedule):
    iters_per_epoch, log_period, _, max_epoch = schedule
    run_schedule(tmp_path, *schedule)
    loss_iterations = [line["iteration"] for line in metrics_lines(tmp_path) if "loss_cls" in line]
    max_iter = iters_per_epoch * max_epoch
    periodic = {i for i in range(max_iter) if (i + 1) % log_period == 0}
    epoch_ends = {(epoch + 1) * iters_per_epoch - 1 for epoch in range(max_epoch)}
    assert loss_iterations == sorted(periodic | epoch_ends)
    assert [step for step, _ in tensorboard_scalars(tmp_path)["loss_cls"]] == loss_iterations


def test_each_console_line_is_printed_once(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="fastreid.utils.events"):
        run_schedule(tmp_path, 4, 2, 1, 3)  # the period falls on every epoch end
    printed = [record.getMessage().split("epoch/iter: ")[1].split()[0] for record in caplog.records
               if "epoch/iter" in record.getMessage()]
    assert printed == [f"{i // 4}/{i}" for i in (1, 3, 5, 7, 9, 11)]


def test_the_timer_summary_counts_the_iterations_it_timed(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="fastreid_vld.engine.hooks"):
        run_schedule(tmp_path, 2, 20, 1, 2)  # 4 iterations, the first 2 warm-up
    summary = next(record.getMessage() for record in caplog.records if "Overall training speed" in record.getMessage())
    assert summary.startswith("Overall training speed: 2 iterations timed in ")
    assert summary.endswith("; 4 trained, the first 2 not timed: warm-up)")


def test_a_training_run_records_every_evaluation_in_all_three_files(vcm_root, tmp_path):  # noqa: F811
    """tools/train_net.py on tiny.yml, its log period falling on every epoch end (as vcm.yml's)."""
    process = train_net(vcm_root, tmp_path, "SOLVER.MAX_EPOCH", "3", "SOLVER.ITERS_PER_EPOCH", "2",
                        "SOLVER.LOG_PERIOD", "2", "TEST.EVAL_PERIOD", "2", "SEED", "0")
    assert process.returncode == 0, process.stderr[-3000:]
    in_metrics = {line["iteration"]: line["IR->VIS/Rank-1"] for line in metrics_lines(tmp_path)
                  if "IR->VIS/Rank-1" in line}
    assert sorted(in_metrics) == [3, 6]  # after epoch 1 (its last iteration), and after training
    assert dict(tensorboard_scalars(tmp_path)["IR->VIS/Rank-1"]) == pytest.approx(in_metrics)
    results = json.loads((tmp_path / "eval_results.json").read_text())["VCM"]
    history = {entry["iteration"]: entry["directions"]["IR->VIS"]["Rank-1"] for entry in results["history"]}
    assert history == pytest.approx(in_metrics)
    assert [entry["epoch"] for entry in results["history"]] == [1, 2]
    assert (results["iteration"], results["directions"]["IR->VIS"]["Rank-1"]) == (6, pytest.approx(in_metrics[6]))

    accuracies = [line["cls_accuracy"] for line in metrics_lines(tmp_path) if "cls_accuracy" in line]
    assert len(accuracies) == 3 and all(0 <= accuracy <= 1 for accuracy in accuracies)  # iterations 1, 3 and 5
    log = (tmp_path / "log.txt").read_text()
    assert "Seed 0 (SEED 0 + process rank 0) for python, numpy and torch" in log
    assert "generated random seed" not in log + process.stdout
    assert "Model:\nVLD(" in log and "VLD(" not in process.stdout
    assert "Model: VLD (backbone STPBackbone, heads IMLPHead): " in process.stdout


class Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_config_yaml_records_the_measured_backbone_width_once(tmp_path):
    train_net_tool = load_tool("train_net")
    args = train_net_tool.parse_args(["--config-file", "configs/VideoBaseline/demo_r18.yml",
                                      "MODEL.BACKBONE.FEAT_DIM", "2048", "OUTPUT_DIR", str(tmp_path)])
    width_logger, seen = logging.getLogger("fastreid_vld.modeling.backbones.width"), Messages()
    width_logger.addHandler(seen)  # the tool's setup stops "fastreid_vld" from propagating to pytest's handler
    try:
        cfg = train_net_tool.setup(args)
        VideoBaseline(cfg)  # built from the config: no second measurement, no second line
    finally:
        width_logger.removeHandler(seen)
    assert cfg.MODEL.BACKBONE.FEAT_DIM == 512
    assert "FEAT_DIM: 512" in (tmp_path / "config.yaml").read_text()
    assert [message for message in seen.messages if "replaced by" in message] == [
        "MODEL.BACKBONE.FEAT_DIM 2048 replaced by 512, the width of build_resnet_backbone (depth 18x) measured "
        "on one frame"]


def test_an_error_is_printed_once_and_kept_in_log_txt(tmp_path):
    process = run_python("tools/train_net.py", "--config-file", "configs/VLD/tiny.yml", "DATASETS.ROOT",
                         str(tmp_path / "missing"), "OUTPUT_DIR", str(tmp_path / "out"))
    assert process.returncode == 1
    console = process.stdout + process.stderr
    error = process.stderr.strip()
    assert error.startswith(f"error: {tmp_path}/missing/HITSZ-VCM: expected the HITSZ-VCM folder")
    assert console.count("HITSZ-VCM folder") == 1
    assert (tmp_path / "out" / "log.txt").read_text().rstrip().endswith(f"fastreid_vld ERROR: {error}")


def test_measuring_the_width_leaves_the_random_state_to_the_run():
    cfg = merge_config(add_vld_config(get_cfg()), "configs/VideoBaseline/demo_r18.yml",
                       ["MODEL.BACKBONE.FEAT_DIM", "7"])
    before = torch.get_rng_state()
    resolve_backbone_width(cfg)
    assert cfg.MODEL.BACKBONE.FEAT_DIM == 512 and torch.equal(torch.get_rng_state(), before)

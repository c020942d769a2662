"""The tiny VLD trained by VLDTrainer (fast-reid's trainer, hooks, checkpointer, evaluator) on a
synthetic HITSZ-VCM-layout set: the optimizer and the epoch schedule inside the real training loop."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import run_python
from fastreid.engine.train_loop import HookBase
from fastreid.utils.events import EventStorage
from tiny_vld import tiny_cfg

from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
from fastreid_vld.engine.hooks import BestCheckpointer
from fastreid_vld.engine.trainer import VLDTrainer


@pytest.mark.slow
def test_vld_trains_with_the_epoch_schedule_and_checkpoints(tmp_path):
    write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=4, test_ids=2, cameras=2, min_frames=6, max_frames=8))
    base_lr, floor = 3e-4, 3e-6
    cfg = tiny_cfg("DATASETS.NAMES", ("VCM",), "DATASETS.TESTS", ("VCM",), "DATASETS.ROOT", str(tmp_path),
                   "DATASETS.VCM.MIN_FRAMES", 1, "OUTPUT_DIR", str(tmp_path / "out"), "SOLVER.MAX_EPOCH", 3,
                   "SOLVER.WARMUP_EPOCHS", 1, "SOLVER.WARMUP_FACTOR", 0.1, "SOLVER.BASE_LR", base_lr,
                   "SOLVER.ETA_MIN_LR", floor, "SOLVER.CHECKPOINT_PERIOD", 3, "TEST.EVAL_PERIOD", 3)
    (tmp_path / "out").mkdir()
    torch.manual_seed(0)
    trainer = VLDTrainer(cfg)
    assert cfg.MODEL.HEADS.NUM_CLASSES == 4  # fast-reid set it from the training set
    trainer.resume_or_load(resume=False)
    lrs = []
    trainer.register_hooks([_RecordLR(lrs)])
    results = trainer.train()
    cosine = [floor + (base_lr - floor) * 0.5 * (1 + math.cos(math.pi * e / 3)) for e in (1, 2)]
    assert lrs == pytest.approx([0.1 * base_lr] * 2 + [cosine[0]] * 2 + [cosine[1]] * 2)  # 2 iterations an epoch
    assert (tmp_path / "out" / "model_final.pth").is_file()
    assert "IR->VIS/Rank-1" in results, results
    assert sum(isinstance(hook, BestCheckpointer) for hook in trainer._hooks) == 1
    best = torch.load(tmp_path / "out" / "model_best.pth", weights_only=True)
    assert (best["epoch"], best["metric"]) == (2, results["metric"])


class _RecordLR(HookBase):
    """Records the learning rate of the STH hub tokens (a BASE_LR parameter) at every iteration."""

    def __init__(self, lrs: list[float]) -> None:
        self.lrs = lrs

    def before_step(self) -> None:
        (group,) = [g for g in self.trainer.optimizer.param_groups if "backbone.hub" in g["names"]]
        self.lrs.append(group["lr"])


@pytest.mark.slow
def test_train_net_with_a_seed_repeats_its_losses_exactly(tmp_path):
    write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=4, test_ids=2, cameras=2, min_frames=6, max_frames=8))

    def losses_and_scores(seed: int, name: str) -> tuple[list[float], dict]:
        out = tmp_path / name
        result = run_python("tools/train_net.py", "--config-file", "configs/VLD/tiny.yml", "DATASETS.NAMES", "('VCM',)",
                            "DATASETS.TESTS", "('VCM',)", "DATASETS.ROOT", str(tmp_path), "DATASETS.VCM.MIN_FRAMES",
                            "1", "SOLVER.MAX_EPOCH", "1", "SOLVER.ITERS_PER_EPOCH", "3", "SEED", str(seed),
                            "OUTPUT_DIR", str(out))
        assert result.returncode == 0, result.stderr[-3000:]
        log = (out / "log.txt").read_text()  # the plugin's tables are in the run's log
        assert "=> Loaded VCM" in log and "| IR->VIS " in log and "metric (model selection): IR->VIS/Rank-1" in log
        records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
        scores = json.loads((out / "eval_results.json").read_text())["VCM"]["directions"]
        return [record["total_loss"] for record in records if "total_loss" in record], scores

    first = losses_and_scores(7, "first")
    assert first[0], "metrics.json holds the training losses"
    assert losses_and_scores(7, "again") == first
    assert losses_and_scores(8, "other")[0] != first[0]


class _RecordSaves:
    """Stands in for fast-reid's Checkpointer: records what would be saved."""

    def __init__(self) -> None:
        self.saved: list[tuple[str, int, float]] = []
        self.best_metrics: list[float] = []  # what each checkpoint carries for a resume

    def save(self, name: str, epoch: int, metric: float, best_metric: float) -> None:
        self.saved.append((name, epoch, metric))
        self.best_metrics.append(best_metric)


def run_checkpointer(metrics: dict[int, float], max_epoch: int, checkpoint_period: int,
                     after_train_metric: float | None = None) -> list[tuple[str, int, float]]:
    """BestCheckpointer in fast-reid's event storage through ``max_epoch`` epochs of 10 iterations,
    with the model-selection metric put by an evaluation after the epochs in ``metrics`` (and
    after training, as EvalHook does when MAX_EPOCH is not a multiple of TEST.EVAL_PERIOD)."""
    hook = BestCheckpointer(_RecordSaves(), checkpoint_period)
    hook.trainer = type("Trainer", (), {"max_epoch": max_epoch, "cfg": tiny_cfg(), "epoch": 0})()
    with EventStorage(0) as storage:
        hook.before_train()
        for epoch in range(max_epoch):
            storage.iter, hook.trainer.epoch = 10 * epoch + 9, epoch
            if epoch in metrics:
                storage.put_scalar("metric", metrics[epoch], smoothing_hint=False)
            hook.after_epoch()
        storage.iter = 10 * max_epoch
        if after_train_metric is not None:
            storage.put_scalar("metric", after_train_metric, smoothing_hint=False)
        hook.after_train()
    return hook.checkpointer.saved


def test_model_best_is_kept_after_every_evaluation_and_ties_go_to_the_later_epoch():
    """As the official code (``rank1 >= best``): evaluated after epochs 1, 3, 5 with 50, 60, 60,
    model_best is the epoch-5 model (fast-reid's own hook keeps epoch 3's)."""
    saved = run_checkpointer({1: 50.0, 3: 60.0, 5: 60.0}, max_epoch=6, checkpoint_period=2)
    assert [s for s in saved if s[0] == "model_best"] == [("model_best", 1, 50.0), ("model_best", 3, 60.0),
                                                          ("model_best", 5, 60.0)]
    assert [s[0] for s in saved if s[0] != "model_best"] == ["model_0001", "model_0003", "model_final"]


def test_model_best_reads_only_a_fresh_evaluation():
    """Evaluations after epochs 2 and 5 (TEST.EVAL_PERIOD 3), checkpoints after 1, 3, 5: a
    checkpoint epoch without an evaluation of its own does not take the last metric for its model;
    a lower metric never replaces model_best; an evaluation after training is considered."""
    saved = run_checkpointer({2: 40.0, 5: 30.0}, max_epoch=7, checkpoint_period=2, after_train_metric=45.0)
    assert [s for s in saved if s[0] == "model_best"] == [("model_best", 2, 40.0), ("model_best", 6, 45.0)]
    assert ("model_0003", 3, 40.0) in saved  # periodic checkpoints still record the latest metric

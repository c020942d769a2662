"""The tiny VLD trained by VLDTrainer (fast-reid's trainer, hooks, checkpointer, evaluator) on a
synthetic HITSZ-VCM-layout set: the optimizer and the epoch schedule inside the real training loop."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import run_python
from fastreid.engine.train_loop import HookBase
from tiny_vld import tiny_cfg

from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
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
        records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
        scores = json.loads((out / "eval_results.json").read_text())["VCM"]["directions"]
        return [record["total_loss"] for record in records if "total_loss" in record], scores

    first = losses_and_scores(7, "first")
    assert first[0], "metrics.json holds the training losses"
    assert losses_and_scores(7, "again") == first
    assert losses_and_scores(8, "other")[0] != first[0]

"""VLD's optimizer and schedule (official recipe), through fast-reid's SOLVER keys.

AdamW at SOLVER.BASE_LR (2.5e-5) and SOLVER.WEIGHT_DECAY (1e-4); biases at SOLVER.BIAS_LR_FACTOR
(25x), classifiers and prompt learner at SOLVER.HEADS_LR_FACTOR (25x); the frozen text tower is
left out. Per epoch: linear warm-up over SOLVER.VLD_WARMUP_EPOCHS (3) from
SOLVER.VLD_WARMUP_FACTOR x each group's lr, then cosine to SOLVER.VLD_MIN_LR_FACTOR x BASE_LR
over SOLVER.MAX_EPOCH (24) epochs (timm's CosineLRScheduler as the official code uses it).
"""

from __future__ import annotations

import math

import torch
from fastreid.config import CfgNode
from torch import nn

FAST_GROUPS = ("classifier", "prompt_learner")  # parameter names at HEADS_LR_FACTOR


def build_vld_optimizer(cfg: CfgNode, model: nn.Module) -> tuple[torch.optim.Optimizer, None]:
    solver = cfg.SOLVER
    groups = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        lr = solver.BASE_LR
        if "bias" in name:
            lr = solver.BASE_LR * solver.BIAS_LR_FACTOR
        if any(group in name for group in FAST_GROUPS):
            lr = solver.BASE_LR * solver.HEADS_LR_FACTOR
        groups.append({"params": [parameter], "lr": lr, "initial_lr": lr, "weight_decay": solver.WEIGHT_DECAY,
                       "name": name})
    return torch.optim.AdamW(groups, lr=solver.BASE_LR, weight_decay=solver.WEIGHT_DECAY), None


class WarmupCosineByEpoch(torch.optim.lr_scheduler.LRScheduler):
    """lr of epoch e: warm-up ``init + e * (lr_g - init) / warmup`` for e < warmup, else
    ``floor + (lr_g - floor) (1 + cos(pi e / epochs)) / 2``; ``init`` and ``floor`` are absolute
    (the official recipe's 0.01 x BASE_LR for every group). Stepped once per epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, epochs: int, warmup_epochs: int, warmup_lr: float,
                 min_lr: float) -> None:
        self.epochs, self.warmup_epochs, self.warmup_lr, self.min_lr = epochs, warmup_epochs, warmup_lr, min_lr
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        epoch = self.last_epoch
        if epoch < self.warmup_epochs:
            return [self.warmup_lr + epoch * (base - self.warmup_lr) / self.warmup_epochs for base in self.base_lrs]
        return [self.min_lr + 0.5 * (base - self.min_lr) * (1 + math.cos(math.pi * epoch / self.epochs))
                for base in self.base_lrs]


def build_vld_lr_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer) -> dict:
    solver = cfg.SOLVER
    return {"lr_sched": WarmupCosineByEpoch(optimizer, solver.MAX_EPOCH, solver.VLD_WARMUP_EPOCHS,
                                            solver.VLD_WARMUP_FACTOR * solver.BASE_LR,
                                            solver.VLD_MIN_LR_FACTOR * solver.BASE_LR)}

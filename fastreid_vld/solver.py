"""VLD's optimizer and learning-rate schedule (the official recipe), through fast-reid's SOLVER keys.

Optimizer (:func:`build_vld_optimizer`): ``SOLVER.OPT`` (AdamW) at ``SOLVER.BASE_LR`` (2.5e-5) and
``SOLVER.WEIGHT_DECAY`` (1e-4). As the official code: every parameter whose name contains "bias"
(MultiheadAttention's ``in_proj_bias`` too) at ``SOLVER.BIAS_LR_FACTOR`` x (25) with
``SOLVER.WEIGHT_DECAY_BIAS``; every trainable parameter of the head (classifiers, prompt context
vectors, a CNN backbone's projection) at ``SOLVER.HEADS_LR_FACTOR`` x (25); normalisation layers at
``SOLVER.WEIGHT_DECAY_NORM``; frozen parameters (the CLIP text tower) left out. fast-reid's
gradient clipping (``SOLVER.CLIP_GRADIENTS``) applies.

Schedule (``SOLVER.SCHED: WarmupCosineEpochLR``, :class:`WarmupCosineEpochLR`): set once per
epoch, as the official timm ``CosineLRScheduler``: linear warm-up over ``SOLVER.WARMUP_EPOCHS``
(3) from ``SOLVER.WARMUP_FACTOR`` x BASE_LR (0.01 x, the same start for every group), then
``ETA_MIN_LR + (lr_g - ETA_MIN_LR)(1 + cos(pi e / MAX_EPOCH)) / 2`` (e counted from 0, not from
the end of the warm-up) down to ``SOLVER.ETA_MIN_LR`` (0.01 x BASE_LR = 2.5e-7) over
``SOLVER.MAX_EPOCH`` (24) epochs.
"""

from __future__ import annotations

import math

import torch
from fastreid.config import CfgNode
from fastreid.solver.build import maybe_add_gradient_clipping
from torch import nn

__all__ = ["VLD_SCHEDULER", "WarmupCosineEpochLR", "build_vld_lr_scheduler", "build_vld_optimizer",
           "vld_param_groups"]

VLD_SCHEDULER = "WarmupCosineEpochLR"
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def vld_param_groups(cfg: CfgNode, model: nn.Module) -> list[dict]:
    """Trainable parameters grouped by (lr, weight decay), each group with the ``names`` it holds."""
    solver = cfg.SOLVER
    model = getattr(model, "module", model)  # DistributedDataParallel
    norm_params = {id(p) for m in model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters(recurse=False)}
    groups: dict[tuple[float, float], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        lr, weight_decay = solver.BASE_LR, solver.WEIGHT_DECAY
        if id(parameter) in norm_params:
            weight_decay = solver.WEIGHT_DECAY_NORM
        if "bias" in name:
            lr, weight_decay = solver.BASE_LR * solver.BIAS_LR_FACTOR, solver.WEIGHT_DECAY_BIAS
        if name.startswith("heads."):
            lr = solver.BASE_LR * solver.HEADS_LR_FACTOR
        group = groups.setdefault((lr, weight_decay), {"params": [], "names": [], "lr": lr,
                                                       "weight_decay": weight_decay})
        group["params"].append(parameter)
        group["names"].append(name)
    return list(groups.values())


def build_vld_optimizer(cfg: CfgNode, model: nn.Module) -> tuple[torch.optim.Optimizer, None]:
    """(optimizer, None): fast-reid's trainer takes a parameter wrapper second, unused here."""
    optimizer_class = maybe_add_gradient_clipping(cfg, getattr(torch.optim, cfg.SOLVER.OPT))
    kwargs = {"momentum": cfg.SOLVER.MOMENTUM, "nesterov": cfg.SOLVER.NESTEROV} if cfg.SOLVER.OPT == "SGD" else {}
    return optimizer_class(vld_param_groups(cfg, model), lr=cfg.SOLVER.BASE_LR, **kwargs), None


class WarmupCosineEpochLR(torch.optim.lr_scheduler.LRScheduler):
    """Per-epoch learning rate of group g at epoch e (``step()`` once per epoch):
    ``warmup_lr + e (lr_g - warmup_lr) / warmup_epochs`` for e < warmup_epochs, else
    ``min_lr + (lr_g - min_lr)(1 + cos(pi e / epochs)) / 2``; ``warmup_lr`` and ``min_lr`` are
    absolute, the same for every group (the official recipe)."""

    def __init__(self, optimizer: torch.optim.Optimizer, epochs: int, warmup_epochs: int, warmup_lr: float,
                 min_lr: float, last_epoch: int = -1) -> None:
        self.epochs, self.warmup_epochs = epochs, warmup_epochs
        self.warmup_lr, self.min_lr = warmup_lr, min_lr
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        epoch = self.last_epoch
        if epoch < self.warmup_epochs:
            return [self.warmup_lr + epoch * (base - self.warmup_lr) / self.warmup_epochs for base in self.base_lrs]
        if epoch >= self.epochs:
            return [self.min_lr for _ in self.base_lrs]
        cosine = 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
        return [self.min_lr + (base - self.min_lr) * cosine for base in self.base_lrs]


def build_vld_lr_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer) -> dict[str, WarmupCosineEpochLR]:
    """fast-reid's scheduler dict: ``lr_sched`` is stepped by its LRScheduler hook after every epoch."""
    solver = cfg.SOLVER
    if solver.WARMUP_ITERS:
        raise ValueError(f"SOLVER.SCHED {VLD_SCHEDULER} warms up by epoch (SOLVER.WARMUP_EPOCHS): "
                         f"set SOLVER.WARMUP_ITERS 0 (got {solver.WARMUP_ITERS})")
    return {"lr_sched": WarmupCosineEpochLR(optimizer, solver.MAX_EPOCH, solver.WARMUP_EPOCHS,
                                            solver.WARMUP_FACTOR * solver.BASE_LR, solver.ETA_MIN_LR)}

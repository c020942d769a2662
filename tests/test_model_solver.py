"""VLD's optimizer groups and epoch schedule (the official recipe) through fast-reid's SOLVER keys."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_vld import tiny_cfg, tiny_model

from fastreid_vld.engine.trainer import VLDTrainer
from fastreid_vld.solver import WarmupCosineEpochLR

BASE_LR = 2.5e-5


def vld_cfg(*opts):
    """configs/VLD/tiny.yml with the official solver settings of Base-VLD.yml restored."""
    return tiny_cfg("SOLVER.BASE_LR", BASE_LR, "SOLVER.ETA_MIN_LR", 0.01 * BASE_LR, "SOLVER.MAX_EPOCH", 24,
                    "SOLVER.WARMUP_EPOCHS", 3, *opts)


def group_of(optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    return {name: group for group in optimizer.param_groups for name in group["names"]}


def test_official_parameter_groups():
    cfg = vld_cfg("SOLVER.WEIGHT_DECAY_NORM", 3e-4, "SOLVER.WEIGHT_DECAY_BIAS", 2e-4)
    model = tiny_model()
    optimizer, wrapper = VLDTrainer.build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW) and wrapper is None
    groups = group_of(optimizer)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(groups) == trainable and not any("text_encoder" in n for n in groups)
    fast, base = 25 * BASE_LR, BASE_LR
    expected = {  # name: (lr, weight decay)
        "backbone.visual.conv1.weight": (base, 1e-4),
        "backbone.hub": (base, 1e-4),
        "backbone.sta.in_proj_weight": (base, 1e-4),
        "backbone.sta.in_proj_bias": (fast, 2e-4),  # "bias" in the name, as the official rule
        "backbone.visual.transformer.resblocks.0.attn.in_proj_bias": (fast, 2e-4),
        "backbone.visual.transformer.resblocks.0.mlp.c_fc.bias": (fast, 2e-4),
        "backbone.visual.ln_post.weight": (base, 3e-4),
        "heads.classifier.linear.weight": (fast, 1e-4),
        "heads.classifier_sta.bn.weight": (fast, 3e-4),
        "heads.classifier_proj.bn.bias": (fast, 2e-4),
        "heads.prompt_learner.context": (fast, 1e-4),
    }
    for name, (lr, weight_decay) in expected.items():
        assert groups[name]["lr"] == pytest.approx(lr) and groups[name]["weight_decay"] == weight_decay, name
    assert len(optimizer.param_groups) < 8  # grouped by (lr, weight decay), not one group per tensor


def official_lr(lr: float, epoch: int) -> float:
    """timm CosineLRScheduler(t_initial=24, lr_min=0.01 lr, warmup_t=3, warmup_lr_init=0.01 lr) as the
    official code builds it, for a group whose lr is ``lr``."""
    floor = start = 0.01 * BASE_LR
    if epoch < 3:
        return start + epoch * (lr - start) / 3
    return floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * epoch / 24))


def test_schedule_follows_the_official_epoch_values():
    cfg = vld_cfg()
    optimizer, _ = VLDTrainer.build_optimizer(cfg, tiny_model())
    scheduler = VLDTrainer.build_lr_scheduler(cfg, optimizer, iters_per_epoch=200)["lr_sched"]
    assert isinstance(scheduler, WarmupCosineEpochLR)
    groups = group_of(optimizer)
    for epoch in range(24):
        for name in ("backbone.hub", "heads.prompt_learner.context"):
            lr = BASE_LR * (25 if name.startswith("heads") else 1)
            assert groups[name]["lr"] == pytest.approx(official_lr(lr, epoch), rel=1e-9), (name, epoch)
        scheduler.step()
    assert groups["backbone.hub"]["lr"] == pytest.approx(0.01 * BASE_LR)  # past the end: the floor
    # warm-up starts every group at the same 0.01 x BASE_LR; the cosine floor is the same for all
    assert official_lr(25 * BASE_LR, 0) == official_lr(BASE_LR, 0) == pytest.approx(2.5e-7)


def test_schedule_resumes_from_its_state():
    cfg = vld_cfg()
    optimizer, _ = VLDTrainer.build_optimizer(cfg, tiny_model())
    scheduler = VLDTrainer.build_lr_scheduler(cfg, optimizer, 200)["lr_sched"]
    for _ in range(5):
        scheduler.step()
    state = scheduler.state_dict()
    resumed_optimizer, _ = VLDTrainer.build_optimizer(cfg, tiny_model())
    resumed = VLDTrainer.build_lr_scheduler(cfg, resumed_optimizer, 200)["lr_sched"]
    resumed.load_state_dict(state)
    scheduler.step()
    resumed.step()
    assert resumed.get_last_lr() == pytest.approx(scheduler.get_last_lr())
    assert scheduler.get_last_lr()[0] in (pytest.approx(official_lr(BASE_LR, 6)),
                                          pytest.approx(official_lr(25 * BASE_LR, 6)))


def test_iteration_warmup_is_a_config_error():
    cfg = vld_cfg("SOLVER.WARMUP_ITERS", 100)
    optimizer, _ = VLDTrainer.build_optimizer(cfg, tiny_model())
    with pytest.raises(ValueError, match="set SOLVER.WARMUP_ITERS 0"):
        VLDTrainer.build_lr_scheduler(cfg, optimizer, 200)


def test_other_schedules_and_models_keep_fastreid_builders():
    cfg = vld_cfg("SOLVER.SCHED", "CosineAnnealingLR")
    optimizer, _ = VLDTrainer.build_optimizer(cfg, tiny_model())
    scheduler = VLDTrainer.build_lr_scheduler(cfg, optimizer, 200)
    assert isinstance(scheduler["lr_sched"], torch.optim.lr_scheduler.CosineAnnealingLR)
    cfg = vld_cfg("MODEL.META_ARCHITECTURE", "Baseline")
    _, wrapper = VLDTrainer.build_optimizer(cfg, torch.nn.Linear(2, 2))
    assert wrapper is not None  # fast-reid's ContiguousParams

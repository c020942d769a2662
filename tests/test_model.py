"""The VLD model on the tiny random-CLIP config (configs/VLD/tiny.yml)."""

from __future__ import annotations

import pytest
import torch
from fastreid.config import get_cfg
from fastreid.modeling import build_model

from fastreid_vld import add_vld_config
from fastreid_vld.solver import build_vld_lr_scheduler, build_vld_optimizer

B, T, H, W = 4, 6, 64, 32


def tiny_cfg(*opts):
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_file("configs/VLD/tiny.yml")
    cfg.merge_from_list(["MODEL.HEADS.NUM_CLASSES", 3, *opts])
    return cfg


def batch(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"images": torch.rand(B, T, 3, H, W, generator=generator) * 255, "targets": torch.tensor([0, 1, 0, 1]),
            "modalities": torch.tensor([0, 0, 1, 1])}


def test_output_shapes():
    model = build_model(tiny_cfg())
    model.eval()
    frames = torch.rand(B * T, 3, H, W)
    out = model.backbone(frames)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "cls_penultimate": (B * T, 96), "cls": (B * T, 96), "cls_proj": (B * T, 64), "sta": (B * T, 96),
        "sta_proj": (B * T, 64)}
    with torch.no_grad():
        assert model({"images": batch()["images"]}).shape == (B, 2 * 96)
    model.train()
    outputs = model.heads(model.backbone(frames))
    assert outputs["text_logits"].shape == (B, 3) and outputs["sta_logits"].shape == (B, 3)
    assert outputs["text_features"].shape == (3, 64)


@pytest.mark.parametrize("sth_start, moves", [(2, True), (-1, False)])
def test_sth_moves_information_across_frames(sth_start, moves):
    model = build_model(tiny_cfg("MODEL.STP.STH_START_LAYER", sth_start, "MODEL.STP.STA", sth_start >= 0))
    model.eval()
    frames = torch.rand(T, 3, H, W)  # one tracklet
    changed = frames.clone()
    changed[0] = torch.rand(3, H, W)
    with torch.no_grad():
        before, after = model.backbone(frames)["cls"], model.backbone(changed)["cls"]
    assert not torch.allclose(before[0], after[0])
    assert (not torch.allclose(before[3], after[3], atol=1e-6)) == moves


def test_sta_without_sth_is_a_config_error():
    with pytest.raises(ValueError, match="STH_START_LAYER"):
        build_model(tiny_cfg("MODEL.STP.STH_START_LAYER", -1))


def test_text_tower_is_frozen_and_prompts_learn():
    model = build_model(tiny_cfg())
    model.train()
    sum(model(batch()).values()).backward()
    assert all(p.grad is None and not p.requires_grad for p in model.heads.text_encoder.parameters())
    assert model.heads.prompt_learner.context.grad.abs().sum() > 0
    optimizer, _ = build_vld_optimizer(tiny_cfg(), model)
    names = {g["name"] for g in optimizer.param_groups}
    assert not any("text_encoder" in n for n in names)
    fast = {g["name"] for g in optimizer.param_groups if g["lr"] == pytest.approx(25 * 0.0003)}
    assert "heads.prompt_learner.context" in fast and "heads.classifier.linear.weight" in fast
    assert "backbone.visual.conv1.weight" not in fast and "backbone.hub" not in fast


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = build_model(cfg)
    model.train()
    optimizer, _ = build_vld_optimizer(cfg, model)
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"]
    fixed = batch()
    losses = []
    for _ in range(8):
        loss = sum(model(fixed).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_schedule_warms_up_then_follows_the_cosine():
    cfg = tiny_cfg("SOLVER.MAX_EPOCH", 24, "SOLVER.BASE_LR", 1.0)
    model = torch.nn.Linear(2, 2)
    optimizer, _ = build_vld_optimizer(cfg, model)
    scheduler = build_vld_lr_scheduler(cfg, optimizer)["lr_sched"]
    weight_lrs, bias_lrs = [], []
    for _ in range(24):
        weight_lrs.append(optimizer.param_groups[0]["lr"])
        bias_lrs.append(optimizer.param_groups[1]["lr"])
        scheduler.step()
    assert weight_lrs[:3] == pytest.approx([0.01, 0.01 + 0.99 / 3, 0.01 + 2 * 0.99 / 3])
    assert bias_lrs[0] == pytest.approx(0.01)  # the warm-up starts from 0.01 x BASE_LR for every group
    assert weight_lrs[3] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + torch.cos(torch.tensor(3.14159265 * 3 / 24)).item()))
    assert weight_lrs[12] == pytest.approx(0.505) and min(weight_lrs) >= 0.01


def test_resnet_backbone_with_the_imlp_head_trains():
    cfg = tiny_cfg("MODEL.BACKBONE.NAME", "build_resnet_backbone", "MODEL.BACKBONE.DEPTH", "18x",
                   "MODEL.BACKBONE.FEAT_DIM", 512, "MODEL.BACKBONE.NORM", "BN", "MODEL.STP.STA", False)
    model = build_model(cfg)
    model.train()
    optimizer, _ = build_vld_optimizer(cfg, model)
    losses = model(batch())
    assert set(losses) == {"loss_cls", "loss_cls_proj", "loss_text", "loss_tri", "loss_tri_proj"}
    for _ in range(2):
        optimizer.zero_grad()
        sum(model(batch()).values()).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert model({"images": batch()["images"]}).shape == (B, 512)


def test_r50_config_builds_the_imlp_head_on_fastreid_resnet():
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_file("configs/VLD/r50_imlp_vcm.yml")
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_backbone" and cfg.MODEL.HEADS.NAME == "build_imlp_head"

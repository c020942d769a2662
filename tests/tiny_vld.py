"""The tiny random-CLIP VLD (configs/VLD/tiny.yml) and random batches in the data pipeline's format."""

from __future__ import annotations

import torch
from conftest import REPO
from fastreid.config import CfgNode, get_cfg
from fastreid.modeling import build_model

from fastreid_vld import add_vld_config

NUM_CLASSES = 4
B, T, H, W = 4, 6, 64, 32       # tracklets, frames (INPUT.SEQ_LEN), INPUT.SIZE_TRAIN
WIDTH, EMBED, TEXT_WIDTH = 64, 32, 32  # configs/VLD/clip_tiny.json


def tiny_cfg(*opts, config: str = "configs/VLD/tiny.yml") -> CfgNode:
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_file(str(REPO / config))
    cfg.merge_from_list(["MODEL.HEADS.NUM_CLASSES", NUM_CLASSES, *opts])
    return cfg


def tiny_model(*opts, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(tiny_cfg(*opts))


def random_batch(seed: int = 0, tracklets: int = B) -> dict:
    """Visible block then infrared block, the same identities in the same order."""
    generator = torch.Generator().manual_seed(seed)
    half = tracklets // 2
    pids = torch.arange(half) % NUM_CLASSES
    return {"images": torch.rand(tracklets, T, 3, H, W, generator=generator) * 255,
            "targets": torch.cat([pids, pids]),
            "camids": torch.zeros(tracklets, dtype=torch.int64),
            "modalities": torch.cat([torch.zeros(half, dtype=torch.int64), torch.ones(half, dtype=torch.int64)])}


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict,
                steps: int) -> tuple[dict, list[float]]:
    """``steps`` optimizer steps of ``model`` (in training mode) on one fixed batch: (the last loss
    dict, the total loss of every step)."""
    totals = []
    for _ in range(steps):
        losses = model(batch)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    return losses, totals

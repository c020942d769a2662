"""VLDTrainer: fast-reid's DefaultTrainer with only the builders that must differ."""

from __future__ import annotations

import torch
from fastreid.config import CfgNode
from fastreid.data.build import _test_loader_from_config, build_reid_test_loader
from fastreid.engine import DefaultTrainer


class VLDTrainer(DefaultTrainer):
    """fast-reid's trainer (hooks, checkpointer, writers, EvalHook, DDP), plus:

    - ``SOLVER.AMP.DTYPE`` chooses the autocast dtype of mixed-precision steps;
    - test loaders use ``DATALOADER.NUM_WORKERS`` (fast-reid's always start 4 workers).
    """

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        if cfg.SOLVER.AMP.ENABLED:
            self._trainer.amp_dtype = getattr(torch, cfg.SOLVER.AMP.DTYPE)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        loader_args = _test_loader_from_config(cfg, dataset_name=dataset_name)
        return build_reid_test_loader(**loader_args, num_workers=cfg.DATALOADER.NUM_WORKERS)

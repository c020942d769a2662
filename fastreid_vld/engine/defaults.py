"""What every tool shares: the CPU when CUDA is missing, as many loader workers as CPUs, the config
of an inference tool (extract_features, search, export), and bad input as one ``error:`` line."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
from fastreid.config import CfgNode, get_cfg
from fastreid.utils.logger import setup_logger

from ..checkpoint import CheckpointReadError
from ..config import ConfigError, add_vld_config, check_config, merge_config
from ..data.build import FrameReadError
from ..data.datasets import DatasetFormatError
from ..data.tracklet_folders import TrackletFolderError
from ..modeling.backbones.width import resolve_backbone_width
from .export import ExportError
from .feature_files import FeatureFileError

logger = logging.getLogger("fastreid_vld")

__all__ = ["INPUT_ERRORS", "add_model_arguments", "available_cpus", "cap_workers", "exits_on_input_errors",
           "fall_back_to_cpu", "inference_config", "log_to_files_only"]

#: Bad input the user can fix (and an export that fails its check): reported as one line naming the
#: file or key, not as a traceback.
INPUT_ERRORS = (DatasetFormatError, FrameReadError, FileNotFoundError, CheckpointReadError, ConfigError,
                TrackletFolderError, FeatureFileError, ExportError)


def exits_on_input_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """A tool's ``main`` whose :data:`INPUT_ERRORS` end the process with one ``error:`` line."""

    @functools.wraps(main)
    def checked(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except INPUT_ERRORS as error:
            raise SystemExit(f"error: {error}") from None

    return checked


def log_to_files_only(logger_with_handlers: logging.Logger, message: str, level: int = logging.INFO) -> None:
    """``message`` to the handlers of ``logger_with_handlers`` that write files (fast-reid's
    setup_logger: log.txt), not to those writing the console (stdout, stderr); none before the
    logger is set up."""
    record = logger_with_handlers.makeRecord(logger_with_handlers.name, level, "", 0, message, None, None)
    for handler in logger_with_handlers.handlers:
        if getattr(handler, "stream", None) not in (sys.stdout, sys.stderr):
            handler.handle(record)


def fall_back_to_cpu(cfg: CfgNode) -> None:
    """MODEL.DEVICE cuda without CUDA: the CPU, and full precision (float16 autocast is slow there)."""
    if not cfg.MODEL.DEVICE.startswith("cuda") or torch.cuda.is_available():
        return
    logger.warning("MODEL.DEVICE=%s but CUDA is not available: using cpu", cfg.MODEL.DEVICE)
    cfg.MODEL.DEVICE = "cpu"
    if cfg.SOLVER.AMP.ENABLED:
        logger.warning("SOLVER.AMP.ENABLED turned off on the CPU fallback (set MODEL.DEVICE cpu to keep %s "
                       "autocast on the CPU)", cfg.SOLVER.AMP.DTYPE)
        cfg.SOLVER.AMP.ENABLED = False


def available_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cap_workers(cfg: CfgNode) -> None:
    """DATALOADER.NUM_WORKERS above the CPUs this process may use: as many workers as CPUs (more only
    compete for them; PyTorch warns), with a log line."""
    cpus = available_cpus()
    if cfg.DATALOADER.NUM_WORKERS > cpus:
        logger.info("DATALOADER.NUM_WORKERS %d lowered to %d, the CPUs this machine gives the run",
                    cfg.DATALOADER.NUM_WORKERS, cpus)
        cfg.DATALOADER.NUM_WORKERS = cpus


def add_model_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A tool's model: ``--config-file`` and the trailing ``KEY VALUE`` overrides (MODEL.WEIGHTS ...)."""
    parser.add_argument("--config-file", required=True, help="the model's config (a training run's config.yaml)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides (MODEL.WEIGHTS ...)")
    return parser


def inference_config(config_file: str, opts: list[str]) -> CfgNode:
    """The checked config of an inference tool (``config_file`` with the ``KEY VALUE`` ``opts``), with
    the console loggers of fast-reid and the plugin set up; unfrozen (the predictor completes it)."""
    for name in ("fastreid", "fastreid_vld"):
        setup_logger(name=name)
    cfg = merge_config(add_vld_config(get_cfg()), config_file, opts)
    check_config(cfg)
    fall_back_to_cpu(cfg)
    cap_workers(cfg)
    resolve_backbone_width(cfg)
    return cfg

"""What every tool shares: the CPU when CUDA is missing, as many loader workers as CPUs, the config
of an inference tool (extract_features, search, export), and bad input as one ``error:`` line."""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from fastreid.config import CfgNode, get_cfg
from fastreid.utils.logger import setup_logger

from ..checkpoint import CheckpointReadError, FileWriteError
from ..config import ConfigError, add_vld_config, check_config, merge_config
from ..data.build import FrameReadError
from ..data.datasets import DatasetFormatError
from ..data.tracklet_folders import TrackletFolderError
from ..evaluation.metrics import NaNFeaturesError
from ..modeling.backbones.width import resolve_backbone_width
from .export import ExportError
from .feature_files import FeatureFileError

logger = logging.getLogger("fastreid_vld")

__all__ = ["INPUT_ERRORS", "READ_BY_INFERENCE", "TRAINING_KEYS", "OutputPathError", "add_model_arguments",
           "available_cpus", "cap_workers", "check_output_file", "exits_on_input_errors", "fall_back_to_cpu",
           "flush_denormals", "inference_config", "log_to_files_only", "output_errors", "quiet_failing_log_files",
           "run_error_line", "user_error_tracebacks_off_the_console", "warn_ignored_overrides"]


class OutputPathError(ValueError):
    """A file a tool is told to write (``--output``, ``--draw``) that this process cannot write."""


#: Bad input the user can fix (and an export that fails its check): reported as one line naming the
#: file or key, not as a traceback.
INPUT_ERRORS = (DatasetFormatError, FrameReadError, FileNotFoundError, CheckpointReadError, ConfigError,
                TrackletFolderError, FeatureFileError, ExportError, OutputPathError, NaNFeaturesError)


def exits_on_input_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """A tool's ``main`` whose :data:`INPUT_ERRORS` end the process with one ``error:`` line."""

    @functools.wraps(main)
    def checked(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except INPUT_ERRORS as error:
            raise SystemExit(f"error: {error}") from None

    return checked


def log_to_files_only(logger_with_handlers: logging.Logger, message: str, level: int = logging.INFO,
                      error: BaseException | None = None) -> None:
    """``message`` (with the traceback of ``error``, where given) to the handlers of ``logger_with_handlers``
    that write files (fast-reid's setup_logger: log.txt), not to those writing the console (stdout,
    stderr); none before the logger is set up."""
    exc_info = (type(error), error, error.__traceback__) if error is not None else None
    record = logger_with_handlers.makeRecord(logger_with_handlers.name, level, "", 0, message, None, exc_info)
    for handler in logger_with_handlers.handlers:
        if not _writes_the_console(handler):
            handler.handle(record)


def _writes_the_console(handler: logging.Handler) -> bool:
    return getattr(handler, "stream", None) in (sys.stdout, sys.stderr)


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


def flush_denormals(cfg: CfgNode) -> None:
    """FLUSH_DENORMAL for this process's CPU arithmetic: subnormal floats flushed to zero, or IEEE
    (``torch.set_flush_denormal``, process-wide; a log line where the CPU cannot flush)."""
    if not torch.set_flush_denormal(bool(cfg.FLUSH_DENORMAL)) and cfg.FLUSH_DENORMAL:
        logger.info("FLUSH_DENORMAL True: this CPU cannot flush subnormal floats to zero (no SSE3/FTZ); "
                    "IEEE arithmetic")


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
    flush_denormals(cfg)
    resolve_backbone_width(cfg)
    return cfg


def check_output_file(path: str | os.PathLike, flag: str, example: str = "") -> Path:
    """``path``, the file a tool's ``flag`` names, checked before the tool's work: not a folder (``example``: a file
    name to suggest in it), in a folder that is created where missing and that takes a new file; an
    :class:`OutputPathError` naming ``flag`` and ``path`` otherwise."""
    path = Path(path)
    if os.path.isdir(path):  # os.path: False, not an error, where a parent cannot be read
        suggestion = f", e.g. {path / example}" if example else ""
        raise OutputPathError(f"{flag} {path} is a folder: expected the path of the file to write{suggestion}")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        existing = next(parent for parent in (folder, *folder.parents) if os.path.exists(parent))
        reason = error.strerror or str(error) if os.path.isdir(existing) else f"{existing} is a file"
        raise OutputPathError(f"{flag} {path}: {folder}: expected a folder this run can create and write files in "
                              f"({reason})") from None
    return path


@contextlib.contextmanager
def output_errors(flag: str, path: str | os.PathLike) -> Iterator[None]:
    """The block that writes ``path``, the file of a tool's ``flag``, with its OSErrors (a full disk, a folder made
    read-only meanwhile) as one :class:`OutputPathError` naming both."""
    try:
        yield
    except OSError as error:
        raise OutputPathError(f"{flag} {path}: could not be written ({error.strerror or error})") from error


#: config keys (and groups) of training alone: an inference tool's features and files are the same whatever they say
TRAINING_KEYS = ("SOLVER", "DATALOADER", "DATASETS.NAMES", "DATASETS.COMBINEALL", "INPUT.TRAIN_FRAME_RULE",
                 "INPUT.FLIP", "INPUT.PADDING", "INPUT.CJ", "INPUT.AFFINE", "INPUT.AUTOAUG", "INPUT.AUGMIX",
                 "INPUT.REA", "INPUT.RPT", "INPUT.VVI_AUG", "TEST.EVAL_PERIOD", "TEST.PRECISE_BN", "OUTPUT_DIR")
#: ... but these, which inference reads too (the backbone's tracklets per pass, the loader's workers)
READ_BY_INFERENCE = ("SOLVER.MICRO_BATCH_SIZE", "DATALOADER.NUM_WORKERS")


def _under(key: str, groups: Sequence[str]) -> bool:
    """Whether config ``key`` is one of ``groups`` (keys, or groups such as ``SOLVER``) or under one."""
    return any(key == group or key.startswith(group + ".") for group in groups)


def warn_ignored_overrides(tool: str, opts: Sequence[str], ignored: Sequence[str], reads: str,
                           read: Sequence[str] = READ_BY_INFERENCE) -> list[str]:
    """The keys of the ``KEY VALUE`` ``opts`` that ``tool`` ignores (under one of the ``ignored`` keys or groups,
    not under one of ``read``), named on stderr in one line, ``warning: KEY ignored by TOOL: it reads only
    READS``."""
    keys = [key for key in opts[::2] if _under(key, ignored) and not _under(key, read)]
    if keys:
        print(f"warning: {', '.join(keys)} ignored by {tool}: it reads only {reads}", file=sys.stderr)
    return keys


#: what only a write gets from the file system: it (or a quota) is full, it takes no writes, a file is too large
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def run_error_line(error: BaseException) -> str | None:
    """The one ``error:`` line of a run's user error, or None for a bug (its traceback is the report):
    :data:`INPUT_ERRORS`; a training that diverged (fast-reid's check of every step's losses); and a
    file the file system refused (an ``OSError`` naming it: a full disk, a read-only folder)."""
    if isinstance(error, INPUT_ERRORS):
        return f"error: {error}"
    if isinstance(error, FloatingPointError):
        reason = str(error).splitlines()[0]
        return f"error: {reason} Training diverged: lower SOLVER.BASE_LR, or enable SOLVER.CLIP_GRADIENTS"
    if isinstance(error, OSError) and error.filename is not None:
        return f"error: {_refused_file(error)}"
    return None


def _refused_file(error: OSError) -> str:
    """``FILE: could not be written (REASON)`` for a refused write, ``FILE: REASON`` for another refusal."""
    if isinstance(error, FileWriteError):
        return str(error)
    if error.errno in _WRITE_ERRNOS:
        return str(FileWriteError(error.errno, error.strerror, error.filename))
    return f"{error.filename}: {error.strerror}"


class _UserErrorTracebacks(logging.Filter):
    """Keeps off a console handler the records that carry the traceback of a user error
    (:func:`run_error_line`; fast-reid's "Exception during training:"): its one ``error:`` line
    follows, and log.txt keeps the traceback for a bug report. A bug's traceback stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or run_error_line(error) is None


def user_error_tracebacks_off_the_console(*logger_names: str) -> None:
    """:class:`_UserErrorTracebacks` on the console handlers of the loggers named (once each)."""
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            if _writes_the_console(handler) and not any(isinstance(f, _UserErrorTracebacks) for f in handler.filters):
                handler.addFilter(_UserErrorTracebacks())


class _FailingLogFile:
    """The ``handleError`` of a log-file handler: a write the file system refuses (a full disk) is one
    console warning for the file (of all its handlers), the first time, instead of logging's traceback for
    every line (later lines reach the file again once it takes them); any other failure is logging's."""

    #: the log files whose failure the console was told of
    told: set[str] = set()

    def __init__(self, handler: logging.StreamHandler, console: list[logging.Handler]) -> None:
        self.handler, self.console = handler, console

    def __call__(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            logging.StreamHandler.handleError(self.handler, record)
            return
        name = str(getattr(self.handler.stream, "name", "the log file"))
        if name not in self.told:
            self.told.add(name)
            refused = FileWriteError(error.errno, error.strerror, name)
            warning = logging.LogRecord(record.name, logging.WARNING, "", 0,
                                        f"{refused}: lines from here on may be on the console only", None, None)
            for handler in self.console:
                handler.handle(warning)


def quiet_failing_log_files(*logger_names: str) -> None:
    """:class:`_FailingLogFile` for the log-file handlers (log.txt) of the loggers named."""
    for name in logger_names:
        handlers = logging.getLogger(name).handlers
        console = [handler for handler in handlers if _writes_the_console(handler)]
        for handler in handlers:
            if isinstance(handler, logging.StreamHandler) and not _writes_the_console(handler) and \
                    not isinstance(handler.handleError, _FailingLogFile):
                handler.handleError = _FailingLogFile(handler, console)

"""Checkpoint files that survive a kill, and that are read safely.

fast-reid's ``Checkpointer`` writes in place (a kill or a full disk during ``torch.save`` leaves
a truncated file where the previous checkpoint was), reads with ``torch.load``'s default (unsafe
pickles run code where that default is switched off, ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``) and
resumes from whatever ``last_checkpoint`` names, failing with a traceback when that file is
truncated. compat.py routes its save, read and resume through the functions here:

- :func:`write_atomically`: a temporary file in the same folder, flushed, fsynced, renamed over
  the target (the previous file stays whole until the new one is complete), created with the mode a
  plain ``open`` gives (the umask's: a lab's group reads the checkpoints), removed when the write fails;
- :func:`remove_leftovers`: the temporary files (and export folders) of writes a killed process left
  behind, removed by the next run (a checkpoint of ViT-B/16 VLD is hundreds of MB);
- :func:`read_checkpoint`: ``torch.load(..., weights_only=True)`` always, and one clear error
  naming the file (and the config key it came from) when it cannot be read;
- :func:`require_weights`, :func:`check_weights_match`: weights to start training from must exist
  and load at least one of the model's parameters; :func:`complete_weights`: weights for
  evaluation and inference must hold every entry of the model (``--eval-only`` never evaluates a
  model left wholly or partly at its random initialisation);
- :func:`newest_readable_checkpoint`: the file ``last_checkpoint`` names, or, when that is missing,
  empty or unreadable (reported by name), the newest readable ``.pth`` of the folder.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_TARGETS", "CheckpointReadError", "check_same_model", "check_weights_match", "complete_weights",
           "newest_readable_checkpoint", "read_checkpoint", "read_model_weights", "remove_leftovers",
           "require_weights", "temporary_affixes", "unreadable_checkpoint", "write_atomically"]

#: the files a fast-reid Checkpointer writes in its folder (``NAME.pth`` and ``last_checkpoint``), as a regex of names
CHECKPOINT_TARGETS = r".+\.pth|last_checkpoint"
#: about when this process started (this module is imported before anything is written): a temporary file last
#: changed before it is no write in progress (of this process, or of one beside it) but a killed process's leftover
_STARTED = time.time()


class CheckpointReadError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, not a checkpoint, or an unsafe pickle)."""


def temporary_affixes(path: str | os.PathLike) -> tuple[str, str]:
    """(prefix, suffix) of the name of a temporary file or folder written beside ``path`` before it becomes ``path``:
    ``.NAME.`` and ``.tmp``, 8 random characters between them (what :func:`remove_leftovers` looks for)."""
    return f".{Path(path).name}.", ".tmp"


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``; the temporary file is
    removed when ``write`` or the rename fails (a full disk, say)."""
    path = Path(path)
    descriptor, temporary = _create_beside(path)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself reaches the disk
    finally:
        os.close(folder)


def _create_beside(path: Path) -> tuple[int, Path]:
    """A new empty file beside ``path`` (named by :func:`temporary_affixes`), open for writing, created as ``open``
    creates files: mode 0o666 less the umask (and the folder's default ACL). ``tempfile.mkstemp`` would give
    0o600, and the renamed checkpoint or features file would be readable by its owner only."""
    prefix, suffix = temporary_affixes(path)
    while True:
        temporary = path.with_name(f"{prefix}{secrets.token_hex(4)}{suffix}")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:  # a name taken already (1 in 4 billion): draw another
            continue


def remove_leftovers(folder: str | os.PathLike, targets: str) -> None:
    """Remove from ``folder`` the temporary files and folders of writes to names matching the regex ``targets`` (named
    as :func:`temporary_affixes` names them) that a killed process left there: those last changed before this process
    started (a write in progress beside it is kept). One log line names them and the bytes freed; one that cannot be
    removed is a warning."""
    folder = Path(folder)
    pattern = re.compile(rf"\.(?:{targets})\.[a-z0-9_]{{8}}\.tmp")
    entries = sorted(folder.iterdir()) if folder.is_dir() else []
    leftovers = [entry for entry in entries if pattern.fullmatch(entry.name) and entry.lstat().st_mtime < _STARTED]
    freed = {entry.name: size for entry in leftovers if (size := _remove(entry)) is not None}
    if freed:
        logger.info("Removed %d leftover(s) of interrupted writes from %s: %s (%s bytes freed)", len(freed), folder,
                    ", ".join(freed), f"{sum(freed.values()):,}")


def _remove(entry: Path) -> int | None:
    """Remove the file or folder ``entry``: the bytes it held, or None (with a warning) when it cannot be removed."""
    try:
        if entry.is_dir() and not entry.is_symlink():
            size = sum(file.lstat().st_size for file in entry.rglob("*") if not file.is_dir())
            shutil.rmtree(entry)
        else:
            size = entry.lstat().st_size
            entry.unlink()
    except OSError as error:
        logger.warning("Could not remove %s, the leftover of an interrupted write: %s", entry, error)
        return None
    return size


def read_checkpoint(path: str | os.PathLike, key: str = "") -> dict[str, Any]:
    """A checkpoint dict read with ``weights_only=True`` (tensors, numbers, strings, containers only), whatever
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says; a :class:`CheckpointReadError` naming the file (after the config
    ``key`` it came from, where given) when it cannot be read so."""
    where = f"{key} {path}" if key else str(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        if key:
            raise FileNotFoundError(f"{key}: weights file {path} not found") from None
        raise
    except Exception as error:  # truncated, not a torch file, or a pickle that would run code
        raise unreadable_checkpoint(where, error) from error
    if not isinstance(checkpoint, dict):
        raise CheckpointReadError(f"{where}: expected a checkpoint dict, found {type(checkpoint).__name__}")
    return checkpoint


def unreadable_checkpoint(where: str, error: Exception) -> CheckpointReadError:
    """The error for a file (described by ``where``) that ``torch.load(..., weights_only=True)`` failed on with
    ``error``, in one line: where weights_only refused the pickle, what it refused (torch's message goes on to
    suggest loading the file without weights_only, which would run whatever code the file holds)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # torch's terminal bold
    refused = re.search(r"WeightsUnpickler error:\s*([^\n]+?)(?:\. |\.?$)", text, flags=re.MULTILINE)
    reason = refused.group(1) if refused else (text.splitlines()[0] if text else type(error).__name__)
    return CheckpointReadError(f"{where}: not a readable checkpoint (expected a file written by torch.save, read "
                               f"with weights_only=True): {reason}")


def newest_readable_checkpoint(save_dir: str | os.PathLike) -> str:
    """The checkpoint to resume from in ``save_dir`` ("" when there is none)."""
    save_dir = Path(save_dir)
    tagged = save_dir / "last_checkpoint"
    name = tagged.read_text().strip() if tagged.is_file() else ""
    candidates = sorted(save_dir.glob("*.pth"), key=lambda file: file.stat().st_mtime, reverse=True)
    if name:
        candidates = [save_dir / name] + [file for file in candidates if file.name != name]
    else:
        logger.warning("%s is empty: resuming from the newest readable checkpoint of %s", tagged, save_dir)
    for file in candidates:
        try:
            read_checkpoint(file)
        except (CheckpointReadError, FileNotFoundError) as error:
            logger.warning("Skipping %s: %s", file, error)
            continue
        return str(file)
    return ""


def require_weights(path: str, key: str = "MODEL.WEIGHTS") -> None:
    """Refuse an empty or missing weights path, with one line naming ``key``."""
    if not path:
        raise CheckpointReadError(f"{key} is empty: evaluation needs trained weights (a model_*.pth of a "
                                  "training run, or tools/convert_official_vld.py output)")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{key}: checkpoint {path} not found")


def read_model_weights(path: str, key: str = "MODEL.WEIGHTS") -> dict[str, Any]:
    """The ``model`` state dict of the fast-reid checkpoint at ``path`` (named by ``key`` in errors),
    names without a ``module.`` (DistributedDataParallel) prefix."""
    require_weights(path, key)
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint.get("model"), dict):
        raise CheckpointReadError(f"{key} {path}: expected a fast-reid checkpoint with a 'model' state dict, found "
                                  f"the entries {sorted(map(str, checkpoint))[:5]}")
    return {name.removeprefix("module."): value for name, value in checkpoint["model"].items()}


def check_weights_match(model: torch.nn.Module, path: str, key: str = "MODEL.WEIGHTS") -> None:
    """Refuse, with one line naming ``key`` and the file, weights that are missing or that load no
    parameter of ``model`` (other names or shapes); weights that load some of them pass (fast-reid's
    Checkpointer then lists what it skipped)."""
    _refuse_unrelated(model, read_model_weights(path, key), path, key)


def complete_weights(model: torch.nn.Module, weights: dict[str, Any], path: str,
                     key: str = "MODEL.WEIGHTS") -> dict[str, torch.Tensor]:
    """Weights for inference (:func:`read_model_weights` of ``path``): refused as by
    :func:`check_weights_match`, and unless every entry of ``model`` is in them with its shape (a
    model left partly at its random initialisation is refused, naming what is missing). Returns
    ``model``'s state dict from them, for ``model.load_state_dict``."""
    _refuse_unrelated(model, weights, path, key)
    expected = model.state_dict()
    _, differing = _compare_shapes(model, weights)
    missing = [name for name in expected if name not in weights]
    if differing or missing:
        examples = "; ".join(differing[:2] + [f"{name} missing" for name in missing[:2]])
        raise CheckpointReadError(f"{key} {path}: not the weights of this config's model: {len(differing)} entries "
                                  f"of another shape and {len(missing)} of the model's {len(expected)} missing "
                                  f"(e.g. {examples}): another architecture, geometry or class count?")
    return {name: weights[name] for name in expected}


def _refuse_unrelated(model: torch.nn.Module, weights: dict[str, Any], path: str, key: str) -> None:
    matching, _ = _compare_shapes(model, weights)
    if not matching:
        raise CheckpointReadError(f"{key} {path}: none of its {len(weights)} entries is a parameter of "
                                  f"this model (names and shapes differ, e.g. {sorted(weights)[:3]}): "
                                  "is it a checkpoint of this config's model?")


def check_same_model(model: torch.nn.Module, path: str) -> None:
    """A checkpoint being resumed must be of this model: every entry of the same shape (another
    MODEL.HEADS.NUM_CLASSES, say, would load partly and fail inside the optimizer's next step)."""
    _, differing = _compare_shapes(model, read_checkpoint(path).get("model", {}))
    if differing:
        raise CheckpointReadError(f"{path}: --resume continues the run this checkpoint belongs to, but it is of "
                                  f"another model ({len(differing)} entries differ, e.g. {differing[0]}): use a "
                                  "new OUTPUT_DIR, or start from it with MODEL.WEIGHTS")


def _compare_shapes(model: torch.nn.Module, weights: dict) -> tuple[list[str], list[str]]:
    """(entries of ``weights`` that fit ``model``, descriptions of those whose shape differs), names
    compared without a ``module.`` (DistributedDataParallel) prefix."""
    expected = model.state_dict()
    matching, differing = [], []
    for name, value in weights.items():
        name = name.removeprefix("module.")
        shape = getattr(value, "shape", None)
        if name in expected and shape == expected[name].shape:
            matching.append(name)
        elif name in expected:
            differing.append(f"{name} {tuple(shape) if shape is not None else '(not a tensor)'} instead of "
                             f"{tuple(expected[name].shape)}")
    return matching, differing

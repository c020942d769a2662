"""Checkpoint files that survive a kill, and that are read safely.

fast-reid's ``Checkpointer`` writes in place (a kill or a full disk during ``torch.save`` leaves
a truncated file where the previous checkpoint was), reads with ``torch.load``'s default (unsafe
pickles run code where that default is switched off, ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``) and
resumes from whatever ``last_checkpoint`` names, failing with a traceback when that file is
truncated. compat.py routes its save, read and resume through the functions here:

- :func:`write_atomically`: a temporary file in the same folder, flushed, fsynced, renamed over
  the target (the previous file stays whole until the new one is complete), created with the mode a
  plain ``open`` gives (the umask's: a lab's group reads the checkpoints), removed when the write fails;
  a failure of the file system (a full disk, a read-only folder) is a :class:`FileWriteError` naming
  the target (:func:`writing`), whatever error the writer made of it;
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

import contextlib
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_TARGETS", "CheckpointReadError", "FileWriteError", "check_same_model", "check_weights_match",
           "complete_weights", "newest_readable_checkpoint", "read_checkpoint", "read_model_weights",
           "remove_leftovers", "require_weights", "temporary_affixes", "unreadable_checkpoint", "write_atomically",
           "writing"]

#: the files a training run writes atomically in OUTPUT_DIR, whose leftovers the checkpointer removes: fast-reid's
#: Checkpointer's (``NAME.pth`` and ``last_checkpoint``), the evaluations and the curves, as a regex of names
CHECKPOINT_TARGETS = r".+\.pth|last_checkpoint|eval_results\.json|curves\.png"
#: about when this process started (this module is imported before anything is written): a temporary file last
#: changed before it is no write in progress (of this process, or of one beside it) but a killed process's leftover
_STARTED = time.time()


class CheckpointReadError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, not a checkpoint, or an unsafe pickle)."""


class FileWriteError(OSError):
    """A file the file system refused to write (a full disk, a read-only folder), in one line naming it:
    ``FILE: could not be written (No space left on device)``."""

    def __str__(self) -> str:
        return f"{self.filename}: could not be written ({self.strerror})"


def _write_failure(error: BaseException, path: str | os.PathLike) -> FileWriteError | None:
    """``error``, raised while writing ``path``, as a :class:`FileWriteError` naming ``path`` where an
    ``OSError`` of the file system is at its root (torch.save turns a full disk into a RuntimeError raised
    while handling it); None where none is (a bug, an interrupt)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, FileWriteError):
            return error
        if isinstance(error, OSError) and error.errno is not None:
            return FileWriteError(error.errno, error.strerror, str(path))
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """A block that writes ``path``: a failure of the file system in it leaves it as a
    :class:`FileWriteError` naming ``path`` (the original error chained, for log.txt)."""
    try:
        yield
    except Exception as error:
        failure = _write_failure(error, path)
        if failure is None or failure is error:
            raise
        raise failure from error


def temporary_affixes(path: str | os.PathLike) -> tuple[str, str]:
    """(prefix, suffix) of the name of a temporary file or folder written beside ``path`` before it becomes ``path``:
    ``.NAME.`` and ``.tmp``, 8 random characters between them (what :func:`remove_leftovers` looks for)."""
    return f".{Path(path).name}.", ".tmp"


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``; the temporary file is
    removed when ``write`` or the rename fails (a full disk, say: a :class:`FileWriteError` naming ``path``)."""
    path = Path(path)
    with writing(path):
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
    entry of ``model`` (another architecture's); weights that load some of them pass (fast-reid's
    Checkpointer then lists what it skipped)."""
    fit = _Fit(model.state_dict(), read_model_weights(path, key))
    if not fit.matching:
        raise CheckpointReadError(f"{key} {path}: {fit.other_architecture('')}")


def complete_weights(model: torch.nn.Module, weights: dict[str, Any], path: str,
                     key: str = "MODEL.WEIGHTS") -> dict[str, torch.Tensor]:
    """Weights for inference (:func:`read_model_weights` of ``path``): every entry of ``model`` must be
    in them with its shape (a model left partly at its random initialisation is refused). The one line
    naming ``key`` and the file says why not, the likeliest cause first: weights of another architecture
    (fewer than half of the model's entries in them, or none of one of its parts: ``backbone``,
    ``heads``), of another class count (only classifier rows differ), or of another geometry. Returns
    ``model``'s state dict from them, for ``model.load_state_dict``."""
    fit = _Fit(model.state_dict(), weights)
    if fit.differing or fit.missing:
        raise CheckpointReadError(f"{key} {path}: {fit.why_not()}")
    return {name: fit.weights[name] for name in fit.expected}


def _listed(names: list[str], count: int = 3) -> str:
    return ", ".join(names[:count]) + (", ..." if len(names) > count else "")


class _Fit:
    """How a checkpoint's entries (``weights``, ``module.`` prefixes dropped) fit a model's state dict
    (``expected``): the model's entries in it with their shape (``matching``), by name only
    (``differing``: name -> (checkpoint shape, model shape)), and not at all (``missing``)."""

    def __init__(self, expected: dict[str, torch.Tensor], weights: dict[str, Any]) -> None:
        self.expected = expected
        self.weights = {name.removeprefix("module."): value for name, value in weights.items()}
        shapes = {name: tuple(value.shape) if hasattr(value, "shape") else None for name, value in self.weights.items()}
        self.matching = [name for name in expected if name in shapes and shapes[name] == tuple(expected[name].shape)]
        self.differing = {name: (shapes[name], tuple(expected[name].shape)) for name in expected
                          if name in shapes and name not in self.matching}
        self.missing = [name for name in expected if name not in shapes]

    def why_not(self) -> str:
        """Why these weights are not the model's, in one phrase."""
        if len(self.matching) < len(self.expected) / 2:
            return self.other_architecture("")
        parts = dict.fromkeys(name.split(".")[0] for name in self.expected)
        unmatched = [part for part in parts if not any(name.startswith(f"{part}.") for name in self.matching)]
        if unmatched:
            return self.other_architecture(unmatched[0])
        return self._other_class_count() or self._other_geometry()

    def other_architecture(self, part: str) -> str:
        """The phrase for weights that hold none (or, for the whole model, too few) of the entries of the
        model's ``part`` ("" for the whole model)."""
        prefix = f"{part}." if part else ""
        theirs = [name for name in self.weights if name.startswith(prefix)]
        ours = [name for name in self.expected if name.startswith(prefix)]
        fitting = [name for name in self.matching if name.startswith(prefix)]
        model = f"this model's {part}" if part else "this model"
        model = f"{model} ({len(ours)} entries: {_listed(ours)})"
        if not theirs:
            return f"not the weights of this config's model: it holds no {part} entry, and {model} needs each one"
        kind = f"{part} " if part else ""
        held = (f"only {len(fitting)} of its {len(theirs)} {kind}entries ({_listed(theirs)}) are parameters of"
                if fitting else f"none of its {len(theirs)} {kind}entries ({_listed(theirs)}) is a parameter of")
        what = f"its {part} are" if part else "they are"
        return (f"not the weights of this config's model: {what} another architecture's: {held} {model}"
                f"{self._same_names_only(prefix)}: use the config they were trained with")

    def _same_names_only(self, prefix: str) -> str:
        """"; N of them bear its names with other shapes (e.g. ...)", of the entries under ``prefix``."""
        names = [name for name in self.differing if name.startswith(prefix)]
        if not names:
            return ""
        theirs, ours = self.differing[names[0]]
        return f"; {len(names)} of them bear its names with other shapes (e.g. {names[0]} {theirs} instead of {ours})"

    def _other_class_count(self) -> str | None:
        """The phrase for weights whose only difference is the rows of per-identity entries of the heads
        (the classifiers, IMLP's identity prompts), one count for all; None for any other difference."""
        rows = {(theirs[0], ours[0]) if name.startswith("heads.") and theirs and theirs[1:] == ours[1:] else None
                for name, (theirs, ours) in self.differing.items()}
        if self.missing or len(rows) != 1 or None in rows:
            return None
        ((trained, built),) = rows
        name, (theirs, ours) = next(iter(self.differing.items()))
        return (f"not the weights of this config's model: trained on {trained} identities, and this model has "
                f"{built} (MODEL.HEADS.NUM_CLASSES): the rows of {len(self.differing)} entries differ (e.g. {name} "
                f"{theirs} instead of {ours}): set MODEL.HEADS.NUM_CLASSES 0 to take the checkpoint's {trained}")

    def _other_geometry(self) -> str:
        examples = [f"{name} {theirs} instead of {ours}" for name, (theirs, ours) in self.differing.items()]
        examples = "; ".join(examples[:2] + [f"{name} missing" for name in self.missing[:2]])
        return (f"not the weights of this config's model: {len(self.differing)} entries of another shape and "
                f"{len(self.missing)} of the model's {len(self.expected)} missing (e.g. {examples}): this "
                "architecture at another size (input size, width, depth), or a partial checkpoint?")


def check_same_model(model: torch.nn.Module, path: str, optimizer: torch.optim.Optimizer | None = None) -> None:
    """A checkpoint being resumed must be of this model: every entry of the same shape (another
    MODEL.HEADS.NUM_CLASSES, say, would load partly and fail inside the optimizer's next step), and of
    this ``optimizer``'s algorithm (another SOLVER.OPT would load the other's state silently, or fail
    at the first step)."""
    checkpoint = read_checkpoint(path)
    differing = _Fit(model.state_dict(), checkpoint.get("model", {})).differing
    if differing:
        name, (theirs, ours) = next(iter(differing.items()))
        raise CheckpointReadError(f"{path}: --resume continues the run this checkpoint belongs to, but it is of "
                                  f"another model ({len(differing)} entries differ, e.g. {name} {theirs} instead of "
                                  f"{ours}): use a new OUTPUT_DIR, or start from it with MODEL.WEIGHTS")
    saved = checkpoint.get("optimizer", {}).get("param_groups")
    if optimizer is None or not saved:
        return
    theirs, ours = _algorithm(saved[0]), _algorithm(optimizer.param_groups[0])
    if theirs != ours:
        name = type(optimizer).__name__
        raise CheckpointReadError(f"{path}: --resume continues the run this checkpoint belongs to, but its optimizer "
                                  f"is not SOLVER.OPT {name} (its settings: {theirs}; {name}'s: {ours}): resume with "
                                  "the run's SOLVER.OPT, or start from it with MODEL.WEIGHTS and a new OUTPUT_DIR")


#: entries of a torch.optim parameter group that say how it runs or what it holds, not which algorithm it is
_NOT_THE_ALGORITHM = {"params", "names", "lr", "initial_lr", "foreach", "fused", "differentiable", "capturable",
                            "maximize", "weight_decay", "freeze_status"}


def _algorithm(group: dict) -> str:
    """What tells torch.optim's algorithms apart in a parameter group: its settings' names (Adam's betas and
    eps, SGD's momentum and nesterov, ...) and AdamW's decoupled weight decay, e.g. ``betas, eps, ...``."""
    names = sorted(set(group) - _NOT_THE_ALGORITHM)
    return ", ".join(f"{key} {group[key]}" if key == "decoupled_weight_decay" else key for key in names)

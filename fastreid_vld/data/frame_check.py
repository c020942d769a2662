"""Every frame of a data set found and decoded once, before training: a missing, zero-byte,
truncated or non-image frame is one error naming the file when the data set loads, not a crash
epochs later.

Frames already decoded are remembered by path, size and modification time in a cache file per
data-set folder (``$FASTREID_VLD_CACHE``, default ``~/.cache/fastreid_vld``), so a second load
only stats the files. Written atomically; a cache that cannot be written is only a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ..checkpoint import write_atomically
from .tracklets import MODALITY_NAMES, Tracklet

logger = logging.getLogger(__name__)

__all__ = ["cache_folder", "decode_every_frame"]


def cache_folder() -> Path:
    return Path(os.environ.get("FASTREID_VLD_CACHE", Path.home() / ".cache" / "fastreid_vld"))


#: frames checked without a progress bar (a few seconds' work at most)
QUIET_BELOW = 1000
#: failing frames named in the error (all of them are counted)
NAMED = 10


def decode_every_frame(tracklets: list[Tracklet], folder: Path, error: type[Exception]) -> None:
    """Check that each frame of ``tracklets`` exists and decode those not decoded before (cache keyed
    by ``folder``). Missing frames (then undecodable ones) raise one ``error(frame, expected, found=...)``
    (a DatasetFormatError) naming the first, with how many fail and the first :data:`NAMED` of them."""
    cache_file = cache_folder() / f"frames-{hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]}.json"
    try:
        verified = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        verified = {}
    owners = {frame: tracklet for tracklet in tracklets for frame in tracklet.frames}
    pending, missing = [], []
    for frame in tqdm(owners, desc=f"checking the {len(owners)} frames of {folder}", unit="frame",
                      disable=len(owners) < QUIET_BELOW):
        try:
            stat = os.stat(frame)
        except OSError:
            missing.append((frame, "no such file"))
            continue
        if verified.get(frame) != [stat.st_size, stat.st_mtime_ns]:
            pending.append((frame, [stat.st_size, stat.st_mtime_ns]))
    if missing:
        raise _failures(error, missing, f"{_described(owners[missing[0][0]])} (listed by the index files)")
    undecodable = []
    try:
        for frame, signature in tqdm(pending, desc=f"decoding {len(pending)} new frames of {folder}",
                                     unit="frame", disable=len(pending) < QUIET_BELOW):
            reason = _undecodable(frame, size=signature[0])
            if reason:
                undecodable.append((frame, reason))
            else:
                verified[frame] = signature
    finally:
        _save(cache_file, verified)
    if undecodable:
        raise _failures(error, undecodable, f"a decodable image: {_described(owners[undecodable[0][0]])}")


def _failures(error: type[Exception], failures: list[tuple[str, str]], expected: str) -> Exception:
    """One error for every (frame, reason) of ``failures``: the first in full, the others counted
    and the first :data:`NAMED` of them listed."""
    (frame, reason), others = failures[0], failures[1:]
    if others:
        listed = ", ".join(other for other, _ in others[:NAMED])
        reason += f"; {len(others)} more frames fail the same way ({listed}{', ...' if len(others) > NAMED else ''})"
    return error(frame, expected, found=reason)


def _described(tracklet: Tracklet) -> str:
    return (f"a frame of {MODALITY_NAMES[tracklet.modality]} tracklet of identity {tracklet.pid}, "
            f"camera {tracklet.camid}")


def _undecodable(frame: str, size: int) -> str:
    """Why ``frame`` (of ``size`` bytes) cannot be decoded ("" when it can)."""
    if size == 0:
        return "an empty (0-byte) file"
    try:
        with Image.open(frame) as image:
            image.load()  # the whole image: a truncated JPEG fails here, not at open
    except (OSError, ValueError, Image.DecompressionBombError) as reason:
        return f"not a decodable image ({reason})"
    return ""


def _save(cache_file: Path, verified: dict) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache_file, lambda file: file.write(json.dumps(verified).encode()))
    except OSError as reason:
        logger.warning("Cannot write the decoded-frames cache %s (%s): frames will be decoded again next time",
                       cache_file, reason)

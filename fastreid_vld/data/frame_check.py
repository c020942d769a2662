"""How a frame file becomes 8-bit RGB pixels (:func:`read_frame`, the one reader of every loader, the
predictor and ``tools/extract_features.py``), and every frame of a data set found and decoded once,
before training: a missing, zero-byte, truncated or non-image frame, or one of pixels no fixed rule
maps to 0..255, is one error naming the file when the data set loads, not a crash epochs later.

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

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..checkpoint import write_atomically
from .text import shown
from .tracklets import MODALITY_NAMES, Tracklet

logger = logging.getLogger(__name__)

__all__ = ["EIGHT_BIT_MODES", "FrameReadError", "SIXTEEN_BIT_MODES", "cache_folder", "changed_after_check",
           "decode_every_frame", "more_frames", "read_frame"]

#: PIL modes of 8 bits a channel, converted to RGB by Pillow's own conversions (a palette looked up,
#: CMYK / YCbCr / LAB / HSV to RGB, grey replicated to the three channels)
EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"})
#: PIL modes of 16-bit unsigned grey levels, in any byte order (16-bit grey PNG or TIFF: infrared
#: cameras' raw frames)
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
#: refused modes whose values have no fixed range (no one scale maps every file to 0..255)
NO_FIXED_RANGE = {"I": "32-bit (or signed 16-bit) integers", "F": "32-bit floating point"}


class FrameReadError(RuntimeError):
    """A listed frame exists but cannot be read as :func:`read_frame` reads frames; ``path`` and
    ``reason`` (where the error is about one frame): the frame, and why, without the frame's path."""

    def __init__(self, message: str, reason: str = "", path: str = "") -> None:
        super().__init__(message)
        self.reason, self.path = reason, path


def read_frame(path: str) -> Image.Image:
    """The frame file ``path`` as an 8-bit RGB image, by one policy for every PIL mode:

    - 8-bit modes (:data:`EIGHT_BIT_MODES`) convert as Pillow converts them to RGB (unchanged: the
      frames of the published data sets are 8-bit JPEGs);
    - 16-bit unsigned grey levels (:data:`SIXTEEN_BIT_MODES`; and mode ``I`` from a 16-bit PGM, which
      Pillow reads as ``I`` scaled to 0..65535) keep their high byte, ``value >> 8`` (65535 -> 255,
      32768 -> 128, 255 -> 0), as Pillow itself reads 16-bit colour PNGs: a 16-bit grey and a 16-bit
      colour frame of one scene agree. The scale is fixed, not stretched per frame, so frames compare
      across tracklets and cameras (a sensor that fills only the low bits gives dark frames: stretch
      them yourself, one way for all frames). Pillow's own conversion clips them to 255, so that
      different persons came out as the same white frame;
    - transparency (an alpha band, a palette's or a PNG's transparent colour) is composited on black,
      ``round(colour * alpha / 255)``: an opaque pixel is kept, a transparent one is black (as the
      zero padding of training crops), whatever colour the file keeps under it;
    - any other mode is refused: ``I`` (32-bit or signed integers) and ``F`` (floats) have no fixed
      range, so no one scale maps every file to 0..255 (:data:`NO_FIXED_RANGE`).

    Raises :class:`FrameReadError` naming ``path`` and, for a refused mode, the mode."""
    try:
        with Image.open(path) as image:
            image.load()  # the whole image: a truncated JPEG fails here, not at open
            reason = _refusal(image)
            if not reason:
                return _on_black(_eight_bit(image))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        reason = _without_path(error, path)
    raise FrameReadError(f"{shown(path)}: expected a readable JPEG frame ({reason})", reason, path)


def _without_path(error: Exception, path: str) -> str:
    """Why reading ``path`` failed, without the path (the message names it once): ``No such file or
    directory``, ``cannot identify image file``."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error).replace(f" {path!r}", "")


def changed_after_check(error: FrameReadError, tracklet: Tracklet) -> str:
    """The message for a frame of a data set's ``tracklet`` that :func:`read_frame` refuses (``error``)
    after :func:`decode_every_frame` read it when the data set loaded: the file changed since."""
    return (f"{shown(error.path)}: expected a decodable image: {_described(tracklet)}, found {error.reason!r} "
            "(it changed after the data set was checked when it loaded)")


def _sixteen_bit(image: Image.Image) -> bool:
    """Whether ``image`` holds 16-bit unsigned grey levels (a 16-bit PGM comes as mode I, 0..65535)."""
    return image.mode in SIXTEEN_BIT_MODES or (image.mode == "I" and image.format == "PPM")


def _refusal(image: Image.Image) -> str:
    """Why :func:`read_frame` refuses ``image``, by its PIL mode ("" when it reads it)."""
    mode = image.mode
    if mode in EIGHT_BIT_MODES or _sixteen_bit(image):
        return ""
    found = (f"{NO_FIXED_RANGE[mode]}, with no fixed range to map to 0..255" if mode in NO_FIXED_RANGE
             else "a mode this reader does not map to RGB")
    return (f"mode {mode}: {found}: frames are read from 8-bit channels or 16-bit unsigned grey levels (I;16); "
            "save them as 8-bit JPEG / PNG or 16-bit PNG")


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit grey image as 8-bit grey levels, its high byte (grey and alpha where the file names a
    transparent level); an image of another mode as it is."""
    if not _sixteen_bit(image):
        return image
    levels = np.asarray(image)  # uint16 in the file's byte order (int32 from a PGM)
    grey = (levels >> 8).astype(np.uint8)
    if "transparency" not in image.info:
        return Image.fromarray(grey)  # mode L
    opacity = np.where(levels == image.info["transparency"], 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([grey, opacity], axis=-1))  # mode LA


def _on_black(image: Image.Image) -> Image.Image:
    """An 8-bit image as RGB, its transparency composited on black."""
    if not image.has_transparency_data:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")


def cache_folder() -> Path:
    """Where the decoded-frames caches are kept."""
    return Path(os.environ.get("FASTREID_VLD_CACHE", Path.home() / ".cache" / "fastreid_vld"))


#: what the cache's entries vouch for: raised whenever :func:`read_frame` accepts or refuses other frames
#: (2: the PIL-mode policy), so a frame remembered by an older reader is read again
READER_VERSION = 2
#: frames checked without a progress bar (a few seconds' work at most)
QUIET_BELOW = 1000
#: failing frames named in the error (all of them are counted)
NAMED = 10


def decode_every_frame(tracklets: list[Tracklet], folder: Path, error: type[Exception]) -> None:
    """Check that each frame of ``tracklets`` exists and read (:func:`read_frame`) those not read before
    (cache keyed by ``folder``). Missing frames (then unreadable ones) raise one ``error(frame, expected, found=...)``
    (a DatasetFormatError) naming the first, with how many fail and the first :data:`NAMED` of them."""
    cache_file = cache_folder() / f"frames-{hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]}.json"
    verified = _load(cache_file)
    owners = {frame: tracklet for tracklet in tracklets for frame in tracklet.frames}
    pending, missing = [], []
    for frame in tqdm(owners, desc=f"checking the {len(owners)} frames of {folder}", unit="frame",
                      disable=len(owners) < QUIET_BELOW):
        try:
            stat = os.stat(frame)
        except OSError:
            missing.append((frame, "no such file"))
            continue
        except ValueError as reason:  # a path no file can have: a NUL byte, a lone surrogate
            missing.append((frame, f"no such file ({reason})"))
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
    return error(frame, expected, found=reason + more_frames([other for other, _ in others], "the same way"))


def more_frames(frames: list[str], how: str) -> str:
    """``; N more frames fail <how> (the first NAMED of them)`` (``1 more frame fails``), or "" where
    ``frames`` is empty."""
    if not frames:
        return ""
    listed = ", ".join(map(shown, frames[:NAMED])) + (", ..." if len(frames) > NAMED else "")
    counted = "1 more frame fails" if len(frames) == 1 else f"{len(frames)} more frames fail"
    return f"; {counted} {how} ({listed})"


def _described(tracklet: Tracklet) -> str:
    return (f"a frame of {MODALITY_NAMES[tracklet.modality]} tracklet of identity {tracklet.pid}, "
            f"camera {tracklet.camid}")


def _undecodable(frame: str, size: int) -> str:
    """Why :func:`read_frame` cannot read ``frame`` (of ``size`` bytes; "" when it can)."""
    if size == 0:
        return "an empty (0-byte) file"
    try:
        read_frame(frame)
    except FrameReadError as error:
        return error.reason
    return ""


def _load(cache_file: Path) -> dict:
    """The frames ``cache_file`` remembers as read, {path: [size, modification time]}; none where it is
    missing, unreadable or written by another :data:`READER_VERSION` (what passed then may not now)."""
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    return cache.get("frames", {}) if isinstance(cache, dict) and cache.get("reader") == READER_VERSION else {}


def _save(cache_file: Path, verified: dict) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache = {"reader": READER_VERSION, "frames": verified}
        write_atomically(cache_file, lambda file: file.write(json.dumps(cache).encode()))
    except OSError as reason:
        logger.warning("Cannot write the decoded-frames cache %s (%s): frames will be decoded again next time",
                       cache_file, reason)

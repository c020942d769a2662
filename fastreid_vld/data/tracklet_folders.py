"""Tracklets of your own, as folders of frames: ``DIR/<any/nested/path>/<frames>``.

A tracklet is a folder that holds frames (``.jpg``, ``.jpeg``, ``.png``, any case), in temporal
order by name, numbers compared by value (``2.jpg`` before ``10.jpg``). Folders are searched at
any depth (camera or identity folders above the tracklets are fine); files of other types are not
frames and are left alone. A folder with neither frames nor sub-folders is an error naming it: an
empty tracklet is a mistake, not something to skip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FRAME_SUFFIXES", "TrackletFolderError", "TrackletFolder", "find_tracklet_folders"]

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


class TrackletFolderError(ValueError):
    """A folder of tracklets that cannot be read as one."""


@dataclass(frozen=True)
class TrackletFolder:
    name: str                # the folder, relative to the searched folder ("." for the folder itself)
    frames: tuple[str, ...]  # frame paths in temporal order


def find_tracklet_folders(root: str | Path) -> list[TrackletFolder]:
    """Every tracklet folder under ``root`` (``root`` included), sorted by name (numbers by value)."""
    root = Path(root)
    if not root.is_dir():
        raise TrackletFolderError(f"{root}: expected a folder of tracklet folders, found "
                                  f"{'a file' if root.exists() else 'nothing (missing)'}")
    tracklets, empty = [], []
    folders = [root, *(path for path in root.rglob("*") if path.is_dir())]
    for folder in sorted(folders, key=lambda path: _natural_key(path.relative_to(root).as_posix())):
        entries = list(folder.iterdir())
        frames = sorted((entry for entry in entries if entry.is_file() and entry.suffix.lower() in FRAME_SUFFIXES),
                        key=lambda frame: _natural_key(frame.name))
        if frames:
            tracklets.append(TrackletFolder(folder.relative_to(root).as_posix(), tuple(map(str, frames))))
        elif not any(entry.is_dir() for entry in entries):
            empty.append(folder)
    if empty:
        listed = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        raise TrackletFolderError(f"{empty[0]}: expected a tracklet folder with frames ({', '.join(FRAME_SUFFIXES)}), "
                                  f"found none; {len(empty)} such folders: {listed}")
    if not tracklets:
        raise TrackletFolderError(f"{root}: expected tracklet folders with frames ({', '.join(FRAME_SUFFIXES)}), "
                                  "found none")
    return tracklets


def _natural_key(name: str) -> list:
    """``frame10.jpg`` after ``frame9.jpg``: digit runs compared as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]

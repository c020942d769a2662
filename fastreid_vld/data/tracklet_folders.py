"""Tracklets of your own, as folders of frames: ``DIR/<any/nested/path>/<frames>``.

A tracklet is a folder that holds frames (``.jpg``, ``.jpeg``, ``.png``, any case), in temporal
order by name, numbers compared by value (``2.jpg`` before ``10.jpg``). Folders are searched at
any depth (camera or identity folders above the tracklets are fine); files of other types are not
frames and are left alone. A folder with neither frames nor sub-folders is an error naming it: an
empty tracklet is a mistake, not something to skip.

Symbolic links are followed, to frames and to folders (a tree of links into the data elsewhere is
a tree of tracklets; a folder linked under two names is read under each). A link that does not lead
anywhere is an error naming it (a missing frame or tracklet, not something to skip), and so is a
link back to a folder it is in (a loop, whose folders would be found again under it, for ever).
Frames are decoded later, by :func:`~fastreid_vld.data.frame_check.read_frame`.

Folder and frame names must be UTF-8 (they are written to the features file as text); a name of
other bytes is an error naming it, its bytes shown as ``\\xNN``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .text import non_utf8, shown

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
        raise TrackletFolderError(f"{shown(root)}: expected a folder of tracklet folders, found "
                                  f"{'a file' if root.exists() else 'nothing (missing)'}")
    tracklets, empty, broken, undecodable = [], [], [], []
    folders = sorted(_folders(root), key=lambda found: _natural_key(found[0].relative_to(root).as_posix()))
    for folder, entries in folders:
        frames = sorted((entry for entry in entries if entry.is_file() and entry.suffix.lower() in FRAME_SUFFIXES),
                        key=lambda frame: _natural_key(frame.name))
        broken += [entry for entry in entries if entry.is_symlink() and not entry.exists()]
        named = [*frames, *filter(Path.is_dir, entries)]  # what the features file names (other files: left alone)
        undecodable += [entry for entry in named if non_utf8(os.fsencode(entry.name))]
        if frames:
            tracklets.append(TrackletFolder(folder.relative_to(root).as_posix(), tuple(map(str, frames))))
        elif not any(entry.is_dir() for entry in entries):
            empty.append(folder)
    if broken:
        raise TrackletFolderError(f"{shown(broken[0])}: expected a frame or a folder, found a symbolic link that "
                                  f"leads nowhere (to {shown(os.readlink(broken[0]))}); {_counted(broken, 'links')}")
    if undecodable:
        byte = non_utf8(os.fsencode(undecodable[0].name))[1]
        raise TrackletFolderError(f"{shown(undecodable[0])}: expected a UTF-8 folder or frame name (names are written "
                                  f"to the features file as text), found {byte} of the name; "
                                  f"{_counted(undecodable, 'names')}")
    if empty:
        raise TrackletFolderError(f"{shown(empty[0])}: expected a tracklet folder with frames "
                                  f"({', '.join(FRAME_SUFFIXES)}), found none; {_counted(empty, 'folders')}")
    if not tracklets:
        raise TrackletFolderError(f"{shown(root)}: expected tracklet folders with frames "
                                  f"({', '.join(FRAME_SUFFIXES)}), found none")
    return tracklets


def _folders(root: Path) -> Iterator[tuple[Path, list[Path]]]:
    """``root`` and every folder below it, with its entries, links to folders followed; a link back to
    a folder it is in (itself included) is a :class:`TrackletFolderError` naming it."""
    pending = [(root, (root.resolve(),))]  # (folder, the real paths of the folders down to it)
    while pending:
        folder, trail = pending.pop()
        entries = sorted(folder.iterdir())
        yield folder, entries
        for entry in filter(Path.is_dir, entries):
            real = entry.resolve()
            if real in trail:
                raise TrackletFolderError(f"{shown(entry)}: expected a folder, found a symbolic-link loop: it leads "
                                          f"back to {shown(real)}, a folder it is in, whose folders would be found "
                                          "again under it")
            pending.append((entry, (*trail, real)))


def _counted(paths: list[Path], what: str) -> str:
    """``N such <what>: `` and the first 10 of ``paths``."""
    return f"{len(paths)} such {what}: " + ", ".join(map(shown, paths[:10])) + (", ..." if len(paths) > 10 else "")


def _natural_key(name: str) -> list:
    """``frame10.jpg`` after ``frame9.jpg``: digit runs compared as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]

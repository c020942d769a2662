"""Writes synthetic data sets in the exact on-disk layouts of HITSZ-VCM and BUPTCampus, read
back by the same data-set classes as the real data (``datasets/vcm.py``, ``datasets/bupt.py``).

Frames come from a ``render(person, modality, camera, tracklet, frame) -> (H, W, 3) uint8``
callable (``person`` and ``camera`` 0-based, modality 0 visible / 1 infrared):
:class:`~fastreid_vld.data.synthetic_persons.SyntheticPersonRenderer` for a real cross-modal
problem (the demo), :func:`identity_pattern` (the default) for fast tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .datasets.bupt import CAMERAS
from .tracklets import INFRARED, VISIBLE

Renderer = Callable[[int, int, int, int, int], np.ndarray]


def identity_pattern(size: tuple[int, int] = (32, 16)) -> Renderer:
    """A cheap renderer: two colour blocks per person (grey levels in infrared)."""

    def render(person: int, modality: int, camera: int, tracklet: int, frame: int) -> np.ndarray:
        rng = np.random.default_rng((person, 7))
        upper, lower = rng.integers(0, 256, (2, 3))
        image = np.empty((*size, 3), np.uint8)
        image[: size[0] // 2], image[size[0] // 2:] = upper, lower
        if modality == INFRARED:
            image[:] = image.mean(axis=2, keepdims=True).astype(np.uint8)
        return image

    return render


@dataclass(frozen=True)
class SyntheticSize:
    """How much to write. Identities 0..train_ids-1 are training ids, the rest test ids."""

    train_ids: int = 4
    test_ids: int = 4
    cameras: int = 2                   # cameras per modality (each films both modalities)
    tracklets_per_camera: int = 1      # per identity, camera and modality
    min_frames: int = 3                # frame counts are drawn in [min_frames, max_frames]
    max_frames: int = 16
    seed: int = 0

    def frame_counts(self) -> np.ndarray:
        """[ids, cameras, 2 modalities, tracklets] frame counts, deterministic for the seed."""
        rng = np.random.default_rng(self.seed)
        shape = (self.train_ids + self.test_ids, self.cameras, 2, self.tracklets_per_camera)
        return rng.integers(self.min_frames, self.max_frames + 1, size=shape)


def _save(render: Renderer, path: Path, *args: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render(*args)).save(path, quality=90)


def write_vcm(root: Path | str, size: SyntheticSize = SyntheticSize(), render: Renderer | None = None,
              progress: bool = False) -> Path:
    """HITSZ-VCM layout under ``root``: ``info/`` (five index files), ``Train/``, ``Test/``.
    The query (``query_IDX.txt``) is every infrared test tracklet, as in the real data set."""
    root = Path(root)
    render = render or identity_pattern()
    counts = size.frame_counts()
    names = {"train": [], "test": []}
    tracks = {"train": [], "test": []}
    query_rows = []
    jobs = []
    for person in range(size.train_ids + size.test_ids):
        split = "train" if person < size.train_ids else "test"
        pid = person + 1
        for camera in range(size.cameras):
            for modality in (VISIBLE, INFRARED):
                digit, folder = ("1", "ir") if modality == INFRARED else ("2", "rgb")
                next_frame = 1  # frame numbers run on across the tracklets of a folder
                for tracklet in range(size.tracklets_per_camera):
                    n = int(counts[person, camera, modality, tracklet])
                    start = len(names[split]) + 1
                    for offset in range(n):
                        frame = next_frame + offset
                        names[split].append(f"{pid:04d}M{digit}D{camera + 1}T{tracklet + 1}F{frame}.jpg")
                        path = root / split.title() / f"{pid:04d}" / folder / f"D{camera + 1}" / f"{frame}.jpg"
                        jobs.append((path, person, modality, camera, tracklet, offset))
                    next_frame += n
                    tracks[split].append(f"{digit} {start} {start + n - 1} {pid} {camera + 1}")
                    if split == "test" and modality == INFRARED:
                        query_rows.append(len(tracks["test"]))
    info = root / "info"
    info.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (info / f"{split}_name.txt").write_text("\n".join(names[split]) + "\n")
        (info / f"track_{split}_info.txt").write_text("\n".join(tracks[split]) + "\n")
    (info / "query_IDX.txt").write_text(" ".join(map(str, query_rows)) + "\n")
    for path, *args in tqdm(jobs, desc=f"writing HITSZ-VCM frames to {root}", disable=not progress):
        _save(render, path, *args)
    return root


def write_bupt(root: Path | str, size: SyntheticSize = SyntheticSize(), render: Renderer | None = None,
               auxiliary_ids: int = 0, progress: bool = False) -> Path:
    """BUPTCampus layout: ``root/BUPTCampus/`` with ``DATA/``, ``data_paths.json``, ``train.txt``,
    ``train_auxiliary.txt``, ``query.txt``, ``gallery.txt``. Training (and auxiliary) rows are
    RGB/IR pairs of equal length; a test identity's first camera goes to the query, the others
    to the gallery. Identities are named 1, 2, ... (so string order differs from numeric order
    from 10 identities on). Returns the ``BUPTCampus`` folder."""
    if size.cameras > len(CAMERAS):
        raise ValueError(f"BUPTCampus has {len(CAMERAS)} cameras, asked for {size.cameras}")
    folder = Path(root) / "BUPTCampus"
    render = render or identity_pattern()
    total = size.train_ids + size.test_ids + auxiliary_ids
    counts = SyntheticSize(size.train_ids + auxiliary_ids, size.test_ids, size.cameras,
                           size.tracklets_per_camera, size.min_frames, size.max_frames, size.seed).frame_counts()
    paths: dict = {}
    rows = {"train.txt": [], "train_auxiliary.txt": [], "query.txt": [], "gallery.txt": []}
    jobs = []
    for person in range(total):
        pid = str(person + 1)
        is_train = person < size.train_ids
        is_auxiliary = person >= size.train_ids + size.test_ids
        for camera in range(size.cameras):
            for tracklet in range(size.tracklets_per_camera):
                tracklet_id = str(tracklet + 1)
                n = int(counts[person, camera, INFRARED, tracklet])
                for modality, name in ((VISIBLE, "RGB"), (INFRARED, "IR")):
                    relative = [f"{pid}/{name}/{CAMERAS[camera]}/{tracklet_id}/{f:04d}.jpg" for f in range(n)]
                    by_camera = paths.setdefault(pid, {}).setdefault(name, {}).setdefault(CAMERAS[camera], {})
                    by_camera[tracklet_id] = relative
                    jobs += [(folder / "DATA" / p, person, modality, camera, tracklet, f)
                             for f, p in enumerate(relative)]
                    if not (is_train or is_auxiliary):
                        index = "query.txt" if camera == 0 else "gallery.txt"
                        rows[index].append(f"{pid} {name} {CAMERAS[camera]} {tracklet_id}")
                if is_train or is_auxiliary:
                    index = "train.txt" if is_train else "train_auxiliary.txt"
                    rows[index].append(f"{pid} RGB/IR {CAMERAS[camera]} {tracklet_id}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data_paths.json").write_text(json.dumps(paths))
    for index, lines in rows.items():
        (folder / index).write_text("".join(line + "\n" for line in lines))
    for path, *args in tqdm(jobs, desc=f"writing BUPTCampus frames to {folder}", disable=not progress):
        _save(render, path, *args)
    return folder

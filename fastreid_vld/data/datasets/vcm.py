"""HITSZ-VCM (Lin et al., CVPR 2022) in its official on-disk layout.

``ROOT/info/`` holds ``train_name.txt`` / ``test_name.txt`` (one frame name a line, e.g.
``0001M2D3T1F1.jpg``: pid, modality digit (1 infrared, else visible), camera D<k>, tracklet T,
frame F<n>), ``track_train_info.txt`` / ``track_test_info.txt`` (``m start end pid camid`` a line,
m 1 infrared / 2 visible, start/end 1-based inclusive lines of the name file) and
``query_IDX.txt`` (1-based rows of ``track_test_info.txt``). Frames live at
``ROOT/{Train,Test}/<pid4>/<ir|rgb>/D<k>/<n>.jpg`` (or, flat, ``ROOT/<pid4>/...``).
ROOT is ``DATASETS.ROOT/HITSZ-VCM`` or ``DATASETS.ROOT`` itself when it holds ``info/``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
from fastreid.data.datasets import DATASET_REGISTRY

from ..tracklets import INFRARED, VISIBLE, Tracklet
from .bases import DIRECTIONS, DatasetFormatError, VideoCrossModalDataset

FRAME_NAME = re.compile(r"^(\d{4})M(\d)(D\d+)T\d+F(\d+\.jpg)$")


@DATASET_REGISTRY.register()
class VCM(VideoCrossModalDataset):
    protocol = "vcm"
    test_frame_rule = "chunk_first"
    dataset_dir = "HITSZ-VCM"
    root_marker = "info"

    def __init__(self, root: str = "datasets", min_frames: int = 12, test_only: bool = False, **kwargs) -> None:
        self.root = self._folder(root, "the HITSZ-VCM folder (info/, Train/, Test/)")
        info = self._require(self.root / "info", "the HITSZ-VCM index folder info/")
        self.min_frames = min_frames
        self.test_only = test_only
        left_out: Counter = Counter()

        train = []
        if not test_only:
            train_rows = self._read_tracks(info / "track_train_info.txt")
            train = self._tracklets(train_rows, info / "track_train_info.txt", info / "train_name.txt",
                                    self._frame_root("Train"), "train", left_out)[0]
        test_rows = self._read_tracks(info / "track_test_info.txt")
        test, kept_rows = self._tracklets(test_rows, info / "track_test_info.txt", info / "test_name.txt",
                                          self._frame_root("Test"), "test", left_out)
        infrared_query_rows = self._read_query_rows(info / "query_IDX.txt", len(test_rows))
        is_query = np.isin(kept_rows, infrared_query_rows)
        # IR->VIS: the listed rows are the query; VIS->IR: the other rows query those rows.
        directions = dict(zip(DIRECTIONS, [(np.flatnonzero(is_query), np.flatnonzero(~is_query)),
                                           (np.flatnonzero(~is_query), np.flatnonzero(is_query))], strict=True))
        self.splits = {"query": directions["IR->VIS"][0], "gallery": directions["IR->VIS"][1]}
        self._finish(train, test, directions, left_out)

    def _frame_root(self, split: str) -> Path:
        official = self.root / split
        return official if official.is_dir() else self.root

    @staticmethod
    def _read_lines(path: Path) -> list[str]:
        return VideoCrossModalDataset._read_text(path, "a HITSZ-VCM index file").splitlines()

    def _read_tracks(self, path: Path) -> np.ndarray:
        rows = []
        for number, line in enumerate(self._read_lines(path), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 5 or not all(f.isdigit() for f in fields) or fields[0] not in ("1", "2"):
                raise DatasetFormatError(path, "'m start end pid camid' (five integers, m 1 infrared or "
                                         "2 visible)", line=number, found=line)
            rows.append([int(f) for f in fields])
        return np.asarray(rows, dtype=np.int64).reshape(-1, 5)

    @staticmethod
    def _read_query_rows(path: Path, num_rows: int) -> np.ndarray:
        tokens = VCM._read_lines(path)
        values = " ".join(tokens).split()
        if not values or not all(v.isdigit() and 1 <= int(v) <= num_rows for v in values):
            raise DatasetFormatError(path, f"1-based row numbers of track_test_info.txt (1..{num_rows})",
                                     found=" ".join(values[:5]))
        return np.asarray([int(v) - 1 for v in values], dtype=np.int64)

    def _tracklets(self, rows: np.ndarray, track_path: Path, names_path: Path, frame_root: Path,
                   split: str, left_out: Counter) -> tuple[list[Tracklet], np.ndarray]:
        """The tracklets of ``rows`` with at least ``min_frames`` frames, and their row numbers."""
        names = self._read_lines(names_path)
        tracklets, kept = [], []
        for row, (m, start, end, pid, camid) in enumerate(rows):
            if not 1 <= start <= end <= len(names):
                raise DatasetFormatError(track_path, f"1 <= start <= end <= {len(names)} (lines of "
                                         f"{names_path.name})", line=row + 1, found=f"{start} {end}")
            modality = INFRARED if m == 1 else VISIBLE
            frames = tuple(self._frame_path(names_path, number, names[number - 1], frame_root, pid, modality)
                           for number in range(start, end + 1))
            if len(frames) < self.min_frames:
                left_out[f"{split} tracklets with < {self.min_frames} frames"] += 1
                continue
            tracklets.append(Tracklet(frames, int(pid), int(camid), modality))
            kept.append(row)
        return tracklets, np.asarray(kept, dtype=np.int64)

    @staticmethod
    def _frame_path(names_path: Path, line: int, name: str, frame_root: Path, pid: int, modality: int) -> str:
        match = FRAME_NAME.match(name.strip())
        if match is None:
            raise DatasetFormatError(names_path, "a frame name like 0001M2D3T1F1.jpg", line=line, found=name)
        name_pid, modality_digit, camera, picture = match.groups()
        if int(name_pid) != pid or (modality_digit == "1") != (modality == INFRARED):
            raise DatasetFormatError(names_path, f"a frame of identity {pid:04d}, "
                                     f"{'infrared' if modality == INFRARED else 'visible'} "
                                     "(as the tracklet row that lists it says)", line=line, found=name)
        folder = "ir" if modality_digit == "1" else "rgb"
        return str(frame_root / name_pid / folder / camera / picture)

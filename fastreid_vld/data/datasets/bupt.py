"""BUPTCampus (Du et al., NeurIPS 2023) in its official on-disk layout.

ROOT (``DATASETS.ROOT/BUPTCampus``) holds ``DATA/`` (the frames), ``data_paths.json``
(``[pid][RGB|IR][camera][tracklet_id]`` -> frame paths relative to ``DATA/``), and
``train.txt``, ``train_auxiliary.txt``, ``query.txt``, ``gallery.txt`` with one
``pid modality camera tracklet_id`` a line. Train and auxiliary rows are ``RGB/IR``
pixel-aligned pairs (both modalities use the frame indices drawn from the IR length);
query/gallery rows are ``RGB`` or ``IR``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from fastreid.data.datasets import DATASET_REGISTRY

from ..tracklets import INFRARED, VISIBLE, Tracklet
from .bases import DatasetFormatError, VideoCrossModalDataset

CAMERAS = ("LS3", "G25", "CQ1", "W4", "TSG1", "TSG2")
MODALITIES = {"RGB": VISIBLE, "IR": INFRARED}


@DATASET_REGISTRY.register()
class BUPTCampus(VideoCrossModalDataset):
    protocol = "bupt"
    test_frame_rule = "linspace"
    dataset_dir = "BUPTCampus"
    #: train tracklets come in (visible, infrared) pairs at positions (2i, 2i + 1)
    paired_train = True

    def __init__(self, root: str = "datasets", use_auxiliary: bool = False,
                 drop_rgb_remainder: int = 0, **kwargs) -> None:
        self.root = self._require(Path(root) / self.dataset_dir, "the BUPTCampus folder (DATA/, "
                                  "data_paths.json, train.txt, ...) under DATASETS.ROOT")
        paths_file = self._require(self.root / "data_paths.json", "BUPTCampus' data_paths.json")
        try:
            self.data_paths = json.loads(paths_file.read_text())
        except json.JSONDecodeError as error:
            raise DatasetFormatError(paths_file, "valid JSON", line=error.lineno, found=error.msg) from None
        self.frame_root = self._require(self.root / "DATA", "BUPTCampus' frame folder DATA/")

        train = self._pairs(self.root / "train.txt")
        auxiliary = self._pairs(self.root / "train_auxiliary.txt") if use_auxiliary else None
        query = self._singles(self.root / "query.txt")
        gallery = self._singles(self.root / "gallery.txt")
        left_out: Counter = Counter()
        if drop_rgb_remainder:
            query, gallery = (self._drop_remainder(rows, drop_rgb_remainder, name, left_out)
                              for rows, name in ((query, "query"), (gallery, "gallery")))
        test = query + gallery
        modality = np.asarray([t.modality for t in test])
        in_query = np.arange(len(test)) < len(query)
        directions = {"IR->VIS": (np.flatnonzero(in_query & (modality == INFRARED)),
                                  np.flatnonzero(~in_query & (modality == VISIBLE))),
                      "VIS->IR": (np.flatnonzero(in_query & (modality == VISIBLE)),
                                  np.flatnonzero(~in_query & (modality == INFRARED)))}
        self._finish(train, test, directions, left_out, auxiliary)

    def _rows(self, path: Path, modalities: tuple[str, ...]):
        self._require(path, "a BUPTCampus index file")
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 4 or fields[1] not in modalities or fields[2] not in CAMERAS:
                raise DatasetFormatError(path, f"'pid modality camera tracklet_id' with modality in "
                                         f"{modalities} and camera in {CAMERAS}", line=number, found=line)
            yield number, fields

    def _frames(self, index_file: Path, line: int, pid: str, modality: str, camera: str,
                tracklet_id: str) -> tuple[str, ...]:
        try:
            relative = self.data_paths[pid][modality][camera][tracklet_id]
        except (KeyError, TypeError):
            raise DatasetFormatError(self.root / "data_paths.json",
                                     f"an entry [{pid}][{modality}][{camera}][{tracklet_id}] (listed at "
                                     f"{index_file.name}:{line})", found="no such entry") from None
        if not relative:
            raise DatasetFormatError(self.root / "data_paths.json", f"frames for [{pid}][{modality}]"
                                     f"[{camera}][{tracklet_id}]", found="an empty list")
        return tuple(str(self.frame_root / p) for p in relative)

    def _pairs(self, path: Path) -> list[Tracklet]:
        tracklets = []
        for number, (pid, _, camera, tracklet_id) in self._rows(path, ("RGB/IR",)):
            infrared = self._frames(path, number, pid, "IR", camera, tracklet_id)
            visible = self._frames(path, number, pid, "RGB", camera, tracklet_id)
            if len(visible) < len(infrared):
                raise DatasetFormatError(self.root / "data_paths.json", f"at least {len(infrared)} RGB frames "
                                         f"(as many as IR) for the pair [{pid}][{camera}][{tracklet_id}]",
                                         found=f"{len(visible)} frames")
            camid = CAMERAS.index(camera)
            tracklets += [Tracklet(visible[: len(infrared)], pid, camid, VISIBLE),
                          Tracklet(infrared, pid, camid, INFRARED)]
        return tracklets

    def _singles(self, path: Path) -> list[Tracklet]:
        return [Tracklet(self._frames(path, number, pid, modality, camera, tracklet_id), pid,
                         CAMERAS.index(camera), MODALITIES[modality])
                for number, (pid, modality, camera, tracklet_id) in self._rows(path, ("RGB", "IR"))]

    @staticmethod
    def _drop_remainder(rows: list[Tracklet], batch: int, name: str, left_out: Counter) -> list[Tracklet]:
        """The original test sampler drops the last ``len(rgb) % batch`` visible tracklets (all of
        them when the remainder is 0); reproduced for comparisons with published numbers."""
        visible = [i for i, t in enumerate(rows) if t.modality == VISIBLE]
        drop = len(visible) % batch or len(visible)
        dropped = set(visible[len(visible) - drop:])
        left_out[f"{name} visible tracklets dropped as the original test sampler does"] += len(dropped)
        return [t for i, t in enumerate(rows) if i not in dropped]

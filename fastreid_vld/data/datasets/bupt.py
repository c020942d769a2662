"""BUPTCampus (Du et al., NeurIPS 2023) in its official on-disk layout.

ROOT (``DATASETS.ROOT/BUPTCampus``, or ``DATASETS.ROOT`` itself when it holds
``data_paths.json``) holds ``DATA/`` (the frames), ``data_paths.json``
(``[pid][RGB|IR][camera][tracklet_id]`` -> frame paths relative to ``DATA/``), and
``train.txt``, ``train_auxiliary.txt``, ``query.txt``, ``gallery.txt`` with one
``pid modality camera tracklet_id`` a line. Train and auxiliary rows are ``RGB/IR``
pixel-aligned pairs (both modalities use the frame indices drawn from the IR length);
query/gallery rows are ``RGB`` or ``IR``.

Two test subsets are evaluated: ``official``, as the data set's original test sampler (which
VLD's published numbers went through) feeds the model: batches of 64 of one modality, visible
first, the last ``len(visible) % 64`` visible tracklets of query.txt and of gallery.txt dropped
(all of them when that is 0); and ``all``, every tracklet.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
from fastreid.data.datasets import DATASET_REGISTRY

from ..tracklets import INFRARED, VISIBLE, Tracklet
from .bases import DatasetFormatError, VideoCrossModalDataset

logger = logging.getLogger(__name__)

CAMERAS = ("LS3", "G25", "CQ1", "W4", "TSG1", "TSG2")
MODALITIES = {"RGB": VISIBLE, "IR": INFRARED}


@DATASET_REGISTRY.register()
class BUPTCampus(VideoCrossModalDataset):
    protocol = "bupt"
    test_frame_rule = "linspace"
    dataset_dir = "BUPTCampus"
    root_marker = "data_paths.json"
    #: train tracklets come in (visible, infrared) pairs at positions (2i, 2i + 1)
    paired_train = True

    def __init__(self, root: str = "datasets", use_auxiliary: bool = False,
                 drop_rgb_remainder: int = 64, test_only: bool = False, **kwargs) -> None:
        self.root = self._folder(root, "the BUPTCampus folder (DATA/, data_paths.json, train.txt, ...)")
        paths_file = self._require(self.root / "data_paths.json", "BUPTCampus' data_paths.json")
        try:
            self.data_paths = json.loads(paths_file.read_text())
        except json.JSONDecodeError as error:
            raise DatasetFormatError(paths_file, "valid JSON", line=error.lineno, found=error.msg) from None
        self.frame_root = self._require(self.root / "DATA", "BUPTCampus' frame folder DATA/")

        self.test_only = test_only
        train = [] if test_only else self._pairs(self.root / "train.txt")
        auxiliary = self._pairs(self.root / "train_auxiliary.txt") if use_auxiliary and not test_only else None
        query = self._singles(self.root / "query.txt")
        gallery = self._singles(self.root / "gallery.txt")
        test = query + gallery
        modality = np.asarray([t.modality for t in test])
        in_query = np.arange(len(test)) < len(query)
        self.splits = {"query": np.flatnonzero(in_query), "gallery": np.flatnonzero(~in_query)}
        subsets = {"all": (np.ones(len(test), dtype=bool), "every tracklet of query.txt and gallery.txt")}
        official = self._official_subset(query, gallery, drop_rgb_remainder) if drop_rgb_remainder else None
        if official is not None:
            subsets = {"official": official, **subsets}
        self.test_subsets = {label: meaning for label, (_, meaning) in subsets.items()}
        directions = {}
        for label, (chosen, _) in subsets.items():
            directions[f"{label}/IR->VIS"] = (np.flatnonzero(chosen & in_query & (modality == INFRARED)),
                                              np.flatnonzero(chosen & ~in_query & (modality == VISIBLE)))
            directions[f"{label}/VIS->IR"] = (np.flatnonzero(chosen & in_query & (modality == VISIBLE)),
                                              np.flatnonzero(chosen & ~in_query & (modality == INFRARED)))
        self._finish(train, test, directions, Counter(), auxiliary)

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
    def _official_subset(query: list[Tracklet], gallery: list[Tracklet], batch: int) -> tuple[np.ndarray, str] | None:
        """([len(query) + len(gallery)] bool, description): the test tracklets the original test
        sampler feeds the model. Of query.txt and of gallery.txt it drops the last
        ``len(visible) % batch`` visible tracklets (all of them when the remainder is 0); None, with
        a warning, where that leaves no visible tracklet on one side (a set too small to rank)."""
        kept, dropped = [], []
        for name, rows in (("query.txt", query), ("gallery.txt", gallery)):
            visible = np.flatnonzero([t.modality == VISIBLE for t in rows])
            drop = len(visible) % batch or len(visible)
            kept.append(np.ones(len(rows), dtype=bool))
            kept[-1][visible[len(visible) - drop:]] = False
            dropped.append(drop)
            if drop == len(visible):
                logger.warning("BUPTCampus: the original test sampler (batches of %d) drops all %d visible tracklets "
                               "of %s here (fewer than %d, or a multiple): the official test subset would have no "
                               "visible side and is not evaluated, only 'all'", batch, len(visible), name, batch)
                return None
        return np.concatenate(kept), (f"as the original test sampler (batches of {batch}): the last len(visible) % "
                                      f"{batch} visible tracklets of query.txt and of gallery.txt ({dropped[0]} and "
                                      f"{dropped[1]} here) are left out; VLD's published numbers were measured so")

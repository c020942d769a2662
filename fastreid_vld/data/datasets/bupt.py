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
#: data_paths.json's nesting, and what each level of it maps, outermost first
LAYOUT = "[pid][RGB|IR][camera][tracklet_id] -> frame paths relative to DATA/"
LEVELS = ("identities", "modalities (RGB, IR)", "cameras", "tracklet ids")
#: JSON values in words, by the Python type json.loads gives them
JSON_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
              float: "a number", type(None): "null"}


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
        paths_file = self.root / "data_paths.json"
        try:
            self.data_paths = json.loads(self._read_text(paths_file, "BUPTCampus' data_paths.json"))
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
        for number, line in enumerate(self._read_text(path, "a BUPTCampus index file").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 4 or fields[1] not in modalities or fields[2] not in CAMERAS:
                raise DatasetFormatError(path, f"'pid modality camera tracklet_id' with modality in "
                                         f"{modalities} and camera in {CAMERAS}", line=number, found=line)
            yield number, fields

    def _frames(self, index_file: Path, line: int, pid: str, modality: str, camera: str,
                tracklet_id: str) -> tuple[str, ...]:
        """The frame paths data_paths.json lists for a row (line ``line`` of ``index_file``): one
        DatasetFormatError naming the entry where it is missing or not a non-empty list of strings."""
        keys = (pid, modality, camera, tracklet_id)
        listed = f"listed at {index_file.name}:{line}"
        entry = self.data_paths
        for depth, key in enumerate(keys):
            if not isinstance(entry, dict):
                raise self._paths_error(f"an object of {LEVELS[depth]} at {_at(keys[:depth])} ({LAYOUT}; {listed})",
                                        instead=_json_kind(entry))
            if key not in entry:
                raise self._paths_error(f"an entry {_at(keys)} ({listed})", found="no such entry")
            entry = entry[key]
        if not isinstance(entry, list):
            raise self._paths_error(f"a list of frame paths (relative to DATA/) at {_at(keys)} ({listed})",
                                    instead=_json_kind(entry))
        if not entry:
            raise self._paths_error(f"frames for {_at(keys)}", found="an empty list")
        for position, path in enumerate(entry):
            if not isinstance(path, str):
                raise self._paths_error(f"frame paths (strings) in the list at {_at(keys)} ({listed})",
                                        instead=f"{_json_kind(path)} at position {position}")
        return tuple(str(self.frame_root / path) for path in entry)

    def _paths_error(self, expected: str, found: str | None = None, instead: str | None = None) -> DatasetFormatError:
        """A DatasetFormatError about data_paths.json."""
        return DatasetFormatError(self.root / "data_paths.json", expected, found=found, instead=instead)

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


def _at(keys: tuple[str, ...]) -> str:
    """Where ``keys`` lead in data_paths.json: ``[1][RGB]``, or ``the top level``."""
    return "".join(f"[{key}]" for key in keys) or "the top level"


def _json_kind(value: object) -> str:
    """A JSON value in words: ``an object``, ``a list``, ``null``, ``a number (3)``, ``a string ("x")``."""
    kind = JSON_KINDS[type(value)]
    return kind if isinstance(value, (dict, list, type(None))) else f"{kind} ({json.dumps(value)})"

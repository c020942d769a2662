"""What every video cross-modal (visible-infrared) data set provides, and its bad-input errors."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
from tabulate import tabulate

from ..frame_check import decode_every_frame
from ..text import non_utf8, shown
from ..tracklets import INFRARED, MODALITY_NAMES, VISIBLE, Tracklet

logger = logging.getLogger(__name__)

DIRECTIONS = ("IR->VIS", "VIS->IR")
#: the shell-safe spellings of DIRECTIONS (``IR->VIS`` unquoted is a redirection to a file ``VIS``)
DIRECTION_ALIASES = {"IR2VIS": "IR->VIS", "VIS2IR": "VIS->IR"}


def canonical_direction(name: str) -> str:
    """A direction or result name with its direction spelled as DIRECTIONS spell it: ``IR2VIS``,
    ``VIS2IR`` and ``IR->VIS`` in any case are accepted (``"ir2vis"`` -> ``"IR->VIS"``,
    ``"official/VIS2IR/mAP"`` -> ``"official/VIS->IR/mAP"``); other parts are kept as written."""
    return "/".join(DIRECTION_ALIASES.get(part.upper().replace("->", "2"), part) for part in name.split("/"))


class DatasetFormatError(ValueError):
    """A data-set file is missing or does not say what the layout requires: ``PATH[:LINE]: expected
    EXPECTED, found ...``, with ``found`` (what the file says, quoted as read) or ``instead`` (what
    was found, in words: ``a folder``); the path as :func:`~fastreid_vld.data.text.shown` shows it."""

    def __init__(self, path: os.PathLike | str, expected: str, line: int | None = None,
                 found: str | None = None, instead: str | None = None) -> None:
        where = shown(path) + (f":{line}" if line is not None else "")
        message = f"{where}: expected {expected}"
        if found is not None:
            message += f", found {found!r}"
        elif instead is not None:
            message += f", found {instead}"
        super().__init__(message)


class VideoCrossModalDataset:
    """A parsed, validated video visible-infrared re-id data set.

    Subclasses parse their layout in ``__init__`` and call :meth:`_finish` with:

    - ``train``: training tracklets (``pid`` as the data set names it; the loader relabels);
    - ``test``: every test tracklet once;
    - ``directions``: ``{"IR->VIS": (query_idx, gallery_idx), "VIS->IR": ...}``, index arrays
      into ``test``;
    - ``left_out``: a Counter of tracklets not used, by reason.

    ``self.root``: the data set's folder (from :meth:`_folder`), set before :meth:`_finish`, which
    checks that every listed frame exists and decodes (once: see ``frame_check.py``) and that the
    training set and every direction's query and gallery hold tracklets. ``self.test_only``: the
    test split alone was read (``train`` empty; evaluation and feature extraction). ``self.splits``:
    ``{"query": idx, "gallery": idx}`` into ``test``, the data set's own query and gallery lists
    (``tools/extract_features.py --split``).

    Class attributes: ``protocol`` ("vcm" removes same-identity same-camera gallery entries at
    evaluation, "bupt" does not), ``test_frame_rule`` (see ``tracklets.test_frame_indices``),
    ``dataset_dir`` and ``root_marker`` (see :meth:`_folder`).

    ``test_subsets``: where a data set is evaluated on more than one subset of its test tracklets
    (BUPTCampus: ``official``, ``all``), label -> what the subset is; direction names are then
    ``"<label>/IR->VIS"``, and the first label is the one published numbers and model selection
    use. Empty (HITSZ-VCM): one set, directions named ``"IR->VIS"``.
    """

    protocol: str
    test_frame_rule: str
    dataset_dir: str   # the data set's folder, as a sub-folder of DATASETS.ROOT
    root_marker: str   # a file or folder that only the data set's folder itself holds
    test_subsets: dict[str, str] = {}
    test_only: bool = False
    splits: dict[str, np.ndarray]

    def _finish(self, train: list[Tracklet], test: list[Tracklet],
                directions: dict[str, tuple[np.ndarray, np.ndarray]], left_out: Counter,
                auxiliary: list[Tracklet] | None = None) -> None:
        self.train, self.test, self.directions = train, test, directions
        self.auxiliary = auxiliary
        self.left_out = left_out
        self._check_not_empty()
        self._check_cross_modal_identities()
        decode_every_frame(train + test + (auxiliary or []), self.root, DatasetFormatError)

    def _check_not_empty(self) -> None:
        """A training set, and every direction's query and gallery, with at least one tracklet."""
        parts = {} if self.test_only else {"training set": len(self.train)}
        for name, (query, gallery) in self.directions.items():
            parts[f"{name} query"], parts[f"{name} gallery"] = len(query), len(gallery)
        empty = [part for part, count in parts.items() if count == 0]
        if empty:
            raise DatasetFormatError(self.root, f"a {type(self).__name__} data set with tracklets in its training "
                                     "set and in every query and gallery", found=f"no tracklet in: {', '.join(empty)}")

    def labelled(self, name: str) -> str:
        """A direction or result name (``"IR->VIS"``, ``"IR2VIS/Rank-1"``: :func:`canonical_direction`)
        with the first test subset's label where the data set has subsets and ``name`` carries none
        (BUPTCampus: ``"official/IR->VIS"``); ``name`` itself otherwise."""
        name = canonical_direction(name)
        if not self.test_subsets or name.split("/", 1)[0] in self.test_subsets:
            return name
        return f"{next(iter(self.test_subsets))}/{name}"

    @classmethod
    def _folder(cls, root: str, what: str) -> Path:
        """The data set's folder: DATASETS.ROOT itself where it holds ``root_marker``, else
        ``DATASETS.ROOT/dataset_dir``; ``what`` describes it for the error when it is missing."""
        root_path = Path(root)
        folder = root_path if (root_path / cls.root_marker).exists() else root_path / cls.dataset_dir
        return cls._require(folder, f"{what}, as DATASETS.ROOT itself or as {cls.dataset_dir}/ under it")

    @staticmethod
    def _require(path: Path, what: str) -> Path:
        if not path.exists():
            raise DatasetFormatError(path, what, found="nothing (missing)")
        return path

    @classmethod
    def _read_text(cls, path: Path, what: str) -> str:
        """The text of the index file ``path`` (``what`` describes it): one DatasetFormatError naming it
        where it is missing, a folder, unreadable or not UTF-8 (a byte-order mark is allowed)."""
        cls._require(path, what)
        if path.is_dir():
            raise DatasetFormatError(path, what, instead="a folder")
        try:
            data = path.read_bytes()
        except OSError as error:
            raise DatasetFormatError(path, what, instead=f"a file this process cannot read ({error.strerror})") from None
        if (undecodable := non_utf8(data)) is not None:
            offset, described = undecodable
            raise DatasetFormatError(path, f"UTF-8 text ({what})", line=data.count(b"\n", 0, offset) + 1,
                                     instead=described)
        return data.decode("utf-8").removeprefix("\ufeff")

    def _check_cross_modal_identities(self) -> None:
        """The training identities the cross-modal samplers can draw: those with tracklets in both
        modalities (every batch takes each of its identities in both). Identities with one modality
        only are a warning, once, naming how many and the first of them; none in both is an error."""
        modalities: dict[object, set[int]] = {}
        for tracklet in self.train + (self.auxiliary or []):
            modalities.setdefault(tracklet.pid, set()).add(tracklet.modality)
        single = {name: sorted(pid for pid, seen in modalities.items() if seen == {modality})
                  for modality, name in MODALITY_NAMES.items()}
        count = sum(map(len, single.values()))
        if not count:
            return
        listed = "; ".join(f"{name} only: {_first(pids)}" for name, pids in single.items() if pids)
        if count == len(modalities):
            raise DatasetFormatError(self.root, "training identities with tracklets in both modalities (every "
                                     "cross-modal batch takes each of its identities in both)",
                                     instead=f"none of its {count} ({listed})")
        logger.warning("%s: %d of the %d training identities %s tracklets of one modality only and %s never drawn "
                       "(every cross-modal batch takes each of its identities in both modalities): %s",
                       type(self).__name__, count, len(modalities), "has" if count == 1 else "have",
                       "is" if count == 1 else "are", listed)

    # ------------------------------------------------------------------ summaries

    def describe(self) -> dict:
        """The counts of ``tools/describe_dataset.py --json``."""

        def by_modality(tracklets: list[Tracklet]) -> dict:
            return {MODALITY_NAMES[m]: {"tracklets": sum(t.modality == m for t in tracklets),
                                        "frames": sum(len(t.frames) for t in tracklets if t.modality == m)}
                    for m in (VISIBLE, INFRARED)}

        def split(tracklets: list[Tracklet]) -> dict:
            return {"ids": len({t.pid for t in tracklets}), "tracklets": len(tracklets),
                    "frames": sum(len(t.frames) for t in tracklets)}

        summary = {"dataset": type(self).__name__,
                   "train": {"ids": len({t.pid for t in self.train}), **by_modality(self.train)}}
        if self.auxiliary is not None:
            summary["auxiliary"] = {"ids": len({t.pid for t in self.auxiliary}), **by_modality(self.auxiliary)}
        for name, (query_idx, gallery_idx) in self.directions.items():
            summary[name] = {"query": split([self.test[i] for i in query_idx]),
                             "gallery": split([self.test[i] for i in gallery_idx])}
        summary["left_out"] = dict(self.left_out)
        if self.test_subsets:
            summary["test_subsets"] = dict(self.test_subsets)
        return summary

    def summary_table(self) -> str:
        """fast-reid-style tables: per split and modality, ids / tracklets / frames / cameras."""
        rows = []

        def add(name: str, tracklets: list[Tracklet]) -> None:
            for modality in (VISIBLE, INFRARED):
                chosen = [t for t in tracklets if t.modality == modality]
                if chosen:
                    rows.append([name, MODALITY_NAMES[modality], len({t.pid for t in chosen}), len(chosen),
                                 sum(len(t.frames) for t in chosen), len({t.camid for t in chosen})])

        add("train", self.train)
        if self.auxiliary is not None:
            add("auxiliary", self.auxiliary)
        for name, (query_idx, gallery_idx) in self.directions.items():
            add(f"{name} query", [self.test[i] for i in query_idx])
            add(f"{name} gallery", [self.test[i] for i in gallery_idx])
        table = tabulate(rows, headers=["subset", "modality", "# ids", "# tracklets", "# frames", "# cameras"],
                         tablefmt="pipe")
        left_out = ", ".join(f"{reason}: {count}" for reason, count in self.left_out.items()) or "none"
        subsets = "".join(f"\ntest subset {label}: {meaning}" for label, meaning in self.test_subsets.items())
        return f"=> Loaded {type(self).__name__}:\n{table}\nleft out: {left_out}{subsets}"


#: identities named in a message about several (all of them are counted)
NAMED_IDS = 10


def _first(pids: list) -> str:
    """The first :data:`NAMED_IDS` of ``pids``, comma-separated, ``...`` where there are more."""
    return ", ".join(map(str, pids[:NAMED_IDS])) + (", ..." if len(pids) > NAMED_IDS else "")

"""Feature files (``.npz``) of ``tools/extract_features.py``, read by ``tools/search.py``.

Entries: ``features`` [N, D] float32, ``names`` [N] (tracklet folders relative to ``--input``, or
data-set tracklets as ``<frame folder>/<first frame>-<last frame>``), ``thumbnails`` [N] (each
tracklet's middle frame, for pictures), ``config`` (the config the features were computed with,
as YAML) and ``weights`` (its MODEL.WEIGHTS); for a data set's split also ``pids`` [N] (str),
``camids`` [N] and ``modalities`` [N] (0 visible, 1 infrared).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import remove_leftovers, write_atomically
from ..evaluation.metrics import non_finite_rows

__all__ = ["FeatureFileError", "FeatureSet", "read_features", "write_features"]

LABELS = ("pids", "camids", "modalities")


class FeatureFileError(ValueError):
    """A features file that is not one ``tools/extract_features.py`` writes."""


@dataclass(frozen=True)
class FeatureSet:
    features: np.ndarray    # [N, D] float32
    names: np.ndarray       # [N] str
    thumbnails: np.ndarray  # [N] str: frame paths
    config: str = ""
    weights: str = ""
    pids: np.ndarray | None = None        # [N] str, where identities are known
    camids: np.ndarray | None = None      # [N] int
    modalities: np.ndarray | None = None  # [N] int

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, keep: np.ndarray) -> FeatureSet:
        """The entries where the [N] bool ``keep`` is true."""
        labels = {key: None if getattr(self, key) is None else getattr(self, key)[keep] for key in LABELS}
        return FeatureSet(self.features[keep], self.names[keep], self.thumbnails[keep], self.config, self.weights,
                          **labels)


def write_features(path: str | Path, features: FeatureSet) -> Path:
    """Write ``features`` to ``path`` (a complete file or none: written beside it, then renamed; the temporary files
    of earlier writes to ``path`` that were killed are removed first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent, re.escape(path.name))
    entries = {"features": features.features.astype(np.float32, copy=False), "names": features.names.astype(str),
               "thumbnails": features.thumbnails.astype(str), "config": np.asarray(features.config),
               "weights": np.asarray(features.weights)}
    entries.update({key: getattr(features, key) for key in LABELS if getattr(features, key) is not None})
    write_atomically(path, lambda file: np.savez(file, **entries))
    return path


def read_features(path: str | Path) -> FeatureSet:
    """The :class:`FeatureSet` of ``path``; a :class:`FeatureFileError` naming it when it is not one (features
    holding NaN included)."""
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"{path}: expected a features file of tools/extract_features.py, found nothing")
    try:
        with np.load(path, allow_pickle=False) as npz:
            entries = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise FeatureFileError(f"{path}: expected a features file (.npz) of tools/extract_features.py ({error})") \
            from None
    missing = [key for key in ("features", "names", "thumbnails") if key not in entries]
    if missing:
        raise FeatureFileError(f"{path}: expected the entries features, names and thumbnails, found "
                               f"{sorted(entries)} (no {', '.join(missing)})")
    features = entries["features"]
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.floating):
        raise FeatureFileError(f"{path}: expected features [N, D] float, found {features.dtype} {list(features.shape)}")
    n = len(features)
    for key in ("names", "thumbnails", *LABELS):
        if key in entries and entries[key].shape != (n,):
            raise FeatureFileError(f"{path}: expected {key} [{n}] (one per feature), found {list(entries[key].shape)}")
    bad = non_finite_rows(features)
    if bad:
        weights = f" (MODEL.WEIGHTS {entries['weights']})" if str(entries.get("weights", "")) else ""
        raise FeatureFileError(f"{path}: {bad} of {n} features hold NaN or infinite values: produced by a model that "
                               f"produces NaN{weights}; expected finite features")
    return FeatureSet(features.astype(np.float32, copy=False), entries["names"], entries["thumbnails"],
                      str(entries.get("config", "")), str(entries.get("weights", "")),
                      **{key: entries.get(key) for key in LABELS})

"""Features of a folder of tracklet folders, or of a registered data set's query or gallery split,
as :class:`~fastreid_vld.engine.feature_files.FeatureSet` (``tools/extract_features.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from fastreid.config import CfgNode
from fastreid.data.datasets import DATASET_REGISTRY

from ..data.build import is_vvi_dataset, load_vvi_dataset
from ..data.tracklet_folders import find_tracklet_folders
from ..evaluation.metrics import check_finite_features
from .feature_files import FeatureSet
from .predictor import TrackletPredictor

__all__ = ["dataset_features", "folder_features", "middle_frame", "video_dataset_names"]


def video_dataset_names() -> list[str]:
    """The registered video visible-infrared data sets (VCM, BUPTCampus), in registration order: the
    choices of a tool's ``--dataset``."""
    return [name for name in DATASET_REGISTRY._obj_map if is_vvi_dataset(name)]  # fast-reid's Registry lists none


def middle_frame(frames: Sequence[str]) -> str:
    """The frame that stands for a tracklet in pictures."""
    return frames[len(frames) // 2]


def folder_features(cfg: CfgNode, root: str | Path, weights: str | None = None) -> FeatureSet:
    """Every tracklet folder under ``root`` (data/tracklet_folders.py), in name order, with the test
    frame rule of the config's first test set (or INPUT.TEST_FRAME_RULE)."""
    tracklets = find_tracklet_folders(root)  # before the model is built: a bad folder fails at once
    return _features(TrackletPredictor(cfg, weights), [t.frames for t in tracklets], [t.name for t in tracklets],
                     f"tracklets in {root}")


def dataset_features(cfg: CfgNode, dataset_name: str, split: str, weights: str | None = None) -> FeatureSet:
    """The ``split`` ("query" or "gallery": the data set's own lists, ``dataset.splits``) of data set
    ``dataset_name`` under DATASETS.ROOT, with its test frame rule and its identity labels; only the
    test split is read. Names: ``<frame folder>/<first frame>-<last frame>``, relative to the data set."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TESTS = (dataset_name,)  # the predictor takes this data set's test frame rule
    dataset = load_vvi_dataset(cfg, dataset_name, test_only=True)
    tracklets = [dataset.test[i] for i in dataset.splits[split]]
    root = Path(dataset.root)

    def name(frames: Sequence[str]) -> str:
        first, last = Path(frames[0]), Path(frames[-1])
        return f"{first.parent.relative_to(root).as_posix()}/{first.stem}-{last.stem}"

    return _features(TrackletPredictor(cfg, weights), [t.frames for t in tracklets],
                     [name(t.frames) for t in tracklets],
                     f"{dataset_name} {split} tracklets",
                     pids=np.asarray([str(t.pid) for t in tracklets]), camids=np.asarray([t.camid for t in tracklets]),
                     modalities=np.asarray([t.modality for t in tracklets]))


def _features(predictor: TrackletPredictor, frame_lists: list[Sequence[str]], names: list[str], what: str,
              **labels: np.ndarray) -> FeatureSet:
    """The :class:`FeatureSet` of tracklets given by their frames and names (``what``: "tracklets in DIR"), with
    the predictor's config and weights and the ``labels`` (pids, camids, modalities) where known; a
    :class:`~fastreid_vld.evaluation.metrics.NaNFeaturesError` where a feature holds NaN or an infinite value."""
    features = predictor.features(frame_lists, description=f"features of {len(frame_lists)} {what}")  # [N, D]
    check_finite_features(features, f"{what} with MODEL.WEIGHTS {predictor.cfg.MODEL.WEIGHTS}")
    return FeatureSet(features.numpy(), np.asarray(names), np.asarray([middle_frame(f) for f in frame_lists]),
                      predictor.cfg.dump(), predictor.cfg.MODEL.WEIGHTS, **labels)

"""Video visible-infrared data: tracklets, data sets (registered on import), loaders."""

from . import datasets  # noqa: F401  (registers VCM, BUPTCampus)
from .build import build_vvi_test_loader, build_vvi_train_loader, is_vvi_dataset, load_vvi_dataset
from .tracklets import INFRARED, VISIBLE, Tracklet, test_frame_indices, train_frame_indices

__all__ = ["INFRARED", "VISIBLE", "Tracklet", "build_vvi_test_loader", "build_vvi_train_loader",
           "is_vvi_dataset", "load_vvi_dataset", "test_frame_indices", "train_frame_indices"]

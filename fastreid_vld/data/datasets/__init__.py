"""Video visible-infrared data sets, registered in fast-reid's DATASET_REGISTRY."""

from .bases import DatasetFormatError, VideoCrossModalDataset
from .bupt import BUPTCampus
from .vcm import VCM

__all__ = ["BUPTCampus", "DatasetFormatError", "VCM", "VideoCrossModalDataset"]

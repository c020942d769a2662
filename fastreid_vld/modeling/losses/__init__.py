from .supcon import image_text_supcon, supervised_contrastive
from .triplet import weighted_regularization_triplet
from .vld_loss import VLDLoss

__all__ = ["VLDLoss", "image_text_supcon", "supervised_contrastive", "weighted_regularization_triplet"]

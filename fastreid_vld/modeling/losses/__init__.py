from .supcon import image_text_supcon
from .triplet import weighted_regularization_triplet

__all__ = ["image_text_supcon", "weighted_regularization_triplet"]

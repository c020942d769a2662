from .trainer import VLDTrainer

__all__ = ["VLDTrainer"]

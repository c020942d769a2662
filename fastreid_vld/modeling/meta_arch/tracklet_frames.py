"""A tracklet batch as the per-frame input of an image backbone: shape check, flattening, normalisation."""

from __future__ import annotations

import torch

__all__ = ["normalised_frames"]


def normalised_frames(images: torch.Tensor, seq_len: int, pixel_mean: torch.Tensor, pixel_std: torch.Tensor,
                      model_name: str) -> torch.Tensor:
    """images [B, T, 3, H, W] in 0..255 -> frames [B*T, 3, H, W], ``(x - pixel_mean) / pixel_std``
    on the device of ``pixel_mean`` ([1, 3, 1, 1]), in a new tensor (the batch is left as it is).
    T must be ``seq_len`` (INPUT.SEQ_LEN): a ValueError naming ``model_name`` otherwise."""
    if images.dim() != 5 or images.shape[1] != seq_len:
        raise ValueError(f"{model_name} expects images [B, T, 3, H, W] with T = INPUT.SEQ_LEN = {seq_len}, "
                         f"got {tuple(images.shape)}")
    frames = images.to(pixel_mean.device).flatten(0, 1)  # [B*T, 3, H, W]
    return (frames - pixel_mean) / pixel_std

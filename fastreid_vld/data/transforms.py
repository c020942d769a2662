"""Per-frame transforms of the VI-ReID training recipe, on fast-reid's 0..255 tensors.

Training frames (official VLD recipe): resize, pad 10 + random crop, horizontal flip, then
channel random erasing (p 0.5, the box filled with constants); visible tracklets then get,
per tracklet, either nothing more or a random channel exchange (R, G or B copied to all three
channels); infrared frames get a random channel copied to all three (3 in 4) or, otherwise,
grayscale with p 0.5.

The first three steps are fast-reid's, and are set by its keys (``data/build.py`` reads them;
``configs/VLD/Base-VLD.yml`` holds the official values): ``INPUT.PADDING.ENABLED / SIZE`` (zero
padding, then a random crop back to the frame size), ``INPUT.FLIP.ENABLED / PROB`` and
``INPUT.REA.ENABLED / PROB / VALUE`` (the box filled with VALUE, 0..255 pixel values as in
fast-reid; its area and aspect follow the official ChannelRandomErasing: U(0.02, 0.4) of the
frame, U(0.3, 1/0.3), not torchvision's). The channel steps are ``INPUT.VVI_AUG.*``.

The official code applies the channel operations after ImageNet normalisation; here frames
stay in 0..255 (the model normalises, fast-reid's convention), so the channel operations run
on ``(x - mean) / std`` and the result is mapped back: the numbers the model sees are the
official ones. The official code draws the random parameters independently for every frame;
``INPUT.VVI_AUG.SAME_ACROSS_TRACKLET`` draws them once per tracklet instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .tracklets import INFRARED

# Constants the official ChannelRandomErasing writes into the (normalised) box.
ERASE_FILL = (0.4914, 0.4822, 0.4465)
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


class TrainFrameAugmentation:
    """Augments the [T, 3, H, W] frames (0..255, already resized to ``size``) of one training
    tracklet in one modality."""

    def __init__(self, size: tuple[int, int], pixel_mean: list[float], pixel_std: list[float],
                 padding: int = 10, flip_prob: float = 0.5, erase_prob: float = 0.5,
                 erase_value: Sequence[float] | None = None, infrared_gray_prob: float = 0.5,
                 same_across_tracklet: bool = False) -> None:
        """``padding`` 0: no padding nor crop; ``erase_value``: the erased box's 0..255 pixel
        values, None: the official constants ERASE_FILL (normalised space)."""
        self.size = size
        self.mean = torch.tensor(pixel_mean).view(3, 1, 1)
        self.std = torch.tensor(pixel_std).view(3, 1, 1)
        self.padding = padding
        self.flip_prob = flip_prob
        self.erase_prob = erase_prob
        self.erase_fill = torch.tensor(ERASE_FILL if erase_value is None
                                       else _normalised(erase_value, pixel_mean, pixel_std)).view(3, 1, 1)
        self.infrared_gray_prob = infrared_gray_prob
        self.same_across_tracklet = same_across_tracklet

    def __call__(self, frames: torch.Tensor, modality: int, rng: np.random.Generator) -> torch.Tensor:
        exchange = modality != INFRARED and rng.random() < 0.5  # per tracklet, as the official code
        seed = int(rng.integers(2 ** 63))
        out = []
        for t, frame in enumerate(frames):
            frame_rng = np.random.default_rng(seed if self.same_across_tracklet else (seed, t))
            frame = self._crop_and_flip(frame, frame_rng)
            normalised = (frame - self.mean) / self.std
            normalised = self._erase(normalised, frame_rng)
            if modality == INFRARED:
                normalised = self._infrared_channels(normalised, frame_rng)
            elif exchange:
                normalised = _copy_channel(normalised, int(frame_rng.integers(3)))
            out.append(normalised * self.std + self.mean)
        return torch.stack(out)  # [T, 3, H, W]

    def _crop_and_flip(self, frame: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        height, width = self.size
        padded = F.pad(frame, [self.padding] * 4)  # zero padding, as torchvision's Pad
        top = int(rng.integers(2 * self.padding + 1))
        left = int(rng.integers(2 * self.padding + 1))
        frame = padded[:, top: top + height, left: left + width]
        return frame.flip(-1) if rng.random() < self.flip_prob else frame

    def _erase(self, frame: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if rng.random() >= self.erase_prob:
            return frame
        _, height, width = frame.shape
        for _ in range(100):
            area = rng.uniform(0.02, 0.4) * height * width
            aspect = rng.uniform(0.3, 1 / 0.3)
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if w < width and h < height:
                top, left = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
                frame = frame.clone()
                frame[:, top: top + h, left: left + w] = self.erase_fill
                return frame
        return frame

    def _infrared_channels(self, frame: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        choice = int(rng.integers(4))
        if choice < 3:
            return _copy_channel(frame, choice)
        if rng.random() < self.infrared_gray_prob:
            gray = sum(w * frame[c] for c, w in enumerate(GRAY_WEIGHTS))
            return gray.expand(3, -1, -1).clone()
        return frame


def _normalised(pixel: Sequence[float], mean: Sequence[float], std: Sequence[float]) -> list[float]:
    """(pixel - mean) / std per channel, in float64: the official fill survives the round trip
    through 0..255 bit for bit in float32."""
    return [(value - m) / s for value, m, s in zip(pixel, mean, std, strict=True)]


def _copy_channel(frame: torch.Tensor, channel: int) -> torch.Tensor:
    return frame[channel: channel + 1].expand(3, -1, -1).clone()

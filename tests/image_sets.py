"""Writes tiny image re-id sets in real on-disk layouts, for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_market1501(root: Path, train_ids: int = 6, test_ids: int = 8, images_per_cam: int = 2,
                     cameras: int = 2, size: tuple[int, int] = (64, 32), seed: int = 0) -> Path:
    """Market-1501 layout (``bounding_box_train/``, ``query/``, ``bounding_box_test/``, files
    ``PPPP_cCsS_FFFFFF_00.jpg``) with a colour pattern per identity. Returns ``root``."""
    rng = np.random.default_rng(seed)
    height, width = size
    splits = {"bounding_box_train": range(1, train_ids + 1),
              "bounding_box_test": range(train_ids + 1, train_ids + test_ids + 1)}
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for folder, pids in splits.items():
        for pid in pids:
            colours = rng.integers(0, 2, size=(2, 3)) * 80 + 90  # few, close colours: ids collide
            for cam in range(1, cameras + 1):
                for frame in range(images_per_cam):
                    pixels = np.empty((height, width, 3), np.uint8)
                    pixels[: height // 2], pixels[height // 2:] = colours
                    noise = rng.integers(-90, 91, size=pixels.shape)
                    pixels = np.clip(pixels.astype(int) + noise, 0, 255).astype(np.uint8)
                    # the first image of the first camera of a test identity is its query
                    is_query = folder == "bounding_box_test" and cam == 1 and frame == 0
                    target = root / ("query" if is_query else folder)
                    Image.fromarray(pixels).save(target / f"{pid:04d}_c{cam}s1_{frame:06d}_00.jpg")
    return root

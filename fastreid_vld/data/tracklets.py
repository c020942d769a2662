"""The tracklet record and the frame-choice rules of video re-id.

A tracklet is a sequence of frames of one person seen by one camera in one modality. The
model sees ``seq_len`` (T) frames of it: at test time chosen deterministically by the data
set's rule, at training time drawn at random (restricted random sampling by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VISIBLE, INFRARED = 0, 1
MODALITY_NAMES = {VISIBLE: "visible", INFRARED: "infrared"}


@dataclass(frozen=True)
class Tracklet:
    frames: tuple[str, ...]  # frame paths in temporal order
    pid: int | str           # identity as the data set names it
    camid: int               # camera index, shared by both modalities where the data set does
    modality: int            # VISIBLE (0) or INFRARED (1)


def test_frame_indices(n: int, seq_len: int, rule: str) -> list[int]:
    """The ``seq_len`` frame indices a tracklet of ``n`` frames contributes at test time.

    ``"chunk_first"`` (HITSZ-VCM): pad with the last frame to a multiple of ``seq_len``, cut
    into ``seq_len`` equal chunks, take each chunk's first frame (so with fewer than
    ``seq_len`` frames: all of them, then the last repeated).
    ``"linspace"`` (BUPTCampus): ``floor(linspace(0, n, seq_len, endpoint=False))``.
    """
    if n < 1:
        raise ValueError(f"a tracklet needs at least one frame, got {n}")
    if rule == "chunk_first":
        chunk = -(-n // seq_len)  # ceil: the chunk length after padding to a multiple of seq_len
        return [min(i * chunk, n - 1) for i in range(seq_len)]
    if rule == "linspace":
        return np.floor(np.linspace(0, n, seq_len, endpoint=False)).astype(int).tolist()
    raise ValueError(f"unknown test frame rule {rule!r}: expected 'chunk_first' or 'linspace'")


def train_frame_indices(n: int, seq_len: int, rule: str, rng: np.random.Generator) -> list[int]:
    """The ``seq_len`` frame indices drawn from a tracklet of ``n`` frames for one training step.

    ``"restricted_random"`` (official VLD): one random frame from each of ``seq_len`` equal
    chunks (the tracklet padded with its last frame to a multiple of ``seq_len``).
    ``"random_sorted"``: ``seq_len`` distinct random frames in temporal order (with repeats
    only when ``n < seq_len``), as the BUPTCampus code samples.
    ``"consecutive"``: a random run of ``seq_len`` consecutive frames (last frame repeated).
    """
    if rule == "restricted_random":
        chunk = -(-n // seq_len)
        return [min(i * chunk + int(rng.integers(chunk)), n - 1) for i in range(seq_len)]
    if rule == "random_sorted":
        return sorted(rng.choice(n, size=seq_len, replace=n < seq_len).tolist())
    if rule == "consecutive":
        start = int(rng.integers(max(n - seq_len, 0) + 1))
        return [min(start + i, n - 1) for i in range(seq_len)]
    raise ValueError(f"unknown train frame rule {rule!r}: expected 'restricted_random', "
                     "'random_sorted' or 'consecutive'")

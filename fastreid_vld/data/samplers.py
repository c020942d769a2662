"""Cross-modal identity batches: P identities x K tracklets in EACH modality."""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
from fastreid.utils import comm
from torch.utils.data import Sampler

from .tracklets import INFRARED, VISIBLE, Tracklet

logger = logging.getLogger(__name__)


class CrossModalIdentitySampler(Sampler):
    """Yields batches (lists of ``(tracklet index, frame seed)``): P identities, then for each
    the indices of K visible tracklets, then the K infrared tracklets of the same identities in
    the same order — the visible block first, then the infrared block.

    With ``paired=True`` (BUPTCampus) the tracklets at positions 2i / 2i+1 are a pixel-aligned
    visible / infrared pair: K pairs are drawn per identity and each pair shares its frame seed,
    so both modalities take the same frame indices. Otherwise (HITSZ-VCM) K tracklets are drawn
    per modality independently (with replacement only when an identity has fewer than K).

    Infinite, as fast-reid's samplers. Under torch.distributed every process draws the same
    global stream (shared seed) and takes every world_size-th batch of ``P`` identities, so
    the ranks never share a batch.
    """

    def __init__(self, tracklets: list[Tracklet], labels: list[int], num_ids: int, num_instances: int,
                 paired: bool = False, seed: int | None = None) -> None:
        self.num_ids, self.num_instances, self.paired = num_ids, num_instances, paired
        self.seed = int(comm.shared_random_seed() if seed is None else seed)
        self.rank, self.world_size = comm.get_rank(), comm.get_world_size()
        by_modality: dict[int, dict[int, list[int]]] = {VISIBLE: defaultdict(list), INFRARED: defaultdict(list)}
        for index, (tracklet, label) in enumerate(zip(tracklets, labels, strict=True)):
            if not paired or tracklet.modality == VISIBLE:
                by_modality[tracklet.modality][label].append(index)
        if paired:
            by_modality[INFRARED] = {label: [i + 1 for i in indices] for label, indices in by_modality[VISIBLE].items()}
        self.by_modality = by_modality
        self.identities = sorted(set(by_modality[VISIBLE]) & set(by_modality[INFRARED]))
        if len(self.identities) < num_ids:
            raise ValueError(f"a batch needs {num_ids} identities with tracklets in both modalities, "
                             f"the training set has {len(self.identities)}")

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        batches = self._global_batches()
        yield from itertools.islice(batches, self.rank, None, self.world_size)

    def _global_batches(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng(self.seed)
        while True:
            order = rng.permutation(self.identities)
            for start in range(0, len(order) - self.num_ids + 1, self.num_ids):
                yield self._batch(order[start: start + self.num_ids], rng)

    def _batch(self, identities: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int]]:
        visible, infrared = [], []
        for identity in identities:
            chosen_visible = self._choose(self.by_modality[VISIBLE][identity], rng)
            if self.paired:  # the partners of the chosen visible tracklets, same frame seeds
                seeds = rng.integers(2 ** 62, size=len(chosen_visible))
                visible += [(i, int(s)) for i, s in zip(chosen_visible, seeds, strict=True)]
                infrared += [(i + 1, int(s)) for i, s in zip(chosen_visible, seeds, strict=True)]
            else:
                chosen_infrared = self._choose(self.by_modality[INFRARED][identity], rng)
                visible += [(i, int(rng.integers(2 ** 62))) for i in chosen_visible]
                infrared += [(i, int(rng.integers(2 ** 62))) for i in chosen_infrared]
        return visible + infrared

    def _choose(self, indices: list[int], rng: np.random.Generator) -> list[int]:
        replace = len(indices) < self.num_instances
        return rng.choice(indices, size=self.num_instances, replace=replace).tolist()

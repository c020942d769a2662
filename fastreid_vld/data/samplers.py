"""Cross-modal identity batches: P identities x K tracklets in EACH modality.

Every sampler yields batches (lists of ``(tracklet index, frame seed)``): for each of the P
identities its K visible tracklets, then the K infrared tracklets of the same identities in
the same order (the visible block first, then the infrared block). For paired training sets
(BUPTCampus) the tracklets at positions 2i / 2i+1 are a pixel-aligned visible / infrared pair:
a visible tracklet brings its partner, with the same frame seed, so both modalities take the
same frame indices.

How identities and tracklets are drawn (``DATALOADER.VVI_SAMPLER``):

- ``"balanced"``: identities in random order, every identity once per pass; K tracklets per
  identity and modality without replacement (with replacement only when it has fewer than K).
- ``"independent"`` (official HITSZ-VCM, ``data_loader/sampler.py`` ``IdentitySampler``): every
  batch draws its P distinct identities afresh, independently of the other batches; K
  tracklets per identity and modality drawn with replacement.
- ``"distinct_cameras"`` (official BUPTCampus, ``RandomIdentitySampler`` with 2 cameras x 1
  tracklet): every identity's visible tracklets are dealt into groups of K from K different
  cameras, each tracklet at most once per pass; batches take one group from each of P
  distinct identities until fewer than P identities have groups left, which ends the pass
  (the rest is unused) and starts the next. Identities filmed by fewer than K cameras are never
  drawn; identities with more groups are drawn more often.

All are infinite, as fast-reid's samplers, and draw global batches (SOLVER.IMS_PER_BATCH): under
torch.distributed every process draws the same stream (shared seed) and yields its share of each
batch, every N-th tracklet (:func:`fastreid_vld.distributed.batch_share`), so one process and N
processes train on the same tracklets for the same seed; the model gathers the shares back into
the global batch for its batch-level terms. The stream is a function of the seed alone (every
frame choice and augmentation draws from its item's frame seed), so a resumed run continues it
exactly: the checkpoint carries the seed (:meth:`CrossModalSampler.state_dict`) and the sampler
skips the batches already trained on (``batches_done``, set by the trainer on resume).
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
from fastreid.utils import comm
from torch.utils.data import Sampler

from ..distributed import batch_share
from .tracklets import INFRARED, VISIBLE, Tracklet

logger = logging.getLogger(__name__)

#: A batch item: (tracklet index, frame seed).
Item = tuple[int, int]
#: One identity's share of a batch: its K visible items and its K infrared items.
Group = tuple[list[Item], list[Item]]


class CrossModalSampler(Sampler):
    """The common part: tracklets indexed by modality and identity, frame seeds, the batch
    layout and the distributed split. Subclasses say which identities and tracklets a batch
    takes (:meth:`_batches`: an infinite stream of batches, each a list of P :data:`Group`)."""

    #: which identities can be drawn, as the error for too few of them says
    eligibility = "with tracklets in both modalities"

    def __init__(self, tracklets: list[Tracklet], labels: list[int], num_ids: int, num_instances: int,
                 paired: bool = False, seed: int | None = None) -> None:
        self.tracklets = tracklets
        self.num_ids, self.num_instances, self.paired = num_ids, num_instances, paired
        self.seed = int(comm.shared_random_seed() if seed is None else seed)
        self.rank, self.world_size = comm.get_rank(), comm.get_world_size()
        self.batches_done = 0  # global batches already trained on: skipped by __iter__
        by_modality: dict[int, dict[int, list[int]]] = {VISIBLE: defaultdict(list), INFRARED: defaultdict(list)}
        for index, (tracklet, label) in enumerate(zip(tracklets, labels, strict=True)):
            if not paired or tracklet.modality == VISIBLE:
                by_modality[tracklet.modality][label].append(index)
        if paired:
            by_modality[INFRARED] = {label: [i + 1 for i in indices] for label, indices in by_modality[VISIBLE].items()}
        self.by_modality = by_modality
        self.identities = self._eligible(sorted(set(by_modality[VISIBLE]) & set(by_modality[INFRARED])))
        if len(self.identities) < num_ids:
            raise ValueError(f"a batch needs {num_ids} identities {self.eligibility}, "
                             f"the training set has {len(self.identities)}")

    def _eligible(self, identities: list[int]) -> list[int]:
        """The identities batches may draw, of those with tracklets in both modalities (a subclass
        also indexes here what its draws need)."""
        return identities

    def __iter__(self) -> Iterator[list[Item]]:
        """This process's share of every global batch after the first ``batches_done``."""
        rng = np.random.default_rng(self.seed)
        batches = ([item for visible, _ in groups for item in visible] +
                   [item for _, infrared in groups for item in infrared]
                   for groups in self._batches(rng))  # the visible block, then the infrared block
        for batch in itertools.islice(batches, self.batches_done, None):
            yield batch_share(batch, self.rank, self.world_size)

    def state_dict(self) -> dict[str, int]:
        """What a checkpoint carries to continue this stream: its seed."""
        return {"seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """The stream of a checkpoint (continued after ``batches_done`` batches)."""
        self.seed = int(state["seed"])

    def _batches(self, rng: np.random.Generator) -> Iterator[list[Group]]:
        raise NotImplementedError

    def _draw(self, identity: int, rng: np.random.Generator, replace: bool) -> Group:
        """K visible tracklets of ``identity`` and K infrared ones (for pairs: the partners)."""
        visible = self._choose(self.by_modality[VISIBLE][identity], rng, replace)
        infrared = None if self.paired else self._choose(self.by_modality[INFRARED][identity], rng, replace)
        return self._seeded(visible, infrared, rng)

    def _choose(self, indices: list[int], rng: np.random.Generator, replace: bool) -> list[int]:
        replace = replace or len(indices) < self.num_instances
        return rng.choice(indices, size=self.num_instances, replace=replace).tolist()

    def _seeded(self, visible: list[int], infrared: list[int] | None, rng: np.random.Generator) -> Group:
        """Frame seeds for the chosen tracklets; a pair's partners (``infrared`` None) share theirs."""
        if self.paired:
            seeds = rng.integers(2 ** 62, size=len(visible)).tolist()
            return list(zip(visible, seeds, strict=True)), [(i + 1, s) for i, s in zip(visible, seeds, strict=True)]
        return ([(i, int(rng.integers(2 ** 62))) for i in visible],
                [(i, int(rng.integers(2 ** 62))) for i in infrared])


class BalancedIdentitySampler(CrossModalSampler):
    """``"balanced"``: every identity once per pass, in random order; K tracklets per identity and
    modality without replacement (with replacement only when it has fewer than K)."""

    def _batches(self, rng: np.random.Generator) -> Iterator[list[Group]]:
        while True:
            order = rng.permutation(self.identities)
            for start in range(0, len(order) - self.num_ids + 1, self.num_ids):
                yield [self._draw(identity, rng, replace=False) for identity in order[start: start + self.num_ids]]


class IndependentIdentitySampler(CrossModalSampler):
    """``"independent"`` (official HITSZ-VCM): each batch draws its P distinct identities uniformly,
    independently of every other batch, and K tracklets per identity and modality uniformly with
    replacement."""

    def _batches(self, rng: np.random.Generator) -> Iterator[list[Group]]:
        while True:
            chosen = rng.choice(self.identities, size=self.num_ids, replace=False)
            yield [self._draw(identity, rng, replace=True) for identity in chosen.tolist()]


class DistinctCameraSampler(CrossModalSampler):
    """``"distinct_cameras"`` (official BUPTCampus): each pass deals every identity's pairs into
    groups of one pair from each of K different cameras (every pair at most once); batches take
    the next group of P distinct identities until fewer than P identities have groups left,
    which ends the pass. Needs a paired training set."""

    eligibility = "filmed by DATALOADER.NUM_INSTANCE different cameras"

    def _eligible(self, identities: list[int]) -> list[int]:
        if not self.paired:
            raise ValueError("DATALOADER.VVI_SAMPLER distinct_cameras deals visible/infrared pairs by camera and "
                             "needs a paired training set (BUPTCampus); use independent or balanced")
        self.by_camera: dict[int, dict[int, list[int]]] = {}
        for identity in identities:
            cameras: dict[int, list[int]] = defaultdict(list)
            for index in self.by_modality[VISIBLE][identity]:
                cameras[self.tracklets[index].camid].append(index)
            self.by_camera[identity] = dict(cameras)
        eligible = [i for i in identities if len(self.by_camera[i]) >= self.num_instances]
        if len(eligible) < len(identities):
            logger.info("distinct_cameras sampler: %d of %d training identities are filmed by fewer than %d "
                        "cameras and are never drawn (as in the official BUPTCampus sampler)",
                        len(identities) - len(eligible), len(identities), self.num_instances)
        return eligible

    def _batches(self, rng: np.random.Generator) -> Iterator[list[Group]]:
        while True:
            yield from self.one_pass(rng)

    def one_pass(self, rng: np.random.Generator) -> list[list[Group]]:
        """The batches of one pass over the training pairs."""
        queues = {identity: self._deal(identity, rng) for identity in self.identities}
        batches = []
        while len(queues) >= self.num_ids:
            batch = []
            for identity in rng.choice(list(queues), size=self.num_ids, replace=False).tolist():
                batch.append(self._seeded(queues[identity].pop(0), None, rng))
                if not queues[identity]:
                    del queues[identity]
            batches.append(batch)
        return batches

    def _deal(self, identity: int, rng: np.random.Generator) -> list[list[int]]:
        """``identity``'s visible tracklets as groups of one from each of K different cameras."""
        left = {camera: list(indices) for camera, indices in self.by_camera[identity].items()}
        groups = []
        while len(left) >= self.num_instances:
            group = []
            for camera in rng.choice(list(left), size=self.num_instances, replace=False).tolist():
                group.append(left[camera].pop(int(rng.integers(len(left[camera])))))
                if not left[camera]:
                    del left[camera]
            groups.append(group)
        return groups


#: DATALOADER.VVI_SAMPLER -> sampler class.
TRAIN_SAMPLERS: dict[str, type[CrossModalSampler]] = {
    "balanced": BalancedIdentitySampler,
    "independent": IndependentIdentitySampler,
    "distinct_cameras": DistinctCameraSampler,
}


def build_cross_modal_sampler(name: str, tracklets: list[Tracklet], labels: list[int], num_ids: int,
                              num_instances: int, paired: bool = False, seed: int | None = None) -> CrossModalSampler:
    """The sampler ``name`` (DATALOADER.VVI_SAMPLER) over the training tracklets."""
    if name not in TRAIN_SAMPLERS:
        raise ValueError(f"DATALOADER.VVI_SAMPLER {name!r}: expected one of {', '.join(TRAIN_SAMPLERS)}")
    return TRAIN_SAMPLERS[name](tracklets, labels, num_ids, num_instances, paired=paired, seed=seed)

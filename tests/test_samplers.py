"""The cross-modal training samplers on data sets written in the real layouts: the batch layout
every sampler shares, and the two official samplers' rules, checked as distributions over many
batches (not one seed's output): HITSZ-VCM's ``independent`` (identities drawn afresh for each
batch, tracklets with replacement) and BUPTCampus' ``distinct_cameras`` (K pairs from K
different cameras, each pair once per pass, one-camera identities never drawn)."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from fastreid.config import get_cfg

from fastreid_vld import add_vld_config
from fastreid_vld.data import build as data_build
from fastreid_vld.data.datasets import VCM, BUPTCampus
from fastreid_vld.data.samplers import (
    TRAIN_SAMPLERS,
    BalancedIdentitySampler,
    DistinctCameraSampler,
    IndependentIdentitySampler,
    build_cross_modal_sampler,
)
from fastreid_vld.data.synthetic import SyntheticSize, write_bupt, write_vcm
from fastreid_vld.data.tracklets import INFRARED, VISIBLE

# BUPTCampus training identities (named 1..12) and the cameras (with tracklets each) kept in
# train.txt: two identities filmed by one camera only, two by two cameras once, one with an
# uneven split, the rest by three cameras twice.
BUPT_CAMERAS = {"1": {"LS3": 2}, "2": {"G25": 2}, "3": {"LS3": 1, "G25": 1}, "4": {"G25": 1, "CQ1": 1},
                "5": {"LS3": 2, "G25": 1}, **{str(i): {"LS3": 2, "G25": 2, "CQ1": 2} for i in range(6, 13)}}


@pytest.fixture(scope="module")
def vcm(tmp_path_factory) -> VCM:
    root = tmp_path_factory.mktemp("vcm")
    write_vcm(root / "HITSZ-VCM", SyntheticSize(train_ids=6, test_ids=1, cameras=2, tracklets_per_camera=2,
                                                min_frames=2, max_frames=3))
    return VCM(root=str(root), min_frames=1)


@pytest.fixture(scope="module")
def bupt(tmp_path_factory) -> BUPTCampus:
    root = tmp_path_factory.mktemp("bupt")
    folder = write_bupt(root, SyntheticSize(train_ids=12, test_ids=1, cameras=3, tracklets_per_camera=2,
                                            min_frames=2, max_frames=3))
    rows = [line.split() for line in (folder / "train.txt").read_text().splitlines()]
    kept = [r for r in rows if int(r[3]) <= BUPT_CAMERAS[r[0]].get(r[2], 0)]
    (folder / "train.txt").write_text("".join(" ".join(r) + "\n" for r in kept))
    return BUPTCampus(root=str(root))


def labels_of(dataset) -> list:
    return [t.pid for t in dataset.train]


def take(sampler, n: int) -> list[list[tuple[int, int]]]:
    return list(itertools.islice(sampler, n))


# ------------------------------------------------------------------ what every sampler shares

@pytest.mark.parametrize("name", ["balanced", "independent"])
def test_batches_are_visible_then_infrared_blocks_of_the_same_identities(vcm, name):
    labels = labels_of(vcm)
    sampler = build_cross_modal_sampler(name, vcm.train, labels, num_ids=2, num_instances=3, seed=1)
    batches = take(sampler, 30)
    for batch in batches:
        assert len(batch) == 2 * 2 * 3
        visible, infrared = batch[:6], batch[6:]
        assert all(vcm.train[i].modality == VISIBLE for i, _ in visible)
        assert all(vcm.train[i].modality == INFRARED for i, _ in infrared)
        ids = [labels[i] for i, _ in visible]
        assert ids == [labels[i] for i, _ in infrared] and len(set(ids)) == 2

    def shares(world_size: int, batches_done: int = 0) -> list[list[list[tuple[int, int]]]]:
        """Each process's share of the first batches under torch.distributed."""
        shares = []
        for rank in range(world_size):
            sharded = build_cross_modal_sampler(name, vcm.train, labels, num_ids=2, num_instances=3, seed=1)
            sharded.rank, sharded.world_size, sharded.batches_done = rank, world_size, batches_done
            shares.append(take(sharded, 30 - batches_done))
        return shares

    for world_size in (2, 3, 4):  # process r holds every world_size-th tracklet of each one-process batch
        per_process = shares(world_size)
        for i, batch in enumerate(batches):
            assert [item for items in zip(*(share[i] for share in per_process), strict=True) for item in items] == batch
    resumed = shares(2, batches_done=7)  # a resumed stream goes on with the global batch after the skipped ones
    assert resumed[1][0] == batches[7][1::2]


@pytest.mark.parametrize("name", sorted(TRAIN_SAMPLERS))
def test_pairs_bring_their_partner_with_the_same_frame_seed(bupt, name):
    sampler = build_cross_modal_sampler(name, bupt.train, labels_of(bupt), num_ids=3, num_instances=2,
                                        paired=True, seed=0)
    for batch in take(sampler, 20):
        visible, infrared = batch[:6], batch[6:]
        assert [(i + 1, s) for i, s in visible] == infrared
        assert all(bupt.train[i].modality == VISIBLE for i, _ in visible)


def test_configs_choose_the_official_sampler_of_their_data_set(vcm, bupt):
    for config, dataset, expected in (("vcm.yml", vcm, IndependentIdentitySampler),
                                      ("bupt.yml", bupt, DistinctCameraSampler)):
        cfg = add_vld_config(get_cfg())
        cfg.merge_from_file(str(REPO / "configs" / "VLD" / config))
        root = Path(dataset.root).parent
        cfg.merge_from_list(["DATASETS.ROOT", str(root), "DATASETS.VCM.MIN_FRAMES", 1, "DATALOADER.NUM_WORKERS", 0,
                             "SOLVER.IMS_PER_BATCH", 4 * cfg.DATALOADER.NUM_INSTANCE])
        loader = data_build.build_vvi_train_loader(cfg)
        assert type(loader.loader.batch_sampler) is expected, config
    assert add_vld_config(get_cfg()).DATALOADER.VVI_SAMPLER == "balanced"


def test_bad_sampler_settings_are_clear_errors(vcm, bupt):
    with pytest.raises(ValueError, match="DATALOADER.VVI_SAMPLER 'random': expected one of balanced, independent"):
        build_cross_modal_sampler("random", vcm.train, labels_of(vcm), 2, 2)
    with pytest.raises(ValueError, match="distinct_cameras deals visible/infrared pairs .* needs a paired"):
        DistinctCameraSampler(vcm.train, labels_of(vcm), 2, 2)
    with pytest.raises(ValueError, match="a batch needs 11 identities filmed by DATALOADER.NUM_INSTANCE different "
                                         "cameras, the training set has 10"):
        DistinctCameraSampler(bupt.train, labels_of(bupt), 11, 2, paired=True)  # 1 and 2: one camera each
    with pytest.raises(ValueError, match="a batch needs 7 identities with tracklets in both modalities"):
        IndependentIdentitySampler(vcm.train, labels_of(vcm), 7, 2)


# ------------------------------------------------------------------ HITSZ-VCM: independent

def test_independent_draws_identities_afresh_for_every_batch(vcm):
    """6 identities, 2 a batch: drawn independently, two consecutive batches share an identity with
    probability 1 - C(4,2)/C(6,2) = 0.6, and every one of the 15 pairs is equally likely; the
    balanced sampler deals each identity once per pass of 3 batches instead."""
    labels = labels_of(vcm)
    n = 6000
    ids = {}
    for name in ("independent", "balanced"):
        sampler = build_cross_modal_sampler(name, vcm.train, labels, num_ids=2, num_instances=2, seed=3)
        ids[name] = [frozenset(labels[i] for i, _ in batch[:4]) for batch in take(sampler, n)]
    drawn = ids["independent"]
    shared = np.mean([bool(a & b) for a, b in zip(drawn, drawn[1:], strict=False)])
    assert shared == pytest.approx(0.6, abs=0.03)
    pairs = Counter(drawn)
    assert len(pairs) == 15
    chi2 = sum((c - n / 15) ** 2 / (n / 15) for c in pairs.values())
    assert chi2 < 36.1  # chi-square, 14 degrees of freedom, p = 0.001
    passes = [Counter(itertools.chain(*ids["balanced"][i: i + 3])) for i in range(0, 300, 3)]
    assert all(set(c.values()) == {1} for c in passes)  # the other sampler: once per pass
    windows = [Counter(itertools.chain(*drawn[i: i + 3])) for i in range(0, 300, 3)]
    assert sum(max(c.values()) > 1 for c in windows) > 50  # independent: repeats within 3 batches


def test_independent_draws_tracklets_with_replacement_uniformly(vcm):
    """Each identity has 4 tracklets per modality; drawing K=4 with replacement repeats one with
    probability 1 - 4!/4^4 = 0.906 and picks each tracklet equally often; without replacement
    (the balanced sampler) it never repeats."""
    labels = labels_of(vcm)
    for name, expected in (("independent", 1 - math.factorial(4) / 4 ** 4), ("balanced", 0.0)):
        sampler = build_cross_modal_sampler(name, vcm.train, labels, num_ids=2, num_instances=4, seed=5)
        repeats, counts = [], Counter()
        for batch in take(sampler, 3000):
            for block in (batch[:8], batch[8:]):
                for start in (0, 4):
                    chosen = [i for i, _ in block[start: start + 4]]
                    repeats.append(len(set(chosen)) < 4)
                    counts.update(chosen)
        assert np.mean(repeats) == pytest.approx(expected, abs=0.02), name
        for identity in set(labels):  # uniform over an identity's tracklets of one modality
            for modality in (VISIBLE, INFRARED):
                own = [counts[i] for i, t in enumerate(vcm.train) if t.pid == identity and t.modality == modality]
                expected_count = sum(own) / len(own)
                chi2 = sum((c - expected_count) ** 2 / expected_count for c in own)
                assert chi2 < 16.3, (name, identity, modality, own)  # 3 degrees of freedom, p = 0.001


# ------------------------------------------------------------------ BUPTCampus: distinct_cameras

def test_distinct_cameras_pairs_come_from_two_cameras_and_one_camera_identities_never(bupt):
    labels = labels_of(bupt)
    sampler = DistinctCameraSampler(bupt.train, labels, num_ids=3, num_instances=2, paired=True, seed=0)
    seen = Counter()
    for batch in take(sampler, 500):
        visible = batch[:6]
        for start in range(0, 6, 2):
            first, second = (bupt.train[i] for i, _ in visible[start: start + 2])
            assert first.pid == second.pid and first.camid != second.camid
        ids = [labels[i] for i, _ in visible[::2]]
        assert len(set(ids)) == 3
        seen.update(ids)
    assert set(seen) == set(BUPT_CAMERAS) - {"1", "2"}
    # identities dealt more groups per pass are drawn more often (3 cameras x 2: 2 or 3 groups)
    assert min(seen[str(i)] for i in range(6, 13)) > max(seen[i] for i in ("3", "4", "5"))


def test_distinct_cameras_uses_each_pair_once_per_pass_and_streams_pass_after_pass(bupt):
    labels = labels_of(bupt)
    sampler = DistinctCameraSampler(bupt.train, labels, num_ids=3, num_instances=2, paired=True, seed=4)
    rng = np.random.default_rng(sampler.seed)
    passes = [sampler.one_pass(rng) for _ in range(3)]
    stream = take(sampler, sum(len(p) for p in passes))
    start = 0
    for batches in passes:
        flat = [[*(item for v, _ in groups for item in v), *(item for _, ir in groups for item in ir)]
                for groups in batches]
        assert stream[start: start + len(flat)] == flat  # the stream is these passes, in order
        start += len(flat)
        used = [i for batch in flat for i, _ in batch[:6]]
        assert len(used) == len(set(used))  # each pair at most once per pass


def reference_pass_lengths(cameras: dict[str, dict[str, int]], num_ids: int, passes: int, seed: int) -> list[int]:
    """The official BUPTCampus sampler's rules, restated independently: per pass, each identity's
    tracklets are dealt into pairs from 2 different cameras (each at most once); rounds then take
    one pair from each of num_ids distinct identities while that many have pairs left."""
    draw = random.Random(seed)
    lengths = []
    for _ in range(passes):
        pairs = {}
        for pid, per_camera in cameras.items():
            left = {camera: n for camera, n in per_camera.items() if n}
            dealt = 0
            while len(left) >= 2:
                for camera in draw.sample(sorted(left), 2):
                    left[camera] -= 1
                    if not left[camera]:
                        del left[camera]
                dealt += 1
            if dealt:
                pairs[pid] = dealt
        rounds = 0
        while len(pairs) >= num_ids:
            for pid in draw.sample(sorted(pairs), num_ids):
                pairs[pid] -= 1
                if not pairs[pid]:
                    del pairs[pid]
            rounds += 1
        lengths.append(rounds)
    return lengths


def test_distinct_cameras_pass_length_distribution_matches_the_official_rules(bupt):
    """Pass lengths depend on how identities were dealt and on which are left over at the end of a
    pass; over 2000 passes their distribution equals that of an independent restatement."""
    sampler = DistinctCameraSampler(bupt.train, labels_of(bupt), num_ids=3, num_instances=2, paired=True, seed=9)
    rng = np.random.default_rng(9)
    ours = Counter(len(sampler.one_pass(rng)) for _ in range(2000))
    reference = Counter(reference_pass_lengths(BUPT_CAMERAS, 3, 2000, seed=9))
    assert len(ours) > 1  # pass lengths do vary
    for length in set(ours) | set(reference):
        assert ours[length] / 2000 == pytest.approx(reference[length] / 2000, abs=0.04), (length, ours, reference)
    assert np.mean(list(ours.elements())) == pytest.approx(np.mean(list(reference.elements())), abs=0.1)


def test_balanced_sampler_is_still_available_for_pairs(bupt):
    sampler = BalancedIdentitySampler(bupt.train, labels_of(bupt), num_ids=3, num_instances=2, paired=True, seed=0)
    ids = [labels_of(bupt)[i] for batch in take(sampler, 4) for i, _ in batch[:6:2]]
    assert sorted(ids) == sorted(BUPT_CAMERAS)  # every identity once per pass, one-camera ones included

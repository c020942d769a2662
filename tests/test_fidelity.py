"""Details of the official VLD recipe (github Visuang/VLD at 69688ef) that docs/FIDELITY.md names
and no other test covers: the values the shipped configs hold, and the distributions of the
training frame rules and of the per-frame augmentations (many draws, not one seed's output)."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import REPO
from fastreid.config import get_cfg

from fastreid_vld import add_vld_config
from fastreid_vld.data import tracklets
from fastreid_vld.data.transforms import ERASE_FILL, GRAY_WEIGHTS, TrainFrameAugmentation

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]  # ImageNet's, in 0..255

# (config, key, official value, where the official code sets it)
OFFICIAL_VALUES = [
    ("vcm.yml", "INPUT.SIZE_TRAIN", [288, 144], "main.py:101-102"),
    ("vcm.yml", "INPUT.SIZE_TEST", [288, 144], "main.py:101-102"),
    ("vcm.yml", "INPUT.SEQ_LEN", 6, "main.py:122"),
    ("vcm.yml", "INPUT.PADDING.SIZE", 10, "data_loader/loader.py:27"),
    ("vcm.yml", "INPUT.TRAIN_FRAME_RULE", "restricted_random", "data_loader/loader.py:111 ('video_train')"),
    ("bupt.yml", "INPUT.TRAIN_FRAME_RULE", "random_sorted", "main.py:121 ('random')"),
    ("vcm.yml", "INPUT.REA.ENABLED", True, "data_loader/loader.py:32"),
    ("vcm.yml", "INPUT.REA.PROB", 0.5, "data_loader/loader.py:32"),
    ("vcm.yml", "INPUT.FLIP.ENABLED", True, "data_loader/loader.py:29"),
    ("vcm.yml", "INPUT.FLIP.PROB", 0.5, "data_loader/loader.py:29"),
    ("vcm.yml", "INPUT.PADDING.ENABLED", True, "data_loader/loader.py:27"),
    ("vcm.yml", "INPUT.VVI_AUG.IR_GRAY_PROB", 0.5, "data_loader/loader.py:52"),
    ("vcm.yml", "INPUT.VVI_AUG.SAME_ACROSS_TRACKLET", False, "data_loader/vcm_dataloader.py:176-201"),
    ("vcm.yml", "MODEL.PIXEL_MEAN", MEAN, "data_loader/loader.py:17"),
    ("vcm.yml", "MODEL.PIXEL_STD", STD, "data_loader/loader.py:17"),
    ("vcm.yml", "MODEL.CLIP.NAME", "ViT-B-16", "network/model.py:118"),
    ("vcm.yml", "MODEL.CLIP.QUICK_GELU", True, "network/clip/model.py:154-168"),
    ("vcm.yml", "MODEL.CLIP.POS_EMBED_INTERPOLATION", "bilinear", "network/clip/model.py:469"),
    ("vcm.yml", "MODEL.STP.STH_START_LAYER", 9, "main.py:118"),
    ("vcm.yml", "MODEL.STP.STA", True, "main.py:100"),
    ("vcm.yml", "MODEL.STP.STA_HEADS", 12, "network/model.py:139-140"),
    ("vcm.yml", "MODEL.IMLP.PROMPT", "A X X X X person observed in both day and night conditions.",
     "network/model.py:68"),
    ("vcm.yml", "MODEL.LOSSES.CE.EPSILON", 0.0, "core/base.py:43"),
    ("vcm.yml", "MODEL.LOSSES.VLD.CE", 1.0, "core/video_train.py:44"),
    ("vcm.yml", "MODEL.LOSSES.VLD.CE_PROJ", 1.0, "core/video_train.py:44"),
    ("vcm.yml", "MODEL.LOSSES.VLD.TEXT_CE", 0.08, "main.py:137"),
    ("vcm.yml", "MODEL.LOSSES.VLD.STA_CE", 0.4, "main.py:138"),
    ("vcm.yml", "MODEL.LOSSES.VLD.TRI_PENULTIMATE", 1.0, "core/video_train.py:44"),
    ("vcm.yml", "MODEL.LOSSES.VLD.TRI", 1.0, "core/video_train.py:44"),
    ("vcm.yml", "MODEL.LOSSES.VLD.TRI_PROJ", 1.0, "core/video_train.py:44"),
    ("vcm.yml", "MODEL.LOSSES.VLD.TRI_STA", 1.0, "main.py:139"),
    ("vcm.yml", "MODEL.LOSSES.VLD.SUPCON", 0.0, "core/video_train.py:27-44 (never called)"),
    ("vcm.yml", "SOLVER.OPT", "AdamW", "core/base.py:73"),
    ("vcm.yml", "SOLVER.BASE_LR", 2.5e-5, "main.py:107"),
    ("vcm.yml", "SOLVER.WEIGHT_DECAY", 1e-4, "main.py:112"),
    ("vcm.yml", "SOLVER.WEIGHT_DECAY_BIAS", 1e-4, "core/base.py:58-60"),
    ("vcm.yml", "SOLVER.WEIGHT_DECAY_NORM", 1e-4, "core/base.py:57"),
    ("vcm.yml", "SOLVER.BIAS_LR_FACTOR", 25.0, "main.py:108, core/base.py:58-60"),
    ("vcm.yml", "SOLVER.HEADS_LR_FACTOR", 25.0, "core/base.py:62-67"),
    ("vcm.yml", "SOLVER.SCHED", "WarmupCosineEpochLR", "core/base.py:77-91"),
    ("vcm.yml", "SOLVER.MAX_EPOCH", 24, "main.py:115, core/base.py:79"),
    ("vcm.yml", "SOLVER.WARMUP_EPOCHS", 3, "core/base.py:76"),
    ("vcm.yml", "SOLVER.WARMUP_FACTOR", 0.01, "core/base.py:75"),
    ("vcm.yml", "SOLVER.ETA_MIN_LR", 2.5e-7, "core/base.py:74"),
    ("vcm.yml", "SOLVER.ITERS_PER_EPOCH", 200, "main.py:106"),
    ("vcm.yml", "SOLVER.IMS_PER_BATCH", 32, "main.py:97-98 (4 ids x 4 x 2 modalities)"),
    ("vcm.yml", "DATALOADER.NUM_INSTANCE", 4, "main.py:98"),
    ("vcm.yml", "DATALOADER.VVI_SAMPLER", "independent", "data_loader/sampler.py:23-57"),
    ("bupt.yml", "SOLVER.IMS_PER_BATCH", 32, "main.py:131 (train_bs 16 pairs x 2 modalities)"),
    ("bupt.yml", "DATALOADER.NUM_INSTANCE", 2, "main.py:132-133 (nc 2 x nt 1)"),
    ("bupt.yml", "DATALOADER.VVI_SAMPLER", "distinct_cameras", "data_loader/sampler.py:98-162"),
    ("vcm.yml", "SOLVER.AMP.ENABLED", True, "core/video_train.py:24"),
    ("vcm.yml", "SOLVER.AMP.DTYPE", "float16", "core/video_train.py:24"),
    ("vcm.yml", "SOLVER.CHECKPOINT_PERIOD", 2, "main.py:63, 116"),
    ("vcm.yml", "TEST.EVAL_PERIOD", 2, "main.py:63, 116"),
    ("vcm.yml", "TEST.METRIC", "inner_product", "core/test.py:144-145"),
    ("vcm.yml", "TEST.MAX_RANK", 20, "main.py:134"),
    ("vcm.yml", "TEST.SELECT_BY", "IR->VIS/Rank-1", "main.py:64-74"),
    ("vcm.yml", "DATASETS.VCM.MIN_FRAMES", 12, "data_loader/vcm_data_manager.py:27"),
    ("bupt.yml", "DATASETS.BUPT.DROP_RGB_REMAINDER", 64, "main.py:128, data_loader/sampler.py:187-189"),
    ("bupt.yml", "DATASETS.BUPT.AUXILIARY", False, "data_loader/loader.py:97-99 (train.txt only)"),
    ("vcm.yml", "SEED", 1, "main.py:104"),
    ("vcm.yml", "CUDNN_BENCHMARK", False, "main.py:32"),
]


def shipped(config: str):
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_file(str(REPO / "configs" / "VLD" / config))
    return cfg


@pytest.mark.parametrize("config, key, value, official", OFFICIAL_VALUES,
                         ids=[f"{c}:{k}" for c, k, _, _ in OFFICIAL_VALUES])
def test_config_holds_the_official_value(config, key, value, official):
    node = shipped(config)
    for part in key.split("."):
        node = node[part]
    actual = list(node) if isinstance(node, (list, tuple)) else node
    assert actual == pytest.approx(value) if isinstance(value, float) else actual == value, official


# ------------------------------------------------------------------ training frame rules

def test_restricted_random_is_uniform_within_each_chunk():
    """14 frames, T=6 (official 'video_train'): padded to 18 with the last frame, chunks of 3, one
    entry uniformly from each: frames 0-11 uniformly per chunk, then 12 or the padded 13 (1 : 2),
    then 13."""
    rng = np.random.default_rng(0)
    draws = np.array([tracklets.train_frame_indices(14, 6, "restricted_random", rng) for _ in range(6000)])
    expected = [{3 * c + k: 1 / 3 for k in range(3)} for c in range(4)] + [{12: 1 / 3, 13: 2 / 3}, {13: 1.0}]
    for chunk, probabilities in enumerate(expected):
        counts = Counter(draws[:, chunk].tolist())
        assert set(counts) == set(probabilities), (chunk, counts)
        assert all(abs(counts[f] / 6000 - p) < 0.025 for f, p in probabilities.items()), (chunk, counts)


def test_random_sorted_draws_distinct_frames_uniformly_in_temporal_order():
    """BUPTCampus ('random'): T of n frames without replacement, sorted; each frame with
    probability T / n; with fewer than T frames, with replacement."""
    rng = np.random.default_rng(1)
    draws = [tracklets.train_frame_indices(10, 6, "random_sorted", rng) for _ in range(6000)]
    assert all(d == sorted(d) and len(set(d)) == 6 for d in draws)
    counts = Counter(f for d in draws for f in d)
    assert all(abs(counts[f] / 6000 - 0.6) < 0.025 for f in range(10)), counts
    short = [tracklets.train_frame_indices(4, 6, "random_sorted", rng) for _ in range(200)]
    assert all(d == sorted(d) and set(d) <= set(range(4)) for d in short)


# ------------------------------------------------------------------ per-frame augmentations

def normalise(frame: torch.Tensor) -> torch.Tensor:
    return (frame - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def test_pad_crop_and_flip_are_uniform_offsets_and_a_fair_coin():
    """Pad 10 (zeros), a 32x16 crop at a uniform offset in 0..20 x 0..20, flip with p 0.5: every
    output frame is such a crop of the padded frame, and the offsets and flips come out uniform.
    (Visible tracklets that got a channel exchange, half of them, are set aside.)"""
    height, width, pad = 32, 16, 10
    ramp = torch.arange(height * width, dtype=torch.float32).view(height, width) / 4 + 1
    frame = torch.stack([ramp, ramp + 1, ramp + 2])
    augment = TrainFrameAugmentation((height, width), MEAN, STD, padding=pad, erase_prob=0.0)
    padded = torch.nn.functional.pad(frame, [pad] * 4)
    offsets = [(top, left, flip) for top in range(2 * pad + 1) for left in range(2 * pad + 1) for flip in (0, 1)]
    candidates = torch.stack([_flipped(padded[:, top: top + height, left: left + width], flip)
                              for top, left, flip in offsets])  # [21 * 21 * 2, 3, H, W]
    tops, lefts, flips, frames = Counter(), Counter(), 0, 0
    for seed in range(600):
        out = augment(frame.expand(6, -1, -1, -1), tracklets.VISIBLE, np.random.default_rng(seed))
        if torch.allclose(normalise(out[0])[0], normalise(out[0])[1], atol=1e-4):
            continue  # a channel exchange: crops are checked on untouched tracklets
        for image in out:
            matches = torch.nonzero((candidates - image).abs().amax(dim=(1, 2, 3)) < 1e-3).flatten().tolist()
            assert len(matches) == 1
            top, left, flip = offsets[matches[0]]
            tops[top] += 1
            lefts[left] += 1
            flips += flip
            frames += 1
    assert len(tops) == len(lefts) == 2 * pad + 1 and frames > 1200
    expected = frames / (2 * pad + 1)
    assert sum((c - expected) ** 2 / expected for c in tops.values()) < 45.3  # 20 dof, p = 0.001
    assert sum((c - expected) ** 2 / expected for c in lefts.values()) < 45.3
    assert abs(flips / frames - 0.5) < 0.04


def _flipped(image: torch.Tensor, flip: int) -> torch.Tensor:
    return image.flip(-1) if flip else image


def test_channel_random_erasing_fills_a_box_with_the_official_constants_half_the_time():
    """p 0.5 per frame: a rectangle of area U(0.02, 0.4) x H x W filled, in normalised space, with
    (0.4914, 0.4822, 0.4465) (or, where the tracklet then gets a channel exchange, one of them
    copied to all three channels)."""
    height, width = 32, 16
    augment = TrainFrameAugmentation((height, width), MEAN, STD, padding=0, erase_prob=0.5)
    frame = torch.full((3, height, width), 100.0)
    fill = torch.tensor(ERASE_FILL)
    fills = [fill] + [fill[c].expand(3) for c in range(3)]
    erased, areas = 0, []
    for seed in range(200):
        for out in normalise_all(augment(frame.expand(6, -1, -1, -1), tracklets.VISIBLE, np.random.default_rng(seed))):
            flat = out.reshape(3, -1)
            background = flat.median(dim=1).values[:, None]  # the box covers at most 40%
            inside = ~torch.isclose(flat, background, atol=1e-4).all(dim=0)
            if inside.any():
                erased += 1
                rows, cols = np.nonzero(inside.view(height, width).numpy())
                box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
                assert box == len(rows)  # a filled rectangle
                assert any(torch.allclose(flat[:, inside], f[:, None].expand(-1, len(rows)), atol=1e-4) for f in fills)
                areas.append(box / (height * width))
    assert abs(erased / 1200 - 0.5) < 0.05
    assert 0.015 <= min(areas) and max(areas) <= 0.45  # area U(0.02, 0.4) x H x W, rounded to whole pixels


def test_visible_tracklets_get_a_channel_exchange_half_the_time_and_infrared_frames_the_official_mix():
    """Visible: per tracklet, nothing more or (p 0.5) every frame one of R, G, B copied to all
    three channels, never grayscale. Infrared, per frame: a channel copy (3 in 4), else
    grayscale with p 0.5, else untouched."""
    augment = TrainFrameAugmentation((8, 8), MEAN, STD, padding=0, erase_prob=0.0)
    colour = torch.stack([torch.full((8, 8), v) for v in (200.0, 120.0, 40.0)])  # R, G, B apart
    channels = normalise(colour)[:, 0, 0]
    gray_value = sum(w * channels[c] for c, w in enumerate(GRAY_WEIGHTS))
    exchanged = 0
    for seed in range(400):
        out = normalise_all(augment(colour.expand(6, -1, -1, -1), tracklets.VISIBLE, np.random.default_rng(seed)))
        equal = [bool(torch.allclose(f, f[:1].expand_as(f), atol=1e-4)) for f in out]
        assert len(set(equal)) == 1  # the choice is per tracklet
        if equal[0]:
            exchanged += 1
            assert all(any(torch.isclose(f[0, 0, 0], channels[c], atol=1e-4) for c in range(3)) for f in out)
        else:
            assert all(torch.allclose(f, normalise(colour), atol=1e-4) for f in out)
    assert abs(exchanged / 400 - 0.5) < 0.08
    outcomes = Counter()
    for seed in range(300):
        for f in normalise_all(augment(colour.expand(6, -1, -1, -1), tracklets.INFRARED, np.random.default_rng(seed))):
            value = f[:, 0, 0]
            if torch.allclose(value, normalise(colour)[:, 0, 0], atol=1e-4):
                outcomes["untouched"] += 1
            elif torch.isclose(value, gray_value.expand(3), atol=1e-4).all():
                outcomes["gray"] += 1
            else:
                assert any(torch.isclose(value, channels[c].expand(3), atol=1e-4).all() for c in range(3))
                outcomes["copy"] += 1
    total = sum(outcomes.values())
    assert outcomes["copy"] / total == pytest.approx(0.75, abs=0.03)
    assert outcomes["gray"] / total == pytest.approx(0.125, abs=0.025)
    assert outcomes["untouched"] / total == pytest.approx(0.125, abs=0.025)


def normalise_all(frames: torch.Tensor) -> torch.Tensor:
    return torch.stack([normalise(f) for f in frames])


# ------------------------------------------------------------------ docs/FIDELITY.md

def test_every_row_of_the_fidelity_table_names_checks_that_exist():
    """Each table row of docs/FIDELITY.md ends in a check; every test it names exists (a
    ``tests/<file>.py::<test>`` reference, ``::<test>`` continuing the same file) and every
    ``config[<config>:<key>]`` is a case of test_config_holds_the_official_value."""
    rows = [line for line in (REPO / "docs" / "FIDELITY.md").read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| detail")]
    cases = {f"{config}:{key}" for config, key, _, _ in OFFICIAL_VALUES}
    defined = {path.name: set(re.findall(r"^def (test_\w+)", path.read_text(), flags=re.M))
               for path in (REPO / "tests").glob("test_*.py")}
    named = 0
    for row in rows:
        check = row.rstrip(" |").rsplit(" | ", 1)[1]
        assert check.strip(), row
        file = None
        for reference in re.finditer(r"(?:tests/(test_\w+\.py))?::(test_\w+)", check):
            file = reference.group(1) or file
            assert file is not None and reference.group(2) in defined[file], (reference.group(0), row)
            named += 1
        for case in re.findall(r"config\[([^\]]+)\]", check):
            assert case in cases, (case, row)
    assert len(rows) >= 50 and named >= 50

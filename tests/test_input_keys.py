"""fast-reid's data keys on video data sets: the ones the video pipeline implements take effect
(INPUT.PADDING, INPUT.FLIP, INPUT.REA), the configs' values reproduce the official augmentation
bit for bit, and the ones it cannot honour are refused by name before anything is built."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO, run_python
from fastreid.config import get_cfg

from fastreid_vld import add_vld_config
from fastreid_vld.config import ConfigError
from fastreid_vld.data import build as data_build
from fastreid_vld.data import tracklets
from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
from fastreid_vld.data.transforms import ERASE_FILL, TrainFrameAugmentation

HEIGHT, WIDTH = 16, 8
# Equal statistics for the three channels and a gray frame: the channel exchange of visible
# tracklets copies equal channels (a no-op) and x -> (x - 128) / 64 -> back is exact, so what
# remains is padding, flip and erasing alone.
GRAY_STATS = ("MODEL.PIXEL_MEAN", [128.0] * 3, "MODEL.PIXEL_STD", [64.0] * 3, "INPUT.SIZE_TRAIN", [HEIGHT, WIDTH])
ALL_OFF = ("INPUT.PADDING.ENABLED", False, "INPUT.FLIP.ENABLED", False, "INPUT.REA.ENABLED", False)
SEEDS = range(12)


def config(*opts, base: str = "configs/VLD/tiny.yml"):
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_file(str(REPO / base))
    cfg.merge_from_list(list(opts))
    return cfg


def gray_tracklet() -> torch.Tensor:
    """[6, 3, H, W]: a left-to-right and top-to-bottom ramp (no value repeats), in 1..96."""
    ramp = torch.arange(1, HEIGHT * WIDTH + 1, dtype=torch.float32).view(HEIGHT, WIDTH) * 0.75
    return ramp.expand(6, 3, HEIGHT, WIDTH).clone()


def augmented(*opts) -> list[torch.Tensor]:
    """The visible gray tracklet through the configured augmentation, one output per seed."""
    augmentation = data_build.build_train_augmentation(config(*GRAY_STATS, *ALL_OFF, *opts))
    return [augmentation(gray_tracklet(), tracklets.VISIBLE, np.random.default_rng(seed)) for seed in SEEDS]


def test_everything_off_leaves_the_frames_as_they_are():
    assert all(torch.equal(out, gray_tracklet()) for out in augmented())


@pytest.mark.parametrize("opts", [("INPUT.FLIP.ENABLED", True, "INPUT.FLIP.PROB", 0.0), ()])
def test_flip_off_or_probability_0_never_flips(opts):
    assert all(torch.equal(out, gray_tracklet()) for out in augmented(*opts))


def test_flip_probability_1_flips_every_frame_along_its_width():
    flipped = gray_tracklet().flip(-1)
    assert all(torch.equal(out, flipped) for out in augmented("INPUT.FLIP.ENABLED", True, "INPUT.FLIP.PROB", 1.0))


def test_padding_takes_effect_with_its_size():
    """INPUT.PADDING.ENABLED with SIZE 3: every frame is an 16x8 crop of the zero-padded frame at
    offsets 0..6, most of them shifted; SIZE 0 or ENABLED False: the frame itself."""
    size = 3
    padded = torch.nn.functional.pad(gray_tracklet()[0], [size] * 4)
    crops = {(top, left): padded[:, top: top + HEIGHT, left: left + WIDTH]
             for top in range(2 * size + 1) for left in range(2 * size + 1)}
    offsets = []
    for out in augmented("INPUT.PADDING.ENABLED", True, "INPUT.PADDING.SIZE", size):
        for frame in out:
            offsets += [offset for offset, crop in crops.items() if torch.equal(frame, crop)]
    assert len(offsets) == 6 * len(SEEDS)  # every frame is exactly one crop
    assert sum(offset != (size, size) for offset in offsets) > len(offsets) / 2
    unpadded = augmented("INPUT.PADDING.ENABLED", True, "INPUT.PADDING.SIZE", 0)
    assert all(torch.equal(out, gray_tracklet()) for out in unpadded)


def test_random_erasing_probability_1_fills_a_box_of_every_frame_with_its_value():
    """VALUE is in 0..255, as fast-reid's (a gray one: visible tracklets may get a channel exchange)."""
    for out in augmented("INPUT.REA.ENABLED", True, "INPUT.REA.PROB", 1.0, "INPUT.REA.VALUE", [200.0] * 3):
        for frame in out:
            erased = frame != gray_tracklet()[0]
            assert erased.any() and (frame[erased] == 200).all()
            rows, cols = np.nonzero(erased[0].numpy())
            assert (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1) == len(rows)  # one rectangle


@pytest.mark.parametrize("opts", [("INPUT.REA.ENABLED", True, "INPUT.REA.PROB", 0.0), ()])
def test_random_erasing_off_or_probability_0_erases_nothing(opts):
    assert all(torch.equal(out, gray_tracklet()) for out in augmented(*opts))


@pytest.mark.parametrize("base", ["configs/VLD/vcm.yml", "configs/VLD/bupt.yml", "configs/VLD/tiny.yml"])
def test_the_configs_build_the_official_augmentation_bit_for_bit(base):
    """The official recipe is TrainFrameAugmentation's defaults (tests/test_fidelity.py checks them
    against the official code): pad (INPUT.PADDING.SIZE), flip p 0.5, erasing p 0.5 with the official
    constants. The configs' fast-reid keys build exactly it."""
    cfg = config(base=base)
    built = data_build.build_train_augmentation(cfg)
    assert (built.padding, built.flip_prob, built.erase_prob) == (cfg.INPUT.PADDING.SIZE, 0.5, 0.5)
    assert torch.equal(built.erase_fill.flatten(), torch.tensor(ERASE_FILL))
    official = TrainFrameAugmentation(tuple(cfg.INPUT.SIZE_TRAIN), cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD,
                                      padding=cfg.INPUT.PADDING.SIZE)
    frames = torch.rand(6, 3, *cfg.INPUT.SIZE_TRAIN, generator=torch.Generator().manual_seed(0)) * 255
    for seed in range(6):
        for modality in (tracklets.VISIBLE, tracklets.INFRARED):
            assert torch.equal(built(frames, modality, np.random.default_rng(seed)),
                               official(frames, modality, np.random.default_rng(seed)))


REFUSED = [
    ("INPUT.CROP.ENABLED", True, "never crop-resized"),
    ("INPUT.PADDING.MODE", "reflect", "padded with zeros"),
    ("INPUT.CJ.ENABLED", True, "no colour jitter"),
    ("INPUT.AFFINE.ENABLED", True, "no random affine"),
    ("INPUT.AUTOAUG.ENABLED", True, "no AutoAugment"),
    ("INPUT.AUGMIX.ENABLED", True, "no AugMix"),
    ("INPUT.RPT.ENABLED", True, "no random patch"),
    ("DATALOADER.SAMPLER_TRAIN", "NaiveIdentitySampler", "DATALOADER.VVI_SAMPLER"),
    ("DATALOADER.SET_WEIGHT", [1.0], "without per-set weights"),
    ("DATASETS.COMBINEALL", True, "training split only"),
]


@pytest.mark.parametrize("key, value, instead", REFUSED, ids=[key for key, _, _ in REFUSED])
def test_a_key_the_video_loaders_cannot_honour_is_refused_by_name(tmp_path, key, value, instead):
    """Before any data set is read (DATASETS.ROOT does not even exist here)."""
    cfg = config("DATASETS.ROOT", str(tmp_path / "nowhere"), "DATASETS.NAMES", ("VCM",), key, value)
    with pytest.raises(ConfigError) as error:
        data_build.build_vvi_train_loader(cfg)
    message = str(error.value)
    assert message.startswith(f"{key} {value!r}: ") and instead in message and "\n" not in message


def test_the_test_loader_refuses_crop_and_reads_no_training_key(tmp_path):
    cfg = config("DATASETS.ROOT", str(tmp_path / "nowhere"), "INPUT.CROP.ENABLED", True)
    with pytest.raises(ConfigError, match=r"^INPUT.CROP.ENABLED True: "):
        data_build.build_vvi_test_loader(cfg, "VCM")
    cfg = config("DATASETS.ROOT", str(tmp_path / "nowhere"), "INPUT.CJ.ENABLED", True)
    with pytest.raises(Exception) as error:  # no refusal: the missing data set is the error
        data_build.build_vvi_test_loader(cfg, "VCM")
    assert not isinstance(error.value, ConfigError) and "nowhere" in str(error.value)


def test_model_keys_are_left_to_the_meta_architecture(tmp_path):
    """MODEL.LOSSES.NAME is VideoBaseline's (fast-reid's heads and losses on tracklets): the video
    loaders, shared by both meta-architectures, check data keys only."""
    cfg = config("DATASETS.ROOT", str(tmp_path / "nowhere"), "DATASETS.NAMES", ("VCM",),
                 "MODEL.LOSSES.NAME", ("CrossEntropyLoss", "TripletLoss"))
    with pytest.raises(Exception) as error:
        data_build.build_vvi_train_loader(cfg)
    assert not isinstance(error.value, ConfigError) and "nowhere" in str(error.value)


def test_train_net_ends_a_refused_key_in_one_error_line_before_training(tmp_path):
    write_vcm(tmp_path / "data" / "HITSZ-VCM", SyntheticSize(train_ids=2, test_ids=2, cameras=2, min_frames=6,
                                                             max_frames=8))
    data = ("DATASETS.ROOT", str(tmp_path / "data"), "DATASETS.NAMES", "('VCM',)", "DATASETS.TESTS", "('VCM',)",
            "DATASETS.VCM.MIN_FRAMES", "1")
    process = run_python("tools/train_net.py", "--config-file", "configs/VLD/tiny.yml", *data,
                         "DATALOADER.SAMPLER_TRAIN", "NaiveIdentitySampler", "OUTPUT_DIR", str(tmp_path / "out"),
                         timeout=180)
    assert process.returncode != 0
    assert "error: DATALOADER.SAMPLER_TRAIN 'NaiveIdentitySampler': tracklet batches are drawn by " \
           "DATALOADER.VVI_SAMPLER" in process.stderr, process.stderr[-2000:]
    assert "Traceback" not in process.stderr and not (tmp_path / "out" / "model_final.pth").exists()

"""VideoBaseline: fast-reid's backbones, heads and Baseline losses on tracklets (temporal average of the
frame feature maps), built from the shipped configs/VideoBaseline/ (a random ResNet-18 at 64x32) and
trained by VLDTrainer on written HITSZ-VCM and BUPTCampus sets."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import REPO
from fastreid.config import CfgNode, get_cfg
from fastreid.modeling import build_model
from fastreid.modeling.meta_arch import Baseline
from fastreid.utils.events import EventStorage
from tiny_vld import train_steps
from torch.optim.lr_scheduler import MultiStepLR

from fastreid_vld import add_vld_config
from fastreid_vld.config import ConfigError
from fastreid_vld.data.samplers import DistinctCameraSampler, IndependentIdentitySampler
from fastreid_vld.data.synthetic import SyntheticSize, write_bupt, write_vcm
from fastreid_vld.engine.trainer import VLDTrainer
from fastreid_vld.modeling import VideoBaseline

B, T, H, W = 8, 6, 64, 32
NUM_CLASSES, RESNET18_WIDTH = 4, 512
#: the shipped recipe, small: a random ResNet-18 at 64x32 on the CPU, tiny batches and one short epoch
SMALL = ("MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.PRETRAIN", False, "MODEL.DEVICE", "cpu",
         "INPUT.SIZE_TRAIN", [H, W], "INPUT.SIZE_TEST", [H, W], "INPUT.PADDING.SIZE", 4,
         "DATALOADER.NUM_WORKERS", 0, "DATALOADER.NUM_INSTANCE", 2, "SOLVER.IMS_PER_BATCH", 8,
         "SOLVER.AMP.ENABLED", False, "SOLVER.WARMUP_ITERS", 0, "SOLVER.MAX_EPOCH", 1, "SOLVER.ITERS_PER_EPOCH", 3,
         "SOLVER.CHECKPOINT_PERIOD", 1, "TEST.EVAL_PERIOD", 1, "TEST.IMS_PER_BATCH", 16, "CUDNN_BENCHMARK", False)


def shipped(config: str, *opts) -> CfgNode:
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_file(str(REPO / "configs" / "VideoBaseline" / config))
    cfg.merge_from_list([*SMALL, *opts])
    return cfg


def model(*opts, seed: int = 0) -> VideoBaseline:
    torch.manual_seed(seed)
    return build_model(shipped("vcm_r50.yml", "MODEL.HEADS.NUM_CLASSES", NUM_CLASSES, *opts))


def batch(frames: int = T, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"images": torch.rand(B, frames, 3, H, W, generator=generator) * 255,
            "targets": torch.arange(B) % NUM_CLASSES}


def test_eval_returns_one_bnneck_feature_per_tracklet_of_the_measured_width():
    """Base-VideoBaseline.yml says FEAT_DIM 2048 (ResNet-50); the head takes ResNet-18's 512."""
    video_baseline = model().eval()
    images = batch()["images"]
    original = images.clone()
    with torch.no_grad():
        features = video_baseline({"images": images})
    assert isinstance(video_baseline, VideoBaseline) and features.shape == (B, RESNET18_WIDTH)
    assert video_baseline.heads.weight.shape == (NUM_CLASSES, RESNET18_WIDTH)
    assert torch.equal(images, original)  # normalised into a new tensor


def test_the_head_gets_the_mean_over_frames_of_each_frames_feature_map():
    video_baseline = model().eval()
    images = batch()["images"]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255  # fast-reid's default PIXEL_MEAN / STD
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    with torch.no_grad():
        per_frame = torch.stack([video_baseline.backbone((images[:, t] - mean) / std) for t in range(T)])
        pooled = video_baseline.tracklet_feature_maps(video_baseline.preprocess_image({"images": images}))
        features = video_baseline({"images": images})
    assert per_frame.shape == (T, B, RESNET18_WIDTH, H // 16, W // 16)  # LAST_STRIDE 1: stride 16
    torch.testing.assert_close(pooled, per_frame.mean(dim=0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(features, video_baseline.heads(per_frame.mean(dim=0)))


def test_with_one_frame_it_is_fast_reids_baseline_in_losses_and_features():
    """INPUT.SEQ_LEN 1, the same weights: VideoBaseline's loss dict and eval features are those of
    fast-reid's own Baseline on the frames as images."""
    opts = ("INPUT.SEQ_LEN", 1, "MODEL.BACKBONE.FEAT_DIM", RESNET18_WIDTH, "MODEL.LOSSES.NAME",
            ("CrossEntropyLoss", "TripletLoss", "CircleLoss"), "MODEL.LOSSES.CE.SCALE", 0.5)
    video_baseline = model(*opts).train()
    image_baseline = model(*opts, "MODEL.META_ARCHITECTURE", "Baseline", seed=1).train()
    assert type(image_baseline) is Baseline
    image_baseline.load_state_dict(video_baseline.state_dict())
    tracklets = batch(frames=1)
    with EventStorage():
        video_losses = video_baseline(tracklets)
        image_losses = image_baseline({"images": tracklets["images"][:, 0].clone(), "targets": tracklets["targets"]})
    assert set(video_losses) == set(image_losses) == {"loss_cls", "loss_triplet", "loss_circle"}
    for name, loss in image_losses.items():
        torch.testing.assert_close(video_losses[name], loss, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(video_baseline.eval()(tracklets),
                                   image_baseline.eval()({"images": tracklets["images"][:, 0].clone()}))


def test_training_returns_every_fast_reid_loss_it_is_asked_for_by_fast_reids_names():
    names = ("CrossEntropyLoss", "TripletLoss", "CircleLoss", "Cosface")
    with EventStorage():
        losses = model("MODEL.LOSSES.NAME", names).train()(batch())
    assert set(losses) == {"loss_cls", "loss_triplet", "loss_circle", "loss_cosface"}
    assert all(loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad for loss in losses.values())


def test_a_few_steps_on_one_batch_lower_the_losses():
    video_baseline = model().train()
    optimizer = torch.optim.Adam(video_baseline.parameters(), lr=1e-3)
    with EventStorage():
        losses, totals = train_steps(video_baseline, optimizer, batch(), steps=8)
    assert set(losses) == {"loss_cls", "loss_triplet"}
    assert totals[-1] < 0.7 * totals[0], totals


def test_a_tracklet_of_another_length_than_seq_len_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^VideoBaseline expects images \[B, T, 3, H, W\] with "
                                         r"T = INPUT.SEQ_LEN = 6, got \(8, 4, 3, 64, 32\)$"):
        model().eval()(batch(frames=4))


def test_the_imlp_head_is_refused_before_anything_is_built():
    with pytest.raises(ConfigError, match="MODEL.HEADS.NAME IMLPHead: its outputs are read by "
                                          "MODEL.META_ARCHITECTURE VLD"):
        model("MODEL.HEADS.NAME", "IMLPHead")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """HITSZ-VCM and BUPTCampus layouts side by side; every identity filmed by 2 cameras."""
    root = tmp_path_factory.mktemp("video_sets")
    size = SyntheticSize(train_ids=4, test_ids=2, cameras=2, min_frames=6, max_frames=8)
    write_vcm(root / "HITSZ-VCM", size)
    write_bupt(root, size)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("config", ["vcm_r50.yml", "bupt_r50.yml"])
def test_vld_trainer_trains_and_evaluates_the_shipped_config(data_root, tmp_path, config):
    """fast-reid's optimizer on the model's parameters (every trainable one moves) and MultiStepLR
    schedule (not VLD's), the config's cross-modal sampler, fast-reid's loss names in the training
    metrics, both directions evaluated."""
    cfg = shipped(config, "DATASETS.ROOT", str(data_root), "DATASETS.VCM.MIN_FRAMES", 1,
                  "OUTPUT_DIR", str(tmp_path), "SEED", 0)
    torch.manual_seed(0)
    trainer = VLDTrainer(cfg)
    trainer.resume_or_load(resume=False)
    assert isinstance(trainer.model, VideoBaseline) and isinstance(trainer.scheduler["lr_sched"], MultiStepLR)
    groups = trainer.optimizer.param_groups  # fast-reid's: one per parameter, no VLD group names
    assert all("names" not in group for group in groups)
    assert [id(weight) for group in groups for weight in group["params"]] == \
        [id(weight) for weight in trainer.model.parameters() if weight.requires_grad]
    sampler = {"vcm_r50.yml": IndependentIdentitySampler, "bupt_r50.yml": DistinctCameraSampler}[config]
    assert type(trainer._train_sampler) is sampler
    initial = {name: weight.detach().clone() for name, weight in trainer.model.named_parameters()}
    results = trainer.train()

    for name in ("loss_cls", "loss_triplet"):
        values = [value for value, _ in trainer.storage.history(name).values()]
        assert len(values) == 3 and all(math.isfinite(value) for value in values), (name, values)
    unmoved = [name for name, weight in trainer.model.named_parameters()
               if weight.requires_grad and torch.equal(weight, initial[name])]
    assert not unmoved
    directions = [key for key in results if key.endswith("/Rank-1")]
    assert any(key.endswith("IR->VIS/Rank-1") for key in directions)
    assert any(key.endswith("VIS->IR/Rank-1") for key in directions)
    assert 0 <= results["metric"] <= 100
    assert (tmp_path / "model_final.pth").is_file() and (tmp_path / "eval_results.json").is_file()

    test_loader, _ = VLDTrainer.build_test_loader(cfg, cfg.DATASETS.TESTS[0])
    test_batch = next(iter(test_loader))
    with torch.no_grad():
        features = trainer.model.eval()(test_batch)
    assert features.shape == (len(test_batch["images"]), RESNET18_WIDTH) and torch.isfinite(features).all()

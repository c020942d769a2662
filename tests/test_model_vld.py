"""VLD meta-architecture: batches of both modalities -> weighted loss dict; eval -> tracklet features;
the shipped configs; tools/train_net.py on configs/VLD/vcm.yml."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import run_python
from fastreid.config import get_cfg
from fastreid.modeling import build_model
from open_clip.transformer import QuickGELU
from tiny_vld import WIDTH, B, T, random_batch, tiny_cfg, tiny_model, train_steps

from fastreid_vld import add_vld_config
from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
from fastreid_vld.modeling.attention import LeanQuickGELU
from fastreid_vld.solver import build_vld_optimizer

OFFICIAL_TERMS = {"loss_cls", "loss_cls_proj", "loss_text", "loss_cls_sta", "loss_triplet_penultimate",
                  "loss_triplet", "loss_triplet_proj", "loss_triplet_sta"}


def test_eval_returns_cls_and_sta_tracklet_features():
    model = tiny_model().eval()
    images = random_batch()["images"]
    original = images.clone()
    with torch.no_grad():
        features = model({"images": images})
    assert features.shape == (B, 2 * WIDTH)
    assert torch.equal(images, original)  # normalised into a new tensor


def test_frames_are_normalised_with_the_imagenet_statistics_in_pixel_scale():
    model = tiny_model()
    images = random_batch()["images"]
    frames = model.preprocess_image({"images": images})
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert frames.shape == (B * T, 3, 64, 32)
    assert torch.allclose(frames, (images.flatten(0, 1) / 255 - mean) / std, atol=1e-5)


def test_training_returns_the_official_weighted_terms():
    batch = random_batch()
    losses = tiny_model().train()(batch)
    assert set(losses) == OFFICIAL_TERMS
    assert all(loss.dim() == 0 and torch.isfinite(loss) for loss in losses.values())
    heavier = tiny_model("MODEL.LOSSES.VLD.STA_CE", 0.8, "MODEL.LOSSES.VLD.TEXT_CE", 0.0,
                         "MODEL.LOSSES.VLD.SUPCON", 0.5).train()(batch)
    assert torch.allclose(heavier["loss_cls_sta"], 2 * losses["loss_cls_sta"])  # same seed, same weights
    assert "loss_text" not in heavier and heavier["loss_supcon"] > 0
    assert torch.allclose(heavier["loss_triplet_sta"], losses["loss_triplet_sta"])


def test_weighted_terms_without_their_output_are_dropped_with_a_log_line(caplog):
    with caplog.at_level(logging.INFO, logger="fastreid_vld"):
        model = tiny_model("MODEL.STP.STA", False)
    assert "Loss terms dropped" in caplog.text and "MODEL.LOSSES.VLD.STA_CE, MODEL.LOSSES.VLD.TRI_STA" in caplog.text
    assert set(model.train()(random_batch())) == OFFICIAL_TERMS - {"loss_cls_sta", "loss_triplet_sta"}
    with torch.no_grad():
        assert model.eval()({"images": random_batch()["images"]}).shape == (B, WIDTH)


@pytest.mark.parametrize("shape", [(B, T - 1, 3, 64, 32), (B * T, 3, 64, 32)])
def test_images_must_be_tracklets_of_seq_len_frames(shape):
    with pytest.raises(ValueError, match=r"VLD expects images \[B, T, 3, H, W\] with T = INPUT.SEQ_LEN = 6"):
        tiny_model()({"images": torch.zeros(shape)})


def test_a_few_steps_on_a_fixed_batch_reduce_the_loss():
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer, _ = build_vld_optimizer(cfg, model)
    _, losses = train_steps(model, optimizer, random_batch(tracklets=8), steps=6)
    assert losses[-1] < 0.7 * losses[0], losses


def test_bfloat16_autocast_step_runs():
    model = tiny_model().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = sum(model(random_batch()).values())
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.hub.grad is not None


def test_vcm_config_builds_vit_b16_with_the_paper_geometry():
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_file("configs/VLD/vcm.yml")
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", False, "MODEL.HEADS.NUM_CLASSES", 500])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    visual = model.backbone.visual
    assert len(visual.transformer.resblocks) == 12 and visual.class_embedding.shape == (768,)
    assert visual.positional_embedding.shape == (1 + 18 * 9, 768) and visual.proj.shape == (768, 512)
    assert model.backbone.hub.shape == (6, 6, 768) and model.backbone.sth_start_layer == 9
    hub = model.backbone.hub.detach()
    assert abs(hub.mean()) < 0.02 and abs(hub.std() - 1) < 0.02  # N(0, 1), the official torch.randn
    activations = [type(m) for m in model.modules() if isinstance(m, (QuickGELU, LeanQuickGELU, torch.nn.GELU))]
    assert activations == [LeanQuickGELU] * 24  # QuickGELU in 12 image and 12 text blocks, as OpenAI CLIP
    assert model.heads.prompt_learner.context.shape == (500, 4, 512)
    assert sum(p.numel() for p in model.parameters()) == 128_739_840  # BENCHMARKS.md "Model"
    with torch.no_grad():
        assert model({"images": torch.rand(1, 6, 3, 288, 144) * 255}).shape == (1, 1536)


def train_net(tmp_path, *opts):
    return run_python("tools/train_net.py", "--config-file", "configs/VLD/vcm.yml", "OUTPUT_DIR", str(tmp_path / "out"),
                      "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", *map(str, opts), timeout=300)


def test_train_net_names_the_missing_data_set_root(tmp_path):
    result = train_net(tmp_path, "DATASETS.ROOT", tmp_path / "nowhere")
    assert result.returncode != 0
    assert str(tmp_path / "nowhere") in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]


def test_train_net_builds_vit_b16_and_names_the_missing_weights_file(tmp_path):
    write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=2, test_ids=1, cameras=1, min_frames=12, max_frames=12))
    result = train_net(tmp_path, "DATASETS.ROOT", tmp_path, "SOLVER.IMS_PER_BATCH", 4, "DATALOADER.NUM_INSTANCE", 1,
                       "MODEL.BACKBONE.PRETRAIN_PATH", tmp_path / "ViT-B-16.pt")
    assert result.returncode != 0
    message = f"MODEL.BACKBONE.PRETRAIN_PATH: CLIP weights file {tmp_path / 'ViT-B-16.pt'} not found"
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]


def test_vld_needs_the_imlp_head():
    with pytest.raises(TypeError, match="VLD needs MODEL.HEADS.NAME IMLPHead"):
        tiny_model("MODEL.HEADS.NAME", "EmbeddingHead", "MODEL.BACKBONE.FEAT_DIM", WIDTH)

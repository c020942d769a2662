"""VLD's IMLP head and losses on any fast-reid backbone, by changing MODEL.BACKBONE.* alone
(configs/VLD/tiny.yml, tools/train_net.py, a written HITSZ-VCM set): the head measures the
backbone's width, the STP-only loss terms are dropped with one log line, DEPTH is checked."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import run_python
from fastreid.modeling import build_model
from tiny_vld import tiny_cfg
from torch import nn

from fastreid_vld.config import ConfigError, check_config
from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
from fastreid_vld.modeling.backbones.width import feature_map_width

#: name -> MODEL.BACKBONE.* overrides (and the width the head must measure at 64x32)
BACKBONES = {
    "resnet18": (["MODEL.BACKBONE.NAME", "build_resnet_backbone", "MODEL.BACKBONE.DEPTH", "18x"], 512),
    "osnet_x0_25": (["MODEL.BACKBONE.NAME", "build_osnet_backbone", "MODEL.BACKBONE.DEPTH", "x0_25"], 128),
    "resnest50": (["MODEL.BACKBONE.NAME", "build_resnest_backbone", "MODEL.BACKBONE.DEPTH", "50x"], 2048),
    "vit_small": (["MODEL.BACKBONE.NAME", "build_vit_backbone", "MODEL.BACKBONE.DEPTH", "small"], 768),
}
STP_ONLY_TERMS = "MODEL.LOSSES.VLD.STA_CE, MODEL.LOSSES.VLD.TRI_PENULTIMATE, MODEL.LOSSES.VLD.TRI_STA"


@pytest.fixture(scope="module")
def vcm_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vcm")
    write_vcm(root / "HITSZ-VCM", SyntheticSize(train_ids=4, test_ids=2, cameras=2, min_frames=6, max_frames=8))
    return root


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_changing_only_the_backbone_keys_trains_and_evaluates(vcm_root, tmp_path, backbone):
    overrides, width = BACKBONES[backbone]
    process = run_python("tools/train_net.py", "--config-file", "configs/VLD/tiny.yml", "DATASETS.ROOT", str(vcm_root),
                         "DATASETS.NAMES", '("VCM",)', "DATASETS.TESTS", '("VCM",)', "DATASETS.VCM.MIN_FRAMES", "1",
                         "OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_EPOCH", "1", *overrides, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    log = (tmp_path / "log.txt").read_text()
    assert "Loss terms dropped, their outputs are not computed by" in log and STP_ONLY_TERMS in log
    assert f"MODEL.BACKBONE.FEAT_DIM 2048 replaced by {width}" in log or width == 2048
    assert "loss_triplet_proj" in log and "loss_cls_sta" not in log.split("Loss terms dropped")[1]
    assert (tmp_path / "model_final.pth").is_file() and (tmp_path / "eval_results.json").is_file()


def test_the_head_takes_the_width_it_measures_whatever_feat_dim_says(caplog):
    with caplog.at_level(logging.INFO, logger="fastreid_vld"):
        model = build_model(tiny_cfg(*BACKBONES["resnet18"][0], "MODEL.BACKBONE.FEAT_DIM", 7))
    assert "MODEL.BACKBONE.FEAT_DIM 7 replaced by 512" in caplog.text
    assert model.heads.classifier.bn.num_features == 512 and model.heads.projection.in_features == 512
    assert model.backbone.training  # the measuring pass left the backbone in training mode
    with torch.no_grad():
        assert model.eval()({"images": torch.rand(2, 6, 3, 64, 32) * 255}).shape == (2, 512)


def test_a_backbone_without_a_feature_map_is_named():
    with pytest.raises(TypeError, match=r"expected MODEL.BACKBONE.NAME to give a feature map \[N, C, h, w\], "
                                        r"found \(1, 768\)"):
        feature_map_width(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), (26, 10))


@pytest.mark.parametrize(("name", "depth", "offered"), [("build_vit_backbone", "50x", "small, base"),
                                                        ("build_osnet_backbone", "50x", "x1_0, x0_75"),
                                                        ("build_resnet_backbone", "152x", "18x, 34x, 50x, 101x")])
def test_a_depth_the_builder_does_not_have_is_refused_with_the_ones_it_has(name, depth, offered):
    with pytest.raises(ConfigError, match=f"MODEL.BACKBONE.DEPTH '{depth}': {name} builds the depths {offered}"):
        check_config(tiny_cfg("MODEL.BACKBONE.NAME", name, "MODEL.BACKBONE.DEPTH", depth))

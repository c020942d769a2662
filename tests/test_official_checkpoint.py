"""The authors' checkpoints (README "Use a trained model"): a state dict with the official VLD key
names and shapes at the paper's geometry (CLIP ViT-B/16, 288x144, T = 6, HITSZ-VCM's 500 training
identities), written here, converted by tools/convert_official_vld.py and evaluated by
tools/train_net.py --eval-only with configs/VLD/vcm.yml, as the README says."""

from __future__ import annotations

import json
import math

import torch
from conftest import run_python
from official_vld import VIT_B16_VCM, official_state_dict

from fastreid_vld.data.synthetic import SyntheticSize, write_vcm


def test_an_official_vcm_checkpoint_converts_and_evaluates(tmp_path):
    write_vcm(tmp_path / "data" / "HITSZ-VCM", SyntheticSize(train_ids=2, test_ids=2, cameras=2, min_frames=6,
                                                             max_frames=8))
    torch.save(official_state_dict(seed=0, g=VIT_B16_VCM, scale=0.02), tmp_path / "best_model.pth")
    converted = run_python("tools/convert_official_vld.py", str(tmp_path / "best_model.pth"),
                           str(tmp_path / "vld_vcm.pth"), timeout=300)
    assert converted.returncode == 0, converted.stderr[-2000:]
    (tmp_path / "best_model.pth").unlink()  # 0.9 GB: not kept while the evaluation runs

    evaluated = run_python("tools/train_net.py", "--config-file", "configs/VLD/vcm.yml", "--eval-only",
                           "MODEL.WEIGHTS", str(tmp_path / "vld_vcm.pth"), "MODEL.DEVICE", "cpu",
                           "DATASETS.ROOT", str(tmp_path / "data"), "DATASETS.VCM.MIN_FRAMES", "1",
                           "DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "8",
                           "OUTPUT_DIR", str(tmp_path / "eval"), timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    log = evaluated.stdout + evaluated.stderr
    assert f"MODEL.HEADS.NUM_CLASSES 500, from {tmp_path / 'vld_vcm.pth'}" in log  # vcm.yml leaves it 0
    results = json.loads((tmp_path / "eval" / "eval_results.json").read_text())["VCM"]["directions"]
    assert set(results) == {"IR->VIS", "VIS->IR"}
    for direction in results.values():
        assert all(math.isfinite(value) for value in direction.values() if isinstance(value, float))
        assert 0 < direction["mAP"] <= 100

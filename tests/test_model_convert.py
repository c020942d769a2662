"""Official VLD checkpoints (github.com/Visuang/VLD, network/model.py Model) -> this model, on a
hand-made state dict with the official key names and shapes (tiny geometry)."""

from __future__ import annotations

import pytest
import torch
from conftest import run_python
from fastreid.utils.checkpoint import Checkpointer
from official_vld import official_shapes, official_state_dict
from tiny_vld import tiny_model

from fastreid_vld.modeling import convert_official_state_dict
from fastreid_vld.modeling.convert import OfficialCheckpointError


def test_every_official_entry_lands_in_its_place():
    official = official_state_dict()
    model = tiny_model()
    model.load_state_dict(convert_official_state_dict(official), strict=True)
    ours = model.state_dict()
    expected_places = {
        "prompt_embedding": "backbone.hub", "attn.in_proj_bias": "backbone.sta.in_proj_bias",
        "image_encoder.positional_embedding": "backbone.visual.positional_embedding",
        "image_encoder.transformer.resblocks.3.mlp.c_proj.weight":
            "backbone.visual.transformer.resblocks.3.mlp.c_proj.weight",
        "classifier.BN.running_var": "heads.classifier.bn.running_var",
        "classifier.classifier.weight": "heads.classifier.linear.weight",
        "classifier_proj.BN.bias": "heads.classifier_proj.bn.bias",
        "classifier_STP.classifier.weight": "heads.classifier_sta.linear.weight",
        "prompt_learner.cls_ctx": "heads.prompt_learner.context",
        "prompt_learner.token_suffix": "heads.prompt_learner.token_suffix",
        "text_encoder.transformer.resblocks.1.attn.in_proj_weight":
            "heads.text_encoder.transformer.resblocks.1.attn.in_proj_weight",
        "text_encoder.text_projection": "heads.text_encoder.text_projection",
    }
    for official_key, our_key in expected_places.items():
        assert torch.equal(ours[our_key], official[official_key]), official_key
    assert ours["heads.classifier_sta.bn.num_batches_tracked"] == 7


def test_entries_unused_by_the_official_forward_are_dropped(caplog):
    converted = convert_official_state_dict(official_state_dict())
    assert len(converted) == len(official_shapes()) - 1 - 2 - 6  # logit_scale, ln_post2, classifier_proj_STP
    assert not any("ln_post2" in key or "proj_STP" in key or "logit_scale" in key for key in converted)


def test_wrapped_and_data_parallel_checkpoints_convert():
    official = official_state_dict()
    plain = convert_official_state_dict(official)
    wrapped = convert_official_state_dict({"state_dict": {f"module.{k}": v for k, v in official.items()}})
    assert plain.keys() == wrapped.keys() and all(torch.equal(plain[k], wrapped[k]) for k in plain)


def test_foreign_state_dicts_are_clear_errors():
    official = official_state_dict()
    with pytest.raises(OfficialCheckpointError, match="1 unknown entries, e.g. \\['bottleneck.weight'\\]"):
        convert_official_state_dict({**official, "bottleneck.weight": torch.zeros(1)})
    with pytest.raises(OfficialCheckpointError, match="no entry for"):
        convert_official_state_dict({k: v for k, v in official.items() if not k.startswith("image_encoder")})


def test_convert_tool_writes_a_fastreid_checkpoint(tmp_path):
    official = official_state_dict(seed=1)
    torch.save(official, tmp_path / "best_model.pth")
    result = run_python("tools/convert_official_vld.py", str(tmp_path / "best_model.pth"), str(tmp_path / "vld.pth"))
    assert result.returncode == 0, result.stderr
    model = tiny_model()
    Checkpointer(model).load(str(tmp_path / "vld.pth"))
    assert torch.equal(model.backbone.hub, official["prompt_embedding"])
    assert torch.equal(model.heads.classifier_sta.linear.weight, official["classifier_STP.classifier.weight"])
    torch.save({"model": model.state_dict()}, tmp_path / "ours.pth")  # not an official checkpoint
    result = run_python("tools/convert_official_vld.py", str(tmp_path / "ours.pth"), str(tmp_path / "x.pth"))
    assert result.returncode != 0 and "ours.pth: not an official VLD Model state dict" in result.stderr
    assert "Traceback" not in result.stderr

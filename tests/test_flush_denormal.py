"""FLUSH_DENORMAL: the tools and the trainer's setup flush subnormal floats on the CPU, or keep IEEE."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO, load_tool

from fastreid_vld.engine.defaults import flush_denormals, inference_config

pytestmark = pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU cannot flush subnormals")

TINY = str(REPO / "configs" / "VLD" / "tiny.yml")


def subnormal_product() -> float:
    """1e-20 x 1e-20 = 1e-40, a subnormal float32 (the smallest normal is about 1.2e-38)."""
    return (torch.tensor([1e-20]) * torch.tensor([1e-20])).item()


def test_ieee_arithmetic_keeps_the_subnormal():
    assert subnormal_product() == pytest.approx(1e-40, rel=1e-3)


@pytest.mark.parametrize("value, flushed", [("True", True), ("False", False)])
def test_the_tools_config_sets_flushing(value, flushed):
    cfg = inference_config(TINY, ["MODEL.DEVICE", "cpu", "FLUSH_DENORMAL", value])
    assert cfg.FLUSH_DENORMAL is flushed
    assert (subnormal_product() == 0.0) is flushed


def test_flushing_is_the_default_and_can_be_undone():
    cfg = inference_config(TINY, ["MODEL.DEVICE", "cpu"])
    assert subnormal_product() == 0.0
    cfg.FLUSH_DENORMAL = False
    flush_denormals(cfg)
    assert subnormal_product() == pytest.approx(1e-40, rel=1e-3)


def test_training_setup_flushes(tmp_path):
    train_net = load_tool("train_net")
    args = train_net.default_argument_parser().parse_args(
        ["--config-file", TINY, "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path)])
    train_net.setup(args)
    assert subnormal_product() == 0.0

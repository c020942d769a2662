"""Mixed precision as the official code runs it: under autocast every tensor of the STP backbone
has the dtype the official forward gives it, and the positional embedding is resized in the
dtype the CLIP weights file stores, as the official loader does.

The official dtypes restated (github Visuang/VLD at 69688ef; every weight fp32, autocast fp16 on
CUDA, here bf16 on the CPU: the same rules, LOW below). Its LayerNorm computes in fp32 and returns
its input's dtype (network/clip/model.py:145-151); linear, matmul and conv run in LOW; torch.cat
promotes to the widest input. Measured by hand on the official Model under CPU bf16 autocast.
"""

from __future__ import annotations

import torch
from fastreid.modeling.backbones import build_backbone
from tiny_vld import H, T, W, tiny_cfg, tiny_model

from fastreid_vld.modeling.attention import residual_block
from fastreid_vld.modeling.backbones import stp
from fastreid_vld.modeling.clip import resize_grid_pos_embed

LOW = torch.bfloat16
FP32 = torch.float32


def test_backbone_dtypes_under_autocast_follow_the_official_promotion(monkeypatch):
    blocks = []  # (dtype entering, dtype leaving) of every block

    def recording(block, x, **kwargs):
        out = residual_block(block, x, **kwargs)
        blocks.append((x.dtype, out.dtype))
        return out

    monkeypatch.setattr(stp, "residual_block", recording)
    backbone = tiny_model().backbone.train()
    v = backbone.visual
    seen = {}  # module -> [(input dtype, output dtype)] in call order
    for label, module in (("ln_pre", v.ln_pre), ("ln_post", v.ln_post)):
        module.register_forward_hook(lambda m, args, out, label=label: seen.setdefault(label, []).append(
            (args[0].dtype, out.dtype)))
    backbone.sta.register_forward_hook(lambda m, args, out: seen.setdefault("sta attention", []).append(
        (args[0].dtype, out[0].dtype)))
    frames = torch.randn(2 * T, 3, H, W, generator=torch.Generator().manual_seed(0))  # [2T, 3, H, W] fp32
    with torch.autocast("cpu", dtype=LOW):
        features = backbone(frames)

    start, depth = backbone.sth_start_layer, len(v.transformer.resblocks)
    assert 0 < start < depth - 1  # tiny.yml: blocks on either side of the join
    # network/model.py:144-153: conv1 LOW, class token and positional embedding cast to it, ln_pre keeps it
    assert seen["ln_pre"] == [(LOW, LOW)]
    # network/clip/model.py:177-180: the blocks before the join add LOW to LOW; network/model.py:199-200:
    # torch.cat with the fp32 hub makes the stream fp32; the later blocks add their LOW products to it
    # (the exchange, network/model.py:202-212, keeps the dtype)
    assert blocks == [(LOW, LOW)] * start + [(FP32, FP32)] * (depth - start)
    # network/model.py:188-190: STA queries and keys fp32, the attention's products LOW
    assert seen["sta attention"] == [(FP32, LOW)]
    # network/model.py:177, 192: ln_post on the fp32 class tokens and on the LOW STA output
    assert len(seen["ln_post"]) == 2 and set(seen["ln_post"]) == {(FP32, FP32), (LOW, LOW)}
    assert {name: f.dtype for name, f in features.items()} == {
        "cls_penultimate": FP32,  # network/model.py:166-168, 221
        "cls": FP32,              # network/model.py:177
        "cls_proj": LOW,          # network/model.py:179: fp32 @ fp32 under autocast
        "sta": LOW,               # network/model.py:192
    }


def test_positional_embedding_is_resized_in_the_dtype_of_the_weights_file(tmp_path):
    """network/model.py:306-312 and network/clip/model.py:435-437, 456-472: the OpenAI archive's fp16
    state dict is resized in fp16 (on the CPU), then loaded into the fp32 model (:447-449)."""
    tower = build_backbone(tiny_cfg()).visual
    square = torch.randn(1 + 14 * 14, tower.class_embedding.shape[0],
                         generator=torch.Generator().manual_seed(0)) * 0.05  # [1 + 14*14, W], ViT-B/16's grid
    state_dict = {f"visual.{key}": value.half() for key, value in tower.state_dict().items()}
    state_dict["visual.positional_embedding"] = square.half()
    torch.save(state_dict, tmp_path / "fp16.pt")

    backbone = build_backbone(tiny_cfg("MODEL.BACKBONE.PRETRAIN", True, "MODEL.BACKBONE.PRETRAIN_PATH",
                                       str(tmp_path / "fp16.pt")))
    loaded = backbone.visual.positional_embedding
    in_fp16 = resize_grid_pos_embed(square.half(), (H // 16, W // 16), "bilinear")
    in_fp32 = resize_grid_pos_embed(square.half().float(), (H // 16, W // 16), "bilinear")
    assert loaded.dtype == FP32 and in_fp16.dtype == torch.float16
    assert torch.equal(loaded, in_fp16.float())
    assert not torch.equal(in_fp16.float(), in_fp32)  # the two differ: the dtype is what this test checks
    assert (in_fp16.float() - in_fp32).abs().max() < 2 ** -10 * square.abs().max()  # by fp16 rounding only
    for key, value in backbone.visual.state_dict().items():
        if key != "positional_embedding":
            assert torch.equal(value, state_dict[f"visual.{key}"].float()), key

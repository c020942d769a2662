"""STP backbone: open_clip ViT with STH and STA, and CLIP weights loading."""

from __future__ import annotations

import open_clip
import pytest
import torch
from fastreid.modeling.backbones import build_backbone
from tiny_vld import EMBED, WIDTH, H, T, W, tiny_cfg

from fastreid_vld.modeling.clip import ClipWeightsError, resize_grid_pos_embed


def frames(seed: int = 0, tracklets: int = 2) -> torch.Tensor:
    return torch.randn(tracklets * T, 3, H, W, generator=torch.Generator().manual_seed(seed))


def test_per_frame_feature_shapes():
    backbone = build_backbone(tiny_cfg()).eval()
    with torch.no_grad():
        out = backbone(frames())
    assert {name: tuple(f.shape) for name, f in out.items()} == {
        "cls_penultimate": (2 * T, WIDTH), "cls": (2 * T, WIDTH), "cls_proj": (2 * T, EMBED), "sta": (2 * T, WIDTH)}
    assert backbone.visual.positional_embedding.shape == (1 + (H // 16) * (W // 16), WIDTH)  # the 64x32 grid
    assert backbone.hub.shape == (T, T, WIDTH)


@pytest.mark.parametrize("sth_start, moves", [(2, True), (0, True), (-1, False)])
def test_sth_moves_information_across_frames(sth_start, moves):
    torch.manual_seed(0)
    backbone = build_backbone(tiny_cfg("MODEL.STP.STH_START_LAYER", sth_start, "MODEL.STP.STA", sth_start >= 0))
    backbone.eval()
    x = frames(tracklets=1)
    changed = x.clone()
    changed[0] = torch.randn(3, H, W)  # only frame 0 of the tracklet changes
    with torch.no_grad():
        before, after = backbone(x)["cls"], backbone(changed)["cls"]
    assert (before[0] - after[0]).abs().max() > 1e-2
    frame3_change = (before[3] - after[3]).abs().max().item()
    assert (frame3_change > 1e-4) == moves, frame3_change
    if not moves:
        assert frame3_change == 0


def test_tracklets_do_not_mix():
    backbone = build_backbone(tiny_cfg()).eval()
    x = frames(tracklets=2)
    changed = x.clone()
    changed[:T] = torch.randn(T, 3, H, W)  # every frame of the first tracklet
    with torch.no_grad():
        before, after = backbone(x), backbone(changed)
    for name in before:
        assert torch.equal(before[name][T:], after[name][T:]), name


def test_sta_queries_each_frame_cls_over_the_tracklet_hub_tokens(monkeypatch):
    from fastreid_vld.modeling.attention import residual_block
    from fastreid_vld.modeling.backbones import stp
    outputs = []

    def recording(*args, **kwargs):
        outputs.append(residual_block(*args, **kwargs))
        return outputs[-1]

    monkeypatch.setattr(stp, "residual_block", recording)
    backbone = build_backbone(tiny_cfg()).eval()
    with torch.no_grad():
        sta = backbone(frames(tracklets=2))["sta"]
        x = outputs[-1]  # the last block keeps [2T, 1 + T, W]: the class token, then the T hub tokens
        assert x.shape == (2 * T, 1 + T, WIDTH)
        queries = x[:, 0].reshape(2, T, WIDTH)
        hub = x[:, -T:].reshape(2, T * T, WIDTH)
        expected = backbone.visual.ln_post(backbone.sta(queries, hub, hub)[0].reshape(2 * T, WIDTH))
    assert torch.allclose(sta, expected, atol=1e-6)
    with torch.no_grad():
        no_sta = build_backbone(tiny_cfg("MODEL.STP.STA", False))(frames())
    assert "sta" not in no_sta


@pytest.mark.parametrize("opts, message", [
    (("MODEL.STP.STH_START_LAYER", -1), "MODEL.STP.STA needs the hub tokens"),
    (("MODEL.STP.STH_START_LAYER", 4), "STH_START_LAYER 4"),
    (("INPUT.SIZE_TEST", [128, 64]), "INPUT.SIZE_TEST"),
    (("MODEL.CLIP.NAME", "configs/VLD/no_such_clip.json"), "no_such_clip.json not found"),
    (("MODEL.CLIP.NAME", "ViT-B-99"), "ViT-B-99"),
])
def test_bad_settings_are_clear_errors(opts, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        build_backbone(tiny_cfg(*opts))


def test_frames_must_fill_whole_tracklets():
    with pytest.raises(ValueError, match="not a multiple of INPUT.SEQ_LEN"):
        build_backbone(tiny_cfg())(torch.randn(T + 1, 3, H, W))


# ----------------------------------------------------------------------------- CLIP weights


def tiny_clip() -> open_clip.CLIP:
    """The tiny architecture as open_clip builds it at its native 32x32 (a square 2x2 grid)."""
    torch.manual_seed(1)
    return open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True,
                                  **_tiny_geometry())


def _tiny_geometry() -> dict:
    import json

    from conftest import REPO
    config = json.loads((REPO / "configs/VLD/clip_tiny.json").read_text())
    return {"embed_dim": config["embed_dim"], "vision_cfg": config["vision_cfg"], "text_cfg": config["text_cfg"]}


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    """The same random tiny CLIP saved as an OpenAI-style JIT archive and as open_clip checkpoints."""
    folder = tmp_path_factory.mktemp("clip")
    clip = tiny_clip().eval()
    state_dict = clip.state_dict()
    torch.save(state_dict, folder / "open_clip.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state_dict.items()}}, folder / "wrapped.pt")
    traced = torch.jit.trace(clip.visual, torch.randn(1, 3, 32, 32), check_trace=False)  # a JIT archive,
    wrapper = torch.jit.script(_JitCLIP(clip, traced))  # with the key names of CLIP
    torch.jit.save(wrapper, str(folder / "openai_jit.pt"))
    return folder, state_dict


class _JitCLIP(torch.nn.Module):
    def __init__(self, clip: open_clip.CLIP, visual: torch.nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.transformer = clip.transformer
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.logit_scale = clip.logit_scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image)


@pytest.mark.parametrize("file", ["open_clip.pt", "wrapped.pt", "openai_jit.pt"])
def test_clip_weights_load_from_local_files(clip_files, file):
    folder, state_dict = clip_files
    backbone = build_backbone(tiny_cfg("MODEL.BACKBONE.PRETRAIN", True,
                                       "MODEL.BACKBONE.PRETRAIN_PATH", str(folder / file)))
    loaded = backbone.visual.state_dict()
    for key, value in loaded.items():
        if key != "positional_embedding":
            assert torch.equal(value, state_dict[f"visual.{key}"].float()), key
    expected = resize_grid_pos_embed(state_dict["visual.positional_embedding"], (H // 16, W // 16), "bilinear")
    assert torch.equal(loaded["positional_embedding"], expected)


def test_positional_embedding_resize_keeps_the_class_token_and_a_constant_grid():
    pos = torch.cat([torch.full((1, 8), 5.0), torch.ones(14 * 14, 8)])
    resized = resize_grid_pos_embed(pos, (18, 9), "bilinear")
    assert resized.shape == (1 + 18 * 9, 8)
    assert torch.equal(resized[0], pos[0]) and torch.allclose(resized[1:], torch.ones(18 * 9, 8))
    ramp = torch.cat([torch.zeros(1, 1), torch.arange(4.0).repeat_interleave(4).view(16, 1)])  # rows 0..3
    column = resize_grid_pos_embed(ramp, (8, 2), "bilinear")[1:].view(8, 2)[:, 0]
    assert torch.all(column[1:] >= column[:-1]) and column[0] == 0 and column[-1] == 3  # order kept


def test_missing_weights_file_names_the_key_and_the_file(tmp_path):
    missing = tmp_path / "ViT-B-16.pt"
    with pytest.raises(ClipWeightsError, match=f"MODEL.BACKBONE.PRETRAIN_PATH: CLIP weights file {missing} not found"):
        build_backbone(tiny_cfg("MODEL.BACKBONE.PRETRAIN", True, "MODEL.BACKBONE.PRETRAIN_PATH", str(missing)))
    assert issubclass(ClipWeightsError, FileNotFoundError)  # tools/train_net.py reports these in one line


def test_weights_of_another_geometry_are_a_clear_error(tmp_path):
    torch.save(tiny_clip().state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(ClipWeightsError, match="do not match the CLIP image tower of MODEL.CLIP.NAME"):
        build_backbone(tiny_cfg("MODEL.BACKBONE.PRETRAIN", True, "MODEL.BACKBONE.PRETRAIN_PATH",
                                str(tmp_path / "tiny.pt"), "MODEL.CLIP.NAME", "ViT-B-32"))


def test_unreadable_weights_file_is_a_clear_error(tmp_path):
    (tmp_path / "broken.pt").write_text("not a checkpoint")
    with pytest.raises(ClipWeightsError, match="broken.pt"):
        build_backbone(tiny_cfg("MODEL.BACKBONE.PRETRAIN", True, "MODEL.BACKBONE.PRETRAIN_PATH",
                                str(tmp_path / "broken.pt")))


def test_no_path_and_an_unknown_tag_is_a_clear_error():
    with pytest.raises(ClipWeightsError, match="MODEL.CLIP.PRETRAINED 'nonsense' is not an open_clip tag"):
        build_backbone(tiny_cfg("MODEL.BACKBONE.PRETRAIN", True, "MODEL.BACKBONE.PRETRAIN_PATH", "",
                                "MODEL.CLIP.PRETRAINED", "nonsense"))

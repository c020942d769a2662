"""IMLP head: identity prompts with the real open_clip tokenizer, frozen text tower, classifiers,
temporal pooling; on the STP backbone and on fast-reid's ResNet."""

from __future__ import annotations

import open_clip
import pytest
import torch
from fastreid.modeling.heads import build_heads
from tiny_vld import EMBED, NUM_CLASSES, TEXT_WIDTH, WIDTH, B, T, random_batch, tiny_cfg, tiny_model, train_steps


def test_prompt_slots_are_the_four_x_of_the_official_prompt():
    head = build_heads(tiny_cfg())
    learner = head.prompt_learner
    tokenizer = open_clip.SimpleTokenizer()
    words = [tokenizer.decoder[int(t)] for t in learner.tokens[0] if t > 0]
    assert words == ["<start_of_text>", "a</w>", "x</w>", "x</w>", "x</w>", "x</w>", "person</w>", "observed</w>",
                     "in</w>", "both</w>", "day</w>", "and</w>", "night</w>", "conditions</w>", ".</w>",
                     "<end_of_text>"]
    assert learner.context.shape == (NUM_CLASSES, 4, TEXT_WIDTH)
    assert learner.token_prefix.shape == (1, 2, TEXT_WIDTH) and learner.token_suffix.shape == (1, 77 - 6, TEXT_WIDTH)
    assert torch.equal(learner.shared(), learner.token_prefix)  # start token and "A": the same for all
    prompts = learner()  # from the context vectors to the end-of-text token (position 15)
    assert prompts.shape == (NUM_CLASSES, 4 + 10, TEXT_WIDTH)
    assert torch.equal(prompts[2, :4], learner.context[2])
    assert torch.equal(prompts[2, 4:], learner.token_suffix[0, :10])
    assert 0.015 < learner.context.std().item() < 0.025  # N(0, 0.02)


def test_prompt_token_embeddings_come_from_the_text_tower():
    torch.manual_seed(0)
    tower = open_clip.create_model("ViT-B-16", pretrained=None, **_tiny_text_geometry())
    tokens = open_clip.tokenize(["A X X X X person observed in both day and night conditions."])
    from fastreid_vld.modeling.heads.imlp import IdentityPromptLearner
    learner = IdentityPromptLearner("A X X X X person observed in both day and night conditions.",
                                    tower.token_embedding, 77, NUM_CLASSES)
    embedded = tower.token_embedding(tokens)
    assert torch.equal(learner.token_prefix, embedded[:, :2]) and torch.equal(learner.token_suffix, embedded[:, 6:])


def _tiny_text_geometry() -> dict:
    import json

    from conftest import REPO
    config = json.loads((REPO / "configs/VLD/clip_tiny.json").read_text())
    return {"embed_dim": config["embed_dim"], "vision_cfg": config["vision_cfg"], "text_cfg": config["text_cfg"]}


@pytest.mark.parametrize("prompt", ["a person", "A X person X", "A x X person."])
def test_prompt_needs_one_run_of_placeholders(prompt):
    if prompt == "A x X person.":  # the tokenizer lower-cases: "x" is a placeholder too, and this is fine
        assert build_heads(tiny_cfg("MODEL.IMLP.PROMPT", prompt)).prompt_learner.context.shape[1] == 2
        return
    with pytest.raises(ValueError, match="MODEL.IMLP.PROMPT"):
        build_heads(tiny_cfg("MODEL.IMLP.PROMPT", prompt))


def test_head_outputs_in_eval_and_training():
    model = tiny_model()
    frames = torch.rand(B * T, 3, 64, 32)
    model.eval()
    with torch.no_grad():
        feature = model.heads(model.backbone(frames))
    assert feature.shape == (B, 2 * WIDTH)
    model.train()
    out = model.heads(model.backbone(frames))
    assert {k: tuple(v.shape) for k, v in out["features"].items()} == {
        "cls_penultimate": (B, WIDTH), "cls": (B, WIDTH), "cls_proj": (B, EMBED), "sta": (B, WIDTH)}
    assert {k: tuple(v.shape) for k, v in out["logits"].items()} == {
        "cls": (B, NUM_CLASSES), "cls_proj": (B, NUM_CLASSES), "text": (B, NUM_CLASSES), "sta": (B, NUM_CLASSES)}
    assert out["text_features"].shape == (NUM_CLASSES, EMBED)
    assert torch.allclose(out["logits"]["text"], out["features"]["cls_proj"] @ out["text_features"].t())


def test_features_are_the_mean_over_each_tracklet_frames():
    model = tiny_model().eval()
    frames = torch.rand(B * T, 3, 64, 32)
    with torch.no_grad():
        per_frame = model.backbone(frames)
        feature = model.heads(per_frame)
    expected = torch.cat([per_frame["cls"].view(B, T, -1).mean(1), per_frame["sta"].view(B, T, -1).mean(1)], dim=1)
    assert torch.allclose(feature, expected, atol=1e-6)


def test_text_tower_is_frozen_and_gradients_reach_the_prompts():
    model = tiny_model().train()
    losses = model(random_batch())
    assert "loss_text" in losses
    losses["loss_text"].backward()  # the text logits alone
    text_encoder = model.heads.text_encoder
    assert all(not p.requires_grad and p.grad is None for p in text_encoder.parameters())
    context_grad = model.heads.prompt_learner.context.grad
    assert context_grad is not None and context_grad.abs().sum() > 0
    assert model.heads.prompt_learner.token_prefix.grad is None  # a buffer


def test_classifiers_are_bn_and_bias_free_linear_with_official_init():
    head = build_heads(tiny_cfg())
    for classifier in (head.classifier, head.classifier_proj, head.classifier_sta):
        assert torch.equal(classifier.bn.weight, torch.ones_like(classifier.bn.weight))
        assert torch.equal(classifier.bn.bias, torch.zeros_like(classifier.bn.bias))
        assert classifier.linear.bias is None and 0.0007 < classifier.linear.weight.std().item() < 0.0013


def test_num_classes_must_be_set():
    with pytest.raises(ValueError, match="MODEL.HEADS.NUM_CLASSES 0"):
        build_heads(tiny_cfg("MODEL.HEADS.NUM_CLASSES", 0))


def shipped_cnn_config(config: str):
    """A configs/VLD/ CNN config as shipped, but random weights, the tiny text tower and 64x32 frames."""
    return tiny_cfg("MODEL.BACKBONE.PRETRAIN", False, "MODEL.CLIP.NAME", "configs/VLD/clip_tiny.json",
                    "MODEL.DEVICE", "cpu", "INPUT.SIZE_TRAIN", [64, 32], "INPUT.SIZE_TEST", [64, 32],
                    config=f"configs/VLD/{config}")


@pytest.mark.parametrize(("config", "backbone", "width"), [
    ("vcm_r50_ibn.yml", "build_resnet_backbone", 2048), ("bupt_r50_ibn.yml", "build_resnet_backbone", 2048),
    ("vcm_osnet.yml", "build_osnet_backbone", 512), ("bupt_osnet.yml", "build_osnet_backbone", 512)])
def test_the_cnn_configs_build_their_backbone_under_the_imlp_head(config, backbone, width):
    from fastreid.modeling import build_model
    cfg = shipped_cnn_config(config)
    assert cfg.MODEL.BACKBONE.NAME == backbone and cfg.DATASETS.NAMES == (("VCM",) if "vcm" in config
                                                                          else ("BUPTCampus",))
    model = build_model(cfg)
    assert model.heads.classifier.bn.num_features == width == model.heads.projection.in_features
    assert set(model.train()(random_batch())) == {"loss_cls", "loss_cls_proj", "loss_text", "loss_triplet",
                                                  "loss_triplet_proj"}


def test_resnet50_ibn_config_trains_a_few_steps():
    torch.manual_seed(0)
    cfg = shipped_cnn_config("vcm_r50_ibn.yml")
    assert cfg.MODEL.BACKBONE.WITH_IBN and cfg.MODEL.BACKBONE.DEPTH == "50x"
    from fastreid.modeling import build_model

    from fastreid_vld.solver import build_vld_optimizer
    model = build_model(cfg).train()
    optimizer, _ = build_vld_optimizer(cfg, model)
    batch = random_batch()
    loss_dict, losses = train_steps(model, optimizer, batch, steps=16)
    assert set(loss_dict) == {"loss_cls", "loss_cls_proj", "loss_text", "loss_triplet", "loss_triplet_proj"}
    # the early steps jump about (BatchNorm on one batch, a high head rate): compare the ends
    assert sum(losses[-4:]) < 0.6 * sum(losses[:4]), losses
    assert model.heads.projection.weight.grad is not None
    model.eval()
    with torch.no_grad():
        assert model({"images": batch["images"]}).shape == (B, 2048)


@pytest.mark.parametrize("key", ["MODEL.BACKBONE.PRETRAIN_PATH", "MODEL.IMLP.TEXT_PRETRAIN_PATH"])
def test_text_tower_and_prompt_embeddings_load_from_the_clip_checkpoint(tmp_path, key):
    torch.manual_seed(3)
    clip = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True, **_tiny_text_geometry())
    state_dict = clip.state_dict()
    torch.save(state_dict, tmp_path / "clip.pt")
    opts = ["MODEL.BACKBONE.PRETRAIN", True, key, str(tmp_path / "clip.pt")]
    if key == "MODEL.IMLP.TEXT_PRETRAIN_PATH":  # a CNN backbone: the text tower's weights come from this key
        opts += ["MODEL.BACKBONE.NAME", "build_resnet_backbone", "MODEL.BACKBONE.PRETRAIN_PATH", "unused.pth"]
    head = build_heads(tiny_cfg(*opts))
    for name, value in head.text_encoder.state_dict().items():
        assert torch.equal(value, state_dict[name]), name
    tokens = head.prompt_learner.tokens
    embedded = state_dict["token_embedding.weight"][tokens]  # [1, L, D]
    assert torch.equal(head.prompt_learner.token_prefix, embedded[:, :2])
    assert torch.equal(head.prompt_learner.token_suffix, embedded[:, 6:])

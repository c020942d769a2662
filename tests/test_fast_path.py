"""The fast path changes no number: the text tower cut at the end-of-text token and its shared
prefix (exact), the fused-attention blocks and the last blocks that compute only the positions
used afterwards (to float rounding), and activation checkpointing (the same gradients)."""

from __future__ import annotations

import pytest
import torch
from tiny_vld import B, H, T, W, random_batch, tiny_model

from fastreid_vld.modeling.attention import residual_block


def full_prompts(learner) -> torch.Tensor:
    """Every identity's 77 prompt positions, as the official PromptLearner builds them: [C, 77, D]."""
    n = learner.context.shape[0]
    return torch.cat([learner.token_prefix.expand(n, -1, -1), learner.context,
                      learner.token_suffix.expand(n, -1, -1)], dim=1)


def reference_text_features(head) -> torch.Tensor:
    """open_clip's own text transformer over all 77 positions under the causal mask, the feature
    read at the end-of-text token (the official TextEncoder): [C, E]."""
    encoder, learner = head.text_encoder, head.prompt_learner
    length = encoder.positional_embedding.shape[0]
    mask = torch.full((length, length), float("-inf")).triu(1)
    x = encoder.transformer(full_prompts(learner) + encoder.positional_embedding, attn_mask=mask)
    return encoder.ln_final(x[:, learner.tokens[0].argmax()]) @ encoder.text_projection


def test_text_positions_after_the_end_of_text_token_are_never_run():
    learner = tiny_model().heads.prompt_learner
    end = int(learner.tokens[0].argmax())
    assert end == 15  # "A X X X X person observed in both day and night conditions." + start and end tokens
    assert learner.shared().shape[1] == 2 and learner().shape[1] == end + 1 - 2  # of 77


def test_cut_and_shared_prefix_give_the_full_tower_hidden_states_exactly(monkeypatch):
    """After every block but the last, the identities' positions 2..15 and the shared positions
    0..1 (run once, as sequence 0) hold, bit for bit, what open_clip's tower over all 77
    positions of every identity holds there; the last block keeps the end-of-text token only."""
    from fastreid_vld.modeling.heads import imlp
    outputs = []

    def recording(*args, **kwargs):
        outputs.append(residual_block(*args, **kwargs))
        return outputs[-1]

    monkeypatch.setattr(imlp, "residual_block", recording)
    head = tiny_model().heads
    encoder, learner = head.text_encoder, head.prompt_learner
    with torch.no_grad():
        fast = encoder(learner.shared(), learner())
        reference = full_prompts(learner) + encoder.positional_embedding
        mask = torch.full((77, 77), float("-inf")).triu(1)
        for block, output in zip(encoder.transformer.resblocks[:-1], outputs[:-1], strict=True):
            reference = block(reference, attn_mask=mask)
            assert torch.equal(output[1:], reference[:, 2:16])  # [C, 14, D]: each identity's positions
            assert torch.equal(output[0, :2], reference[0, :2])  # the shared prefix
        assert outputs[-1].shape[:2] == (1 + learner.context.shape[0], 1)  # the end-of-text position alone
        assert torch.allclose(fast, reference_text_features(head), rtol=0, atol=1e-6 * fast.abs().max())


def test_fused_attention_block_equals_open_clip_block():
    torch.manual_seed(0)
    block = tiny_model().backbone.visual.transformer.resblocks[0]
    x = torch.randn(3, 11, block.attn.embed_dim)
    with torch.no_grad():
        expected = block(x)
        assert torch.allclose(residual_block(block, x), expected, atol=1e-5)
        used = torch.tensor([0, 8, 9, 10])  # the class and hub tokens: what the last image block keeps
        assert torch.allclose(residual_block(block, x, queries=used), expected[:, used], atol=1e-5)


def reference_backbone(backbone, frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """The STP forward with open_clip's own blocks over every position (the official encode_image)."""
    v = backbone.visual
    x = backbone._embed(frames)
    for i, block in enumerate(v.transformer.resblocks):
        if i == backbone.sth_start_layer:
            x = backbone._join_hub(x)
        elif 0 <= backbone.sth_start_layer < i:
            x = backbone._exchange_hub(x)
        if i == len(v.transformer.resblocks) - 1:
            penultimate = x[:, 0]
        x = block(x)
    cls = v.ln_post(x[:, 0])
    return {"cls_penultimate": penultimate, "cls": cls, "cls_proj": cls @ v.proj,
            "sta": v.ln_post(backbone._aggregate(x))}


@pytest.mark.parametrize("training", [False, True])
def test_backbone_equals_the_reference_forward(training):
    backbone = tiny_model().backbone.train(training)
    frames = torch.randn(B * T, 3, H, W, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast, reference = backbone(frames), reference_backbone(backbone, frames)
    for name, expected in reference.items():
        assert torch.allclose(fast[name], expected, atol=1e-5), name


def gradients(*opts: str) -> tuple[float, dict[str, torch.Tensor]]:
    model = tiny_model(*opts).train()
    loss = sum(model(random_batch()).values())
    loss.backward()
    return loss.item(), {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def test_activation_checkpointing_gives_the_same_gradients():
    loss, expected = gradients()
    checkpointed_loss, checkpointed = gradients("MODEL.STP.GRAD_CHECKPOINT", True, "MODEL.IMLP.GRAD_CHECKPOINT", True)
    assert checkpointed_loss == loss
    assert checkpointed.keys() == expected.keys()
    for name, grad in expected.items():
        assert torch.equal(checkpointed[name], grad), name


@pytest.mark.parametrize("key, tower", [("MODEL.STP.GRAD_CHECKPOINT", "image"), ("MODEL.IMLP.GRAD_CHECKPOINT", "text")])
def test_checkpointed_blocks_run_again_in_the_backward_pass(key, tower):
    def mlp_calls(*opts) -> tuple[int, int]:
        model = tiny_model(*opts).train()
        blocks = (model.backbone.visual if tower == "image" else model.heads.text_encoder).transformer.resblocks
        calls = []
        blocks[0].ln_1.register_forward_pre_hook(lambda *_: calls.append(1))
        loss = sum(model(random_batch()).values())
        forward = len(calls)
        loss.backward()
        return forward, len(calls)

    assert mlp_calls() == (mlp_calls()[0], mlp_calls()[0])  # kept: no second run
    forward, after_backward = mlp_calls(key, True)
    assert after_backward > forward  # recomputed from the block's input in the backward pass


def test_blocks_other_than_open_clip_residual_attention_are_refused():
    from open_clip.transformer import CustomResidualAttentionBlock

    from fastreid_vld.modeling.attention import adopt_blocks
    with pytest.raises(ValueError, match="CustomResidualAttentionBlock blocks"):
        adopt_blocks(torch.nn.ModuleList([CustomResidualAttentionBlock(8, 2)]), "image")


def test_lean_quick_gelu_equals_open_clip_quick_gelu_and_keeps_half():
    from open_clip.transformer import QuickGELU

    from fastreid_vld.modeling.attention import LeanQuickGELU
    model = tiny_model()
    assert all(isinstance(block.mlp.gelu, LeanQuickGELU) for block in model.backbone.visual.transformer.resblocks)
    assert all(isinstance(block.mlp.gelu, LeanQuickGELU) for block in model.heads.text_encoder.transformer.resblocks)
    x = torch.randn(64, 96, generator=torch.Generator().manual_seed(0)) * 4
    grad = torch.randn(64, 96, generator=torch.Generator().manual_seed(1))
    def run(activation: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor, int]:
        leaf = x.clone().requires_grad_()
        kept = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel()) or t, lambda t: t):
            out = activation(leaf)
        out.backward(grad)
        return out, leaf.grad, sum(kept)

    (out, dx, kept), (lean_out, lean_dx, lean_kept) = run(QuickGELU()), run(LeanQuickGELU())
    assert torch.equal(lean_out, out) and torch.equal(lean_dx, dx)
    assert lean_kept == x.numel() and kept >= 2 * x.numel()

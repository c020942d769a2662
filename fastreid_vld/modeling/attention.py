"""The transformer blocks of both CLIP towers, run with PyTorch's fused scaled-dot-product
attention (SDPA, batch-first), and only where their outputs are used.

open_clip's ``ResidualAttentionBlock`` computes every position of every sequence. VLD needs
less: the last image block only feeds the class token and the STH hub tokens on, the frozen
text tower only the end-of-text token, and the text positions before the learnable context are
the same for every identity. :func:`residual_block` runs one block with the block's own
weights for the positions asked for (``queries``), with a prefix that sequence 0 holds and every
sequence attends (``shared``), under an optional causal mask. All sequences go through the same
matrix products, so each position gets the numbers the block's own forward gives it
(tests/test_fast_path.py); a block that keeps few positions rounds its smaller products
differently (1e-6 relative).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU, ResidualAttentionBlock
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["LeanQuickGELU", "adopt_blocks", "residual_block"]


def adopt_blocks(blocks: nn.ModuleList, tower: str) -> None:
    """Check that a tower's blocks are open_clip's plain pre-norm self-attention blocks, and swap
    their QuickGELU for :class:`LeanQuickGELU` (the same numbers, half its activation memory)."""
    for block in blocks:
        if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv") or not block.attn.batch_first:
            raise ValueError(f"the CLIP {tower} tower of MODEL.CLIP.NAME has {type(block).__name__} blocks: VLD runs "
                             "open_clip's batch-first ResidualAttentionBlock (a ViT / CLIP text transformer)")
        if type(block.mlp.gelu) is QuickGELU:
            block.mlp.gelu = LeanQuickGELU()


class LeanQuickGELU(nn.Module):
    """open_clip's QuickGELU, ``x * sigmoid(1.702 x)``, keeping only x for the backward pass (autograd
    keeps x and the sigmoid: twice the memory of the MLP's widest activation) and allocating one
    tensor where autograd allocates three. The same operations on the same values: equal bit for
    bit, forward and backward (multiplication and a sum of two terms commute exactly)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _QuickGELUFunction.apply(x)


class _QuickGELUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.mul(x, 1.702).sigmoid_().mul_(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        gate = torch.mul(x, 1.702).sigmoid_()
        # autograd's terms: the product's branch through the sigmoid (its backward, then the scale)
        # plus the branch that multiplies by the sigmoid
        through_sigmoid = torch.ops.aten.sigmoid_backward(grad * x, gate).mul_(1.702)
        return through_sigmoid.add_(gate.mul_(grad))


def residual_block(block: ResidualAttentionBlock, x: torch.Tensor, *, queries: slice | torch.Tensor | None = None,
                   shared: int = 0, causal: bool = False, grad_checkpoint: bool = False) -> torch.Tensor:
    """One pre-norm CLIP block: x [N, L, D] -> [N, Lq, D], the outputs at ``queries``
    (positions of x: a slice or an index tensor [Lq]; all L by default).

    ``shared``: the first ``shared`` positions of sequence 0 precede every other sequence too:
    sequences 1.. attend them as well as their own positions (a prefix common to all, run once).
    ``causal``: position i of a sequence attends its positions up to i only (the text tower).
    ``grad_checkpoint``: keep only x for the backward pass and recompute the block there."""
    if grad_checkpoint and torch.is_grad_enabled():
        return checkpoint(_residual_block, block, x, queries, shared, causal, use_reentrant=False)
    return _residual_block(block, x, queries, shared, causal)


def _residual_block(block: ResidualAttentionBlock, x: torch.Tensor, queries: slice | torch.Tensor | None,
                    shared: int, causal: bool) -> torch.Tensor:
    attn = block.attn
    n, length, _ = x.shape
    positions = slice(None) if queries is None else queries
    q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)  # [N, L, D] each
    q = q[:, positions]  # [N, Lq, D]
    if shared:
        k = torch.cat([k[:1, :shared].expand(n, -1, -1), k], dim=1)  # [N, S + L, D]
        v = torch.cat([v[:1, :shared].expand(n, -1, -1), v], dim=1)
    heads = attn.num_heads
    out = F.scaled_dot_product_attention(_split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads),
                                         attn_mask=_attention_mask(n, length, positions, shared, causal, x.device))
    out = attn.out_proj(out.transpose(1, 2).flatten(2))  # [N, heads, Lq, D / heads] -> [N, Lq, D]
    x = x[:, positions] + block.ls_1(out)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _attention_mask(n: int, length: int, positions: slice | torch.Tensor, shared: int, causal: bool,
                    device: torch.device) -> torch.Tensor | None:
    """True where a query may attend a key: [Lq, L] or, with shared positions, [N, 1, Lq, S + L]."""
    if not causal and not shared:
        return None
    query_positions = torch.arange(length, device=device)[positions]  # [Lq]
    own = torch.arange(length, device=device) <= query_positions[:, None] if causal else \
        torch.ones(len(query_positions), length, dtype=torch.bool, device=device)  # [Lq, L]
    if not shared:
        return own
    prefix = torch.ones(n, 1, len(query_positions), shared, dtype=torch.bool, device=device)
    prefix[0] = False  # sequence 0 holds the shared positions themselves
    return torch.cat([prefix, own.expand(n, 1, -1, -1)], dim=-1)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[N, L, D] -> [N, heads, L, D / heads]."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)

"""The WRT triplet loss under mixed precision and at large feature norms: this project's loss
(fp32, autocast off, soft margin as softplus) against the same formula with its distance matmul
left to autocast (this project before issue 11) and against the official formula in fp32, each
compared with a float64 reference. Prints one table.

32 features (8 identities x 4), 768-d, random directions scaled to each norm; CPU bf16 autocast
(CUDA fp16 behaves alike where a GPU is present, without the overflow margin of bf16).

    .venv/bin/python bench/triplet_precision.py
"""

from __future__ import annotations

import fastreid_vld  # noqa: F401  (first: adapts fast-reid before it is imported)

# isort: split
import torch
import torch.nn.functional as F
from fastreid.modeling.losses.utils import euclidean_dist
from tabulate import tabulate

from fastreid_vld.modeling.losses.triplet import _softmax_weights, weighted_regularization_triplet

TARGETS = torch.arange(8).repeat_interleave(4)


def matmul_under_autocast(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The loss as computed before: fast-reid's euclidean_dist (a matmul autocast runs in bf16)
    and torch's soft_margin_loss (log(1 + exp(x)), inf once x passes ~88 in fp32)."""
    features = features.float()
    dist = euclidean_dist(features, features)
    same = targets[:, None] == targets[None, :]
    positive, negative = same.float(), (~same).float()
    far = (dist * positive * _softmax_weights(dist * positive, positive)).sum(dim=1)
    near = (dist * negative * _softmax_weights(-dist * negative, negative)).sum(dim=1)
    return F.soft_margin_loss(near - far, torch.ones_like(far))


def reference(features: torch.Tensor) -> float:
    """The official formula in float64, its soft margin as log(1 + exp) (finite in float64 here)."""
    x = features.double()
    n = len(x)
    squared = x.pow(2).sum(dim=1, keepdim=True).expand(n, n)
    dist = (squared + squared.t()).addmm_(x, x.t(), beta=1, alpha=-2).clamp(min=1e-12).sqrt()
    positive = (TARGETS[:, None] == TARGETS[None, :]).double()
    negative = 1 - positive
    far = (dist * positive * _softmax_weights(dist * positive, positive)).sum(dim=1)
    near = (dist * negative * _softmax_weights(-dist * negative, negative)).sum(dim=1)
    return torch.log1p(torch.exp(far - near)).mean().item()


def relative(value: float, exact: float) -> str:
    return "inf" if value == float("inf") else f"{abs(value - exact) / exact:.1e}"


def main() -> None:
    rows = []
    for norm in (1, 10, 60, 100, 400):
        x = torch.randn(len(TARGETS), 768, generator=torch.Generator().manual_seed(norm))
        x = x / x.norm(dim=1, keepdim=True) * norm
        exact = reference(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours_mixed = weighted_regularization_triplet(x, TARGETS).item()
            before_mixed = matmul_under_autocast(x, TARGETS).item()
        rows.append([norm, f"{exact:.6g}", relative(weighted_regularization_triplet(x, TARGETS).item(), exact),
                     relative(ours_mixed, exact), relative(matmul_under_autocast(x, TARGETS).item(), exact),
                     relative(before_mixed, exact)])
    print(tabulate(rows, headers=["feature norm", "float64 reference", "ours fp32", "ours bf16 autocast",
                                  "before fp32", "before bf16 autocast"], tablefmt="pipe"))
    print("relative differences to the float64 reference; inf: the loss overflowed")


if __name__ == "__main__":
    main()

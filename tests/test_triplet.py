"""The WRT triplet loss: the official value where it is finite, fp32 distances under mixed
precision, and a finite value where the official soft margin overflows."""

from __future__ import annotations

import pytest
import torch

from fastreid_vld.modeling.losses.triplet import weighted_regularization_triplet

TARGETS = torch.arange(8).repeat_interleave(4)  # 8 identities x 4, as a P x K batch


def features_of_norm(norm: float, seed: int = 0, dim: int = 768) -> torch.Tensor:
    x = torch.randn(len(TARGETS), dim, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=1, keepdim=True) * norm  # [32, dim]


def official_formula(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The loss written out as the official code computes it (distances through addmm_, softmax
    weights with the masked maximum, log(1 + exp(-x)) as is), in the features' own dtype."""
    n = len(features)
    squared = features.pow(2).sum(dim=1, keepdim=True).expand(n, n)
    dist = (squared + squared.t()).addmm_(features, features.t(), beta=1, alpha=-2).clamp(min=1e-12).sqrt()
    positive = (targets[:, None] == targets[None, :]).to(features.dtype)
    negative = 1 - positive

    def weights(d: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        shifted = d - (d * mask).max(dim=1, keepdim=True)[0]
        return torch.exp(shifted) * mask / ((torch.exp(shifted) * mask).sum(dim=1, keepdim=True) + 1e-6)

    far = (dist * positive * weights(dist * positive, positive)).sum(dim=1)
    near = (dist * negative * weights(-dist * negative, negative)).sum(dim=1)
    return torch.log1p(torch.exp(far - near)).mean()


@pytest.mark.parametrize("norm", [1.0, 10.0, 30.0, 50.0])
def test_equals_the_official_formula_where_it_is_finite(norm):
    features = features_of_norm(norm)
    official = official_formula(features, TARGETS)
    assert torch.isfinite(official)
    assert weighted_regularization_triplet(features, TARGETS).item() == pytest.approx(official.item(), rel=1e-6)


@pytest.mark.parametrize("norm", [10.0, 60.0])
def test_distances_stay_fp32_under_bf16_autocast(norm):
    """A bf16 matmul for the distances is off by about 0.5% of the feature norm; the loss under
    autocast must equal the fp32 loss to 1e-5 relative, with and without gradients."""
    features = features_of_norm(norm, seed=1).requires_grad_()
    plain = weighted_regularization_triplet(features, TARGETS)
    (plain_grad,) = torch.autograd.grad(plain, features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = weighted_regularization_triplet(features, TARGETS)
        half_input = weighted_regularization_triplet(features.bfloat16(), TARGETS)
    (mixed_grad,) = torch.autograd.grad(mixed, features)
    assert mixed.dtype == torch.float32 and half_input.dtype == torch.float32
    assert mixed.item() == pytest.approx(plain.item(), rel=1e-5)
    torch.testing.assert_close(mixed_grad, plain_grad, rtol=1e-5, atol=1e-7)
    # bf16 features (a layer's output under autocast) are taken as they are, then computed in fp32
    reference = weighted_regularization_triplet(features.detach().bfloat16().float(), TARGETS)
    assert half_input.item() == pytest.approx(reference.item(), rel=1e-5)


@pytest.mark.parametrize("norm", [100.0, 400.0])
def test_large_features_give_a_finite_loss_equal_to_float64(norm):
    """At these norms the official fp32 soft margin overflows to inf; the float64 reference is
    finite, and so is this loss, equal to it, with finite gradients."""
    features = features_of_norm(norm, seed=2).requires_grad_()
    assert torch.isinf(official_formula(features.detach(), TARGETS))
    reference = official_formula(features.detach().double(), TARGETS)
    assert torch.isfinite(reference)
    loss = weighted_regularization_triplet(features, TARGETS)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    (grad,) = torch.autograd.grad(loss, features)
    assert torch.isfinite(grad).all()

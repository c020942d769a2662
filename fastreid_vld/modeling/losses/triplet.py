"""Weighted-regularization triplet loss (WRT, Ye et al., TPAMI 2021), as VLD trains with it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_regularization_triplet(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """features [N, D], targets [N] -> scalar. Softmax-weighted positive and negative distances
    (no margin), soft-margin ranking."""
    features = features.float()
    dist = torch.cdist(features, features).clamp(min=1e-12)  # [N, N] euclidean
    same = targets[:, None] == targets[None, :]
    positive, negative = same.float(), (~same).float()
    far_positive = (dist * positive * _softmax_weights(dist * positive, positive)).sum(dim=1)
    near_negative = (dist * negative * _softmax_weights(-dist * negative, negative)).sum(dim=1)
    return F.soft_margin_loss(near_negative - far_positive, torch.ones_like(far_positive))


def _softmax_weights(dist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    max_value = (dist * mask).max(dim=1, keepdim=True)[0]
    exp = torch.exp(dist - max_value) * mask
    return exp / (exp.sum(dim=1, keepdim=True) + 1e-6)

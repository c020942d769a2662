"""Weighted-regularization triplet loss (WRT; Ye et al., "Deep Learning for Person Re-identification:
A Survey and Outlook", TPAMI 2021), as VLD trains with it: no margin, no hard mining."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fastreid.modeling.losses.utils import euclidean_dist

__all__ = ["weighted_regularization_triplet"]


def weighted_regularization_triplet(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """features [N, D], targets [N] -> scalar. Each anchor's positive (negative) distance is the
    softmax-weighted mean of its distances to the positives (negatives), far positives (near
    negatives) weighing most; soft-margin ranking of the two."""
    features = features.float()
    dist = euclidean_dist(features, features)  # [N, N]
    same = targets[:, None] == targets[None, :]
    positive, negative = same.float(), (~same).float()
    dist_positive, dist_negative = dist * positive, dist * negative
    far_positive = (dist_positive * _softmax_weights(dist_positive, positive)).sum(dim=1)  # [N]
    near_negative = (dist_negative * _softmax_weights(-dist_negative, negative)).sum(dim=1)  # [N]
    return F.soft_margin_loss(near_negative - far_positive, torch.ones_like(far_positive))


def _softmax_weights(dist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of ``dist`` over the entries where ``mask`` is 1, row by row: [N, N]."""
    max_value = (dist * mask).max(dim=1, keepdim=True)[0]
    exp = torch.exp(dist - max_value) * mask
    return exp / (exp.sum(dim=1, keepdim=True) + 1e-6)  # 1e-6: rows without any masked entry

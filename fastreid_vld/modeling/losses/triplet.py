"""Weighted-regularization triplet loss (WRT; Ye et al., "Deep Learning for Person Re-identification:
A Survey and Outlook", TPAMI 2021), as VLD trains with it: no margin, no hard mining.

Numerics: the whole loss runs in fp32 with autocast off, so under mixed precision the distance
matrix is not computed by a half-precision matmul (the official code's in-place ``addmm_``,
which autocast leaves alone, keeps it in fp32 too); and the soft margin ``log(1 + exp(-x))`` is
computed as ``softplus(-x)``, equal to it wherever it is finite in fp32 and finite where it
overflows (large features, ``x`` below about -88).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fastreid.modeling.losses.utils import euclidean_dist

__all__ = ["weighted_regularization_triplet"]


def weighted_regularization_triplet(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """features [N, D], targets [N] -> fp32 scalar. Each anchor's positive (negative) distance is the
    softmax-weighted mean of its distances to the positives (negatives), far positives (near
    negatives) weighing most; soft-margin ranking of the two."""
    with torch.autocast(features.device.type, enabled=False):
        features = features.float()
        dist = euclidean_dist(features, features)  # [N, N]
        same = targets[:, None] == targets[None, :]
        positive, negative = same.float(), (~same).float()
        dist_positive, dist_negative = dist * positive, dist * negative
        far_positive = (dist_positive * _softmax_weights(dist_positive, positive)).sum(dim=1)  # [N]
        near_negative = (dist_negative * _softmax_weights(-dist_negative, negative)).sum(dim=1)  # [N]
        return F.softplus(far_positive - near_negative).mean()  # = soft_margin_loss(near - far, 1)


def _softmax_weights(dist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of ``dist`` over the entries where ``mask`` is 1, row by row: [N, N]."""
    max_value = (dist * mask).max(dim=1, keepdim=True)[0]
    exp = torch.exp(dist - max_value) * mask
    return exp / (exp.sum(dim=1, keepdim=True) + 1e-6)  # 1e-6: rows without any masked entry

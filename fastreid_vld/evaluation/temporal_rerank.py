"""AuxNet's temporal re-ranking (BUPTCampus, Du et al., the protocol of its published tables), in torch
on the features' device with the sparse neighbour structures of :mod:`.kreciprocal`.

The distance of query q to gallery g, from whole-tracklet features and the features of each
tracklet's first and second half of frames::

    0.8 * euclidean(q, g) + 0.2 * KR(q, g) + 0.1 * (KR(q_first, g_second) + KR(q_second, g_first))

``euclidean``: ``sqrt(max(|q|^2 + |g|^2 - 2 q.g, 1e-12))`` of the features as given. ``KR``: the
k-reciprocal Jaccard distance (k1 5, k2 3, lambda 0) of BUPTCampus' ``K_Reciprocal``, which differs
from fast-reid's (:mod:`.kreciprocal`) in its original distance and neighbour lists:

1. Original distance over query + gallery: ``sqrt(|x|^2 + |y|^2 - 2 x.y + 1e-5)``, each row divided
   by its largest entry; neighbour lists rank every feature (no k-NN cut, no padding).
2. ``R(i, k)``: the first ``k + 1`` entries of i's list whose own first ``k + 1`` entries hold i, for
   ``k = k1`` and ``round(k1 / 2)``; expansion by the half sets more than 2/3 of which lie in
   ``R(i, k1)``, as fast-reid.
3. ``V[i]``: ``exp(-d(i, j)) / sum`` over the expanded set, d the row-normalised distance.
4. Local query expansion over the first ``k2`` entries, then ``1 - m / (2 - m)`` of the sums of
   minima m.

The original keeps V and the Jaccard distances in float16; here float32 (the same sets, weights to
float32 rounding). Ties in the neighbour lists go to the lower index (the original's quicksort
leaves them in any order).
"""

from __future__ import annotations

import torch

from .kreciprocal import (
    SumsOfMinima,
    expanded_sets,
    gaussian_weights,
    jaccard_distance,
    local_query_expansion,
    nearest_neighbours,
    reciprocal_mask,
)

__all__ = ["auxnet_jaccard", "temporal_rerank_distances"]

#: AuxNet's weights: the Euclidean distance, the whole-tracklet Jaccard distance, each cross-half one.
EUCLIDEAN_WEIGHT, WHOLE_WEIGHT, HALF_WEIGHT = 0.8, 0.2, 0.1


@torch.no_grad()
def temporal_rerank_distances(whole: tuple[torch.Tensor, torch.Tensor], first: tuple[torch.Tensor, torch.Tensor],
                              second: tuple[torch.Tensor, torch.Tensor], k1: int = 5, k2: int = 3) -> torch.Tensor:
    """AuxNet's re-ranked distances of each query to each gallery tracklet.

    Args:
        whole: ([Q, D] query, [G, D] gallery) features of the whole tracklets.
        first: the same of each tracklet's first half of frames.
        second: the same of its second half.
        k1, k2: the k-reciprocal and query-expansion neighbours (AuxNet: 5 and 3).

    Returns:
        [Q, G] float32 distances (smaller: closer).
    """
    query, gallery = (x.float() for x in whole)
    squared = (query.pow(2).sum(1, keepdim=True) + gallery.pow(2).sum(1)).addmm_(query, gallery.t(), alpha=-2)
    distances = squared.clamp_min_(1e-12).sqrt_().mul_(EUCLIDEAN_WEIGHT)                  # [Q, G]
    distances.add_(auxnet_jaccard(query, gallery, k1, k2), alpha=WHOLE_WEIGHT)
    distances.add_(auxnet_jaccard(first[0], second[1], k1, k2), alpha=HALF_WEIGHT)
    distances.add_(auxnet_jaccard(second[0], first[1], k1, k2), alpha=HALF_WEIGHT)
    return distances


@torch.no_grad()
def auxnet_jaccard(query: torch.Tensor, gallery: torch.Tensor, k1: int = 5, k2: int = 3,
                   batch_size: int = 2048) -> torch.Tensor:
    """[Q, D] query, [G, D] gallery features -> [Q, G] float32 k-reciprocal Jaccard distances of
    BUPTCampus' ``K_Reciprocal`` (lambda 0; module docstring)."""
    if query.dim() != 2 or gallery.dim() != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(f"expected [Q, D] and [G, D] features, got {tuple(query.shape)} and {tuple(gallery.shape)}")
    if k1 < 1 or not 1 <= k2 <= k1 + 1:
        raise ValueError(f"expected k1 >= 1 and 1 <= k2 <= k1 + 1, got k1 {k1}, k2 {k2}")
    features = torch.cat([query, gallery]).float().contiguous()            # [N, D]
    n, norms = len(features), features.pow(2).sum(1)                         # [N]
    width, half_width = min(k1 + 1, n), min(round(k1 / 2) + 1, n)
    ranks = nearest_neighbours(features, norms, width, batch_size)         # [N, width], no padding
    sizes, members = expanded_sets(ranks, reciprocal_mask(ranks, width, batch_size),
                                   reciprocal_mask(ranks, half_width, batch_size), batch_size)
    row_max = _largest_squared_distances(features, norms, batch_size).add_(1e-5).sqrt_()   # [N]

    def row_normalised(squared: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:      # [nnz] -> [nnz]
        return squared.clamp_min_(0).add_(1e-5).sqrt_().div_(row_max[owners])

    weights = gaussian_weights(features, norms, sizes, members, row_normalised)
    if k2 != 1:
        weights = local_query_expansion(weights, ranks[:, :min(k2, width)], batch_size)
    return jaccard_distance(SumsOfMinima(weights, len(query))(0, len(query)))


def _largest_squared_distances(features: torch.Tensor, norms: torch.Tensor, block: int) -> torch.Tensor:
    """[N, D] features -> [N] each one's largest ``|x|^2 + |y|^2 - 2 x.y`` to all (itself included)."""
    largest = torch.empty(len(features), dtype=features.dtype, device=features.device)
    for start in range(0, len(features), block):
        rows = slice(start, start + block)
        largest[rows] = (norms[rows, None] + norms).addmm_(features[rows], features.t(), alpha=-2).amax(1)
    return largest

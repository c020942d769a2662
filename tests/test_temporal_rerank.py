"""AuxNet's temporal re-ranking (fastreid_vld/evaluation/temporal_rerank.py) against a dense float64
restatement written from its definition (BUPTCampus' K_Reciprocal and the mix of its re_ranking.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastreid_vld.evaluation.temporal_rerank import auxnet_jaccard, temporal_rerank_distances


def restated_jaccard(query: np.ndarray, gallery: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """The definition, one feature at a time, dense and float64."""
    x = np.concatenate([query, gallery]).astype(np.float64)
    n, squared = len(x), (x ** 2).sum(1)
    original = np.sqrt(np.maximum(squared[:, None] + squared[None] - 2 * x @ x.T, 0) + 1e-5)
    original /= original.max(1, keepdims=True)                   # each row by its largest entry
    order = np.argsort(original, axis=1, kind="stable")

    def reciprocal(i: int, k: int) -> list[int]:
        return [int(j) for j in order[i, :k + 1] if i in order[j, :k + 1]]

    v = np.zeros((n, n))
    for i in range(n):
        own = reciprocal(i, k1)
        members = set(own)
        for candidate in own:
            theirs = reciprocal(candidate, round(k1 / 2))
            if len(set(theirs) & set(own)) > 2 / 3 * len(theirs):
                members |= set(theirs)
        chosen = sorted(members)
        weights = np.exp(-original[i, chosen])
        v[i, chosen] = weights / weights.sum()
    if k2 != 1:
        v = v[order[:, :k2]].mean(1)
    q = len(query)
    minima = np.minimum(v[:q, None, :], v[None, q:, :]).sum(-1)
    return 1 - minima / (2 - minima)


def restated_euclidean(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    q, g = query.astype(np.float64), gallery.astype(np.float64)
    squared = (q ** 2).sum(1)[:, None] + (g ** 2).sum(1)[None] - 2 * q @ g.T
    return np.sqrt(np.maximum(squared, 1e-12))


def identity_features(rng: np.random.Generator, count: int, ids: int, dim: int) -> np.ndarray:
    centres = rng.standard_normal((ids, dim))
    return (centres[rng.integers(0, ids, count)] + 0.6 * rng.standard_normal((count, dim))).astype(np.float32)


@pytest.mark.parametrize("num_query, num_gallery, k1, k2", [
    (30, 40, 5, 3),      # AuxNet's setting
    (50, 20, 5, 3),
    (25, 35, 8, 4),
    (12, 12, 5, 1),      # no query expansion
    (2, 2, 5, 3),        # fewer features than k1 + 1: lists of all
    (1, 7, 3, 4),        # k2 = k1 + 1
])
def test_jaccard_matches_the_restatement(num_query, num_gallery, k1, k2):
    rng = np.random.default_rng(num_query * 100 + num_gallery + k1)
    query, gallery = (identity_features(rng, n, 6, 16) for n in (num_query, num_gallery))
    ours = auxnet_jaccard(torch.from_numpy(query), torch.from_numpy(gallery), k1, min(k2, num_query + num_gallery))
    expected = restated_jaccard(query, gallery, k1, min(k2, num_query + num_gallery))
    assert ours.shape == (num_query, num_gallery) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-5)


def test_blocks_of_the_neighbour_search_do_not_change_it():
    rng = np.random.default_rng(3)
    query, gallery = (torch.from_numpy(identity_features(rng, n, 5, 8)) for n in (23, 31))
    torch.testing.assert_close(auxnet_jaccard(query, gallery, batch_size=7), auxnet_jaccard(query, gallery))


def test_temporal_distances_mix_as_auxnet():
    rng = np.random.default_rng(7)
    whole, first, second = ((identity_features(rng, 20, 5, 12), identity_features(rng, 26, 5, 12)) for _ in range(3))
    ours = temporal_rerank_distances(*(tuple(map(torch.from_numpy, pair)) for pair in (whole, first, second)))
    expected = (0.8 * restated_euclidean(*whole) + 0.2 * restated_jaccard(*whole, 5, 3)
                + 0.1 * (restated_jaccard(first[0], second[1], 5, 3) + restated_jaccard(second[0], first[1], 5, 3)))
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4, rtol=1e-6)


def test_halves_count():
    """Swapping the halves of the gallery changes the distance: both cross-half terms are used."""
    rng = np.random.default_rng(9)
    whole, first, second = ((torch.from_numpy(identity_features(rng, 15, 4, 8)),
                             torch.from_numpy(identity_features(rng, 18, 4, 8))) for _ in range(3))
    base = temporal_rerank_distances(whole, first, second)
    same_halves = temporal_rerank_distances(whole, (first[0], first[1]), (second[0], first[1]))
    assert not torch.allclose(base, same_halves)


@pytest.mark.parametrize("k1, k2", [(0, 1), (5, 0), (5, 7)])
def test_bad_neighbour_counts(k1, k2):
    features = torch.randn(4, 3)
    with pytest.raises(ValueError, match="k1 >= 1 and 1 <= k2"):
        auxnet_jaccard(features, features, k1, k2)

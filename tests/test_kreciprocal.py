"""The torch k-reciprocal re-ranking (fastreid_vld.evaluation.kreciprocal, TEST.RERANK.IMPL torch) against
fast-reid's ``build_dist(metric="jaccard")`` (TEST.RERANK.IMPL fastreid) on written features.

Random features of several sizes, with and without query expansion; features whose distances tie
exactly (entries of +-1/2, so every product and distance is exact in float32 and both implementations
must break the ties by index, as faiss does); galleries smaller than K1 (faiss pads the lists, numpy
reads the padding as the last feature); blocks of any size; and the evaluation through both: the same
distances to 1e-5 and the same CMC, mAP and mINP.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastreid.utils.compute_dist import build_dist

from fastreid_vld.evaluation.distances import DistanceSettings, direction_distances
from fastreid_vld.evaluation.kreciprocal import k_reciprocal_jaccard, k_reciprocal_jaccard_blocks
from fastreid_vld.evaluation.metrics import evaluate_vvi


def random_features(count: int, dim: int, seed: int) -> torch.Tensor:
    """[count, dim] normalised features around a few identity centres, as the evaluator passes them."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(max(2, count // 6), dim, generator=generator)
    picks = torch.randint(0, len(centres), (count,), generator=generator)
    return F.normalize(centres[picks] + 0.6 * torch.randn(count, dim, generator=generator), dim=1)


def exactly_tied_features(count: int, distinct: int, seed: int) -> torch.Tensor:
    """[count, 16] features of norm 1 drawn from ``distinct`` vectors with four entries of +-1/2: many
    exact duplicates, and all distances (2 - 2 x.y, x.y a multiple of 1/4) exact in float32."""
    rng = np.random.default_rng(seed)
    vectors = np.zeros((distinct, 16), np.float32)
    for vector in vectors:
        vector[rng.choice(16, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    return torch.from_numpy(vectors[rng.integers(0, distinct, count)])


def fast_reid(query: torch.Tensor, gallery: torch.Tensor, k1: int, k2: int) -> np.ndarray:
    return build_dist(query, gallery, metric="jaccard", k1=k1, k2=k2)


@pytest.mark.parametrize(("queries", "gallery", "dim", "k1", "k2"), [
    (40, 60, 32, 20, 6),     # the defaults
    (90, 70, 16, 7, 1),      # k2 1: no query expansion
    (25, 35, 8, 4, 4),       # K2 = K1
    (120, 150, 64, 20, 6),
])
def test_random_features_give_fast_reids_distances(queries, gallery, dim, k1, k2):
    features = random_features(queries + gallery, dim, seed=queries)
    query, gallery_features = features[:queries], features[queries:]
    ours = k_reciprocal_jaccard(query, gallery_features, k1, k2)
    assert ours.dtype == torch.float32 and ours.shape == (queries, gallery)
    np.testing.assert_allclose(ours.numpy(), fast_reid(query, gallery_features, k1, k2), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("queries", "gallery", "distinct", "k1", "k2"), [
    (60, 70, 8, 4, 3),       # a dozen duplicates of each vector, K1 4: which duplicates are neighbours is a tie
    (30, 40, 6, 20, 6),
    (100, 80, 12, 7, 7),
])
def test_exact_ties_are_broken_by_index_as_faiss_breaks_them(queries, gallery, distinct, k1, k2):
    features = exactly_tied_features(queries + gallery, distinct, seed=k1)
    query, gallery_features = features[:queries], features[queries:]
    ours = k_reciprocal_jaccard(query, gallery_features, k1, k2).numpy()
    np.testing.assert_allclose(ours, fast_reid(query, gallery_features, k1, k2), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("queries", "gallery", "k1", "k2"), [
    (5, 4, 20, 6),           # K1 larger than query + gallery: faiss pads with -1, numpy reads the last feature
    (1, 1, 3, 2),
    (3, 1, 4, 1),
    (2, 9, 11, 3),           # K1 = query + gallery
])
def test_galleries_smaller_than_k1_give_fast_reids_distances(queries, gallery, k1, k2):
    features = random_features(queries + gallery, 8, seed=gallery)
    query, gallery_features = features[:queries], features[queries:]
    ours = k_reciprocal_jaccard(query, gallery_features, k1, k2).numpy()
    np.testing.assert_allclose(ours, fast_reid(query, gallery_features, k1, k2), rtol=0, atol=1e-5)


def test_blocks_of_any_size_give_the_same_distances():
    features = random_features(70, 16, seed=3)
    whole = k_reciprocal_jaccard(features[:30], features[30:], 9, 4)
    for batch_size in (1, 7, 64):
        assert torch.equal(k_reciprocal_jaccard(features[:30], features[30:], 9, 4, batch_size=batch_size), whole)


def test_bad_shapes_and_neighbour_counts_are_refused():
    features = random_features(10, 8, seed=0)
    with pytest.raises(ValueError, match=r"expected \[Q, D\] and \[G, D\] features, got \(5, 8\) and \(5, 4\)"):
        k_reciprocal_jaccard(features[:5], features[5:, :4])
    with pytest.raises(ValueError, match="k1, k2, rows and batch_size must be at least 1, got 0, 6, 5, 2048"):
        k_reciprocal_jaccard(features[:5], features[5:], k1=0)


def test_the_evaluation_through_either_implementation_gives_the_same_metrics():
    """Both directions of a written test set, re-ranked (k1 20, k2 6, lambda 0.3) by each IMPL: the final
    distances to 1e-5 and the same CMC, mAP and mINP."""
    rng = np.random.default_rng(7)
    pids = {"ir": rng.integers(0, 12, 80), "vis": rng.integers(0, 12, 90)}
    camids = {"ir": rng.integers(0, 3, 80), "vis": rng.integers(3, 6, 90)}
    centres = torch.randn(12, 48, generator=torch.Generator().manual_seed(7))
    features = {m: centres[torch.from_numpy(p)] + 0.9 * torch.randn(len(p), 48) for m, p in pids.items()}
    for query, gallery in (("ir", "vis"), ("vis", "ir")):
        scores = {}
        for impl in ("torch", "fastreid"):
            settings = DistanceSettings(metric="cosine", rerank=True, impl=impl)
            distances = direction_distances(features[query], features[gallery], settings)
            scores[impl] = distances, evaluate_vvi(distances, pids[query], pids[gallery], camids[query],
                                                   camids[gallery])
        np.testing.assert_allclose(scores["torch"][0], scores["fastreid"][0], rtol=0, atol=1e-5)
        ours, theirs = scores["torch"][1], scores["fastreid"][1]
        np.testing.assert_array_equal(ours["cmc"], theirs["cmc"])
        assert (ours["mAP"], ours["mINP"]) == (theirs["mAP"], theirs["mINP"])


def test_settings_name_the_implementation_and_refuse_an_unknown_one():
    assert DistanceSettings(rerank=True).describe().endswith("lambda 0.3, torch)")
    assert DistanceSettings(rerank=True, impl="fastreid").describe().endswith("lambda 0.3, fast-reid)")
    with pytest.raises(ValueError, match="TEST.RERANK.IMPL must be one of \\('torch', 'fastreid'\\), got 'faiss'"):
        DistanceSettings(impl="faiss")


@pytest.mark.parametrize("options", [{"rerank": True}, {"rerank": True, "impl": "fastreid"},
                                     {"rerank": True, "aqe": True}, {"aqe": True}])
def test_search_in_blocks_of_queries_ranks_as_the_evaluation(options, monkeypatch):
    """tools/search.py's top-k, ranked a few queries at a time (as at gallery scale), is the top of the
    evaluation's ranking of the whole [Q, G] matrix (ties to the lower gallery index)."""
    from fastreid_vld.evaluation import search

    monkeypatch.setattr(search, "PAIRS_PER_BLOCK", 7 * 80)   # blocks of 7 of the 45 queries
    features = random_features(125, 24, seed=11).numpy()
    query, gallery = features[:45], features[45:]
    settings = DistanceSettings(metric="cosine", **options)
    lists = search.top_k(query, gallery, settings, k=10)
    distances = direction_distances(torch.from_numpy(query), torch.from_numpy(gallery), settings)
    order = np.argsort(distances, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(lists.indices, order)
    np.testing.assert_allclose(lists.distances, np.take_along_axis(distances, order, axis=1), rtol=0, atol=1e-6)


def test_blocks_of_queries_hold_the_whole_matrixs_rows():
    features = random_features(90, 16, seed=5)
    whole = k_reciprocal_jaccard(features[:40], features[40:], 12, 5)
    blocks = list(k_reciprocal_jaccard_blocks(features[:40], features[40:], 12, 5, rows=9))
    assert [len(block) for block in blocks] == [9, 9, 9, 9, 4]
    assert torch.equal(torch.cat(blocks), whole)

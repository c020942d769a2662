"""fast-reid's k-reciprocal re-ranking and AQE under every TEST.METRIC (fastreid_vld.evaluation.distances).

A hand-made case where k-reciprocal neighbours fix a ranking error, on features of norm 1 and of
norm 30 (where a mix with the raw -q.g or squared euclidean distance would drown the Jaccard term:
re-ranking then changed nothing), and the promise that AQE and re-ranking give the same distances
whatever TEST.METRIC says, while plain retrieval keeps TEST.METRIC.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastreid_vld.evaluation.distances import METRICS, DistanceSettings, direction_distances
from fastreid_vld.evaluation.metrics import evaluate_vvi

# One infrared query of identity 0 at angle 0 and visible gallery tracklets on the same circle
# (degrees). Identity 1 is a tight cluster whose nearest member, a hub at 10 degrees, is the closest
# tracklet to the query; identity 0's two tracklets lie at -12 and -13.3 degrees. With k1 = 5 (faiss
# returns each point and its 4 nearest) the query's list is {query, hub, -12, -13.3, 14}: the hub's
# own list is its cluster only, so it is not a k-reciprocal neighbour, while both identity-0
# tracklets are (the query is the nearest point after each other).
QUERY_DEGREES, QUERY_PIDS = [0.0], [0]
GALLERY_DEGREES = [10.0, 14.0, 15.5, 17.1, 18.4, 19.8, -12.0, -13.3]
GALLERY_PIDS = [1, 1, 1, 1, 1, 1, 0, 0]
HUB_FIRST = (0.0, 7 / 12)      # Rank-1, mAP: the true matches at ranks 2 and 3
TRUE_MATCHES_FIRST = (1.0, 1.0)
RERANK = {"rerank": True, "k1": 5, "k2": 1}  # k2 1: no expansion of the neighbour sets


def on_circle(degrees: list[float], norm: float) -> torch.Tensor:
    radians = np.radians(degrees)
    return norm * torch.tensor(np.stack([np.cos(radians), np.sin(radians)], axis=1), dtype=torch.float32)


def hub_case_scores(settings: DistanceSettings, norm: float) -> tuple[float, float]:
    distances = direction_distances(on_circle(QUERY_DEGREES, norm), on_circle(GALLERY_DEGREES, norm), settings)
    scores = evaluate_vvi(distances, np.array(QUERY_PIDS), np.array(GALLERY_PIDS), np.zeros(1, int),
                          np.ones(len(GALLERY_PIDS), int), max_rank=len(GALLERY_PIDS), protocol="vcm")
    return float(scores["cmc"][0]), float(scores["mAP"])


@pytest.mark.parametrize("norm", [1.0, 30.0])
@pytest.mark.parametrize("metric", METRICS)
def test_reranking_fixes_a_hub_next_to_the_query_under_every_metric(metric, norm):
    assert hub_case_scores(DistanceSettings(metric=metric), norm) == pytest.approx(HUB_FIRST)
    assert hub_case_scores(DistanceSettings(metric=metric, **RERANK), norm) == TRUE_MATCHES_FIRST


@pytest.mark.parametrize("norm", [1.0, 30.0])
@pytest.mark.parametrize("metric", METRICS)
def test_aqe_fixes_the_hub_too_under_every_metric(metric, norm):
    """fast-reid's defaults (QE_TIME 1, QE_K 5, ALPHA 3): the query is expanded towards its
    identity-0 neighbours, the hub towards its own cluster."""
    assert hub_case_scores(DistanceSettings(metric=metric, aqe=True), norm) == TRUE_MATCHES_FIRST


def unnormalised_features(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """12 query and 20 gallery features of norms 5 to 50 around 4 identity directions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 16))
    features = np.repeat(centres, 8, axis=0) + rng.normal(0, 0.6, (32, 16))
    features *= rng.uniform(5, 50, (32, 1)) / np.linalg.norm(features, axis=1, keepdims=True)
    features = torch.tensor(features, dtype=torch.float32)
    return features[::3], features[[i for i in range(32) if i % 3]]


@pytest.mark.parametrize("options", [RERANK, {"aqe": True}, {"aqe": True, **RERANK}], ids=["rerank", "aqe", "both"])
def test_aqe_and_reranking_give_the_same_distances_whatever_the_metric(options):
    query, gallery = unnormalised_features(0)
    cosine = direction_distances(query, gallery, DistanceSettings(metric="cosine", **options))
    for metric in ("inner_product", "euclidean"):
        np.testing.assert_array_equal(direction_distances(query, gallery, DistanceSettings(metric=metric, **options)),
                                      cosine)
    plain = direction_distances(query, gallery, DistanceSettings(metric="cosine"))
    assert not np.array_equal(np.argsort(cosine, axis=1), np.argsort(plain, axis=1))


def test_plain_retrieval_keeps_the_metric_which_matters_only_for_unnormalised_features():
    """Without AQE and re-ranking: -q.g (float64) as the data sets' original code, and fast-reid's
    cosine and euclidean. On L2-normalised features the three rank alike (-q.g = cosine - 1,
    squared euclidean = 2 x cosine); on unnormalised ones they do not."""
    query, gallery = unnormalised_features(1)
    inner = direction_distances(query, gallery, DistanceSettings(metric="inner_product"))
    assert inner.dtype == np.float64
    np.testing.assert_array_equal(inner, -(query.double() @ gallery.double().T).numpy())
    rankings = {metric: np.argsort(direction_distances(query, gallery, DistanceSettings(metric=metric)), axis=1)
                for metric in METRICS}
    assert not np.array_equal(rankings["inner_product"], rankings["cosine"])
    assert not np.array_equal(rankings["euclidean"], rankings["cosine"])
    query, gallery = F.normalize(query, dim=1), F.normalize(gallery, dim=1)
    cosine = direction_distances(query, gallery, DistanceSettings(metric="cosine"))
    np.testing.assert_allclose(direction_distances(query, gallery, DistanceSettings(metric="inner_product")),
                               cosine - 1, atol=1e-6)
    np.testing.assert_allclose(direction_distances(query, gallery, DistanceSettings(metric="euclidean")),
                               2 * cosine, atol=1e-5)


@pytest.mark.parametrize("metric, options, distance", [
    ("inner_product", {}, "distance inner_product"),
    ("inner_product", RERANK, "distance cosine (TEST.METRIC inner_product is for plain retrieval)"),
    ("euclidean", {"aqe": True}, "distance cosine (TEST.METRIC euclidean is for plain retrieval)"),
    ("cosine", RERANK, "distance cosine, k-reciprocal"),
])
def test_the_settings_text_names_the_distance_ranked_by(metric, options, distance):
    assert DistanceSettings(metric=metric, **options).describe().startswith(distance)

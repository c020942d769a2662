"""evaluate_vvi: hand-made distance matrices with known answers for both protocols, every edge
case of the protocol (same-camera removal, a query without a valid match, ties, a gallery
smaller than max_rank, a short list after removal), bad input, and equivalence with a
straightforward reference and with fast-reid's own rank metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastreid.evaluation.rank import evaluate_rank

from fastreid_vld.evaluation import metrics
from fastreid_vld.evaluation.distances import DistanceSettings, direction_distances
from fastreid_vld.evaluation.metrics import evaluate_vvi, true_match_ranks


def reference_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, protocol):
    """The protocol written out query by query, element by element, from its definition.
    Returns (cmc, mAP, mINP), or None when no query has a true match."""
    num_q, num_g = distmat.shape
    cmc_length = min(max_rank, num_g)
    cmc_sum, average_precisions, inverse_penalties = np.zeros(cmc_length), [], []
    for q in range(num_q):
        ordered = sorted(range(num_g), key=lambda g: (distmat[q, g], g))  # stable ties
        is_match = []
        for g in ordered:
            same_id = g_pids[g] == q_pids[q]
            if protocol == "vcm" and same_id and g_camids[g] == q_camids[q]:
                continue  # removed before ranking
            is_match.append(same_id)
        if not any(is_match):
            continue
        match_ranks = [rank for rank, match in enumerate(is_match) if match]
        for k in range(cmc_length):
            cmc_sum[k] += match_ranks[0] <= k
        average_precisions.append(
            sum((n + 1) / (rank + 1) for n, rank in enumerate(match_ranks)) / len(match_ranks))
        inverse_penalties.append(len(match_ranks) / (match_ranks[-1] + 1))
    counted = len(average_precisions)
    if counted == 0:
        return None
    return cmc_sum / counted, sum(average_precisions) / counted, sum(inverse_penalties) / counted


def check(result, cmc, mAP, mINP):
    np.testing.assert_allclose(result["cmc"], cmc, rtol=0, atol=1e-12)
    assert result["mAP"] == pytest.approx(mAP, abs=1e-12)
    assert result["mINP"] == pytest.approx(mINP, abs=1e-12)


def test_one_query_two_true_matches_bupt():
    d = np.array([[0.1, 0.2, 0.3, 0.4]])
    result = evaluate_vvi(d, np.array([1]), np.array([1, 2, 1, 3]), None, None, protocol="bupt")
    # true matches at ranks 1 and 3 (1-based)
    check(result, cmc=[1, 1, 1, 1], mAP=(1 / 1 + 2 / 3) / 2, mINP=2 / 3)


def test_vcm_removes_same_identity_same_camera_only():
    d = np.array([[0.1, 0.2, 0.3, 0.4]])
    q_pids, g_pids = np.array([1]), np.array([1, 2, 1, 1])
    q_cams, g_cams = np.array([5]), np.array([5, 5, 6, 5])
    # vcm: gallery 0 and 3 (pid 1, camera 5) are removed; kept: [neg 0.2, match 0.3]
    check(evaluate_vvi(d, q_pids, g_pids, q_cams, g_cams, protocol="vcm"),
          cmc=[0, 1, 1, 1], mAP=1 / 2, mINP=1 / 2)
    # bupt keeps everything: matches at ranks 1, 3, 4
    check(evaluate_vvi(d, q_pids, g_pids, q_cams, g_cams, protocol="bupt"),
          cmc=[1, 1, 1, 1], mAP=(1 + 2 / 3 + 3 / 4) / 3, mINP=3 / 4)


def test_query_without_valid_match_is_left_out_of_the_averages():
    d = np.array([[0.3, 0.1, 0.2],
                  [0.1, 0.2, 0.3],
                  [0.2, 0.1, 0.3]])
    q_pids, g_pids = np.array([1, 2, 9]), np.array([1, 2, 3])
    q_cams, g_cams = np.array([1, 1, 1]), np.array([2, 1, 2])
    # query 0: match at rank 3; query 1: its only match shares its camera (removed);
    # query 2: its identity is not in the gallery
    ranks = true_match_ranks(d, q_pids, g_pids, q_cams, g_cams, protocol="vcm")
    np.testing.assert_array_equal(ranks.counts, [1, 0, 0])
    assert ranks.num_counted == 1
    check(evaluate_vvi(d, q_pids, g_pids, q_cams, g_cams, protocol="vcm"),
          cmc=[0, 0, 1], mAP=1 / 3, mINP=1 / 3)
    # bupt: query 1's match is kept (rank 2); query 2 is still left out
    check(evaluate_vvi(d, q_pids, g_pids, q_cams, g_cams, protocol="bupt"),
          cmc=[0, 0.5, 1], mAP=(1 / 3 + 1 / 2) / 2, mINP=(1 / 3 + 1 / 2) / 2)


@pytest.mark.parametrize("protocol", ["vcm", "bupt"])
def test_equal_distances_go_to_the_lower_gallery_index(protocol):
    d = np.full((2, 4), 0.5)
    q_pids, g_pids = np.array([1, 2]), np.array([2, 1, 2, 1])
    q_cams, g_cams = np.array([1, 1]), np.array([2, 2, 2, 2])
    # query 0 (pid 1): order 0,1,2,3 -> matches at ranks 2 and 4; query 1: ranks 1 and 3
    result = evaluate_vvi(d, q_pids, g_pids, q_cams, g_cams, protocol=protocol)
    check(result, cmc=[0.5, 1, 1, 1], mAP=((1 / 2 + 2 / 4) / 2 + (1 + 2 / 3) / 2) / 2,
          mINP=(2 / 4 + 2 / 3) / 2)


def test_ties_between_a_true_match_and_others_mixed_with_closer_entries():
    d = np.array([[0.2, 0.1, 0.2, 0.2, 0.3]])
    g_pids = np.array([7, 8, 9, 7, 7])
    # order (distance, index): 1(8) 0(7) 2(9) 3(7) 4(7) -> matches at ranks 2, 4, 5
    check(evaluate_vvi(d, np.array([7]), g_pids, None, None, protocol="bupt"),
          cmc=[0, 1, 1, 1, 1], mAP=(1 / 2 + 2 / 4 + 3 / 5) / 3, mINP=3 / 5)


def test_max_rank_larger_than_the_gallery_cuts_cmc_at_the_gallery_size():
    d = np.array([[0.3, 0.1, 0.2]])
    result = evaluate_vvi(d, np.array([1]), np.array([1, 2, 3]), None, None, max_rank=20,
                          protocol="bupt")
    assert result["cmc"].shape == (3,)
    check(result, cmc=[0, 0, 1], mAP=1 / 3, mINP=1 / 3)


def test_short_list_after_removal_keeps_its_last_cmc_value():
    # 25 gallery entries, 12 removed (pid 1, camera 1): 13 left, fewer than max_rank=20.
    # (The original VCM code cannot stack this query's 13-long CMC with the others'.)
    g_pids = np.array([1] * 12 + [1] + [2] * 12)
    g_cams = np.array([1] * 12 + [2] + [1] * 12)
    d = np.arange(25, dtype=np.float64)[::-1][None, :].repeat(2, axis=0)  # last index closest
    q_pids, q_cams = np.array([1, 2]), np.array([1, 2])
    result = evaluate_vvi(d, q_pids, g_pids, q_cams, g_cams, max_rank=20, protocol="vcm")
    # query 0: its kept list is the 12 pid-2 entries then its match: rank 13
    # query 1 (pid 2, camera 2): nothing removed; its 12 matches take ranks 1..12
    assert result["cmc"].shape == (20,)
    expected_cmc = [0.5] * 12 + [1.0] * 8
    check(result, cmc=expected_cmc, mAP=(1 / 13 + 1) / 2, mINP=(1 / 13 + 1) / 2)


def test_no_query_with_a_true_match_is_an_error():
    d = np.array([[0.1, 0.2]])
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate_vvi(d, np.array([1]), np.array([1, 2]), np.array([3]), np.array([3, 3]))


@pytest.mark.parametrize("bad, message", [
    (dict(distmat=np.zeros(3)), "distmat must be a non-empty"),
    (dict(distmat=np.zeros((2, 0))), "distmat must be a non-empty"),
    (dict(distmat=np.array([[0.1, np.nan], [0.2, 0.3]])), "1 NaN distances"),
    (dict(q_pids=np.array([1, 2, 3])), r"q_pids must have shape \(2,\)"),
    (dict(g_camids=np.array([1])), r"g_camids must have shape \(2,\)"),
    (dict(g_camids=None), "camids are required"),
    (dict(protocol="market"), "protocol must be one of"),
    (dict(max_rank=0), "max_rank must be >= 1"),
])
def test_bad_input_is_a_clear_error(bad, message):
    args = dict(distmat=np.array([[0.1, 0.2], [0.3, 0.4]]), q_pids=np.array([1, 2]),
                g_pids=np.array([1, 2]), q_camids=np.array([1, 1]), g_camids=np.array([2, 2]),
                max_rank=20, protocol="vcm")
    with pytest.raises(ValueError, match=message):
        evaluate_vvi(**{**args, **bad})


def random_problem(rng, num_q, num_g, num_ids, num_cams, levels=None):
    """Labels, and distances; with ``levels``, integer distances so that ties are frequent."""
    if levels:
        d = rng.integers(0, levels, size=(num_q, num_g)).astype(np.float32)
    else:
        d = rng.standard_normal((num_q, num_g))
    return (d, rng.integers(0, num_ids, num_q), rng.integers(0, num_ids, num_g),
            rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g))


@pytest.mark.parametrize("protocol", ["vcm", "bupt"])
@pytest.mark.parametrize("levels", [None, 3, 1])
def test_equals_the_reference_on_random_problems(protocol, levels):
    rng = np.random.default_rng(7)
    for _ in range(40):
        num_q, num_g = rng.integers(1, 25), rng.integers(1, 30)
        problem = random_problem(rng, num_q, num_g, num_ids=5, num_cams=3, levels=levels)
        expected = reference_evaluate(*problem, max_rank=20, protocol=protocol)
        if expected is None:
            with pytest.raises(ValueError, match="no query has a true match"):
                evaluate_vvi(*problem, max_rank=20, protocol=protocol)
            continue
        check(evaluate_vvi(*problem, max_rank=20, protocol=protocol), *expected)


def test_row_blocks_and_threads_give_the_single_block_result(monkeypatch):
    rng = np.random.default_rng(3)
    problem = random_problem(rng, 300, 200, num_ids=20, num_cams=4, levels=50)
    whole = evaluate_vvi(*problem)
    monkeypatch.setattr(metrics, "_BLOCK_ENTRIES", 200 * 7)  # 7 rows a block: 43 blocks
    monkeypatch.setattr(metrics, "_TIE_BLOCK", 5)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        blocked = evaluate_vvi(*problem)
    finally:
        torch.set_num_threads(threads)
    check(blocked, whole["cmc"], whole["mAP"], whole["mINP"])
    check(whole, *reference_evaluate(*problem, max_rank=20, protocol="vcm"))


def test_torch_and_float32_inputs_give_the_numpy_float64_result():
    rng = np.random.default_rng(5)
    d, q_pids, g_pids, q_cams, g_cams = random_problem(rng, 30, 40, num_ids=6, num_cams=3)
    d = d.astype(np.float32).astype(np.float64)  # values exact in float32
    expected = evaluate_vvi(d, q_pids, g_pids, q_cams, g_cams)
    result = evaluate_vvi(torch.from_numpy(d).float(), torch.from_numpy(q_pids),
                          torch.from_numpy(g_pids), torch.from_numpy(q_cams),
                          torch.from_numpy(g_cams))
    check(result, expected["cmc"], expected["mAP"], expected["mINP"])


@pytest.mark.parametrize("use_cython", [True, False])
def test_vcm_protocol_equals_fast_reid_market1501_metrics(use_cython):
    """fast-reid's market1501 evaluation removes same-identity same-camera entries and counts
    AP/CMC/mINP as the VCM code does; with distinct distances (no ties) all must agree."""
    rng = np.random.default_rng(11)
    d, q_pids, g_pids, q_cams, g_cams = random_problem(rng, 120, 300, num_ids=30, num_cams=4)
    d = d.astype(np.float32)
    cmc, all_ap, all_inp = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=20,
                                         use_cython=use_cython)
    result = evaluate_vvi(d, q_pids, g_pids, q_cams, g_cams, max_rank=20, protocol="vcm")
    np.testing.assert_allclose(result["cmc"], cmc, rtol=0, atol=1e-6)
    assert result["mAP"] == pytest.approx(np.mean(all_ap), abs=1e-6)
    assert result["mINP"] == pytest.approx(np.mean(all_inp), abs=1e-6)


def test_inner_product_distances_are_float64_as_the_originals():
    """The originals multiply the model's float32 features in float64. Two gallery entries whose
    products with the query differ by 1e-5 at 1000 (below float32's resolution there) keep their
    order: the second, closer one ranks first instead of tying with the first."""
    query = torch.tensor([[1.0, 1.0]])
    gallery = torch.tensor([[1000.0, 0.0], [1000.0, 1e-5]])
    distances = direction_distances(query, gallery, DistanceSettings(metric="inner_product"))
    assert distances.dtype == np.float64 and distances[0, 1] < distances[0, 0]
    scores = evaluate_vvi(distances, np.array([2]), np.array([1, 2]), None, None, protocol="bupt")
    assert scores["cmc"][0] == 1.0

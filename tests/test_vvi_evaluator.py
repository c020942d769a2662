"""VVIEvaluator end to end on tiny on-disk HITSZ-VCM and BUPTCampus sets (real JPEG frames,
the real data sets, loaders, fast-reid inference loop, re-ranking and comm): every direction,
re-ranking on and off, the results dict, the log table, eval_results.json, fast-reid's
``test`` (the ``--eval-only`` path), two gloo processes, and bad input.

The model is an honest tracklet feature extractor (pooled grey levels of the T frames): the
identity shows through noisy frames in both modalities, imperfectly, so the scores are neither
0 nor 100. Expected scores are computed independently: the extractor run over the tracklets in
``dataset.test`` order, float64 distances, and evaluate_vvi with the data set's labels.
"""

from __future__ import annotations

import json
import logging
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastreid.config import get_cfg
from fastreid.engine import launch
from fastreid.evaluation.evaluator import inference_on_dataset
from fastreid.evaluation.testing import flatten_results_dict
from fastreid.utils.compute_dist import build_dist

from fastreid_vld import add_vld_config
from fastreid_vld.data import build_vvi_test_loader
from fastreid_vld.data.datasets.bases import canonical_direction
from fastreid_vld.data.synthetic import SyntheticSize, write_bupt, write_vcm
from fastreid_vld.engine import VLDTrainer
from fastreid_vld.evaluation.metrics import evaluate_vvi
from fastreid_vld.evaluation.vvi_evaluator import VVIEvaluator

SIZE = SyntheticSize(train_ids=1, test_ids=4, cameras=2, tracklets_per_camera=2, min_frames=3, max_frames=8, seed=1)
SCORES = ("Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP")
BUPT_DIRECTIONS = ["official/IR->VIS", "official/VIS->IR", "all/IR->VIS", "all/VIS->IR"]


def noisy_person(person: int, modality: int, camera: int, tracklet: int, frame: int) -> np.ndarray:
    """Two colour blocks per person (grey in infrared) under strong per-frame noise."""
    upper, lower = np.random.default_rng((person, 7)).integers(40, 216, (2, 3))
    image = np.empty((16, 8, 3))
    image[:8], image[8:] = upper, lower
    if modality == 1:
        image[:] = image.mean(axis=2, keepdims=True)
    noise = np.random.default_rng((person, modality, camera, tracklet, frame)).normal(0, 70, (16, 8, 1))
    return np.clip(image + noise, 0, 255).astype(np.uint8)


class PooledGreyLevels(torch.nn.Module):
    """{"images": [B, T, 3, H, W]} -> [B, 8]: the tracklet's mean grey levels on a 4x2 grid."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))  # inference_context needs .eval()/.train()

    def forward(self, batch: dict) -> torch.Tensor:
        grey = batch["images"].mean(dim=(1, 2))                              # [B, H, W]
        return F.adaptive_avg_pool2d(grey[:, None], (4, 2)).flatten(1) / 64 - 2  # [B, 8]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vvi")
    write_vcm(root / "HITSZ-VCM", SIZE, render=noisy_person)
    write_bupt(root, SIZE, render=noisy_person)
    return root


def config(root: Path, output_dir: Path, *opts):
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_list(["DATASETS.ROOT", str(root), "DATASETS.VCM.MIN_FRAMES", 1, "INPUT.SIZE_TEST", [16, 8],
                         "DATALOADER.NUM_WORKERS", 0, "TEST.IMS_PER_BATCH", 5, "TEST.METRIC", "inner_product",
                         "OUTPUT_DIR", str(output_dir), "MODEL.DEVICE", "cpu", *opts])
    return cfg


def independent_features(cfg, name: str):
    """Features of dataset.test in order, computed apart from the evaluator, and the data set."""
    loader, dataset = build_vvi_test_loader(cfg, name)
    model, features, paths = PooledGreyLevels(), [], []
    with torch.no_grad():
        for batch in loader:
            features.append(model(batch))
            paths += [p[0] for p in batch["img_paths"]]
    assert [p in t.frames for p, t in zip(paths, dataset.test, strict=True)] == [True] * len(dataset.test)
    return torch.cat(features).double(), dataset


def expected_results(features, dataset, distances_of) -> dict[str, float]:
    pids = np.array([int(t.pid) for t in dataset.test])
    camids = np.array([t.camid for t in dataset.test])
    expected = {}
    for direction, (q, g) in dataset.directions.items():
        scores = evaluate_vvi(distances_of(features[q], features[g]), pids[q], pids[g], camids[q], camids[g],
                              max_rank=20, protocol=dataset.protocol)
        for k in (1, 5, 10, 20):
            expected[f"{direction}/Rank-{k}"] = 100 * scores["cmc"][min(k, len(scores["cmc"])) - 1]
        expected[f"{direction}/mAP"], expected[f"{direction}/mINP"] = 100 * scores["mAP"], 100 * scores["mINP"]
    return expected


def negative_inner_product(query, gallery):
    return -(query @ gallery.T).numpy()


def reranked_cosine(query, gallery):
    query, gallery = F.normalize(query.float(), dim=1), F.normalize(gallery.float(), dim=1)
    jaccard = build_dist(query, gallery, metric="jaccard", k1=6, k2=2)
    return jaccard * 0.7 + build_dist(query, gallery, metric="cosine") * 0.3


def evaluate(cfg, name: str):
    loader, evaluator = VLDTrainer.build_evaluator(cfg, name)
    assert isinstance(evaluator, VVIEvaluator)
    return inference_on_dataset(PooledGreyLevels(), loader, evaluator)


@pytest.mark.parametrize("name, directions, selected", [
    ("VCM", ["IR->VIS", "VIS->IR"], "IR->VIS/Rank-1"),
    # batches of 3 for the original BUPTCampus test sampler: 8 visible query and gallery tracklets, 2 left out
    ("BUPTCampus", BUPT_DIRECTIONS, "official/IR->VIS/Rank-1"),
])
def test_every_direction_equals_evaluate_vvi_on_independent_features(data_root, tmp_path, name, directions,
                                                                      selected, caplog):
    cfg = config(data_root, tmp_path, "DATASETS.BUPT.DROP_RGB_REMAINDER", 3)
    with caplog.at_level(logging.INFO, logger="fastreid_vld"):
        results = evaluate(cfg, name)
    features, dataset = independent_features(cfg, name)
    expected = expected_results(features, dataset, negative_inner_product)

    assert list(dataset.directions) == directions
    assert list(results) == [f"{d}/{m}" for d in directions for m in SCORES] + ["metric"]
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, abs=1e-9), key
    assert results["metric"] == results[selected]
    assert all(0 < results[f"{d}/mAP"] < 100 for d in directions)  # a real, imperfect ranking
    assert all(isinstance(v, float) for v in flatten_results_dict(results).values())  # what EvalHook needs

    table = caplog.text
    assert "| Direction" in table and all(f"| {d} " in table for d in directions)
    assert f"{results[selected]:.2f}" in table and f"metric (model selection): {selected}" in table

    written = json.loads((tmp_path / "eval_results.json").read_text())[name]
    assert written["protocol"] == dataset.protocol and written["metric"] == results["metric"]
    assert written["select_by"] == selected and written.get("test_subsets", {}) == dataset.test_subsets
    for direction, (q, g) in dataset.directions.items():
        entry = written["directions"][direction]
        assert (entry["queries"], entry["gallery"]) == (len(q), len(g))
        assert entry["cmc"][0] == pytest.approx(results[f"{direction}/Rank-1"])
        assert entry["mINP"] == pytest.approx(results[f"{direction}/mINP"])


@pytest.mark.parametrize("metric", ["inner_product", "cosine", "euclidean"])
def test_reranking_equals_fast_reid_cosine_reranking_then_evaluate_vvi_whatever_the_metric(data_root, tmp_path,
                                                                                          metric):
    opts = ("TEST.METRIC", metric, "TEST.RERANK.ENABLED", True, "TEST.RERANK.K1", 6, "TEST.RERANK.K2", 2)
    cfg = config(data_root, tmp_path, *opts)
    reranked = evaluate(cfg, "VCM")
    features, dataset = independent_features(cfg, "VCM")
    expected = expected_results(features, dataset, reranked_cosine)
    for key, value in expected.items():
        assert reranked[key] == pytest.approx(value, abs=1e-9), key
    settings = json.loads((tmp_path / "eval_results.json").read_text())["VCM"]["settings"]
    assert settings.startswith("distance cosine") and "re-ranking" in settings
    plain = evaluate(config(data_root, tmp_path, "TEST.METRIC", metric), "VCM")
    assert plain != reranked
    settings = json.loads((tmp_path / "eval_results.json").read_text())["VCM"]["settings"]
    assert settings == f"distance {metric}"  # the last evaluation's


def test_reverse_direction_reuse_holds_for_fast_reid_jaccard(data_root, tmp_path):
    """The evaluator ranks VIS->IR with the transposed IR->VIS distances: fast-reid's Jaccard
    distance over (query, gallery) is the transpose of the one over (gallery, query)."""
    features, dataset = independent_features(config(data_root, tmp_path), "VCM")
    q, g = dataset.directions["IR->VIS"]
    forward = reranked_cosine(features[q], features[g])
    backward = reranked_cosine(features[g], features[q])
    np.testing.assert_allclose(forward, backward.T, rtol=0, atol=1e-6)


def test_test_runs_every_vvi_data_set_and_files_each_in_eval_results(data_root, tmp_path, caplog):
    cfg = config(data_root, tmp_path, "DATASETS.TESTS", ("VCM", "BUPTCampus"), "TEST.SELECT_BY", "vis2ir/mAP")
    with caplog.at_level(logging.INFO):
        results = VLDTrainer.test(cfg, PooledGreyLevels())  # what --eval-only runs
    assert set(results) == {"VCM", "BUPTCampus"}
    assert results["VCM"]["metric"] == results["VCM"]["VIS->IR/mAP"]
    # BUPTCampus, too small here for the original test sampler to leave any visible tracklet: "all" only
    assert results["BUPTCampus"]["metric"] == results["BUPTCampus"]["all/VIS->IR/mAP"]
    assert "Evaluation results for BUPTCampus in csv format" in caplog.text
    assert set(json.loads((tmp_path / "eval_results.json").read_text())) == {"VCM", "BUPTCampus"}


def test_bupt_reports_both_test_subsets_and_selects_on_the_official_one(tmp_path, caplog):
    """35 test identities: 70 visible query and 140 visible gallery tracklets, of which the original
    test sampler (batches of 64) leaves out 6 and 12. Both subsets are scored, labelled, and
    model selection reads the official one unless TEST.SELECT_BY names another."""
    write_bupt(tmp_path / "data", SyntheticSize(train_ids=1, test_ids=35, cameras=3, tracklets_per_camera=2,
                                                min_frames=3, max_frames=5, seed=2), render=noisy_person)
    cfg = config(tmp_path / "data", tmp_path / "out")
    with caplog.at_level(logging.INFO, logger="fastreid_vld"):
        results = evaluate(cfg, "BUPTCampus")
    features, dataset = independent_features(cfg, "BUPTCampus")
    expected = expected_results(features, dataset, negative_inner_product)
    assert list(dataset.directions) == BUPT_DIRECTIONS
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, abs=1e-9), key
    assert results["metric"] == results["official/IR->VIS/Rank-1"]
    assert results["official/IR->VIS/mAP"] != results["all/IR->VIS/mAP"]  # 12 fewer visible gallery tracklets
    assert "official: as the original test sampler (batches of 64)" in caplog.text and "(6 and 12 here)" in caplog.text
    written = json.loads((tmp_path / "out" / "eval_results.json").read_text())["BUPTCampus"]
    assert list(written["test_subsets"]) == ["official", "all"] and written["select_by"] == "official/IR->VIS/Rank-1"
    assert [written["directions"][d]["gallery"] for d in BUPT_DIRECTIONS] == [128, 140, 140, 140]
    assert [written["directions"][d]["queries"] for d in BUPT_DIRECTIONS] == [70, 64, 70, 70]
    chosen = evaluate(config(tmp_path / "data", tmp_path / "out", "TEST.SELECT_BY", "all/IR2VIS/Rank-1"), "BUPTCampus")
    assert chosen["metric"] == results["all/IR->VIS/Rank-1"]


@pytest.mark.parametrize(("written", "canonical"), [
    ("IR2VIS", "IR->VIS"), ("vis2ir", "VIS->IR"), ("ir->vis", "IR->VIS"), ("Ir2Vis/Rank-1", "IR->VIS/Rank-1"),
    ("official/VIS2IR/mAP", "official/VIS->IR/mAP"), ("IR->VIS/mINP", "IR->VIS/mINP"), ("IR2RGB", "IR2RGB")])
def test_directions_may_be_named_without_a_shell_redirection(written, canonical):
    assert canonical_direction(written) == canonical


def distributed_evaluation(root: str, output_dir: str) -> None:
    cfg = config(Path(root), Path(output_dir))
    loader, evaluator = VLDTrainer.build_evaluator(cfg, "VCM")
    results = inference_on_dataset(PooledGreyLevels(), loader, evaluator)
    rank = torch.distributed.get_rank()
    Path(output_dir, f"rank{rank}.json").write_text(json.dumps({"batches": len(loader), "results": results}))


@pytest.mark.slow
def test_two_processes_gather_every_feature_once(data_root, tmp_path):
    single = evaluate(config(data_root, tmp_path / "single"), "VCM")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    launch(distributed_evaluation, 2, dist_url=f"tcp://127.0.0.1:{port}", args=(str(data_root), str(tmp_path)))
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank1["results"] == {} and rank0["results"] == pytest.approx(single)
    # each rank read its half of the test tracklets (fast-reid's InferenceSampler), in
    # batches of TEST.IMS_PER_BATCH // world size
    _, dataset = build_vvi_test_loader(config(data_root, tmp_path), "VCM")
    half, batch = math.ceil(len(dataset.test) / 2), 5 // 2
    assert rank0["batches"] == math.ceil(half / batch)


def test_features_out_of_test_order_are_a_clear_error(data_root, tmp_path):
    cfg = config(data_root, tmp_path)
    loader, evaluator = VLDTrainer.build_evaluator(cfg, "VCM")
    batches = list(loader)
    evaluator.reset()
    for batch in batches[::-1]:
        evaluator.process(batch, PooledGreyLevels()(batch))
    with pytest.raises(RuntimeError, match="feature 0 is not test tracklet 0 .* dataset.test in order"):
        evaluator.evaluate()
    evaluator.reset()
    evaluator.process(batches[0], PooledGreyLevels()(batches[0]))
    with pytest.raises(RuntimeError, match=r"received 5 tracklet features, expected one per test tracklet \(\d+\)"):
        evaluator.evaluate()


@pytest.mark.parametrize("opts, message", [
    (("TEST.METRIC", "hamming"), "TEST.METRIC must be one of"),
    (("TEST.SELECT_BY", "IR->VIS/Rank-2"), "TEST.SELECT_BY 'IR->VIS/Rank-2' is not a result of VCM"),
])
def test_bad_settings_are_clear_errors(data_root, tmp_path, opts, message):
    with pytest.raises(ValueError, match=message):
        evaluate(config(data_root, tmp_path, *opts), "VCM")


@pytest.mark.parametrize("opts, says", [
    (("TEST.RERANK.ENABLED", True), "TEST.METRIC inner_product is for plain retrieval: AQE and re-ranking run as"),
    (("TEST.AQE.ENABLED", True, "TEST.METRIC", "euclidean"), "TEST.METRIC euclidean is for plain retrieval"),
    (("TEST.RERANK.ENABLED", True, "TEST.METRIC", "cosine"), None),
    ((), None),
])
def test_one_log_line_says_aqe_and_reranking_use_the_cosine_distance(data_root, tmp_path, caplog, opts, says):
    with caplog.at_level(logging.INFO, logger="fastreid_vld"):
        VLDTrainer.build_evaluator(config(data_root, tmp_path, *opts), "VCM")
    lines = [r.getMessage() for r in caplog.records if "is for plain retrieval" in r.getMessage()]
    if says is None:
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith(says) and "cosine distance" in lines[0]

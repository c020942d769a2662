"""fast-reid DatasetEvaluator of a video visible-infrared data set: every retrieval direction.

The model's tracklet features are collected once, in ``dataset.test`` order (gathered from
every process under torch.distributed), then each direction of ``dataset.directions``
(HITSZ-VCM and BUPTCampus: ``"IR->VIS"`` and ``"VIS->IR"``) is ranked with the distances of
:mod:`.distances` (TEST.METRIC, TEST.AQE.*, TEST.RERANK.*) and scored by
:func:`.metrics.evaluate_vvi` with the data set's protocol. Features holding NaN or infinite values
(a model that produces NaN) are one :class:`~.metrics.NaNFeaturesError` before any distance, naming
the data set, the weights or the training iteration, and each direction's NaN query and gallery
features (an input error of ``tools/train_net.py``: one ``error:`` line).

Results, in percent:

- the log: one table, a row per direction (Rank-1/5/10/20, mAP, mINP, queries counted);
- the returned OrderedDict, flat, so fast-reid's EvalHook, tensorboard, JSONWriter and
  ``--eval-only`` take it as is: ``"IR->VIS/Rank-1"``, ..., ``"VIS->IR/mINP"`` (on a data set
  with test subsets, BUPTCampus: ``"official/IR->VIS/Rank-1"``, ..., ``"all/VIS->IR/mINP"``), and
  ``"metric"``, the model-selection value named by TEST.SELECT_BY (VLD: IR->VIS Rank-1, of the
  first test subset where there are several), which ``model_best.pth`` is kept by;
- ``OUTPUT_DIR/eval_results.json``: ``{dataset name: {...}}``: the latest evaluation with the full
  CMC per direction, the test subsets, the settings used and the training iteration and epoch (null
  outside training), and under ``"history"`` every evaluation of the run, each with its iteration,
  epoch, metric and per-direction scores (fast-reid's JSONWriter already owns ``metrics.json``).
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from fastreid.config import CfgNode
from fastreid.evaluation.evaluator import DatasetEvaluator
from fastreid.utils import comm
from fastreid.utils.events import _CURRENT_STORAGE_STACK, get_event_storage
from tabulate import tabulate

from ..checkpoint import write_atomically
from .distances import DistanceSettings, direction_distances
from .metrics import NaNFeaturesError, non_finite_rows, summarize_ranks, true_match_ranks

logger = logging.getLogger(__name__)

__all__ = ["DirectionResult", "VVIEvaluator", "check_finite_test_features", "evaluate_directions"]

#: The CMC ranks reported (each one up to TEST.MAX_RANK).
REPORTED_RANKS = (1, 5, 10, 20)
RESULTS_FILE = "eval_results.json"


@dataclass(frozen=True)
class DirectionResult:
    """The scores of one retrieval direction (fractions in [0, 1])."""

    num_query: int
    num_gallery: int
    num_counted: int   # queries with a true match in their gallery: the averages' count
    cmc: np.ndarray    # [min(max_rank, num_gallery)]
    mAP: float
    mINP: float

    def rank(self, k: int) -> float:
        """Rank-k accuracy; beyond a CMC cut at the gallery size, its last value."""
        return float(self.cmc[min(k, len(self.cmc)) - 1])


def evaluate_directions(features: torch.Tensor, pids: np.ndarray, camids: np.ndarray,
                        directions: dict[str, tuple[np.ndarray, np.ndarray]], protocol: str,
                        settings: DistanceSettings, max_rank: int = 20) -> dict[str, DirectionResult]:
    """Score every direction from the [N, D] features of the N test tracklets.

    ``directions`` maps a name to (query indices, gallery indices) into the N tracklets. A
    direction whose reverse was already ranked reuses the transposed distances: every
    distance here (metric, AQE, Jaccard over query and gallery together) is symmetric in
    query and gallery, up to float rounding.
    """
    results, distances_of = {}, {}
    for name, (query_idx, gallery_idx) in directions.items():
        query_idx, gallery_idx = np.asarray(query_idx), np.asarray(gallery_idx)
        key = (query_idx.tobytes(), gallery_idx.tobytes())
        start = time.perf_counter()
        reverse = distances_of.get(key[::-1])
        if reverse is not None:
            distances = reverse.T                                          # [Q, G]
        else:
            distances = direction_distances(features[query_idx], features[gallery_idx], settings)
            distances_of[key] = distances
        computed = time.perf_counter()
        ranks = true_match_ranks(distances, pids[query_idx], pids[gallery_idx], camids[query_idx],
                                 camids[gallery_idx], protocol)
        scores = summarize_ranks(ranks, max_rank)
        logger.info("%s: %d queries x %d gallery: distances %.2f s (%s), metrics %.2f s", name,
                    len(query_idx), len(gallery_idx), computed - start,
                    "reversed" if reverse is not None else settings.describe(),
                    time.perf_counter() - computed)
        results[name] = DirectionResult(len(query_idx), len(gallery_idx), ranks.num_counted,
                                        scores["cmc"], scores["mAP"], scores["mINP"])
    return results


def check_finite_test_features(features: torch.Tensor, directions: dict[str, tuple[np.ndarray, np.ndarray]],
                               where: str) -> None:
    """A :class:`~.metrics.NaNFeaturesError` when any of the [N, D] test ``features`` holds a NaN or an infinite
    value, naming ``where`` (the data set, and the weights or the training iteration) and, for each direction,
    how many of its query and gallery features do."""
    bad = non_finite_rows(features)
    if not bad:
        return
    counts = "; ".join(f"{name}: {non_finite_rows(features[query])} of {len(query)} queries, "
                       f"{non_finite_rows(features[gallery])} of {len(gallery)} gallery"
                       for name, (query, gallery) in directions.items())
    raise NaNFeaturesError(f"{where}: the model produces NaN or infinite features for {bad} of {len(features)} test "
                           f"tracklets ({counts}): NaN cannot be ranked")


class VVIEvaluator(DatasetEvaluator):
    """Evaluates a video cross-modal data set (``fastreid_vld.data``) in every direction.

    Args:
        cfg: the config (TEST.METRIC, TEST.AQE.*, TEST.RERANK.*, TEST.MAX_RANK, TEST.SELECT_BY).
        dataset: a parsed data set with ``test`` (tracklets), ``directions`` and ``protocol``;
            the loader must yield its ``test`` tracklets in order.
        dataset_name: the name results are filed under in ``eval_results.json``.
        output_dir: where ``eval_results.json`` goes (default: OUTPUT_DIR).
    """

    def __init__(self, cfg: CfgNode, dataset, dataset_name: str, output_dir: str | None = None) -> None:
        self._dataset, self._dataset_name = dataset, dataset_name
        self._settings = DistanceSettings.from_config(cfg)
        self._max_rank = cfg.TEST.MAX_RANK
        self._select_by = cfg.TEST.SELECT_BY
        self._output_dir = cfg.OUTPUT_DIR if output_dir is None else output_dir
        self._weights = cfg.MODEL.WEIGHTS
        if self._settings.distance != self._settings.metric:
            logger.info("TEST.METRIC %s is for plain retrieval: AQE and re-ranking run as fast-reid's ReidEvaluator "
                        "with TEST.METRIC cosine (L2-normalised features; the Jaccard distance mixed with the cosine "
                        "distance, on one scale)", self._settings.metric)
        if cfg.TEST.ROC.ENABLED:
            logger.warning("TEST.ROC is not computed for video cross-modal data sets")
        self.reset()

    def reset(self) -> None:
        self._batches: list[dict] = []

    def process(self, inputs: dict, outputs: torch.Tensor) -> None:
        """inputs: a test batch (``targets``, ``camids``, ``modalities`` [B], ``img_paths``);
        outputs: the [B, D] tracklet features."""
        self._batches.append({
            "features": outputs.detach().to("cpu", torch.float32),
            "pids": inputs["targets"].cpu(), "camids": inputs["camids"].cpu(),
            "modalities": inputs["modalities"].cpu(),
            "first_frames": [paths[0] for paths in inputs["img_paths"]] if "img_paths" in inputs else None,
        })

    def evaluate(self) -> OrderedDict:
        if comm.get_world_size() > 1:
            comm.synchronize()
            batches = list(itertools.chain(*comm.gather(self._batches, dst=0)))
            if not comm.is_main_process():
                return OrderedDict()
        else:
            batches = self._batches
        features = torch.cat([b["features"] for b in batches])           # [N, D]
        pids, camids, modalities = (torch.cat([b[key] for b in batches]).numpy()
                                    for key in ("pids", "camids", "modalities"))
        first_frames = (None if any(b["first_frames"] is None for b in batches)
                        else [path for b in batches for path in b["first_frames"]])
        self._check_test_order(camids, modalities, first_frames)
        check_finite_test_features(features, self._dataset.directions, self._evaluated())

        scores = evaluate_directions(features, pids, camids, self._dataset.directions,
                                     self._dataset.protocol, self._settings, self._max_rank)
        results = OrderedDict()
        for name, score in scores.items():
            for k in REPORTED_RANKS:
                if k <= self._max_rank:
                    results[f"{name}/Rank-{k}"] = 100 * score.rank(k)
            results[f"{name}/mAP"] = 100 * score.mAP
            results[f"{name}/mINP"] = 100 * score.mINP
        select_by = self._selection_key(results)
        results["metric"] = results[select_by]
        subsets = "".join(f"\n{label}: {meaning}" for label, meaning in self._dataset.test_subsets.items())
        logger.info("Evaluation of %s (%s; %s protocol):\n%s%s\nmetric (model selection): %s = %.2f",
                    self._dataset_name, self._settings.describe(), self._dataset.protocol, self._table(scores),
                    subsets, select_by, results["metric"])
        self._write_json(scores, select_by, results["metric"])
        return copy.deepcopy(results)

    def _evaluated(self) -> str:
        """'VCM at iteration 199 (epoch 0)' in training, 'VCM with MODEL.WEIGHTS model_best.pth' outside."""
        iteration, epoch = training_position()
        if iteration is not None:
            return f"{self._dataset_name} at iteration {iteration} (epoch {epoch})"
        return f"{self._dataset_name} with MODEL.WEIGHTS {self._weights}" if self._weights else self._dataset_name

    def _selection_key(self, results: OrderedDict) -> str:
        """The result TEST.SELECT_BY names; on a data set with test subsets, a name without a
        subset label reads the first subset (BUPTCampus: official)."""
        key = self._dataset.labelled(self._select_by)
        if key not in results:
            raise ValueError(f"TEST.SELECT_BY {self._select_by!r} is not a result of {self._dataset_name}; "
                             f"expected one of {list(results)}")
        return key

    def _check_test_order(self, camids: np.ndarray, modalities: np.ndarray, first_frames: list[str] | None) -> None:
        """The features must be the data set's test tracklets, in order: the splits index them."""
        test = self._dataset.test
        if len(camids) != len(test):
            raise RuntimeError(f"{self._dataset_name}: the evaluator received {len(camids)} tracklet features, "
                               f"expected one per test tracklet ({len(test)})")
        for position, tracklet in enumerate(test):
            if (camids[position] != tracklet.camid or modalities[position] != tracklet.modality
                    or (first_frames is not None and first_frames[position] not in tracklet.frames)):
                raise RuntimeError(
                    f"{self._dataset_name}: feature {position} is not test tracklet {position} "
                    f"({tracklet.frames[0]}, camera {tracklet.camid}, modality {tracklet.modality}); the test "
                    "loader must yield dataset.test in order")

    def _table(self, scores: dict[str, DirectionResult]) -> str:
        ranks = [k for k in REPORTED_RANKS if k <= self._max_rank]
        rows = [[name, *(100 * s.rank(k) for k in ranks), 100 * s.mAP, 100 * s.mINP,
                 f"{s.num_counted}/{s.num_query}", s.num_gallery] for name, s in scores.items()]
        headers = ["Direction", *(f"Rank-{k}" for k in ranks), "mAP", "mINP", "Queries counted", "Gallery"]
        return tabulate(rows, headers=headers, tablefmt="pipe", floatfmt=".2f", numalign="left")

    def _write_json(self, scores: dict[str, DirectionResult], select_by: str, metric: float) -> None:
        if not self._output_dir:
            return
        path = os.path.join(self._output_dir, RESULTS_FILE)
        everything = {}
        if os.path.isfile(path):  # other data sets of the same run keep their entries
            with open(path) as file:
                everything = json.load(file)
        measures = {name: {**{f"Rank-{k}": 100 * s.rank(k) for k in REPORTED_RANKS if k <= self._max_rank},
                           "mAP": 100 * s.mAP, "mINP": 100 * s.mINP}
                    for name, s in scores.items()}  # in percent
        directions = {name: {"queries": s.num_query, "queries_counted": s.num_counted, "gallery": s.num_gallery,
                             **measures[name]} for name, s in scores.items()}
        iteration, epoch = training_position()
        evaluation = {"iteration": iteration, "epoch": epoch, "metric": metric, "directions": measures}
        everything[self._dataset_name] = {
            "protocol": self._dataset.protocol,
            "settings": self._settings.describe(),
            "select_by": select_by,
            "metric": metric,
            "iteration": iteration,
            "epoch": epoch,
            **({"test_subsets": dict(self._dataset.test_subsets)} if self._dataset.test_subsets else {}),
            "directions": {name: {**directions[name], "cmc": [100 * float(v) for v in s.cmc]}
                           for name, s in scores.items()},
            "history": [*earlier_evaluations(everything.get(self._dataset_name, {}), iteration), evaluation],
        }
        os.makedirs(self._output_dir, exist_ok=True)
        write_atomically(path, lambda file: file.write(json.dumps(everything, indent=2).encode()))


def training_position() -> tuple[int | None, int | None]:
    """(iteration, epoch) at which a training run evaluates, as its event storage records them (the
    iteration metrics.json and tensorboard file the evaluation under); (None, None) outside training."""
    if not _CURRENT_STORAGE_STACK:
        return None, None
    storage = get_event_storage()
    return storage.iter, storage.epoch


def earlier_evaluations(entry: dict, iteration: int | None) -> list[dict]:
    """The evaluations of a data set's eval_results.json entry to keep before one at ``iteration``:
    all of them outside training; in training, those of earlier iterations (a resumed run replaces
    the evaluations it repeats, a fresh run in the same OUTPUT_DIR replaces the earlier run's)."""
    history = entry.get("history", [])
    if iteration is None:
        return history
    return [e for e in history if e["iteration"] is None or e["iteration"] < iteration]

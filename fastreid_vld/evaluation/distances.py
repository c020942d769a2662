"""Query-gallery distances of one retrieval direction: TEST.METRIC for plain retrieval, and
fast-reid's AQE and k-reciprocal re-ranking exactly as fast-reid's ReidEvaluator computes them
with its default TEST.METRIC cosine, whatever TEST.METRIC says.

- ``TEST.METRIC``, without AQE and re-ranking: ``"inner_product"`` (distance = -q.g in float64,
  as HITSZ-VCM's and BUPTCampus' original code computes it from the model's features), or
  fast-reid's ``"cosine"`` / ``"euclidean"`` (``fastreid.utils.compute_dist.build_dist``, float32).
- ``TEST.AQE.*``: fast-reid's ``aqe`` on the query and gallery features (neighbours and weights
  from the L2-normalised features; each feature becomes a weighted mean of its neighbours'), then
  the cosine distance.
- ``TEST.RERANK.*``: fast-reid's Jaccard distance of k-reciprocal neighbours of the L2-normalised
  features, query and gallery together, mixed as ``jaccard * (1 - LAMBDA) + cosine distance *
  LAMBDA``. ``TEST.RERANK.IMPL`` "torch" computes it with :mod:`.kreciprocal` (the same distances
  to float32 rounding, on the features' device, memory growing like (query + gallery) x K1^2
  besides the result), "fastreid" with fast-reid's ``build_dist(metric="jaccard")`` (faiss
  neighbour search, on CPU through fastreid_vld.compat, and dense (query + gallery)^2 matrices).

Why cosine under AQE and re-ranking. The Jaccard distance lies in [0, 1] and the cosine distance
1 - q.g of normalised features in [0, 2]: LAMBDA then weighs two terms of one scale. That is
ReidEvaluator with TEST.METRIC cosine, fast-reid's default and the one metric it normalises for.
With its other metric, euclidean, it searches neighbours on the raw features and mixes in their
squared distance, unbounded like the -q.g of raw features: on features of large norm that term
drowns the Jaccard one and re-ranking changes nothing. On normalised features the two other
metrics would add nothing: -q.g is the cosine distance minus 1 (the same ranking, the mix shifted
by a constant) and the squared euclidean distance twice the cosine distance (LAMBDA doubled). So
with AQE or re-ranking on, the three TEST.METRIC values give the same distances; the evaluator
says so in one log line when TEST.METRIC is not cosine.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from fastreid.config import CfgNode
from fastreid.evaluation.query_expansion import aqe
from fastreid.utils.compute_dist import build_dist

from ..config import RERANK_IMPLS
from .kreciprocal import k_reciprocal_jaccard_blocks

__all__ = ["METRICS", "DistanceSettings", "direction_distances", "distance_blocks"]

METRICS = ("inner_product", "cosine", "euclidean")


@dataclass(frozen=True)
class DistanceSettings:
    """What turns features into distances: fast-reid's TEST.METRIC, TEST.AQE.*, TEST.RERANK.*."""

    metric: str = "inner_product"
    aqe: bool = False
    aqe_times: int = 1      # TEST.AQE.QE_TIME
    aqe_k: int = 5          # TEST.AQE.QE_K
    aqe_alpha: float = 3.0  # TEST.AQE.ALPHA
    rerank: bool = False
    k1: int = 20            # TEST.RERANK.K1
    k2: int = 6             # TEST.RERANK.K2
    lambda_value: float = 0.3  # TEST.RERANK.LAMBDA
    impl: str = "torch"     # TEST.RERANK.IMPL

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"TEST.METRIC must be one of {METRICS}, got {self.metric!r}")
        if self.impl not in RERANK_IMPLS:
            raise ValueError(f"TEST.RERANK.IMPL must be one of {RERANK_IMPLS}, got {self.impl!r}")

    @classmethod
    def from_config(cls, cfg: CfgNode) -> DistanceSettings:
        test = cfg.TEST
        return cls(metric=test.METRIC, aqe=test.AQE.ENABLED, aqe_times=test.AQE.QE_TIME,
                   aqe_k=test.AQE.QE_K, aqe_alpha=test.AQE.ALPHA, rerank=test.RERANK.ENABLED,
                   k1=test.RERANK.K1, k2=test.RERANK.K2, lambda_value=test.RERANK.LAMBDA, impl=test.RERANK.IMPL)

    @property
    def distance(self) -> str:
        """The distance ranked by: TEST.METRIC, or cosine where AQE or re-ranking is on."""
        return "cosine" if self.aqe or self.rerank else self.metric

    def describe(self) -> str:
        text = f"distance {self.distance}"
        if self.distance != self.metric:
            text += f" (TEST.METRIC {self.metric} is for plain retrieval)"
        if self.aqe:
            text += f", AQE (times {self.aqe_times}, k {self.aqe_k}, alpha {self.aqe_alpha})"
        if self.rerank:
            text += (f", k-reciprocal re-ranking (k1 {self.k1}, k2 {self.k2}, lambda {self.lambda_value}, "
                     f"{'fast-reid' if self.impl == 'fastreid' else 'torch'})")
        return text


@torch.no_grad()
def direction_distances(query: torch.Tensor, gallery: torch.Tensor,
                        settings: DistanceSettings) -> np.ndarray:
    """[Q, D] query and [G, D] gallery features -> [Q, G] distances (smaller: closer); float64 for
    the inner product (near-ties rank as in the originals), float32 for fast-reid's metrics."""
    return next(distance_blocks(query, gallery, settings, rows=max(1, len(query))))[1]


@torch.no_grad()
def distance_blocks(query: torch.Tensor, gallery: torch.Tensor, settings: DistanceSettings,
                    rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """The distances of :func:`direction_distances`, ``rows`` queries at a time: (first query of the
    block, its [b, G] distances), for galleries whose [Q, G] matrix need not be held at once. AQE and the
    k-reciprocal neighbour structures still see every query and gallery feature."""
    query, gallery = query.float(), gallery.float()
    if settings.aqe:
        query, gallery = aqe(query, gallery, settings.aqe_times, settings.aqe_k, settings.aqe_alpha)
    jaccard_blocks = _jaccard_blocks(F.normalize(query, dim=1), F.normalize(gallery, dim=1), settings, rows) \
        if settings.rerank else None
    for start in range(0, max(1, len(query)), rows):
        distances = _metric_distances(query[start:start + rows], gallery, settings.distance)  # [b, G]
        if jaccard_blocks is not None:
            jaccard = next(jaccard_blocks)                                    # [b, G] float32
            jaccard *= 1 - settings.lambda_value                              # in place: one more [b, G] at most
            distances *= settings.lambda_value
            distances += jaccard
        yield start, distances


def _jaccard_blocks(query: torch.Tensor, gallery: torch.Tensor, settings: DistanceSettings,
                    rows: int) -> Iterator[np.ndarray]:
    """[Q, D], [G, D] normalised features -> the [b, G] k-reciprocal Jaccard distances of consecutive
    blocks of ``rows`` queries (TEST.RERANK.IMPL; fast-reid's is computed whole, then cut)."""
    if settings.impl == "fastreid":
        jaccard = build_dist(query, gallery, metric="jaccard", k1=settings.k1, k2=settings.k2)
        yield from (jaccard[start:start + rows] for start in range(0, max(1, len(query)), rows))
    else:
        for block in k_reciprocal_jaccard_blocks(query, gallery, settings.k1, settings.k2, rows):
            yield block.cpu().numpy()


def _metric_distances(query: torch.Tensor, gallery: torch.Tensor, metric: str) -> np.ndarray:
    if metric == "inner_product":
        return torch.mm(query.double(), gallery.double().t()).neg_().numpy()
    return build_dist(query, gallery, metric).astype(np.float32, copy=False)

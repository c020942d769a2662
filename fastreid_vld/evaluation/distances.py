"""Query-gallery distances of one retrieval direction: TEST.METRIC for plain retrieval, and
fast-reid's AQE and k-reciprocal re-ranking exactly as fast-reid's ReidEvaluator computes them
with its default TEST.METRIC cosine, whatever TEST.METRIC says.

- ``TEST.METRIC``, without AQE and re-ranking: ``"inner_product"`` (distance = -q.g in float64,
  as HITSZ-VCM's and BUPTCampus' original code computes it from the model's features), or
  fast-reid's ``"cosine"`` / ``"euclidean"`` (``fastreid.utils.compute_dist.build_dist``, float32).
- ``TEST.AQE.*``: fast-reid's ``aqe`` on the query and gallery features (neighbours and weights
  from the L2-normalised features; each feature becomes a weighted mean of its neighbours'), then
  the cosine distance.
- ``TEST.RERANK.*``: fast-reid's Jaccard distance of k-reciprocal neighbours (faiss neighbour
  search; on CPU through fastreid_vld.compat) of the L2-normalised features, query and gallery
  together, mixed as ``jaccard * (1 - LAMBDA) + cosine distance * LAMBDA``.

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

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from fastreid.config import CfgNode
from fastreid.evaluation.query_expansion import aqe
from fastreid.utils.compute_dist import build_dist

__all__ = ["METRICS", "DistanceSettings", "direction_distances"]

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

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"TEST.METRIC must be one of {METRICS}, got {self.metric!r}")

    @classmethod
    def from_config(cls, cfg: CfgNode) -> DistanceSettings:
        test = cfg.TEST
        return cls(metric=test.METRIC, aqe=test.AQE.ENABLED, aqe_times=test.AQE.QE_TIME,
                   aqe_k=test.AQE.QE_K, aqe_alpha=test.AQE.ALPHA, rerank=test.RERANK.ENABLED,
                   k1=test.RERANK.K1, k2=test.RERANK.K2, lambda_value=test.RERANK.LAMBDA)

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
            text += f", k-reciprocal re-ranking (k1 {self.k1}, k2 {self.k2}, lambda {self.lambda_value})"
        return text


@torch.no_grad()
def direction_distances(query: torch.Tensor, gallery: torch.Tensor,
                        settings: DistanceSettings) -> np.ndarray:
    """[Q, D] query and [G, D] gallery features -> [Q, G] distances (smaller: closer); float64 for
    the inner product (near-ties rank as in the originals), float32 for fast-reid's metrics."""
    query, gallery = query.float(), gallery.float()
    if settings.aqe:
        query, gallery = aqe(query, gallery, settings.aqe_times, settings.aqe_k, settings.aqe_alpha)
    distances = _metric_distances(query, gallery, settings.distance)
    if settings.rerank:
        query, gallery = F.normalize(query, dim=1), F.normalize(gallery, dim=1)
        jaccard = build_dist(query, gallery, metric="jaccard", k1=settings.k1, k2=settings.k2)
        distances = jaccard * (1 - settings.lambda_value) + distances * settings.lambda_value
    return distances


def _metric_distances(query: torch.Tensor, gallery: torch.Tensor, metric: str) -> np.ndarray:
    if metric == "inner_product":
        return torch.mm(query.double(), gallery.double().t()).neg_().numpy()
    return build_dist(query, gallery, metric).astype(np.float32, copy=False)

"""Query-gallery distances of one retrieval direction, with fast-reid's AQE and k-reciprocal
re-ranking, exactly as fast-reid's ReidEvaluator computes them, plus the inner-product
distance of the data sets' original evaluation code.

- ``TEST.METRIC``: ``"inner_product"`` (distance = -q.g in float64, as HITSZ-VCM's and
  BUPTCampus' original code computes it from the model's features), or fast-reid's ``"cosine"``
  / ``"euclidean"`` (``fastreid.utils.compute_dist.build_dist``, float32).
- ``TEST.AQE.*``: fast-reid's ``aqe`` on the query and gallery features first.
- ``TEST.RERANK.*``: fast-reid's Jaccard distance of k-reciprocal neighbours (faiss neighbour
  search; on CPU through fastreid_vld.compat) over query and gallery together, mixed as
  ``jaccard * (1 - LAMBDA) + distance * LAMBDA``; features are L2-normalised first for
  ``"cosine"`` only, as in fast-reid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from fastreid.config import CfgNode
from fastreid.evaluation.query_expansion import aqe
from fastreid.utils.compute_dist import build_dist

logger = logging.getLogger(__name__)

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

    def describe(self) -> str:
        text = f"distance {self.metric}"
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
    distances = _metric_distances(query, gallery, settings.metric)
    if settings.rerank:
        if settings.metric == "cosine":
            query, gallery = F.normalize(query, dim=1), F.normalize(gallery, dim=1)
        jaccard = build_dist(query, gallery, metric="jaccard", k1=settings.k1, k2=settings.k2)
        distances = jaccard * (1 - settings.lambda_value) + distances * settings.lambda_value
    return distances


def _metric_distances(query: torch.Tensor, gallery: torch.Tensor, metric: str) -> np.ndarray:
    if metric == "inner_product":
        return torch.mm(query.double(), gallery.double().t()).neg_().numpy()
    return build_dist(query, gallery, metric).astype(np.float32, copy=False)

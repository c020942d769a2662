"""Top-k gallery entries for each query (``tools/search.py``): the distances of ``distances.py``
ranked in full (ties to the lower gallery index, as the evaluation ranks them), a block of queries
at a time, so AQE and re-ranking run at any gallery size; or, for large galleries without AQE and
re-ranking, faiss's exact flat search of the same distances (float32; ties in any order); beside
each distance the cosine similarity of the two features, a score in [-1, 1] that reads the same
whatever the metric ranked by; and the rank lists as CSV and JSON. ``--direction`` of
``tools/search.py`` and ``tools/visualize_ranks.py`` is read by :func:`direction_argument`."""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch

from ..data.datasets.bases import DIRECTIONS, canonical_direction
from ..engine.feature_files import FeatureSet
from .distances import DistanceSettings, distance_blocks

__all__ = ["BACKENDS", "FAISS_ABOVE", "PAIRS_PER_BLOCK", "RankLists", "direction_argument", "match_row_files",
           "match_rows", "ranked_cosines", "top_k", "write_match_rows"]

BACKENDS = ("auto", "brute", "faiss")
#: query x gallery pairs above which ``auto`` searches with faiss (ranking every distance costs a sort
#: of each gallery); AQE and re-ranking need every distance and never use faiss.
FAISS_ABOVE = 50_000_000
#: query x gallery distances ranked at once (a block of queries; 16 bytes a pair with the sort's order).
PAIRS_PER_BLOCK = 2**24


@dataclass(frozen=True)
class RankLists:
    indices: np.ndarray    # [Q, k] gallery positions, nearest first
    distances: np.ndarray  # [Q, k] their distances (smaller: closer)
    cosines: np.ndarray    # [Q, k] cosine similarity of the query's and their features (in [-1, 1])


def direction_argument(text: str) -> str:
    """argparse ``type=`` of ``--direction``: ``IR2VIS`` / ``VIS2IR`` in any case, or ``IR->VIS`` /
    ``VIS->IR`` (:func:`canonical_direction`) -> ``"IR->VIS"`` / ``"VIS->IR"``."""
    direction = canonical_direction(text)
    if direction not in DIRECTIONS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a direction: expected IR2VIS or VIS2IR (any case)")
    return direction


def ranked_cosines(query: np.ndarray, gallery: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """[Q, k] cosine similarities of the [Q, D] ``query`` features and the [G, D] ``gallery``
    features at their ranked ``indices`` [Q, k]: the dot product of the L2-normalised features (in
    float64), whatever distance ranked them; of the features as given (before AQE)."""
    query, gallery = (_l2_normalised(np.asarray(x, dtype=np.float64)) for x in (query, gallery))
    rows = max(1, PAIRS_PER_BLOCK // max(1, indices.shape[1] * gallery.shape[1]))  # [b, k, D] gathered at once
    cosines = np.empty(indices.shape, dtype=np.float64)                   # [Q, k]
    for start in range(0, len(query), rows):
        block = slice(start, start + rows)
        cosines[block] = np.einsum("qd,qkd->qk", query[block], gallery[indices[block]])
    return cosines


def top_k(query: np.ndarray, gallery: np.ndarray, settings: DistanceSettings, k: int,
          backend: str = "auto") -> RankLists:
    """The ``k`` nearest of the [G, D] ``gallery`` features for each of the [Q, D] ``query`` features
    (all G where G < k)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {BACKENDS}")
    reranked = settings.aqe or settings.rerank
    if backend == "faiss" and reranked:
        raise ValueError("AQE and re-ranking need every query-gallery distance: use the brute backend")
    k = min(k, len(gallery))
    if backend == "faiss" or (backend == "auto" and not reranked and len(query) * len(gallery) > FAISS_ABOVE):
        indices, distances = _faiss_top_k(query, gallery, settings.metric, k)
    else:
        indices, distances = _ranked_top_k(query, gallery, settings, k)
    return RankLists(indices, distances, ranked_cosines(query, gallery, indices))


def _ranked_top_k(query: np.ndarray, gallery: np.ndarray, settings: DistanceSettings,
                  k: int) -> tuple[np.ndarray, np.ndarray]:
    """[Q, k] gallery positions and distances of ranking every distance (ties to the lower gallery
    index), a block of queries at a time: about ``PAIRS_PER_BLOCK`` distances held at once."""
    rows = max(1, PAIRS_PER_BLOCK // max(1, len(gallery)))
    indices, distances = [], []
    for _, block in distance_blocks(torch.from_numpy(query), torch.from_numpy(gallery), settings, rows):  # [b, G]
        order = np.argsort(block, axis=1, kind="stable")[:, :k].copy()     # a copy: not a view holding [b, G]
        indices.append(order)
        distances.append(np.take_along_axis(block, order, axis=1))
    return np.concatenate(indices), np.concatenate(distances)


def _faiss_top_k(query: np.ndarray, gallery: np.ndarray, metric: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """[Q, k] gallery positions and distances of faiss's flat (exact) search: inner product -> -q.g,
    cosine -> 1 - q.g of normalised features, euclidean -> the squared distance (fast-reid's euclidean)."""
    query, gallery = (np.ascontiguousarray(x, dtype=np.float32) for x in (query, gallery))
    if metric == "cosine":
        query, gallery = _l2_normalised(query), _l2_normalised(gallery)
    index = faiss.IndexFlatL2(gallery.shape[1]) if metric == "euclidean" else faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    scores, indices = index.search(query, k)  # [Q, k] each
    distances = {"inner_product": -scores, "cosine": 1 - scores, "euclidean": scores}[metric]
    return indices.astype(np.int64), distances


def _l2_normalised(features: np.ndarray) -> np.ndarray:
    """[..., D] features, each divided by its L2 norm (a zero feature stays zero)."""
    return features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)


def match_rows(query: FeatureSet, gallery: FeatureSet, lists: RankLists) -> list[dict]:
    """One row per (query, rank): names, distance, cosine similarity and, where both files carry
    identities, theirs and whether they match."""
    labelled = query.pids is not None and gallery.pids is not None
    rows = []
    for q, ranked in enumerate(zip(lists.indices, lists.distances, lists.cosines, strict=True)):
        for rank, (g, distance, cosine) in enumerate(zip(*ranked, strict=True), start=1):
            row = {"query": str(query.names[q]), "rank": rank, "gallery": str(gallery.names[g]),
                   "distance": float(distance), "cosine": float(cosine)}
            if labelled:
                row.update(query_pid=str(query.pids[q]), gallery_pid=str(gallery.pids[g]),
                           match=bool(query.pids[q] == gallery.pids[g]))
            rows.append(row)
    return rows


def match_row_files(stem: Path) -> tuple[Path, Path]:
    """The files :func:`write_match_rows` writes: ``stem``.csv and ``stem``.json."""
    return stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".json")


def write_match_rows(rows: list[dict], stem: Path, about: dict) -> tuple[Path, Path]:
    """``stem``.csv (a row per query and rank) and ``stem``.json (``about``, then each query's list)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = match_row_files(stem)
    with open(csv_path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    queries: dict[str, list[dict]] = {}
    for row in rows:
        queries.setdefault(row["query"], []).append({key: value for key, value in row.items() if key != "query"})
    json_path.write_text(json.dumps({**about, "queries": [{"query": name, "ranks": ranks}
                                                          for name, ranks in queries.items()]}, indent=1))
    return csv_path, json_path

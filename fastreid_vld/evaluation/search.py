"""Top-k gallery entries for each query (``tools/search.py``): the distances of ``distances.py``
ranked in full (ties to the lower gallery index, as the evaluation ranks them), or, for large
galleries without AQE and re-ranking, faiss's exact flat search of the same distances (float32;
ties in any order); and the rank lists as CSV and JSON."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch

from ..engine.feature_files import FeatureSet
from .distances import DistanceSettings, direction_distances

__all__ = ["BACKENDS", "FAISS_ABOVE", "RankLists", "match_rows", "top_k", "write_match_rows"]

BACKENDS = ("auto", "brute", "faiss")
#: query x gallery pairs above which ``auto`` searches with faiss (the full distance matrix would
#: take 8 bytes a pair); AQE and re-ranking need the full matrix and never use faiss.
FAISS_ABOVE = 50_000_000


@dataclass(frozen=True)
class RankLists:
    indices: np.ndarray    # [Q, k] gallery positions, nearest first
    distances: np.ndarray  # [Q, k] their distances (smaller: closer)


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
        return _faiss_top_k(query, gallery, settings.metric, k)
    distances = direction_distances(torch.from_numpy(query), torch.from_numpy(gallery), settings)  # [Q, G]
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return RankLists(order, np.take_along_axis(distances, order, axis=1))


def _faiss_top_k(query: np.ndarray, gallery: np.ndarray, metric: str, k: int) -> RankLists:
    """faiss flat (exact) search: inner product -> -q.g, cosine -> 1 - q.g of normalised features,
    euclidean -> the squared distance (fast-reid's euclidean)."""
    query, gallery = (np.ascontiguousarray(x, dtype=np.float32) for x in (query, gallery))
    if metric == "cosine":
        query, gallery = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) for x in (query, gallery))
    index = faiss.IndexFlatL2(gallery.shape[1]) if metric == "euclidean" else faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    scores, indices = index.search(query, k)  # [Q, k] each
    distances = {"inner_product": -scores, "cosine": 1 - scores, "euclidean": scores}[metric]
    return RankLists(indices.astype(np.int64), distances)


def match_rows(query: FeatureSet, gallery: FeatureSet, lists: RankLists) -> list[dict]:
    """One row per (query, rank): names, distance and, where both files carry identities, theirs and
    whether they match."""
    labelled = query.pids is not None and gallery.pids is not None
    rows = []
    for q, (indices, distances) in enumerate(zip(lists.indices, lists.distances, strict=True)):
        for rank, (g, distance) in enumerate(zip(indices, distances, strict=True), start=1):
            row = {"query": str(query.names[q]), "rank": rank, "gallery": str(gallery.names[g]),
                   "distance": float(distance)}
            if labelled:
                row.update(query_pid=str(query.pids[q]), gallery_pid=str(gallery.pids[g]),
                           match=bool(query.pids[q] == gallery.pids[g]))
            rows.append(row)
    return rows


def write_match_rows(rows: list[dict], stem: Path, about: dict) -> tuple[Path, Path]:
    """``stem``.csv (a row per query and rank) and ``stem``.json (``about``, then each query's list)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".json")
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

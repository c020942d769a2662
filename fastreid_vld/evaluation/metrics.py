"""CMC, mAP and mINP of cross-modal video retrieval, as the data sets' own evaluation code
computes them.

Protocols (``protocol=``), each a fact of the data set's original evaluation code:

- ``"vcm"`` (HITSZ-VCM): per query, the gallery entries of the same identity AND the same
  camera id are removed before ranking (camera ids are shared by both modalities).
- ``"bupt"`` (BUPTCampus): nothing is removed.

Then, for both: a query with no true match left is not counted; CMC is cut at
``min(max_rank, gallery size)``; AP is the non-interpolated mean of the precision at each
true match; mAP and CMC average over the counted queries. mINP (not computed by the
originals) is the mean over counted queries of ``true matches / (1-based rank of the
hardest true match)``. A query whose list after removal is shorter than ``max_rank`` keeps
its last CMC value up to ``max_rank`` (the original VCM code crashes there).

Ties: the originals rank with numpy's default (unstable) argsort, whose order among equal
distances depends on the platform; here equal distances go to the lower gallery index, as a
stable sort would order them.

How: only the ranks of the true matches matter. A true match's rank is the number of kept
gallery entries before it: the other true matches before it (a small sort per query) plus
the other-identity entries strictly closer or equally close with a lower index. The latter
are counted by searching its distance in the sorted distances of the query's other-identity
entries, so each row needs one value sort (a SIMD sort in numpy) and no argsort; row blocks
run in a thread pool.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["PROTOCOLS", "NaNFeaturesError", "TrueMatchRanks", "check_finite_features", "evaluate_vvi",
           "non_finite_rows", "summarize_ranks", "true_match_ranks"]

#: protocol name -> whether gallery entries of the query's identity and camera are removed.
PROTOCOLS = {"vcm": True, "bupt": False}

# Rows per block: a block's temporaries stay around (2**22 entries x 13 bytes) ~ 55 MB.
_BLOCK_ENTRIES = 2**22
# Tied entries checked per step of the tie correction (each step scans that many rows).
_TIE_BLOCK = 256

ArrayLike = np.ndarray | torch.Tensor


class NaNFeaturesError(ValueError):
    """Features holding NaN or infinite values: the model (its weights, or a diverged training) produces NaN,
    and NaN cannot be ranked."""


def non_finite_rows(features: ArrayLike) -> int:
    """How many of the [N, D] ``features`` hold a NaN or an infinite value."""
    finite = torch.isfinite(features) if isinstance(features, torch.Tensor) else np.isfinite(features)
    return int((~finite).any(1).sum())


def check_finite_features(features: ArrayLike, what: str) -> None:
    """A :class:`NaNFeaturesError` when any of the [N, D] ``features`` holds a NaN or an infinite value:
    "the model produces NaN or infinite features for 3 of N ``what``" (``what``: "tracklets in DIR ...")."""
    bad = non_finite_rows(features)
    if bad:
        raise NaNFeaturesError(f"the model produces NaN or infinite features for {bad} of {len(features)} {what}")


@dataclass(frozen=True)
class TrueMatchRanks:
    """The 0-based ranks of every query's true matches among its kept gallery entries."""

    ranks: np.ndarray   # (sum(counts),) int64, query by query, ascending within a query
    counts: np.ndarray  # (Q,) int64 true matches per query; 0: the query is not counted
    gallery_size: int   # G, the number of gallery entries before any removal

    @property
    def num_counted(self) -> int:
        """Queries with at least one true match: those the averages are taken over."""
        return int(np.count_nonzero(self.counts))


def evaluate_vvi(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike,
                 q_camids: ArrayLike | None, g_camids: ArrayLike | None, max_rank: int = 20,
                 protocol: str = "vcm") -> dict[str, np.ndarray | float]:
    """CMC, mAP and mINP of ranking a gallery for each query by ``distmat`` (smaller: closer).

    Args:
        distmat: [Q, G] distances (numpy or torch; float16/32/64).
        q_pids, g_pids: [Q] and [G] identity labels.
        q_camids, g_camids: [Q] and [G] camera ids (used by ``"vcm"``; may be None for ``"bupt"``).
        max_rank: CMC length, cut at the gallery size.
        protocol: ``"vcm"`` or ``"bupt"`` (see the module docstring).

    Returns:
        ``{"cmc": [min(max_rank, G)] float64, "mAP": float, "mINP": float}``, fractions in [0, 1].

    Raises:
        ValueError: on inconsistent shapes, NaN distances, an unknown protocol, or when no
            query has a true match in its gallery.
    """
    ranks = true_match_ranks(distmat, q_pids, g_pids, q_camids, g_camids, protocol)
    return summarize_ranks(ranks, max_rank)


def true_match_ranks(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike,
                     q_camids: ArrayLike | None, g_camids: ArrayLike | None,
                     protocol: str = "vcm") -> TrueMatchRanks:
    """Rank of every true match of every query (arguments as :func:`evaluate_vvi`)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    distmat = _distances(distmat)
    num_q, num_g = distmat.shape
    q_pids = _labels(q_pids, num_q, "q_pids")
    g_pids = _labels(g_pids, num_g, "g_pids")
    if PROTOCOLS[protocol]:
        if q_camids is None or g_camids is None:
            raise ValueError(f"protocol {protocol!r} removes same-camera matches: camids are required")
        q_camids = _labels(q_camids, num_q, "q_camids")
        g_camids = _labels(g_camids, num_g, "g_camids")
    else:
        q_camids = g_camids = None

    rows_per_block = max(1, _BLOCK_ENTRIES // num_g)
    blocks = [slice(start, min(start + rows_per_block, num_q))
              for start in range(0, num_q, rows_per_block)]

    def rank_block(rows: slice) -> tuple[np.ndarray, np.ndarray]:
        return _rank_block(distmat[rows], q_pids[rows], g_pids,
                           None if q_camids is None else q_camids[rows], g_camids)

    workers = min(len(blocks), max(1, torch.get_num_threads()))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:  # numpy's sort releases the GIL
            results = list(pool.map(rank_block, blocks))
    else:
        results = [rank_block(rows) for rows in blocks]
    counts = np.concatenate([counts for counts, _ in results])
    ranks = np.concatenate([ranks for _, ranks in results])
    return TrueMatchRanks(ranks=ranks, counts=counts, gallery_size=num_g)


def summarize_ranks(ranks: TrueMatchRanks, max_rank: int = 20) -> dict[str, np.ndarray | float]:
    """CMC (cut at ``min(max_rank, G)``), mAP and mINP over the counted queries."""
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    counted = ranks.counts > 0
    num_counted = int(counted.sum())
    if num_counted == 0:
        raise ValueError("no query has a true match in its gallery (after the protocol's "
                         "removal): nothing to average; check the query/gallery split and pids")
    counts = ranks.counts[counted]                                   # [C]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])           # [C] first match of each
    first, hardest = ranks.ranks[starts], ranks.ranks[starts + counts - 1]

    cmc_length = min(max_rank, ranks.gallery_size)
    hits_at = np.bincount(np.minimum(first, cmc_length), minlength=cmc_length + 1)
    cmc = np.cumsum(hits_at[:cmc_length]) / num_counted              # [cmc_length]

    # precision at the i-th true match (1-based i) = i / (its 1-based rank)
    nth_match = np.arange(len(ranks.ranks)) - np.repeat(starts, counts) + 1
    precision = nth_match / (ranks.ranks + 1.0)
    average_precision = np.add.reduceat(precision, starts) / counts  # [C]
    inverse_negative_penalty = counts / (hardest + 1.0)              # [C]
    return {"cmc": cmc, "mAP": float(average_precision.mean()),
            "mINP": float(inverse_negative_penalty.mean())}


def _rank_block(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray,
                q_camids: np.ndarray | None, g_camids: np.ndarray | None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """True-match counts [R] and ranks (query by query, ascending) of a block of R query rows."""
    num_rows, _ = distmat.shape
    same_id = q_pids[:, None] == g_pids[None, :]                     # [R, G]
    true_match = same_id
    if q_camids is not None:
        true_match = same_id & (q_camids[:, None] != g_camids[None, :])

    # Other-identity distances of each row, ascending; entries of the query's id at the end.
    negatives = np.where(same_id, np.inf, distmat)                   # [R, G]
    negatives.sort(axis=1)

    rows, cols = np.nonzero(true_match)                              # [T] row-major: cols ascend
    distances = distmat[rows, cols]                                  # [T]
    counts = np.bincount(rows, minlength=num_rows)                   # [R]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])           # [R]
    if len(rows) == 0:
        return counts, np.zeros(0, np.int64)
    slots = np.arange(len(rows)) - starts[rows]                      # [T] position within its row

    # Other-identity entries strictly closer than each true match, then those tied with it
    # at a lower gallery index.
    queries = np.full((num_rows, counts.max()), np.inf, distmat.dtype)  # [R, M]
    queries[rows, slots] = distances
    sorted_negatives, queries = torch.from_numpy(negatives), torch.from_numpy(queries)
    closer = torch.searchsorted(sorted_negatives, queries).numpy()[rows, slots]
    not_after = torch.searchsorted(sorted_negatives, queries, right=True).numpy()[rows, slots]
    tied = np.flatnonzero(not_after > closer)
    closer[tied] += _tied_negatives_before(distmat, same_id, rows[tied], cols[tied])

    # Order each row's true matches by (distance, gallery index): the i-th has i before it.
    order = np.lexsort((cols, distances, rows))
    ranks = closer[order] + slots                                    # slots of the sorted rows
    return counts, ranks.astype(np.int64)


def _tied_negatives_before(distmat: np.ndarray, same_id: np.ndarray, rows: np.ndarray,
                           cols: np.ndarray) -> np.ndarray:
    """For each (row, col) true match: other-identity entries of that row with exactly its
    distance and a lower gallery index (they rank before it under stable ties)."""
    before = np.arange(distmat.shape[1])                             # [G]
    tied_before = np.zeros(len(rows), np.int64)
    for start in range(0, len(rows), _TIE_BLOCK):
        r, c = rows[start:start + _TIE_BLOCK], cols[start:start + _TIE_BLOCK]
        equal = distmat[r] == distmat[r, c][:, None]                 # [E, G]
        tied_before[start:start + _TIE_BLOCK] = (
            equal & ~same_id[r] & (before[None, :] < c[:, None])).sum(axis=1)
    return tied_before


def _distances(distmat: ArrayLike) -> np.ndarray:
    if isinstance(distmat, torch.Tensor):
        distmat = distmat.detach().cpu().numpy()
    distmat = np.asarray(distmat)
    if distmat.ndim != 2 or 0 in distmat.shape:
        raise ValueError(f"distmat must be a non-empty [num_query, num_gallery] matrix, "
                         f"got shape {distmat.shape}")
    if distmat.dtype not in (np.float32, np.float64):
        distmat = distmat.astype(np.float64 if distmat.dtype.itemsize > 4 else np.float32)
    if np.isnan(distmat).any():
        raise ValueError(f"distmat holds {int(np.isnan(distmat).sum())} NaN distances: "
                         "NaN cannot be ranked (check the features for NaN)")
    return distmat


def _labels(labels: ArrayLike, length: int, name: str) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},) to match distmat, got {labels.shape}")
    return labels

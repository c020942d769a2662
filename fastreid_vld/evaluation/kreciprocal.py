"""The Jaccard distance of k-reciprocal neighbours (Zhong et al., "Re-ranking Person Re-identification
with k-reciprocal Encoding", CVPR 2017) exactly as fast-reid 1.4.0's
``build_dist(query, gallery, metric="jaccard", k1=k1, k2=k2)`` computes it on the CPU, in torch,
vectorised over blocks of rows, on the features' device, with sparse neighbour structures: memory
grows like N x k (N = query + gallery), not N x N; only the [Q, G] result is dense.

fast-reid's definition, step by step (features = query then gallery, used as given: the evaluator
normalises them first):

1. k-NN: faiss ``IndexFlatL2``, the ``k1`` smallest squared euclidean distances of each feature to
   all (itself included), ``|x|^2 + |y|^2 - 2 x.y`` in float32 with negatives clamped to 0, ties
   to the lower index. Where ``k1 > N`` faiss pads each list with id -1, which numpy then reads as
   the LAST feature (index -1) in every later step; reproduced here.
2. k-reciprocal sets ``R(i, k)``: the first ``min(k + 1, k1)`` entries of i's list whose own first
   ``min(k + 1, k1)`` entries hold i (the search returns only k1 columns, so ``k = k1`` keeps k1,
   the feature itself included). Taken for ``k1`` and for ``round(k1 / 2)`` (half to even).
3. Expansion: ``R(i, k1)`` joined with every ``R(c, round(k1 / 2))`` (c in ``R(i, k1)``) of which
   more than 2/3 (``|distinct shared ids| > 2/3 * |R(c, .)|``, in float64) lies in ``R(i, k1)``.
4. ``V[i]``: the softmax of minus the squared distances of i to its expanded set (float32).
5. Local query expansion unless ``k2 == 1``: ``V[i]`` becomes the mean of the ``V`` rows of the
   first ``min(k2, k1)`` entries of i's list.
6. ``jaccard[i, j] = 1 - m / (2 - m)`` with ``m = sum_c min(V[i, c], V[j, c])`` (the rows of V
   sum to 1, so ``2 - m`` is the sum of the maxima), negatives set to 0.

Here: the k-NN is a blocked matrix product and one ``topk`` per block on (distance bits, index)
keys (exact ties by index, as faiss); the neighbour sets are [N, k] index arrays and masks; V is a
compressed sparse row matrix (about k to k^2 entries a row); the query expansion gathers and sums
the sparse rows of the neighbours; the minima are accumulated through an inverted index of the
gallery rows (for each column, the gallery rows holding it), one block of query rows at a time.
Results agree with fast-reid's to float32 rounding (about 1e-7).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

__all__ = ["k_reciprocal_jaccard", "k_reciprocal_jaccard_blocks"]

# Elements of the [entries, D] gathered features and of the [rows, G] temporaries of the last step.
_BLOCK_ELEMENTS = 2**22
# (query entry, gallery row) pairs whose minima one block of the Jaccard stage accumulates.
_PAIRS_PER_BLOCK = 2**20


@dataclass(frozen=True)
class SparseRows:
    """Compressed sparse rows of an [N, N] matrix: row r holds ``cols[crow[r]:crow[r + 1]]``
    (ascending) with ``values`` at the same positions."""

    crow: torch.Tensor    # [N + 1] int64
    cols: torch.Tensor    # [nnz] int64
    values: torch.Tensor  # [nnz] float32

    @property
    def num_rows(self) -> int:
        return self.crow.numel() - 1

    def lengths(self) -> torch.Tensor:
        """[N] entries per row."""
        return self.crow.diff()

    def entry_rows(self) -> torch.Tensor:
        """[nnz] the row of each entry."""
        return torch.repeat_interleave(torch.arange(self.num_rows, device=self.crow.device), self.lengths())


@torch.no_grad()
def k_reciprocal_jaccard(query: torch.Tensor, gallery: torch.Tensor, k1: int = 20, k2: int = 6,
                         batch_size: int = 2048) -> torch.Tensor:
    """fast-reid's k-reciprocal Jaccard distance of each query to each gallery feature.

    Args:
        query: [Q, D] features (fast-reid's evaluator L2-normalises them first; used as given).
        gallery: [G, D] features.
        k1: neighbours of the k-reciprocal sets (TEST.RERANK.K1).
        k2: neighbours of the local query expansion (TEST.RERANK.K2; 1: none).
        batch_size: rows of a block: the k-NN search multiplies [batch, D] x [D, batch] tiles, the
            neighbour sets are built [batch, k1^2] at a time.

    Returns:
        [Q, G] float32 distances in [0, 1] on the features' device.
    """
    return next(k_reciprocal_jaccard_blocks(query, gallery, k1, k2, max(1, len(query)), batch_size))


@torch.no_grad()
def k_reciprocal_jaccard_blocks(query: torch.Tensor, gallery: torch.Tensor, k1: int = 20, k2: int = 6,
                                rows: int = 1024, batch_size: int = 2048) -> Iterator[torch.Tensor]:
    """The distances of :func:`k_reciprocal_jaccard`, ``rows`` queries at a time: [b, G] blocks in
    query order, for galleries whose [Q, G] matrix need not be held at once (the neighbour structures
    of all Q + G features are built before the first block)."""
    if query.dim() != 2 or gallery.dim() != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(f"expected [Q, D] and [G, D] features, got {tuple(query.shape)} and {tuple(gallery.shape)}")
    if k1 < 1 or k2 < 1 or batch_size < 1 or rows < 1:
        raise ValueError(f"k1, k2, rows and batch_size must be at least 1, got {k1}, {k2}, {rows}, {batch_size}")
    features = torch.cat([query, gallery]).float().contiguous()            # [N, D]
    norms = features.pow(2).sum(1)                                           # [N]
    ranks = nearest_neighbours(features, norms, k1, batch_size)             # [N, k1], -1: padding
    half_width = min(round(k1 / 2) + 1, k1)
    expansion = expanded_sets(ranks, reciprocal_mask(ranks, k1, batch_size),
                              reciprocal_mask(ranks, half_width, batch_size), batch_size)
    weights = gaussian_weights(features, norms, *expansion)
    if k2 != 1:
        weights = local_query_expansion(weights, ranks[:, :k2], batch_size)
    minima = SumsOfMinima(weights, len(query))
    for start in range(0, max(1, len(query)), rows):
        yield jaccard_distance(minima(start, min(start + rows, len(query))))


def nearest_neighbours(features: torch.Tensor, norms: torch.Tensor, k: int, block: int) -> torch.Tensor:
    """[N, D] features, [N] squared norms -> [N, k] indices of each feature's k nearest (squared
    euclidean, ties to the lower index, as faiss's IndexFlatL2), -1 past the N-th.

    The distances are symmetric: each [block, block] tile above the diagonal serves its rows and,
    transposed, its columns, and every row keeps its best keys so far."""
    n = len(features)
    width = min(k, n)
    best = torch.full((n, width), torch.iinfo(torch.int64).max, dtype=torch.int64, device=features.device)
    for start in range(0, n, block):
        rows = slice(start, start + block)
        for other in range(start, n, block):
            cols = slice(other, other + block)
            distances = (norms[rows, None] + norms[cols]).addmm_(features[rows], features[cols].t(), alpha=-2)
            distances.clamp_min_(0)                                           # [b, b'], as faiss
            _merge_nearest(best, rows, distances, other)
            if other != start:
                _merge_nearest(best, cols, distances.t(), start)
    ranks = torch.full((n, k), -1, dtype=torch.int64, device=features.device)
    ranks[:, :width] = best.bitwise_and_(0xFFFFFFFF)
    return ranks


def _merge_nearest(best: torch.Tensor, rows: slice, distances: torch.Tensor, first_col: int) -> None:
    """Merge the [b, c] ``distances`` of ``rows`` to columns ``first_col ..`` into their [b, w] best
    keys (ascending). A candidate tied with the first one left out is taken by index."""
    width = best.shape[1]
    take = min(width + 1, distances.shape[1])
    values, cols = distances.topk(take, dim=1, largest=False, sorted=True)
    candidates = _keys(values, cols + first_col)[:, :width]
    if take > width:
        tied = (values[:, width] == values[:, width - 1]).nonzero().squeeze(1)
        if len(tied):
            index = torch.arange(first_col, first_col + distances.shape[1], device=distances.device)
            exact = _keys(distances[tied], index.expand(len(tied), -1))
            candidates[tied] = exact.topk(width, dim=1, largest=False, sorted=True).values
    merged = torch.cat([best[rows], candidates], 1)
    best[rows] = merged.topk(width, dim=1, largest=False, sorted=True).values


def _keys(distances: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Non-negative float32 distances and their int64 column indices -> int64 keys ordered as
    (distance, index): the float bits in the high half (they order like non-negative floats; -0.0
    becomes +0.0), the index in the low half."""
    bits = distances.contiguous().view(torch.int32).clamp_min(0).long()
    return bits.bitwise_left_shift_(32).add_(index)


def reciprocal_mask(ranks: torch.Tensor, width: int, rows: int) -> torch.Tensor:
    """[N, K] neighbour lists -> [N, width] whether ``ranks[i, j]`` (j < width) holds i among its
    own first ``width`` neighbours (padding -1 reads the last row, as numpy does)."""
    n = len(ranks)
    forward = ranks[:, :width]
    mask = torch.empty(forward.shape, dtype=torch.bool, device=ranks.device)
    for start in range(0, n, rows):
        block = forward[start:start + rows]                                  # [b, w]
        backward = forward[block.remainder(n)]                               # [b, w, w]
        me = torch.arange(start, start + len(block), device=ranks.device)[:, None, None]
        mask[start:start + rows] = (backward == me).any(-1)
    return mask


def expanded_sets(ranks: torch.Tensor, reciprocal: torch.Tensor, half: torch.Tensor,
                  rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k-reciprocal sets (``reciprocal``: [N, k1] over ``ranks[:, :k1]``) joined with the
    accepted half sets (``half``: [N, h] over ``ranks[:, :h]``) -> ([N] set sizes, [nnz] members,
    ascending within a row, -1 first where padding is a member)."""
    n, width = reciprocal.shape
    sizes, members = [], []
    for start in range(0, n, rows):
        own = ranks[start:start + rows, :width]                              # [b, k1]
        own_mask = reciprocal[start:start + rows]
        candidates = own.remainder(n)
        theirs, their_mask = ranks[candidates, :half.shape[1]], half[candidates]  # [b, k1, h]
        accepted = own_mask & _mostly_shared(own, own_mask, theirs, their_mask)
        union = torch.cat([own.masked_fill(~own_mask, n),
                           theirs.masked_fill(~(accepted[..., None] & their_mask), n).flatten(1)], 1)
        block_sizes, block_members = _distinct_per_row(union, n)
        sizes.append(block_sizes)
        members.append(block_members)
    return torch.cat(sizes), torch.cat(members)


def _mostly_shared(own: torch.Tensor, own_mask: torch.Tensor, theirs: torch.Tensor,
                   their_mask: torch.Tensor) -> torch.Tensor:
    """[b, k1] sets, [b, k1, h] candidate sets -> [b, k1] whether more than 2/3 of a candidate set
    (its size counting every slot) are distinct ids of the own set. Ids of a list are distinct
    but for the padding -1, counted once."""
    own = own.masked_fill(~own_mask, -2)                                     # -2: no id
    shared = (theirs[..., None] == own[:, None, None, :]).any(-1) & their_mask
    distinct = (shared & (theirs >= 0)).sum(-1) + (shared & (theirs < 0)).any(-1)
    return distinct.double() > their_mask.sum(-1).double() * (2 / 3)


def _distinct_per_row(values: torch.Tensor, absent: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[b, w] ids (``absent`` marks no id) -> ([b] distinct ids per row, their ascending ids, row
    after row)."""
    ordered = values.sort(1).values
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    keep = first & (ordered != absent)
    return keep.sum(1), ordered[keep]


def gaussian_weights(features: torch.Tensor, norms: torch.Tensor, sizes: torch.Tensor, members: torch.Tensor,
                     distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> SparseRows:
    """[N] set sizes and their [nnz] members -> V: each row the softmax of minus the distances to its
    members (float32), a padding member folded onto the last row. The distances: the squared ones (as
    fast-reid), or ``distance([nnz] squared distances, [nnz] the row of each)`` of them."""
    n = len(features)
    crow = _crow(sizes)
    owners = torch.repeat_interleave(torch.arange(n, device=sizes.device), sizes)
    distances = pair_squared_distances(features, norms, owners, members.remainder(n))
    if distance is not None:
        distances = distance(distances, owners)
    values = _row_softmax(distances.neg_(), owners, n)
    weights = SparseRows(crow, members, values)
    return _fold_padding(weights) if bool((members < 0).any()) else weights


def pair_squared_distances(features: torch.Tensor, norms: torch.Tensor, rows: torch.Tensor,
                           cols: torch.Tensor) -> torch.Tensor:
    """[N, D] features, [N] squared norms, [P] row and [P] column indices -> [P] ``|x|^2 + |y|^2 - 2 x.y``
    of each pair, about ``_BLOCK_ELEMENTS`` gathered feature elements at a time."""
    distances = torch.empty(len(rows), dtype=features.dtype, device=features.device)
    chunk = max(1, _BLOCK_ELEMENTS // features.shape[1])
    for start in range(0, len(rows), chunk):
        i, j = rows[start:start + chunk], cols[start:start + chunk]
        products = features.index_select(0, i).mul_(features.index_select(0, j)).sum(1)
        distances[start:start + chunk] = (norms[i] + norms[j]) - 2 * products
    return distances


def _row_softmax(logits: torch.Tensor, owners: torch.Tensor, n: int) -> torch.Tensor:
    """[nnz] logits of the [nnz] ``owners`` rows -> the softmax within each row."""
    peak = torch.full((n,), -torch.inf, dtype=logits.dtype, device=logits.device)
    peak.scatter_reduce_(0, owners, logits, reduce="amax")
    exps = (logits - peak[owners]).exp_()
    totals = torch.zeros(n, dtype=logits.dtype, device=logits.device).index_add_(0, owners, exps)
    return exps / totals[owners]


def _fold_padding(weights: SparseRows) -> SparseRows:
    """Padding members (-1) become the last row's column, as numpy's ``V[i, -1] = w`` writes it;
    where that column is a member too, it keeps one entry of the two (their weights are equal)."""
    n = weights.num_rows
    rows = weights.entry_rows()
    keys = rows * n + weights.cols.remainder(n)
    keys, order = keys.sort(stable=True)
    first = torch.ones_like(keys, dtype=torch.bool)
    first[1:] = keys[1:] != keys[:-1]
    keys, values = keys[first], weights.values[order][first]
    return SparseRows(_crow(torch.bincount(keys // n, minlength=n)), keys % n, values)


def local_query_expansion(weights: SparseRows, neighbours: torch.Tensor, rows: int) -> SparseRows:
    """V and [N, k2] neighbour lists -> each row the mean of its neighbours' rows of V (padding
    -1: the last row), summed in float32 and divided by k2."""
    n, k2 = neighbours.shape
    neighbours = neighbours.remainder(n)
    crow, lengths = weights.crow, weights.lengths()
    sizes, cols, values = [], [], []
    for start in range(0, n, rows):
        sources = neighbours[start:start + rows].reshape(-1)                # [b * k2]
        owner, position = _segment_positions(crow[sources], lengths[sources])
        keys = (owner // k2) * n + weights.cols[position]                    # (row in block, column)
        keys, inverse = torch.unique(keys, sorted=True, return_inverse=True)
        sums = torch.zeros(len(keys), dtype=weights.values.dtype, device=keys.device)
        sums.index_add_(0, inverse, weights.values[position])
        sizes.append(torch.bincount(keys // n, minlength=len(sources) // k2))
        cols.append(keys % n)
        values.append(sums / k2)
    return SparseRows(_crow(torch.cat(sizes)), torch.cat(cols), torch.cat(values))


def jaccard_distance(minima: torch.Tensor) -> torch.Tensor:
    """[b, G] sums of minima m, in place -> ``1 - m / (2 - m)``, negatives 0."""
    rows = max(1, _BLOCK_ELEMENTS // max(1, minima.shape[1]))
    for start in range(0, len(minima), rows):
        block = minima[start:start + rows]
        block.div_(block.neg().add_(2)).neg_().add_(1).clamp_min_(0)
    return minima


class SumsOfMinima:
    """``sum_c min(V[q, c], V[Q + g, c])`` of blocks of query rows q and every gallery row g (V: query
    rows first), through an inverted index of the gallery rows (for each column, the gallery rows holding
    it) built once; each block in parts of about ``_PAIRS_PER_BLOCK`` (entry, gallery row) pairs."""

    def __init__(self, weights: SparseRows, num_query: int) -> None:
        n = weights.num_rows
        self.weights, self.num_gallery = weights, n - num_query
        split = int(weights.crow[num_query])                                 # first gallery entry
        entry_rows = weights.entry_rows()
        gallery_cols = weights.cols[split:]
        by_column = gallery_cols.argsort(stable=True)
        self.holders = (entry_rows[split:] - num_query)[by_column]           # [gallery nnz] by column
        self.held = weights.values[split:][by_column]
        column_size = torch.bincount(gallery_cols, minlength=n)              # [N]
        self.column_start = column_size.cumsum(0) - column_size
        self.query_rows, self.query_cols = entry_rows[:split], weights.cols[:split]  # [query nnz]
        self.pairs = column_size[self.query_cols]                            # [query nnz]

    def __call__(self, first: int, stop: int) -> torch.Tensor:
        """[stop - first, G] sums of minima of query rows ``first .. stop - 1``."""
        crow, values = self.weights.crow, self.weights.values
        begin, end = int(crow[first]), int(crow[stop])
        row_pairs = torch.zeros(stop - first, dtype=self.pairs.dtype, device=crow.device)
        row_pairs.index_add_(0, self.query_rows[begin:end] - first, self.pairs[begin:end])
        minima = torch.zeros(stop - first, self.num_gallery, dtype=values.dtype, device=crow.device)
        bounds = [first + bound for bound in _blocks(row_pairs, _PAIRS_PER_BLOCK)]
        for part_start, part_stop in zip(bounds[:-1], bounds[1:], strict=True):
            lo, hi = int(crow[part_start]), int(crow[part_stop])
            entry, position = _segment_positions(self.column_start[self.query_cols[lo:hi]], self.pairs[lo:hi])
            entry += lo
            smaller = torch.minimum(values[entry], self.held[position])
            flat = (self.query_rows[entry] - first) * self.num_gallery + self.holders[position]
            minima.view(-1).index_add_(0, flat, smaller)
        return minima


def _crow(sizes: torch.Tensor) -> torch.Tensor:
    """[N] row sizes -> [N + 1] row offsets."""
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])


def _segment_positions(starts: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[S] segments ``starts[s] .. starts[s] + lengths[s] - 1`` -> ([P] segment of each position,
    [P] the positions), segment after segment."""
    segment = torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), lengths)
    offsets = lengths.cumsum(0) - lengths
    return segment, torch.arange(len(segment), device=lengths.device) - offsets[segment] + starts[segment]


def _blocks(costs: torch.Tensor, budget: int) -> list[int]:
    """[R] per-row costs -> row bounds ``[0, ..., R]`` of consecutive blocks, a new block starting
    where the cost before a row crosses the next multiple of ``budget``."""
    before = (costs.cumsum(0) - costs) // budget
    counts = torch.unique_consecutive(before, return_counts=True)[1]
    return [0, *counts.cumsum(0).tolist()]

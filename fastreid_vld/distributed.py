"""The global batch across processes: which tracklets each process holds, and the batch gathered back.

``SOLVER.IMS_PER_BATCH`` is the global batch: every process draws the same batches from the
cross-modal sampler and holds every N-th tracklet of each (:func:`batch_share`: process r the
positions r, r + N, r + 2N, ..., so each one holds both modalities and, where N divides the K
tracklets of an identity, every identity of the batch). Per-tracklet work (the backbone, the
temporal pooling) runs on the share; whatever reads the batch (the head's batch norm, the
classifiers, every loss) runs on every process over the global batch, gathered in the sampler's
order with gradients (:func:`gather_batch`).

The gradients: every process computes the same loss over the global batch, so the gradient each
process's loss sends to a share is summed over the processes on its way back (N times the
one-process gradient of that share), and DDP's average over the N processes gives the one-process
gradient of every parameter before the gather (N x 1/N) and after it (the mean of N equal ones):
no loss scale and no learning-rate scaling. Rows that depend on no batch (the IMLP text features of
all identities) are split over the processes in contiguous shards (:func:`row_shard`) and gathered
the same way (:func:`gather_rows`).

With one process (torch.distributed not initialised) every function is the identity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.distributed as dist
from fastreid.utils import comm

__all__ = ["batch_share", "broadcast_module", "gather_batch", "gather_rows", "row_shard"]

Item = TypeVar("Item")


def broadcast_module(module: torch.nn.Module) -> None:
    """Every parameter and buffer of ``module`` from process 0, in place: all processes start from one
    model, frozen parts included (DDP broadcasts only what it trains, and each process seeds its own
    initialisation with SEED + rank)."""
    if comm.get_world_size() == 1:
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def batch_share(batch: Sequence[Item], rank: int, world_size: int) -> list[Item]:
    """Process ``rank``'s share of a global batch: its items at positions rank, rank + N, ..."""
    if len(batch) % world_size:
        raise ValueError(f"a batch of {len(batch)} cannot be split evenly over {world_size} processes")
    return list(batch[rank::world_size])


def gather_batch(share: torch.Tensor) -> torch.Tensor:
    """Every process's share [B / N, ...] (:func:`batch_share`) -> the global batch [B, ...] in the
    sampler's order, on every process; gradients flow back to each share (summed over processes)."""
    if comm.get_world_size() == 1:
        return share
    parts = _AllGather.apply(share)  # [N, B / N, ...]: process r's share at r
    return parts.transpose(0, 1).flatten(0, 1)  # global position j * N + r = share r, item j


def row_shard(num_rows: int) -> slice:
    """This process's contiguous part of ``num_rows`` rows: ceil(num_rows / N) rows (fewer for the last)."""
    rank, size = comm.get_rank(), math.ceil(num_rows / comm.get_world_size())
    return slice(min(rank * size, num_rows), min((rank + 1) * size, num_rows))


def gather_rows(shard: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Every process's :func:`row_shard` rows [rows, ...] -> all ``num_rows`` rows [num_rows, ...], in order,
    on every process; gradients flow back to each shard (summed over processes)."""
    world_size = comm.get_world_size()
    if world_size == 1:
        return shard
    padded = math.ceil(num_rows / world_size)
    shard = torch.nn.functional.pad(shard, (0, 0) * (shard.dim() - 1) + (0, padded - shard.shape[0]))
    return _AllGather.apply(shard).flatten(0, 1)[:num_rows]  # [N * padded, ...] -> [num_rows, ...]


class _AllGather(torch.autograd.Function):
    """x [*] on every process -> [N, *] (process r's x at r) on every process; backward: the gradient
    of [N, *] summed over the processes, process r's part. (torch.distributed.nn's all_gather does the
    same and warns that it is deprecated on every call.)"""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        summed = grad.clone(memory_format=torch.contiguous_format)  # [N, *]: what this process's loss sends
        dist.all_reduce(summed)  # ... plus what every other process's sends
        return summed[dist.get_rank()]

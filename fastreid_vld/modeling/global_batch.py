"""A training step's per-tracklet part, micro-batch by micro-batch, gathered into the global batch.

The meta-architectures split a training step in two: the per-tracklet part (the backbone on each
frame, the temporal pooling: nothing in it reads another tracklet) and the batch part (batch norm,
classifiers, losses). :func:`per_tracklet_outputs` runs the first on this process's tracklets and
:func:`global_batch` gathers its outputs and the labels of every process
(:mod:`fastreid_vld.distributed`), so the batch part sees the global batch of SOLVER.IMS_PER_BATCH
on any number of processes.

Micro-batches (``SOLVER.MICRO_BATCH_SIZE`` M, as GradCache): the per-tracklet part runs M tracklets
at a time, each micro-batch under activation checkpointing, which keeps only its frames and its
outputs; the batch part and its losses run once over the whole batch; the backward pass runs each
micro-batch's forward again and back-propagates its outputs' gradients through it. Peak activation
memory is one micro-batch's, the loss and every gradient those of the whole batch (to float
rounding). Exact only where the per-tracklet part keeps no batch statistics:
:func:`check_micro_batches` refuses BatchNorm there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import ConfigError
from ..distributed import gather_batch

__all__ = ["batch_norm_layers", "check_micro_batches", "global_batch", "per_tracklet_outputs"]

#: A tensor [b, ...] or a dict of them, b the tracklets it was computed from.
Outputs = TypeVar("Outputs", torch.Tensor, dict[str, torch.Tensor])


def per_tracklet_outputs(per_tracklet: Callable[[torch.Tensor], Outputs], frames: torch.Tensor, seq_len: int,
                         micro_batch: int = 0) -> Outputs:
    """``per_tracklet(frames [b*T, 3, H, W])`` -> outputs of b rows, for the B tracklets of ``frames``
    [B*T, 3, H, W]: at once, or with ``micro_batch`` M (0 < M < B) M tracklets at a time, each under
    activation checkpointing (recomputed in the backward pass), the outputs concatenated in order."""
    frames_per_micro_batch = micro_batch * seq_len
    if not 0 < frames_per_micro_batch < frames.shape[0] or not torch.is_grad_enabled():
        return per_tracklet(frames)
    parts = [checkpoint(per_tracklet, chunk, use_reentrant=False)
             for chunk in frames.split(frames_per_micro_batch)]
    if isinstance(parts[0], dict):
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}
    return torch.cat(parts)


def global_batch(outputs: Outputs, targets: torch.Tensor) -> tuple[Outputs, torch.Tensor]:
    """This process's per-tracklet outputs and labels [B / N] -> the global batch's [B], in the
    sampler's order, the outputs with their gradients (one process: as they are)."""
    if isinstance(outputs, dict):
        outputs = {name: gather_batch(value) for name, value in outputs.items()}
    else:
        outputs = gather_batch(outputs)
    return outputs, gather_batch(targets)


def batch_norm_layers(module: nn.Module) -> list[str]:
    """The names of ``module``'s BatchNorm layers (whose statistics are those of the frames they see)."""
    return [name for name, layer in module.named_modules() if isinstance(layer, nn.modules.batchnorm._BatchNorm)]


def check_micro_batches(per_tracklet_modules: nn.Module, micro_batch: int, model_name: str) -> None:
    """``SOLVER.MICRO_BATCH_SIZE`` needs a per-tracklet part without batch statistics: a ConfigError
    naming a BatchNorm layer otherwise."""
    batch_norms = batch_norm_layers(per_tracklet_modules)
    if micro_batch > 0 and batch_norms:
        raise ConfigError(f"SOLVER.MICRO_BATCH_SIZE {micro_batch}: {model_name}'s backbone has BatchNorm layers "
                          f"({batch_norms[0]}, ...) whose statistics would be those of each micro-batch, not the "
                          "batch's; micro-batches are exact for backbones without batch statistics (the STP ViT): "
                          "set SOLVER.MICRO_BATCH_SIZE 0")

"""The eval model as one file other runtimes load: ONNX (onnxruntime, TensorRT, ...) or TorchScript
(``torch.jit.load``, C++ libtorch), with a check of the file against PyTorch.

    features = TrackletFeatures(model)                     # images [B, T, 3, H, W] float32 0..255 -> [B, D]
    export_onnx(features, example, "vld.onnx")            # example: [b, T, 3, H, W]; B dynamic in the file
    export_torchscript(features, example, "vld.pt")
    differences = check_export(features, "vld.onnx", "onnx", [random_tracklets(1, T, (H, W)), ...])

``model`` is a model of this plugin or fast-reid built for eval (VLD, VideoBaseline: ``model({"images": x})``
returns the features [B, D]), e.g. :func:`~fastreid_vld.engine.predictor.load_eval_model`'s. The file
takes what the model takes (frames resized to INPUT.SIZE_TEST, 0..255 RGB, not normalised: the pixel
mean and std are inside) and gives the features ``tools/train_net.py --eval-only`` evaluates.

Exporters: ONNX through ``torch.onnx.export(dynamo=True)`` (torch.export, then onnxscript's
translation), the batch a symbolic dimension: torch.export fails loudly where the model would
specialise on the example's batch size, where the older TorchScript-based ONNX exporter (deprecated
since torch 2.9) records such a size as a constant without a word (an example batch of 1 is
refused: torch.export takes it for a constant too). TorchScript through ``torch.jit.trace`` then
``torch.jit.freeze`` (the model's Python control flow depends on static sizes only: T, the patch
grid; torch 2.13 marks torch.jit deprecated, and C++ libtorch still loads it). Both trace the model
with open_clip's ``QuickGELU`` in place of :class:`~fastreid_vld.modeling.attention.LeanQuickGELU`
(the same numbers bit for bit; its autograd Function cannot be saved by TorchScript), and put the
model back as it was.

:func:`export_and_check` is what ``tools/export.py`` runs: the file is written beside the output,
checked at several batch sizes, and only then moved to the output (a file that differs from
PyTorch never replaces it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from open_clip.transformer import QuickGELU
from torch import nn

from ..checkpoint import remove_leftovers, temporary_affixes
from ..modeling.attention import LeanQuickGELU

__all__ = ["FORMATS", "ExportError", "TrackletFeatures", "check_export", "export", "export_and_check", "export_onnx",
           "export_torchscript", "load_export", "max_difference", "random_tracklets"]

#: the formats :func:`export` writes, and their usual file suffix
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
#: torch 2.13's notes that torch.jit is deprecated: TorchScript is what this format is (C++ libtorch loads it)
TORCHSCRIPT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"
#: the names of the file's input and output (ONNX graph inputs / outputs)
INPUT_NAME, OUTPUT_NAME = "images", "features"


class ExportError(RuntimeError):
    """An export file that fails on tracklets, or whose outputs differ from PyTorch's."""


class TrackletFeatures(nn.Module):
    """``model`` with one tensor in and one out: ``images`` [B, T, 3, H, W] float32 in 0..255 (T =
    INPUT.SEQ_LEN, (H, W) = INPUT.SIZE_TEST) -> the eval features [B, D] (``model({"images": images})``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model({"images": images})  # [B, T, 3, H, W] -> [B, D]


def as_tracklet_features(model: nn.Module) -> TrackletFeatures:
    """``model`` as a :class:`TrackletFeatures` (itself when it is one), in eval mode."""
    return (model if isinstance(model, TrackletFeatures) else TrackletFeatures(model)).eval()


def random_tracklets(batch: int, seq_len: int, size: Sequence[int], seed: int = 0) -> torch.Tensor:
    """Uniform random images [batch, seq_len, 3, H, W] float32 in 0..255 (``size`` = (H, W)), seeded."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, seq_len, 3, *size, generator=generator) * 255


@contextlib.contextmanager
def plain_activations(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with every :class:`LeanQuickGELU` replaced by open_clip's ``QuickGELU`` (``x *
    sigmoid(1.702 x)``, the same numbers; plain tensor operations that every exporter traces),
    put back on exit."""
    swapped = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if isinstance(child, LeanQuickGELU)]
    for parent, name, _ in swapped:
        setattr(parent, name, QuickGELU())
    try:
        yield model
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


@contextlib.contextmanager
def quiet_onnx_exporter() -> Iterator[None]:
    """Without the exporter's notes that need no action: torch's own pytree deprecation warnings, and
    onnxscript's optimizer skipping the constant folding of nodes that are not constant (the attention's
    query-key-value Split)."""
    optimizer = logging.getLogger("onnxscript.optimizer")
    level = optimizer.level
    optimizer.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        optimizer.setLevel(level)


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | os.PathLike, opset: int | None = None) -> Path:
    """Write ``model`` (see :func:`as_tracklet_features`), traced on ``example`` [b, T, 3, H, W], as an
    ONNX file at ``path``: input ``images`` [batch, T, 3, H, W], output ``features`` [batch, D], the
    batch dynamic (``b`` > 1: torch.export takes an example batch of 1 for a constant). One
    self-contained file, unless the weights pass 1.5 GB (the protobuf limit is 2 GiB): then torch
    writes them to ``path`` + ``.data`` beside it (ViT-B/16 VLD: one file of 353 MB).
    ``opset``: the ONNX opset (default: the exporter's)."""
    features = as_tracklet_features(model)
    if example.shape[0] < 2:
        raise ValueError(f"export_onnx: an example batch of {example.shape[0]} would be exported as a fixed "
                         "batch size: trace on 2 tracklets or more")
    batch = torch.export.Dim("batch", min=1)
    with plain_activations(features), torch.no_grad(), quiet_onnx_exporter():
        program = torch.onnx.export(features, (example,), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes={INPUT_NAME: {0: batch}},
                                    opset_version=opset, verbose=False)
    program.save(str(path), external_data=False)  # past 1.5 GB of weights torch writes them to path + ".data"
    return Path(path)


def export_torchscript(model: nn.Module, example: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write ``model`` (see :func:`as_tracklet_features`), traced on ``example`` [b, T, 3, H, W], as a
    frozen TorchScript file at ``path`` (``torch.jit.load``; ``forward(images)`` -> features, any
    batch; only the weights the features need: ViT-B/16 VLD 352 MB, as its ONNX file)."""
    features = as_tracklet_features(model)
    with plain_activations(features), torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes on Python booleans of sizes: the model's checks of T and of B*T % T
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", TORCHSCRIPT_DEPRECATION, DeprecationWarning)
        traced = torch.jit.trace(features, (example,), check_trace=False)
        # parameters and buffers inlined, those eval never reads (the text tower, the classifiers) left out
        frozen = torch.jit.freeze(traced, optimize_numerics=False)
    frozen.save(str(path))
    return Path(path)


#: format -> its export function
EXPORTERS: dict[str, Callable[[nn.Module, torch.Tensor, str | os.PathLike], Path]] = {
    "onnx": export_onnx, "torchscript": export_torchscript}


def export(model: nn.Module, fmt: str, example: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write ``model`` in format ``fmt`` (a key of :data:`FORMATS`) at ``path``."""
    if fmt not in EXPORTERS:
        raise ValueError(f"export format {fmt!r}: expected one of {', '.join(EXPORTERS)}")
    return EXPORTERS[fmt](model, example, path)


def load_export(path: str | os.PathLike, fmt: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The exported file at ``path`` as a function images [B, T, 3, H, W] -> features [B, D] (CPU
    tensors): an onnxruntime session (CPU provider) or the ``torch.jit.load``-ed module. The function
    raises an :class:`ExportError` where the file fails on the images (e.g. a batch size it fixed)."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run(images: torch.Tensor) -> torch.Tensor:
            array = images.detach().cpu().float().contiguous().numpy()
            return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])

    elif fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", TORCHSCRIPT_DEPRECATION, DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu").eval()

        def run(images: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return module(images)

    else:
        raise ValueError(f"export format {fmt!r}: expected one of {', '.join(EXPORTERS)}")

    def reported(images: torch.Tensor) -> torch.Tensor:
        try:
            return run(images)
        except Exception as error:  # onnxruntime's and TorchScript's own errors, whatever their class
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ExportError(f"the {fmt} export fails on images {list(images.shape)}: {reason}") from error

    return reported


def max_difference(model: nn.Module, exported: Callable[[torch.Tensor], torch.Tensor],
                   images: torch.Tensor) -> float:
    """The largest absolute difference between ``model``'s features of ``images`` (PyTorch, no
    gradients) and ``exported``'s; ``inf`` when their shapes differ."""
    found = exported(images)
    with torch.no_grad():
        expected = as_tracklet_features(model)(images).float().cpu()
    if found.shape != expected.shape:
        return float("inf")
    return (found.float() - expected).abs().max().item()


def check_export(model: nn.Module, path: str | os.PathLike, fmt: str,
                 inputs: Sequence[torch.Tensor]) -> dict[int, float]:
    """Run the file at ``path`` (format ``fmt``) and ``model`` on each of ``inputs`` (batches of
    tracklets on the CPU): {batch size: largest absolute feature difference}. An :class:`ExportError`
    when the file fails on one of them (e.g. a batch size it fixed)."""
    exported = load_export(path, fmt)
    return {images.shape[0]: max_difference(model, exported, images) for images in inputs}


def export_and_check(model: nn.Module, fmt: str, example: torch.Tensor, path: str | os.PathLike,
                     check_batches: Sequence[int] = (1, 3), tolerance: float = 1e-4) -> dict[int, float]:
    """:func:`export` ``model`` (a CPU model: the check runs the file on the CPU) to ``path``, checked
    first: written in a temporary folder beside ``path``, compared with PyTorch on random tracklets of
    each of ``check_batches`` sizes (:func:`check_export`), moved to ``path`` only when every
    difference is at most ``tolerance``. Returns the differences; an :class:`ExportError` when they
    are larger or when the file fails on a batch, an OSError when the folder of ``path`` cannot be
    written (a full disk, say); ``path`` is then left as it was. The temporary folder is removed
    whatever happens, and those of earlier exports to ``path`` that were killed (by the OOM killer,
    say) are removed first."""
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    remove_leftovers(folder, re.escape(path.name))
    prefix, suffix = temporary_affixes(path)
    with tempfile.TemporaryDirectory(prefix=prefix, suffix=suffix, dir=folder) as staging:
        staged = export(model, fmt, example, Path(staging) / path.name)
        seq_len, size = example.shape[1], tuple(example.shape[-2:])
        inputs = [random_tracklets(batch, seq_len, size, seed=batch) for batch in check_batches]
        differences = check_export(model, staged, fmt, inputs)
        worst = max(differences.values())
        if not worst <= tolerance:  # also NaN
            raise ExportError(f"the {fmt} export differs from PyTorch by up to {worst:.2e} (tolerance "
                              f"{tolerance:.0e}; {describe_differences(differences)}): {path} not written")
        for file in sorted(Path(staging).iterdir()):  # the file, and with external data its .data
            os.replace(file, folder / file.name)
    return differences


def describe_differences(differences: dict[int, float]) -> str:
    """'batch 1: 1.2e-06, batch 3: 9.5e-07'."""
    return ", ".join(f"batch {batch}: {difference:.1e}" for batch, difference in differences.items())


def file_size(path: str | os.PathLike) -> int:
    """Bytes of an exported file, with its external ``.data`` file where it has one."""
    path = Path(path)
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


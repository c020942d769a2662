"""Exported VLD on the CPU: onnxruntime and TorchScript against PyTorch, at the paper's geometry.
Prints one table.

    .venv/bin/python bench/export.py [--batches 1 4] [--repeats 3]

CLIP ViT-B/16 (random weights, saved to a temporary checkpoint and loaded as tools/export.py loads
MODEL.WEIGHTS) at 288x144, T=6, STH from block 9, STA: configs/VLD/vcm.yml, 1536-d features. The
model is exported as tools/export.py exports it (fastreid_vld/engine/export.py: ONNX through
torch.export, TorchScript through torch.jit.trace, each traced at batch 2), with the time that
took and the file's size. Then, for each batch size, every runtime features the same random
tracklets: one warm-up batch, then --repeats rounds in which each runtime runs one batch in turn
(so a busy machine slows them alike); tracklets/s and ms per tracklet from the median round, and
the largest feature difference from PyTorch. PyTorch: the eval model under no_grad, as
tools/extract_features.py runs it; onnxruntime: its CPU provider, default session options; all
with their default thread counts (printed).
"""

from __future__ import annotations

import fastreid_vld  # noqa: F401  (first: adapts fast-reid and torchvision before they are imported)

# isort: split
import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from fastreid.modeling import build_model
from tabulate import tabulate

from fastreid_vld.engine.defaults import inference_config
from fastreid_vld.engine.export import (
    TrackletFeatures,
    export,
    file_size,
    load_export,
    random_tracklets,
)
from fastreid_vld.engine.predictor import load_eval_model

REPO = Path(__file__).resolve().parents[1]
RUNTIMES = ("PyTorch", "TorchScript", "onnxruntime")  # PyTorch first: the reference
FORMAT = {"TorchScript": "torchscript", "onnxruntime": "onnx"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="tracklets per forward")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per batch size")
    parser.add_argument("--config-file", default=str(REPO / "configs/VLD/vcm.yml"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vld-export-bench-") as scratch:
        model, (seq_len, size) = eval_model(args.config_file, Path(scratch))
        runners, exports = {"PyTorch": pytorch_runner(model)}, {}
        for runtime, fmt in FORMAT.items():
            path = Path(scratch) / f"model.{fmt}"
            start = time.perf_counter()
            export(model, fmt, random_tracklets(2, seq_len, size), path)
            exports[runtime] = (time.perf_counter() - start, file_size(path) / 1e6)
            runners[runtime] = load_export(path, fmt)
        rows = []
        for batch in args.batches:
            seconds, differences = time_runners(runners, random_tracklets(batch, seq_len, size, seed=batch),
                                                args.repeats)
            for runtime in RUNTIMES:
                export_seconds, megabytes = exports.get(runtime, (None, None))
                exported = runtime in exports
                rows.append([runtime, batch, f"{batch / seconds[runtime]:.2f}", f"{1e3 * seconds[runtime] / batch:.0f}",
                             f"{seconds['PyTorch'] / seconds[runtime]:.2f}x",
                             f"{differences[runtime]:.1e}" if exported else "",
                             f"{export_seconds:.1f}" if exported else "", f"{megabytes:.0f}" if exported else ""])
    print(f"{Path(args.config_file).name} at {size[0]}x{size[1]}, T={seq_len}; CPU threads: torch "
          f"{torch.get_num_threads()}, onnxruntime default; median of {args.repeats} rounds")
    print(tabulate(rows, headers=["runtime", "tracklets/batch", "tracklets/s", "ms/tracklet", "speed vs PyTorch",
                                  "max |diff|", "export s", "file MB"], tablefmt="github"))


def eval_model(config_file: str, scratch: Path) -> tuple[torch.nn.Module, tuple[int, tuple[int, int]]]:
    """The config's model with random weights (saved to ``scratch``), loaded as tools/export.py loads
    it; and its (T, (H, W))."""
    opts = ["MODEL.BACKBONE.PRETRAIN", "False", "MODEL.DEVICE", "cpu", "MODEL.HEADS.NUM_CLASSES", "500"]
    cfg = inference_config(config_file, opts)
    torch.manual_seed(0)
    weights = scratch / "random.pth"
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    cfg, model = load_eval_model(cfg, str(weights))
    return model, (cfg.INPUT.SEQ_LEN, tuple(cfg.INPUT.SIZE_TEST))


def pytorch_runner(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    features = TrackletFeatures(model).eval()

    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return features(images)

    return run


def time_runners(runners: dict[str, Callable[[torch.Tensor], torch.Tensor]], images: torch.Tensor,
                 repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """({runtime: median seconds per batch}, {runtime: largest difference from PyTorch's features})."""
    outputs = {runtime: run(images) for runtime, run in runners.items()}  # warm-up
    differences = {runtime: (output - outputs["PyTorch"]).abs().max().item() for runtime, output in outputs.items()}
    seconds: dict[str, list[float]] = {runtime: [] for runtime in runners}
    for _ in range(repeats):
        for runtime, run in runners.items():
            start = time.perf_counter()
            run(images)
            seconds[runtime].append(time.perf_counter() - start)
    return {runtime: statistics.median(values) for runtime, values in seconds.items()}, differences


if __name__ == "__main__":
    main()

"""Training-loader throughput at the paper's geometry (288x144 frames, T=6, 4 ids x 4
tracklets x 2 modalities = 32 tracklets a batch), per number of workers. Prints one table.

    .venv/bin/python bench/loader.py [--batches 12] [--workers 0 1 2]

Writes a synthetic HITSZ-VCM-layout set (person renderer, 288x144 JPEG frames) in a temporary
folder, then times the full loader (JPEG decode, resize, restricted random sampling, pad/crop/flip,
channel augmentations, collation) after one warm-up batch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import fastreid_vld  # noqa: F401

# isort: split
from fastreid.config import get_cfg
from tabulate import tabulate

from fastreid_vld import add_vld_config
from fastreid_vld.data import build_vvi_train_loader
from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
from fastreid_vld.data.synthetic_persons import SyntheticPersonRenderer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    size = SyntheticSize(train_ids=8, test_ids=1, cameras=2, tracklets_per_camera=2, min_frames=12, max_frames=24)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        renderer = SyntheticPersonRenderer(size.train_ids + size.test_ids, size.cameras, size=(288, 144))
        write_vcm(Path(root) / "HITSZ-VCM", size, renderer, progress=True)
        for workers in args.workers:
            cfg = add_vld_config(get_cfg())
            cfg.merge_from_list(["DATASETS.ROOT", root, "DATASETS.NAMES", ("VCM",), "INPUT.SIZE_TRAIN", [288, 144],
                                 "SOLVER.IMS_PER_BATCH", 32, "DATALOADER.NUM_INSTANCE", 4,
                                 "DATALOADER.NUM_WORKERS", workers])
            batches = iter(build_vvi_train_loader(cfg))
            next(batches)  # warm-up: workers start
            start = time.perf_counter()
            for _ in range(args.batches):
                batch = next(batches)
            seconds = time.perf_counter() - start
            frames = batch["images"].shape[0] * batch["images"].shape[1] * args.batches
            rows.append([workers, f"{args.batches / seconds:.2f}", f"{frames / seconds:.0f}"])
    print(tabulate(rows, headers=["workers", "batches/s", "frames/s"], tablefmt="github"))


if __name__ == "__main__":
    main()

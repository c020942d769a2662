"""One objective at scale: the paper's training step on one process, on 2 processes (DDP, gloo on the
CPU, NCCL on GPUs) and in micro-batches, at the paper's geometry.

CLIP ViT-B/16 (random weights) at 288x144, T=6, STH from block 9, STA, IMLP over 500 identities,
every official loss, fp32; the global batch of 4 identities x 4 tracklets x 2 modalities (32
tracklets, 192 frames). Every row trains the same weights on the same batch (the loss column says
so); each row runs in fresh processes, each process with ``--threads`` threads (on a 2-core machine:
1, so 2 processes use the 2 cores and one process 1 of them). Per process: the seconds of a step
(after a warm-up step) and the peak memory (RSS on the CPU, ``torch.cuda.max_memory_allocated`` on a
GPU), the largest over the processes.

    .venv/bin/python bench/scale.py                         # CPU: 1 process, micro-batches of 4, 2 processes
    .venv/bin/python bench/scale.py --checkpoint            # the same with MODEL.STP/IMLP.GRAD_CHECKPOINT
    .venv/bin/python bench/scale.py --device cuda --threads 8 --rows 1 1:4 2   # a GPU machine
"""

from __future__ import annotations

import fastreid_vld  # noqa: F401  (first: adapts fast-reid and torchvision before they are imported)

# isort: split
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

TRACKLETS_PER_MODALITY = 16  # the paper's 4 identities x 4 tracklets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="*", default=["1", "1:4", "2"],
                        help="PROCESSES[:MICRO_BATCH] per row (micro-batch 0 or none: the process's whole share)")
    parser.add_argument("--checkpoint", action="store_true", help="MODEL.STP/IMLP.GRAD_CHECKPOINT in every row")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each process")
    parser.add_argument("--classes", type=int, default=500, help="identities of the IMLP prompts (HITSZ-VCM: 500)")
    parser.add_argument("--size", type=int, nargs=2, default=[288, 144], help="frame height and width")
    parser.add_argument("--tracklets", type=int, default=TRACKLETS_PER_MODALITY, help="tracklets per modality")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(json.loads(args.child))
        return
    rows = []
    for row in args.rows:
        processes, _, micro_batch = row.partition(":")
        spec = {"processes": int(processes), "micro_batch": int(micro_batch or 0), "checkpoint": args.checkpoint,
                "threads": args.threads, "classes": args.classes, "size": args.size, "tracklets": args.tracklets,
                "device": args.device}
        rows.append({**spec, **measure(spec)})
    print_table(rows)


def measure(spec: dict) -> dict:
    """One row in a fresh interpreter (its processes spawned there): the slowest process's seconds, the
    largest peak memory, process 0's loss; or ``failed``."""
    with tempfile.TemporaryDirectory(prefix="vld-scale-") as scratch:
        spec = {**spec, "workdir": scratch}
        process = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                                 text=True)
        results = [json.loads(p.read_text()) for p in sorted(Path(scratch).glob("rank*.json"))]
    if process.returncode or len(results) != spec["processes"]:
        print(f"{json.dumps(spec)} failed (exit {process.returncode}):\n{process.stderr[-3000:]}", file=sys.stderr)
        return {"failed": f"failed (exit {process.returncode})"}
    return {"seconds": max(r["seconds"] for r in results), "memory_gb": max(r["memory_gb"] for r in results),
            "loss": results[0]["loss"]}


def print_table(rows: list[dict]) -> None:
    from tabulate import tabulate

    reference = rows[0]
    memory = "peak CUDA GB / process" if reference["device"] == "cuda" else "peak RSS GB / process"
    table = []
    for row in rows:
        compared = "failed" not in row and "failed" not in reference
        table.append([row["processes"], row["micro_batch"] or "-", row["tracklets"] * 2 // row["processes"],
                      "on" if row["checkpoint"] else "off", row.get("failed", f"{row.get('seconds', 0):.1f}"),
                      f"{row['memory_gb']:.2f}" if "memory_gb" in row else "",
                      f"{row['seconds'] / reference['seconds']:.2f}x" if compared else "",
                      f"{row['memory_gb'] / reference['memory_gb']:.2f}x" if compared else "",
                      f"{row['loss']:.6f}" if "loss" in row else "",
                      f"{abs(row['loss'] / reference['loss'] - 1):.1e}" if compared else ""])
    headers = ["processes", "micro-batch", "tracklets / process", "grad ckpt", "s / step", memory, "time vs row 1",
               "memory vs row 1", "loss", "loss vs row 1"]
    print(tabulate(table, headers=headers, disable_numparse=True))


# ----------------------------------------------------------------------------- the processes of one row


def run_child(spec: dict) -> None:
    import torch.multiprocessing as mp

    if spec["processes"] == 1:
        process_step(0, spec)
    else:
        mp.spawn(process_step, args=(spec,), nprocs=spec["processes"])


def process_step(rank: int, spec: dict) -> None:
    """Two steps of this process's share of the global batch; the second timed; rank{r}.json."""
    import torch
    import torch.distributed as dist
    from step import our_model, peak_memory, random_batch, synchronize
    from torch.nn.parallel import DistributedDataParallel

    from fastreid_vld.distributed import batch_share, broadcast_module
    from fastreid_vld.solver import build_vld_optimizer

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"], rank) if spec["device"] == "cuda" else torch.device("cpu")
    world_size = spec["processes"]
    if world_size > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size,
                                init_method=f"file://{spec['workdir']}/init")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    checkpoint = spec["checkpoint"]
    cfg, model = our_model({**spec, "amp": False}, "MODEL.STP.GRAD_CHECKPOINT", checkpoint,
                           "MODEL.IMLP.GRAD_CHECKPOINT", checkpoint, "SOLVER.MICRO_BATCH_SIZE", spec["micro_batch"])
    model.to(device).train()
    broadcast_module(model)
    optimizer, _ = build_vld_optimizer(cfg, model)
    wrapped = DistributedDataParallel(model) if world_size > 1 else model
    images, targets = random_batch(spec["tracklets"], spec["size"], spec["classes"])  # the global batch
    share = torch.tensor(batch_share(range(len(targets)), rank, world_size))
    inputs = {"images": images[share].to(device), "targets": targets[share].to(device)}
    seconds, losses = [], []
    for _ in range(2):
        synchronize(device)
        start = time.perf_counter()
        loss = sum(wrapped(inputs).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        losses.append(loss.item())
    result = {"seconds": seconds[-1], "memory_gb": peak_memory(device), "loss": losses[0]}
    (Path(spec["workdir"]) / f"rank{rank}.json").write_text(json.dumps(result))
    if world_size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""Soak: a long tiny run with its memory sampled, and a run killed (SIGKILL) at random moments and
resumed each time, which must end with the uninterrupted run's weights and write its metrics.json
(every scalar at every iteration, timings aside) and eval_results.json. Not a CI test.

Both on the tiny random CLIP (configs/VLD/tiny.yml) and a synthetic HITSZ-VCM-layout set,
through tools/train_net.py as a user runs it. Prints two tables.

    .venv/bin/python bench/soak.py [--iterations 2000] [--kills 20]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2000, help="length of the memory soak")
    parser.add_argument("--kills", type=int, default=20, help="kills of the kill/resume run")
    parser.add_argument("--seed", type=int, default=0, help="of the kill moments")
    parser.add_argument("--no-memory", action="store_true", help="the kill/resume part alone")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tabulate import tabulate

    from fastreid_vld.data.synthetic import SyntheticSize, write_vcm

    with tempfile.TemporaryDirectory(prefix="vld-soak-") as scratch:
        root = Path(scratch)
        write_vcm(root / "HITSZ-VCM", SyntheticSize(train_ids=8, test_ids=4, cameras=2, min_frames=6, max_frames=10),
                  progress=False)
        if not args.no_memory:
            samples = memory_soak(root, args.iterations)
            print(f"memory soak, {args.iterations} iterations of configs/VLD/tiny.yml (RSS of the training process):")
            print(tabulate([[iteration, f"{rss / 1e6:.0f}"] for iteration, rss in samples],
                           headers=["iteration", "RSS MB"]))
            print()
        summary = kill_and_resume(root, args.kills, random.Random(args.seed))
        print(tabulate([[key, value] for key, value in summary.items()], headers=["kill/resume", ""]))


def train_net(root: Path, output: Path, *opts: str) -> list[str]:
    return [sys.executable, "tools/train_net.py", "--config-file", "configs/VLD/tiny.yml",
            "DATASETS.NAMES", "('VCM',)", "DATASETS.TESTS", "('VCM',)", "DATASETS.ROOT", str(root),
            "DATASETS.VCM.MIN_FRAMES", "1", "OUTPUT_DIR", str(output), "SEED", "0", *opts]


def memory_soak(root: Path, iterations: int) -> list[tuple[int, int]]:
    """(iteration, RSS bytes) about every 100 iterations, read from /proc and metrics.json."""
    output = root / "soak"
    epochs, per_epoch = iterations // 100, 100
    process = subprocess.Popen(train_net(root, output, "SOLVER.ITERS_PER_EPOCH", str(per_epoch), "SOLVER.MAX_EPOCH",
                                         str(epochs), "TEST.EVAL_PERIOD", str(epochs), "SOLVER.CHECKPOINT_PERIOD",
                                         str(epochs)), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples, next_mark = [], 0
    while process.poll() is None:
        iteration = latest_iteration(output / "metrics.json")
        if iteration is not None and iteration >= next_mark:
            samples.append((iteration, rss(process.pid)))
            next_mark = (iteration // 100 + 1) * 100
        time.sleep(0.2)
    if process.returncode:
        raise SystemExit(f"the soak run failed: {process.stderr.read().decode()[-2000:]}")
    return samples


def latest_iteration(metrics: Path) -> int | None:
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["iteration"])
        except (ValueError, KeyError):
            continue
    return None


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def kill_and_resume(root: Path, kills: int, rng: random.Random) -> dict[str, object]:
    """The same run uninterrupted and killed ``kills`` times (each followed by --resume)."""
    import torch
    opts = ("SOLVER.ITERS_PER_EPOCH", "20", "SOLVER.MAX_EPOCH", "30", "SOLVER.CHECKPOINT_PERIOD", "1",
            "TEST.EVAL_PERIOD", "4")
    start = time.perf_counter()
    subprocess.run(train_net(root, root / "whole", *opts), cwd=REPO, check=True, capture_output=True)
    whole_seconds = time.perf_counter() - start
    done, killed, starts = False, 0, 0
    while not done:
        resume = ["--resume"] if starts else []
        errors = (root / f"stderr_{starts}.txt").open("w")
        process = subprocess.Popen(train_net(root, root / "killed", *opts) + resume, cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=errors)
        starts += 1
        try:
            # kill at a random moment (start-up included) until the kills are spent, then let it finish
            process.wait(timeout=rng.uniform(1.0, whole_seconds / 4) if killed < kills else None)
            done = process.returncode == 0
            if process.returncode:
                raise SystemExit(f"a resumed run failed with exit code {process.returncode}:\n"
                                 + (root / f"stderr_{starts - 1}.txt").read_text()[-3000:])
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            killed += 1
    differences = []
    for name in ("model_final.pth", "model_best.pth"):
        a = torch.load(root / "whole" / name, weights_only=True)["model"]
        b = torch.load(root / "killed" / name, weights_only=True)["model"]
        differences.append(max((a[key].float() - b[key].float()).abs().max().item() for key in a))
    skipped = sum(line.count("Skipping") for line in (root / "killed" / "log.txt").read_text().splitlines())
    whole, killed_run = (written_scalars(root / run / "metrics.json") for run in ("whole", "killed"))
    values = sum(len(points) for points in whole.values())
    differing = sum(point not in killed_run.get(key, ()) for key, points in whole.items() for point in points)
    extra = sum(point not in whole.get(key, ()) for key, points in killed_run.items() for point in points)
    evaluations = [json.loads((root / run / "eval_results.json").read_text())["VCM"]["history"]
                   for run in ("whole", "killed")]
    return {"uninterrupted run, seconds": f"{whole_seconds:.1f}", "kills (SIGKILL)": killed,
            "starts (1 + resumes)": starts, "unreadable checkpoints skipped": skipped,
            "model_final.pth: largest weight difference": differences[0],
            "model_best.pth: largest weight difference": differences[1],
            "metrics.json: (iteration, value) pairs of the uninterrupted run": values,
            "metrics.json: of those missing or different in the killed run": differing,
            "metrics.json: pairs of the killed run not in the uninterrupted one": extra,
            "eval_results.json history: evaluations equal": f"{evaluations[0] == evaluations[1]} "
                                                            f"({len(evaluations[0])} and {len(evaluations[1])})",
            "leftover temporary files": len(list((root / "killed").glob(".*.tmp")))}


#: metrics.json keys that measure time, which differs between any two runs
TIMINGS = ("time", "data_time", "eta_seconds")


def written_scalars(metrics: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.json as a resumed run is read (fastreid_vld.engine.curves.read_metrics: a segment that
    goes back in iterations replaces what it repeats), without the timings."""
    from fastreid_vld.engine.curves import read_metrics

    return {key: points for key, points in read_metrics(metrics).items() if key not in TIMINGS}

if __name__ == "__main__":
    main()

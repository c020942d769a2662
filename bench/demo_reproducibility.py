"""What of the demo repeats: `tools/demo.py` run twice on this machine, and once more with torch's CPU
kernels held to another instruction set (ATEN_CPU_CAPABILITY), one table of the trained and re-ranked
Rank-1 / mAP, the training speed, and whether model_final.pth is byte-identical to the first run's.

    .venv/bin/python bench/demo_reproducibility.py [--capabilities avx2 default] [--output output/demo_repro]

The data set is written once (datasets/demo, tools/make_synthetic.py --reuse) and shared by the runs.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = {"trained": "", "re-ranked": "reranked"}  # stage -> sub-folder of the demo's output


def run_demo(output: Path, capability: str | None) -> float:
    """Seconds tools/demo.py took, into ``output``, with ATEN_CPU_CAPABILITY set where ``capability``."""
    env = {**os.environ, **({"ATEN_CPU_CAPABILITY": capability} if capability else {})}
    start = time.perf_counter()
    subprocess.run([sys.executable, "tools/demo.py", "--output", str(output)], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def scores(output: Path) -> dict[str, str]:
    """'Rank-1 / mAP' per stage and direction, from the demo's eval_results.json files."""
    row = {}
    for stage, folder in STAGES.items():
        directions = json.loads((REPO / output / folder / "eval_results.json").read_text())["VCM"]["directions"]
        for name, result in directions.items():
            row[f"{name} {stage}"] = f"{result['Rank-1']:.1f} / {result['mAP']:.1f}"
    return row


def seconds_per_iteration(output: Path) -> float:
    summary = re.search(r"\(([\d.]+) s / it;", (REPO / output / "log.txt").read_text())
    return float(summary.group(1))


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"^model name\s*: (.+)$", cpuinfo.read_text(), re.M) if cpuinfo.exists() else []
    return names[0] if names else platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capabilities", nargs="*", default=["avx2"],
                        help="ATEN_CPU_CAPABILITY values of the extra runs (default, avx2, avx512, ...)")
    parser.add_argument("--output", type=Path, default=Path("output/demo_repro"))
    args = parser.parse_args()
    runs = [("this machine, run 1", None), ("this machine, run 2", None),
            *((f"ATEN_CPU_CAPABILITY={c}", c) for c in args.capabilities)]
    rows = []
    for index, (label, capability) in enumerate(runs):
        output = args.output / f"run{index}"
        took = run_demo(output, capability)
        same = filecmp.cmp(REPO / output / "model_final.pth", REPO / args.output / "run0" / "model_final.pth",
                           shallow=False)
        rows.append({"run": label, **scores(output), "s / iteration": f"{seconds_per_iteration(output):.3f}",
                     "demo": f"{took / 60:.1f} min", "weights = run 1's": "yes" if same else "no"})
    import torch  # only for the capability the runs without ATEN_CPU_CAPABILITY used

    print(f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"default CPU capability {torch.backends.cpu.get_cpu_capability()}\n")
    headers = list(rows[0])
    print("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(row[h] for h in headers) + " |")


if __name__ == "__main__":
    main()

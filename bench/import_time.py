"""Wall time of `import fastreid_vld` in a fresh interpreter, next to `import torch` alone
(the floor) and a full fast-reid import, measured in one run. Prints one table.

    .venv/bin/python bench/import_time.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from tabulate import tabulate

STATEMENTS = {
    "import torch": "import torch",
    "import fastreid_vld": "import fastreid_vld",
    "import fastreid_vld + fastreid.engine": "import fastreid_vld, fastreid.engine",
}


def wall_time(statement: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for name, statement in STATEMENTS.items():
        times = [wall_time(statement) for _ in range(args.repeats)]
        rows.append([name, f"{statistics.median(times):.2f}", f"{min(times):.2f}", f"{max(times):.2f}"])
    print(tabulate(rows, headers=["statement", "median s", "min s", "max s"], tablefmt="github"))


if __name__ == "__main__":
    main()

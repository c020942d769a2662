#!/usr/bin/env python
"""`make demo`: VLD end to end on CPU, on a synthetic HITSZ-VCM-layout set.

1. writes the synthetic set under datasets/demo (tools/make_synthetic.py), unless it is there;
2. evaluates the untrained model (both directions);
3. trains the full VLD of configs/VLD/demo.yml (tools/train_net.py, fast-reid's trainer);
4. evaluates the final checkpoint again with fast-reid's k-reciprocal re-ranking;
5. draws IR->VIS rank lists (tools/visualize_ranks.py) into output/demo/ranks_IR-VIS.png;
6. prints one table: chance Rank-1, untrained, trained, trained + re-ranking, per direction.

Everything it runs is a command a user can run by hand; each is printed first.
"""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/VLD/demo.yml"
DATA_ROOT, OUT = Path("datasets/demo"), Path("output/demo")
SYNTHETIC = ["--train-ids", "96", "--test-ids", "24", "--cameras", "4", "--tracklets", "2"]
DIRECTIONS = ("IR->VIS", "VIS->IR")


def run(*args: str) -> None:
    command = [sys.executable, *args]
    print("\n$ " + " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=REPO, check=True)


def results(output_dir: Path) -> dict:
    return json.loads((REPO / output_dir / "eval_results.json").read_text())["VCM"]["directions"]


def main() -> None:
    if not (REPO / DATA_ROOT / "HITSZ-VCM" / "info").is_dir():
        run("tools/make_synthetic.py", "--root", str(DATA_ROOT), *SYNTHETIC)
    run("tools/train_net.py", "--config-file", CONFIG, "--eval-only", "MODEL.WEIGHTS", "",
        "OUTPUT_DIR", str(OUT / "untrained"))
    run("tools/train_net.py", "--config-file", CONFIG, "OUTPUT_DIR", str(OUT))
    weights = str(OUT / "model_final.pth")
    run("tools/train_net.py", "--config-file", str(OUT / "config.yaml"), "--eval-only", "MODEL.WEIGHTS", weights,
        "TEST.RERANK.ENABLED", "True", "TEST.RERANK.K1", "10", "TEST.RERANK.K2", "3", "OUTPUT_DIR", str(OUT / "rerank"))
    run("tools/visualize_ranks.py", "--config-file", str(OUT / "config.yaml"), "--out", str(OUT / "ranks_IR-VIS.png"),
        "MODEL.WEIGHTS", weights)

    untrained, trained, reranked = results(OUT / "untrained"), results(OUT), results(OUT / "rerank")
    rows, passed = [], True
    for direction in DIRECTIONS:
        chance = 100 / _query_ids(direction)
        r1_ok = trained[direction]["Rank-1"] >= 5 * chance
        map_ok = trained[direction]["mAP"] >= 2 * untrained[direction]["mAP"]
        passed &= r1_ok and map_ok
        scores = " | ".join(f"{r[direction]['Rank-1']:.1f} / {r[direction]['mAP']:.1f}"
                            for r in (untrained, trained, reranked))
        checks = " | ".join("yes" if ok else "no" for ok in (r1_ok, map_ok))
        rows.append(f"| {direction} | {chance:.1f} | {scores} | {checks} |")
    print("\n| direction | chance Rank-1 | untrained Rank-1 / mAP | trained Rank-1 / mAP | + re-ranking Rank-1 / mAP "
          "| Rank-1 >= 5x chance | mAP >= 2x untrained |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nrank lists: {OUT / 'ranks_IR-VIS.png'}; tensorboard: tensorboard --logdir {OUT}")
    print("demo targets met" if passed else "demo targets NOT met (see the table)")


def _query_ids(direction: str) -> int:
    """Distinct identities among the direction's queries (chance Rank-1 is 1 / that)."""
    result = subprocess.run([sys.executable, "tools/describe_dataset.py", "--dataset", "VCM", "--root", str(DATA_ROOT),
                             "--json"], cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(result.stdout)[direction]["query"]["ids"]


if __name__ == "__main__":
    main()

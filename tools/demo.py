#!/usr/bin/env python
"""`make demo`: VLD end to end on CPU, on a synthetic HITSZ-VCM-layout set.

    python tools/demo.py [--quick] [--data-root datasets/demo] [--output output/demo]
        [--config-file configs/VLD/demo.yml] [--train-ids 96] [--test-ids 24] [--cameras 4] [--tracklets 2]
        [--frames 12 18] [--rank-queries 6] [--rank-top 10] [KEY VALUE ...]

1. writes the synthetic set under DATA_ROOT (tools/make_synthetic.py --reuse: a set written there
   with the same settings is kept);
2. evaluates the untrained model (both directions);
3. trains the config (tools/train_net.py, fast-reid's trainer; tensorboard events in OUTPUT);
4. evaluates the final checkpoint again with fast-reid's k-reciprocal re-ranking;
5. draws IR->VIS rank lists (tools/visualize_ranks.py) into OUTPUT/ranks_IR-VIS.png; the training
   drew its curves into OUTPUT/curves.png (tools/plot_run.py);
6. prints one table (also OUTPUT/demo_results.md, numbers in OUTPUT/demo_results.json): chance
   Rank-1, untrained, trained, trained + re-ranking, per direction, and whether the demo's
   targets hold (trained Rank-1 >= 5x chance, trained mAP >= 2x untrained).

--quick: a one-minute look at the same pipeline: a smaller set (32 training and 12 test identities,
datasets/demo_quick) and 100 iterations (4 epochs of 25) into output/demo_quick; its numbers are
lower and its targets may not hold. KEY VALUE pairs override the config in every step (the
miniature test trains a few iterations). Everything it runs is a command a user can run by hand;
each is printed first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIRECTIONS = ("IR->VIS", "VIS->IR")
STAGES = ("untrained", "trained", "reranked")
TARGETS = ("Rank-1 >= 5x chance", "mAP >= 2x untrained")
HEADER = ("| direction | chance Rank-1 | untrained Rank-1 / mAP | trained Rank-1 / mAP "
          f"| trained + re-ranking Rank-1 / mAP | {' | '.join(TARGETS)} |")


#: --quick: the set's and the output's defaults, and the schedule, for a one-minute look
QUICK = {"data_root": Path("datasets/demo_quick"), "output": Path("output/demo_quick"), "train_ids": 32,
         "test_ids": 12}
QUICK_SCHEDULE = ("SOLVER.MAX_EPOCH", "4", "SOLVER.ITERS_PER_EPOCH", "25", "SOLVER.WARMUP_EPOCHS", "1",
                  "TEST.EVAL_PERIOD", "2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a one-minute look: smaller set, 100 iterations")
    parser.add_argument("--data-root", type=Path, help="DATASETS.ROOT of the set (datasets/demo; --quick: "
                        "datasets/demo_quick)")
    parser.add_argument("--output", type=Path, help="OUTPUT_DIR of the training (output/demo; --quick: "
                        "output/demo_quick)")
    parser.add_argument("--config-file", default="configs/VLD/demo.yml")
    parser.add_argument("--train-ids", type=int, help="training identities (96; --quick: 32)")
    parser.add_argument("--test-ids", type=int, help="test identities (24; --quick: 12)")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--tracklets", type=int, default=2, help="per identity, camera and modality")
    parser.add_argument("--frames", type=int, nargs=2, default=[12, 18], metavar=("MIN", "MAX"))
    parser.add_argument("--rank-queries", type=int, default=6, help="query rows of the rank-list picture")
    parser.add_argument("--rank-top", type=int, default=10, help="gallery tracklets per row of the picture")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {"data_root": Path("datasets/demo"), "output": Path("output/demo"),
                                         "train_ids": 96, "test_ids": 24}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick:
        args.opts = [*QUICK_SCHEDULE, *args.opts]  # the user's pairs come later and win
    return args


def run(*args: str, capture: bool = False) -> str:
    command = [sys.executable, *args]
    if not capture:
        print("\n$ " + " ".join(command[1:]), flush=True)
    result = subprocess.run(command, cwd=REPO, check=True, text=True, capture_output=capture)
    return result.stdout if capture else ""


def ensure_synthetic_set(args: argparse.Namespace) -> None:
    """Writes the set, unless DATA_ROOT holds one written with the same settings."""
    run("tools/make_synthetic.py", "--root", str(args.data_root), "--reuse", "--train-ids", str(args.train_ids),
        "--test-ids", str(args.test_ids), "--cameras", str(args.cameras), "--tracklets", str(args.tracklets),
        "--frames", *map(str, args.frames))


def results(output_dir: Path) -> dict:
    """{direction: {"Rank-1", "mAP", ...}} from a run's eval_results.json."""
    return json.loads((REPO / output_dir / "eval_results.json").read_text())["VCM"]["directions"]


def query_identities(data_root: Path) -> dict[str, int]:
    """Distinct identities among each direction's queries (chance Rank-1 is 1 / that)."""
    described = json.loads(run("tools/describe_dataset.py", "--dataset", "VCM", "--root", str(data_root), "--json",
                               capture=True))
    return {direction: described[direction]["query"]["ids"] for direction in DIRECTIONS}


def summarize(scores: dict[str, dict], query_ids: dict[str, int]) -> dict:
    """The demo's numbers and target checks, per direction."""
    summary = {}
    for direction in DIRECTIONS:
        chance = 100 / query_ids[direction]
        stage = {name: {"Rank-1": scores[name][direction]["Rank-1"], "mAP": scores[name][direction]["mAP"]}
                 for name in STAGES}
        summary[direction] = {
            "chance Rank-1": chance, **stage,
            TARGETS[0]: stage["trained"]["Rank-1"] >= 5 * chance,
            TARGETS[1]: stage["trained"]["mAP"] >= 2 * stage["untrained"]["mAP"],
        }
    return summary


def markdown_table(summary: dict) -> str:
    rows = [HEADER, "|---|---|---|---|---|---|---|"]
    for direction, row in summary.items():
        scores = " | ".join(f"{row[name]['Rank-1']:.1f} / {row[name]['mAP']:.1f}" for name in STAGES)
        checks = " | ".join("yes" if row[key] else "no" for key in TARGETS)
        rows.append(f"| {direction} | {row['chance Rank-1']:.1f} | {scores} | {checks} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out, opts = args.output, list(args.opts)
    data = ["DATASETS.ROOT", str(args.data_root)]
    ensure_synthetic_set(args)
    run("tools/train_net.py", "--config-file", args.config_file, "--eval-only", "--untrained", *data, *opts,
        "OUTPUT_DIR", str(out / "untrained"))
    run("tools/train_net.py", "--config-file", args.config_file, *data, *opts, "OUTPUT_DIR", str(out))
    config, weights = str(out / "config.yaml"), str(out / "model_final.pth")
    run("tools/train_net.py", "--config-file", config, "--eval-only", "MODEL.WEIGHTS", weights, "TEST.RERANK.ENABLED",
        "True", "TEST.RERANK.K1", "10", "TEST.RERANK.K2", "3", "OUTPUT_DIR", str(out / "reranked"))
    run("tools/visualize_ranks.py", "--config-file", config, "--draw", str(out / "ranks_IR-VIS.png"),
        "--draw-queries", str(args.rank_queries), "--topk", str(args.rank_top), "MODEL.WEIGHTS", weights)

    scores = {"untrained": results(out / "untrained"), "trained": results(out), "reranked": results(out / "reranked")}
    summary = summarize(scores, query_identities(args.data_root))
    table = markdown_table(summary)
    (REPO / out / "demo_results.md").write_text(table + "\n")
    (REPO / out / "demo_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    passed = all(row[key] for row in summary.values() for key in TARGETS)
    print(f"\nRank-1 / mAP in % on {args.data_root} (chance Rank-1 = 1 / query identities):\n\n{table}\n")
    print(f"rank lists: {out / 'ranks_IR-VIS.png'}; curves: {out / 'curves.png'}; tensorboard: tensorboard "
          f"--logdir {out}")
    print("demo targets met" if passed else "demo targets NOT met (see the table)")


if __name__ == "__main__":
    main()

"""Ablation of VLD's parts on the demo's synthetic set, all at the demo's budget (configs/VLD/demo.yml):
the full VLD, without STH/STA, without IMLP, the CLIP-CLS baseline (neither), and fast-reid's BoT model on
tracklets (VideoBaseline, a random ResNet-18: configs/VideoBaseline/demo_r18.yml), both directions.
Prints a markdown table with the command of each row and writes it to OUTPUT/ablation.md.

    .venv/bin/python bench/ablation.py [--output output/ablation] [--seed 0]
        [--only full|no-stp|no-imlp|clip-cls|video-baseline] [KEY VALUE ...]

Uses (or writes) the demo's synthetic set, as tools/demo.py does with its default settings. Each
row is one training from scratch (about 5 minutes on 2 CPU cores), seeded as the demo (SEED 0)
unless --seed says otherwise: a run repeats exactly, another seed moves a row by a few points.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from demo import DIRECTIONS, ensure_synthetic_set, parse_args, query_identities, results  # noqa: E402

WITHOUT_STP = ("MODEL.STP.STH_START_LAYER", "-1", "MODEL.STP.STA", "False",
               "MODEL.LOSSES.VLD.STA_CE", "0.", "MODEL.LOSSES.VLD.TRI_STA", "0.")
WITHOUT_IMLP = ("MODEL.LOSSES.VLD.TEXT_CE", "0.")
VARIANTS = {  # key -> (row name, config file (None: the demo's), config overrides)
    "full": ("full VLD", None, ()),
    "no-stp": ("without STH/STA", None, WITHOUT_STP),
    "no-imlp": ("without IMLP", None, WITHOUT_IMLP),
    "clip-cls": ("CLIP-CLS baseline", None, WITHOUT_STP + WITHOUT_IMLP),
    "video-baseline": ("VideoBaseline (BoT, ResNet-18)", "configs/VideoBaseline/demo_r18.yml", ()),
}


def train_and_evaluate(key: str, config: str | None, overrides: tuple[str, ...], output: Path,
                       demo: argparse.Namespace, opts: list[str]) -> tuple[list[str], dict, float]:
    """Trains one variant; returns its command, its final {direction: scores} and the seconds it took."""
    folder = output / key
    command = ["tools/train_net.py", "--config-file", config or demo.config_file, "DATASETS.ROOT", str(demo.data_root),
               *overrides, *opts, "OUTPUT_DIR", str(folder)]
    print("\n$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, *command], cwd=REPO, check=True)
    seconds = time.perf_counter() - start
    return command, results(folder), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("output/ablation"))
    parser.add_argument("--seed", type=int, help="SEED of every row (default: the config's)")
    parser.add_argument("--only", action="append", choices=list(VARIANTS), help="run only this row (repeatable)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for every row, KEY VALUE pairs")
    args = parser.parse_args()
    demo = parse_args([])
    ensure_synthetic_set(demo)
    chance = {direction: 100 / ids for direction, ids in query_identities(demo.data_root).items()}
    rows = ["| variant | " + " | ".join(f"{d} Rank-1 / mAP" for d in DIRECTIONS) + " | train + eval | command |",
            "|---|---|---|---|---|",
            "| chance | " + " | ".join(f"{chance[d]:.1f} / -" for d in DIRECTIONS) + " | | |"]
    opts = list(args.opts) + (["SEED", str(args.seed)] if args.seed is not None else [])
    for key in args.only or VARIANTS:
        name, config, overrides = VARIANTS[key]
        command, scores, seconds = train_and_evaluate(key, config, overrides, args.output, demo, opts)
        cells = " | ".join(f"{scores[d]['Rank-1']:.1f} / {scores[d]['mAP']:.1f}" for d in DIRECTIONS)
        rows.append(f"| {name} | {cells} | {seconds / 60:.1f} min | `python {' '.join(command)}` |")
    table = "\n".join(rows)
    (REPO / args.output).mkdir(parents=True, exist_ok=True)
    (REPO / args.output / "ablation.md").write_text(table + "\n")
    print(f"\nRank-1 / mAP in % on {demo.data_root}, trained as {demo.config_file}:\n\n{table}")


if __name__ == "__main__":
    main()

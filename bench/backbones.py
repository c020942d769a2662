"""VLD's IMLP head on each backbone: configs/VLD/tiny.yml with only MODEL.BACKBONE.* changed, trained
through tools/train_net.py on a synthetic HITSZ-VCM-layout set (random init, CPU), one row per
backbone. Shows which backbones train under the head here and what one step costs. Not a CI test.

    .venv/bin/python bench/backbones.py [--epochs 4] [--iters 10]

Writes the table as markdown (README "Backbones").
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastreid_vld.checkpoint import read_checkpoint  # noqa: E402
from fastreid_vld.data.synthetic import SyntheticSize, write_vcm  # noqa: E402

#: row name -> MODEL.BACKBONE.* overrides of configs/VLD/tiny.yml
BACKBONES = {
    "tiny CLIP ViT + STP (tiny.yml as is)": [],
    "ResNet-18": ["MODEL.BACKBONE.NAME", "build_resnet_backbone", "MODEL.BACKBONE.DEPTH", "18x"],
    "ResNet-50-IBN-a": ["MODEL.BACKBONE.NAME", "build_resnet_backbone", "MODEL.BACKBONE.DEPTH", "50x",
                        "MODEL.BACKBONE.WITH_IBN", "True"],
    "OSNet x0_25": ["MODEL.BACKBONE.NAME", "build_osnet_backbone", "MODEL.BACKBONE.DEPTH", "x0_25"],
    "OSNet x1_0": ["MODEL.BACKBONE.NAME", "build_osnet_backbone", "MODEL.BACKBONE.DEPTH", "x1_0"],
    "ResNeSt-50": ["MODEL.BACKBONE.NAME", "build_resnest_backbone", "MODEL.BACKBONE.DEPTH", "50x"],
    "ViT small (fast-reid)": ["MODEL.BACKBONE.NAME", "build_vit_backbone", "MODEL.BACKBONE.DEPTH", "small"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iters", type=int, default=10, help="iterations per epoch")
    args = parser.parse_args()
    rows = ["| backbone (MODEL.BACKBONE.*) | width (measured) | loss terms | total loss, first -> last | "
            "s / iteration | IR->VIS Rank-1 / mAP |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="vld-backbones-") as scratch:
        root = Path(scratch)
        write_vcm(root / "HITSZ-VCM", SyntheticSize(train_ids=8, test_ids=8, cameras=2, min_frames=6, max_frames=10),
                  progress=False)
        for name, overrides in BACKBONES.items():
            rows.append(run(name, overrides, root, args.epochs, args.iters))
            print(rows[-1], flush=True)
    print("\n".join(rows))


def run(name: str, overrides: list[str], root: Path, epochs: int, iters: int) -> str:
    output = root / re.sub(r"\W+", "_", name)
    command = [sys.executable, "tools/train_net.py", "--config-file", "configs/VLD/tiny.yml",
               "DATASETS.NAMES", "('VCM',)", "DATASETS.TESTS", "('VCM',)", "DATASETS.ROOT", str(root),
               "DATASETS.VCM.MIN_FRAMES", "1", "OUTPUT_DIR", str(output), "SEED", "0",
               "SOLVER.MAX_EPOCH", str(epochs), "SOLVER.ITERS_PER_EPOCH", str(iters), "SOLVER.LOG_PERIOD", "1",
               "TEST.EVAL_PERIOD", str(epochs), *overrides]
    process = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if process.returncode != 0:
        return f"| {name} | | | failed: {process.stderr.strip().splitlines()[-1]} | | |"
    width = read_checkpoint(output / "model_final.pth")["model"]["heads.classifier.bn.weight"].numel()
    metrics = [json.loads(line) for line in (output / "metrics.json").read_text().splitlines()]
    steps = [line for line in metrics if "total_loss" in line]
    terms = sorted(key.removeprefix("loss_") for key in steps[-1] if key.startswith("loss_"))
    seconds = [line["time"] for line in steps if "time" in line]
    scores = json.loads((output / "eval_results.json").read_text())["VCM"]["directions"]["IR->VIS"]
    rank1, mean_ap = scores["Rank-1"], scores["mAP"]
    return (f"| {name} | {width} | {', '.join(terms)} | "
            f"{steps[0]['total_loss']:.2f} -> {steps[-1]['total_loss']:.2f} | "
            f"{sum(seconds) / len(seconds):.2f} | {rank1:.1f} / {mean_ap:.1f} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Draw the curves of training runs from their OUTPUT_DIR/metrics.json into one PNG.

    python tools/plot_run.py OUTPUT_DIR                                  # -> OUTPUT_DIR/curves.png
    python tools/plot_run.py A B C --labels baseline +STH +STA            # -> A/curves_compare.png
    python tools/plot_run.py A B --labels r50 vit --output ablation.png

Panels: every loss term (log scale when positive; one panel a run when there are several), the
learning rate, accuracies, seconds per iteration, and each evaluation measure at every evaluation
with a line per direction / test set: Rank-1, mAP, mINP, Rank-5/10/20, the model-selection metric
(unless it copies one of them), and any other measure the run wrote. Several runs share the panels,
one colour a run (named by --labels, default the folder names), one line style a direction.
A RUN may also be a metrics.json file. Training draws OUTPUT_DIR/curves.png itself at its end.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastreid_vld.engine.curves import (  # noqa: E402
    COMPARE_FILE,
    CURVES_FILE,
    MetricsFileError,
    draw_runs,
    metrics_file,
)


def argument_parser() -> argparse.ArgumentParser:
    """RUN [RUN ...] [--labels LABEL ...] [--output PNG]."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="a run's OUTPUT_DIR (or its metrics.json)")
    parser.add_argument("--labels", nargs="+", metavar="LABEL",
                        help="the runs' legend names, one per RUN (default: folder names)")
    parser.add_argument("--output", type=Path, metavar="PNG",
                        help=f"default: RUN/{CURVES_FILE} for one run, first RUN/{COMPARE_FILE} for several")
    return parser


def default_output(runs: list[Path]) -> Path:
    """RUN/curves.png for one run; the first run's folder/curves_compare.png for several."""
    folder = metrics_file(runs[0]).parent
    return folder / (CURVES_FILE if len(runs) == 1 else COMPARE_FILE)


def main(argv: list[str] | None = None) -> Path:
    """Draw the runs; the PNG's path. A bad run or label list ends in one ``error:`` line (exit status 1)."""
    args = argument_parser().parse_args(argv)
    try:
        drawing = draw_runs(args.runs, args.output or default_output(args.runs), args.labels)
    except MetricsFileError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"{drawing.output}: {', '.join(drawing.panels)}")
    return drawing.output


if __name__ == "__main__":
    main()

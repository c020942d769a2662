#!/usr/bin/env python
"""Validate a data-set root exactly as training does and print its summary tables.

    python tools/describe_dataset.py --dataset VCM|BUPTCampus --root ROOT [--json] [KEY VALUE ...]

ROOT is what DATASETS.ROOT would be: the folder holding HITSZ-VCM/ or BUPTCampus/, or the
data-set folder itself. Trailing KEY VALUE pairs set config keys such as
DATASETS.VCM.MIN_FRAMES or DATASETS.BUPT.AUXILIARY (a warning names the others: they change
nothing here). Exits non-zero, naming the file and line, on bad input.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastreid_vld  # noqa: E402,F401  (first: adapts fast-reid, registers the data sets)

# isort: split
from fastreid.config import get_cfg  # noqa: E402

from fastreid_vld import add_vld_config  # noqa: E402
from fastreid_vld.data import load_vvi_dataset  # noqa: E402
from fastreid_vld.data.build import FrameReadError  # noqa: E402
from fastreid_vld.data.datasets import DatasetFormatError  # noqa: E402
from fastreid_vld.engine.defaults import warn_ignored_overrides  # noqa: E402
from fastreid_vld.engine.extraction import video_dataset_names  # noqa: E402

#: the data-set keys --dataset and --root leave to the overrides
READ = ("DATASETS.ROOT", "DATASETS.VCM", "DATASETS.BUPT")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=video_dataset_names())
    parser.add_argument("--root", required=True)
    parser.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_list(["DATASETS.ROOT", args.root, *args.opts])
    warn_ignored_overrides("describe_dataset", args.opts, list(cfg), "the data-set keys (DATASETS.ROOT, "
                           "DATASETS.VCM.*, DATASETS.BUPT.*)", read=READ)
    try:
        dataset = load_vvi_dataset(cfg, args.dataset)
    except (DatasetFormatError, FrameReadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(dataset.describe()) if args.json else dataset.summary_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Write a synthetic data set of rendered persons in the exact HITSZ-VCM (default) or
BUPTCampus layout, read back by the same data-set classes as the real data.

    python tools/make_synthetic.py --root datasets [--layout vcm|bupt] [--train-ids 24]
        [--test-ids 24] [--cameras 4] [--tracklets 2] [--frames 12 18] [--size 64 32] [--seed 0] [--reuse]

Writes ROOT/HITSZ-VCM (vcm) or ROOT/BUPTCampus (bupt), so ROOT is what DATASETS.ROOT names, and
records the settings in its synthetic.json. An existing folder is an error, unless --reuse: then
a set written with the same settings (and renderer version) is kept and any other replaced.
Visible frames show clothing colours; infrared frames are single-channel renderings of each
person's thermal signature and shape (fastreid_vld/data/synthetic_persons.py).
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastreid_vld.data.synthetic import SyntheticSize, write_bupt, write_vcm  # noqa: E402
from fastreid_vld.data.synthetic_persons import RENDERER_VERSION, SyntheticPersonRenderer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, type=Path, help="DATASETS.ROOT to write under")
    parser.add_argument("--layout", choices=["vcm", "bupt"], default="vcm")
    parser.add_argument("--train-ids", type=int, default=24)
    parser.add_argument("--test-ids", type=int, default=24)
    parser.add_argument("--cameras", type=int, default=4, help="cameras, each filming both modalities")
    parser.add_argument("--tracklets", type=int, default=2, help="per identity, camera and modality")
    parser.add_argument("--frames", type=int, nargs=2, default=[12, 18], metavar=("MIN", "MAX"))
    parser.add_argument("--size", type=int, nargs=2, default=[64, 32], metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true",
                        help="keep a set written with the same settings, replace any other")
    args = parser.parse_args()
    folder = args.root / ("HITSZ-VCM" if args.layout == "vcm" else "BUPTCampus")
    settings = {key: value for key, value in vars(args).items() if key not in ("root", "reuse")}
    settings["renderer"] = RENDERER_VERSION
    stamp = folder / "synthetic.json"
    if folder.exists():
        if not args.reuse:
            sys.exit(f"error: {folder} exists; remove it, or pass --reuse to keep it when it was written with "
                     "the same settings and replace it otherwise")
        if stamp.is_file() and json.loads(stamp.read_text()) == settings:
            print(f"{folder} was written with these settings: kept")
            return
        print(f"{folder} was written with other settings: replacing it")
        shutil.rmtree(folder)
    size = SyntheticSize(args.train_ids, args.test_ids, args.cameras, args.tracklets, args.frames[0],
                         args.frames[1], args.seed)
    renderer = SyntheticPersonRenderer(args.train_ids + args.test_ids, args.cameras, tuple(args.size), args.seed)
    start = time.perf_counter()
    if args.layout == "vcm":
        written = write_vcm(folder, size, renderer, progress=True)
    else:
        written = write_bupt(args.root, size, renderer, progress=True)
    stamp.write_text(json.dumps(settings, indent=2) + "\n")
    print(f"wrote {written} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

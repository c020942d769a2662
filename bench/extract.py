"""Test-feature extraction at the paper's geometry: this project's eval path against the official
test path (``Model.forward(x1=...)`` in eval under no_grad, as its core/test.py calls it), with the
same weights and the same tracklets, in one run.

CLIP ViT-B/16 (random weights) at 288x144, T=6, STH from block 9, STA; 1536-d features. For each
batch size (tracklets per forward): tracklets/s over the timed batches (after one warm-up batch)
and the process's peak RSS (peak CUDA memory on a GPU), each code in its own process; then the
largest feature difference on the same tracklets (subnormals flushed). Every measurement runs with
subnormal floats kept (IEEE) and flushed to zero (FLUSH_DENORMAL, both codes' processes alike).

    git clone https://github.com/Visuang/VLD /tmp/VLD          # outside this repository
    .venv/bin/python bench/extract.py --official /tmp/VLD
"""

from __future__ import annotations

import fastreid_vld  # noqa: F401  (first: adapts fast-reid and torchvision before they are imported)

# isort: split
import argparse
import json
import tempfile
import time
from pathlib import Path

from step import (  # bench/step.py puts bench/ on sys.path for the helpers
    FLUSH_SETTINGS,
    child,
    child_spec,
    peak_memory,
    synchronize,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path, help="a checkout of github.com/Visuang/VLD (none: this project only)")
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16], help="tracklets per forward")
    parser.add_argument("--repeats", type=int, default=2, help="timed batches per measurement")
    parser.add_argument("--classes", type=int, default=500, help="identities of the model's classifiers")
    parser.add_argument("--size", type=int, nargs=2, default=[288, 144], help="frame height and width")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--amp", action="store_true", help="fp16 autocast (CUDA)")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run_child(child_spec(args.child))), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="vld-extract-") as scratch:
        compare(args, Path(args.workdir or scratch))


def compare(args: argparse.Namespace, workdir: Path) -> None:
    import torch
    from tabulate import tabulate

    workdir.mkdir(parents=True, exist_ok=True)
    common = {"classes": args.classes, "size": args.size, "device": args.device, "amp": args.amp,
              "repeats": args.repeats, "workdir": str(workdir), "from_official": bool(args.official)}
    codes = ["official", "ours"] if args.official else ["ours"]
    if args.official:
        from official_vld import random_clip_state_dict, scratch_copy
        common["official_src"] = str(scratch_copy(args.official, workdir, args.device))
        torch.save(random_clip_state_dict(seed=0), workdir / "clip.pt")
    results = {(code, batch, flush): child(__file__, {**common, "code": code, "batch": batch, "flush": flush,
                                                      "save": batch == args.batches[0] and flush})
               for batch in args.batches for flush in FLUSH_SETTINGS for code in codes}
    memory = "peak CUDA GB" if args.device == "cuda" else "peak RSS GB"
    rows = []
    for batch in args.batches:
        for flush, subnormals in FLUSH_SETTINGS.items():
            official = results.get(("official", batch, flush), {})
            for code in codes:
                row = results[(code, batch, flush)]
                speed = (f"{row['tracklets_per_s'] / official['tracklets_per_s']:.2f}x"
                         if code == "ours" and "tracklets_per_s" in official and "tracklets_per_s" in row else "")
                rows.append([code, batch, subnormals, row.get("failed") or f"{row['tracklets_per_s']:.2f}",
                             f"{row['memory_gb']:.2f}" if "memory_gb" in row else "", speed])
    print(tabulate(rows, headers=["code", "tracklets/batch", "subnormals", "tracklets/s", memory, "speed vs official"]))
    if args.official and all("tracklets_per_s" in results[(code, args.batches[0], True)] for code in codes):
        official = torch.load(workdir / "official_features.pt", weights_only=True)
        ours = torch.load(workdir / "ours_features.pt", weights_only=True)
        print(f"features [{ours.shape[0]}, {ours.shape[1]}]: largest absolute difference "
              f"{(ours - official).abs().max().item():.1e} (largest entry {official.abs().max().item():.1f})")


def run_child(spec: dict) -> dict:
    import torch
    from step import random_batch

    device = torch.device(spec["device"])
    extract = official_extractor(spec) if spec["code"] == "official" else our_extractor(spec)
    images, _ = random_batch(spec["batch"], spec["size"], spec["classes"])  # [2 x batch] tracklets
    images = images[:spec["batch"]]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for index in range(1 + spec["repeats"]):
        synchronize(device)
        start = time.perf_counter()
        with torch.no_grad(), torch.autocast(spec["device"], dtype=torch.float16, enabled=spec["amp"]):
            features = extract(images)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        if index == 0 and spec.get("save"):
            torch.save(features.float().cpu(), Path(spec["workdir"]) / f"{spec['code']}_features.pt")
    return {"tracklets_per_s": spec["batch"] * spec["repeats"] / sum(seconds[1:]), "memory_gb": peak_memory(device)}


def official_extractor(spec: dict):
    import torch
    from official_vld import official_base

    clip = torch.load(Path(spec["workdir"]) / "clip.pt", weights_only=True)
    model = official_base(Path(spec["official_src"]), clip, spec["classes"], seed=1, size=spec["size"]).model
    if not (Path(spec["workdir"]) / "official_init.pt").is_file():
        torch.save(model.state_dict(), Path(spec["workdir"]) / "official_init.pt")
    model.eval()
    return lambda images: model(x1=images.flatten(0, 1).to(spec["device"]))  # [B*T, 3, H, W] -> [B, 1536]


def our_extractor(spec: dict):
    from step import our_model

    _, model = our_model(spec)
    model.eval()
    return lambda images: model({"images": images})  # [B, T, 3, H, W] -> [B, 1536]


if __name__ == "__main__":
    main()

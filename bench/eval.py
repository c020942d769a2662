"""Video cross-modal evaluation at full HITSZ-VCM test scale: distances, metrics and re-ranking,
next to a vectorised per-query numpy loop and fast-reid's Cython metrics and k-reciprocal re-ranking,
and AuxNet's temporal re-ranking, in one run; then re-ranking at 1x, 3x and 10x that scale. Prints two tables.

4,584 infrared queries x 5,099 visible gallery (IR->VIS) and the reverse, 1536-d random tracklet
features (an identity centre, a modality offset and noise; 427 test identities, 6 cameras shared
by both modalities), HITSZ-VCM protocol. Times: best of ``--repeats`` (one run for re-ranking);
memory: peak resident memory above the stage's start (Linux VmHWM, reset before each stage).

The scale sweep (``--scales``, ``--fastreid-scales``; ``--scales`` with no value skips it): the
top 100 of each infrared query among the visible gallery by re-ranked distance (k1 20, k2 6, lambda
0.3; ``tools/search.py``'s path, a block of queries at a time) of ``scale`` x as many tracklets and
identities, each implementation and scale in a fresh process, one after the other: seconds, the
process's peak resident memory (ru_maxrss) and its peak above the start once the features are in
memory; where both implementations ran, the largest difference of their top-100 distances and the
share of equal top-100 lists.

    .venv/bin/python bench/eval.py [--repeats 3] [--no-rerank] [--aqe] [--no-temporal] [--scales 1 3 10]
        [--fastreid-scales 1 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import fastreid_vld  # noqa: F401  (first: adapts fast-reid before it is imported)

# isort: split
import numpy as np
import torch
from fastreid.evaluation.rank import evaluate_rank
from tabulate import tabulate

from fastreid_vld.evaluation.distances import DistanceSettings, direction_distances
from fastreid_vld.evaluation.metrics import evaluate_vvi
from fastreid_vld.evaluation.search import top_k
from fastreid_vld.evaluation.temporal_rerank import temporal_rerank_distances
from fastreid_vld.evaluation.vvi_evaluator import evaluate_directions

IMPLS = {"torch": "ours (torch)", "fastreid": "fast-reid build_dist"}


def per_query_loop(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """The same protocol, one query at a time: argsort the row, mask, cumsum."""
    cmc_hits, average_precisions, inverse_penalties = np.zeros(max_rank), [], []
    for q in range(len(distmat)):
        order = np.argsort(distmat[q])
        matches = g_pids[order] == q_pids[q]
        kept = matches[~(matches & (g_camids[order] == q_camids[q]))]
        if not kept.any():
            continue
        ranks = np.flatnonzero(kept)                                   # 0-based ranks of the matches
        cmc_hits[min(ranks[0], max_rank):] += 1
        average_precisions.append(np.mean(np.cumsum(kept)[ranks] / (ranks + 1)))
        inverse_penalties.append(len(ranks) / (ranks[-1] + 1))
    return {"cmc": cmc_hits / len(average_precisions), "mAP": float(np.mean(average_precisions)),
            "mINP": float(np.mean(inverse_penalties))}


def fast_reid_cython(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    cmc, all_ap, all_inp = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    return {"cmc": cmc, "mAP": float(np.mean(all_ap)), "mINP": float(np.mean(all_inp))}


def memory_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(stage: Callable[[], object], repeats: int) -> tuple[object, float, float]:
    """(result, best seconds, peak MiB above the start)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current resident size
    start_kib, best = memory_kib("VmRSS"), float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = stage()
        best = min(best, time.perf_counter() - start)
    return result, best, (memory_kib("VmHWM") - start_kib) / 1024


def vcm_like_features(args: argparse.Namespace, scale: int = 1) -> dict:
    """``scale`` x HITSZ-VCM's test tracklets and identities: features, identities and cameras by modality."""
    rng = np.random.default_rng(args.seed)
    ids = args.ids * scale
    centres = rng.standard_normal((ids, args.dim), dtype=np.float32)
    offsets = rng.standard_normal((2, args.dim), dtype=np.float32)  # visible, infrared
    sizes = {"ir": args.queries * scale, "vis": args.gallery * scale}
    pids = {m: rng.integers(0, ids, n) for m, n in sizes.items()}
    camids = {m: rng.integers(1, 7, n) for m, n in sizes.items()}
    features = {}
    for m, n in sizes.items():
        side = centres[pids[m]]
        side += offsets[int(m == "ir")]
        side += args.noise * rng.standard_normal((n, args.dim), dtype=np.float32)
        features[m] = torch.from_numpy(side)
    return {"features": features, "pids": pids, "camids": camids}


def reranked(impl: str) -> DistanceSettings:
    return DistanceSettings(metric="cosine", rerank=True, impl=impl)


def sweep_worker(args: argparse.Namespace) -> None:
    """One implementation at one scale: the re-ranked IR->VIS top 100; one JSON line (and ``--save``)."""
    data = vcm_like_features(args, args.scale)
    ir, vis = data["features"]["ir"].numpy(), data["features"]["vis"].numpy()
    ranks, seconds, above_start = measure(lambda: top_k(ir, vis, reranked(args.worker), 100, "brute"), 1)
    if args.save:
        np.savez(args.save, indices=ranks.indices, distances=ranks.distances)
    print(json.dumps({"pairs": f"{len(ir)} x {len(vis)}", "seconds": seconds, "above_start_mib": above_start,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_sweep_worker(args: argparse.Namespace, impl: str, scale: int, save: str | None) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", impl, "--scale", str(scale),
               "--queries", str(args.queries), "--gallery", str(args.gallery), "--dim", str(args.dim),
               "--ids", str(args.ids), "--noise", str(args.noise), "--seed", str(args.seed)]
    done = subprocess.run(command + (["--save", save] if save else []), capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{impl} at scale {scale} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sweep(args: argparse.Namespace) -> list[list]:
    """Rows of the scale sweep: each implementation at each of its scales, fast-reid's first."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for scale in sorted(set(args.scales) | set(args.fastreid_scales)):
            impls = [impl for impl, scales in (("fastreid", args.fastreid_scales), ("torch", args.scales))
                     if scale in scales]
            saved = {impl: os.path.join(folder, f"{impl}.npz") if len(impls) == 2 else None for impl in impls}
            results = {impl: run_sweep_worker(args, impl, scale, saved[impl]) for impl in impls}
            difference = ""
            if len(impls) == 2:
                ours, theirs = np.load(saved["torch"]), np.load(saved["fastreid"])
                same = (ours["indices"] == theirs["indices"]).all(1).mean()
                difference = (f"{np.abs(ours['distances'] - theirs['distances']).max():.1e}, "
                              f"{100 * same:.2f}% lists equal")
            theirs = results.get("fastreid")
            for impl, result in results.items():
                faster = theirs["seconds"] / result["seconds"] if theirs and impl == "torch" else ""
                smaller = result["above_start_mib"] / theirs["above_start_mib"] if theirs and impl == "torch" else ""
                rows.append([IMPLS[impl], scale, result["pairs"], result["seconds"], faster, result["peak_mib"],
                             result["above_start_mib"], smaller, difference if impl == "torch" else ""])
    return rows


def full_scale(args: argparse.Namespace) -> list[list]:
    """Rows of the full-scale table: distances, metrics, end to end plain, with AQE and re-ranked."""
    data = vcm_like_features(args)
    ir, vis = data["features"]["ir"], data["features"]["vis"]
    labels = {"IR->VIS": (data["pids"]["ir"], data["pids"]["vis"], data["camids"]["ir"], data["camids"]["vis"]),
              "VIS->IR": (data["pids"]["vis"], data["pids"]["ir"], data["camids"]["vis"], data["camids"]["ir"])}
    features = torch.cat([ir, vis])                                     # [N, D], infrared first
    pids, camids = np.concatenate(labels["IR->VIS"][:2]), np.concatenate(labels["IR->VIS"][2:])
    ir_idx, vis_idx = np.arange(len(ir)), len(ir) + np.arange(len(vis))
    directions = {"IR->VIS": (ir_idx, vis_idx), "VIS->IR": (vis_idx, ir_idx)}
    plain = DistanceSettings(metric="inner_product")

    rows = []
    distances, seconds, peak = measure(lambda: direction_distances(ir, vis, plain), args.repeats)
    rows.append(["distances -q.g (one matrix, both directions)", seconds, peak, "", ""])
    both = {"IR->VIS": distances, "VIS->IR": distances.T}

    def metrics_of(evaluate: Callable) -> Callable[[], dict]:
        return lambda: {name: evaluate(d, *labels[name]) for name, d in both.items()}

    ours, ours_seconds, peak = measure(metrics_of(evaluate_vvi), args.repeats)
    rows.append(["metrics: evaluate_vvi (ours)", ours_seconds, peak, 1.0, ""])
    for name, evaluate in [("metrics: per-query numpy loop", per_query_loop),
                           ("metrics: fast-reid evaluate_rank (Cython)", fast_reid_cython)]:
        other, seconds, peak = measure(metrics_of(evaluate), args.repeats)
        difference = max(max(np.abs(ours[d]["cmc"] - other[d]["cmc"]).max(), abs(ours[d]["mAP"] - other[d]["mAP"]),
                             abs(ours[d]["mINP"] - other[d]["mINP"])) for d in both)
        rows.append([name, seconds, peak, seconds / ours_seconds, f"max |diff| vs ours {difference:.1e}"])

    settings = {"end to end (distances + metrics)": plain}
    if args.aqe:
        settings["end to end with fast-reid AQE"] = DistanceSettings(metric="inner_product", aqe=True)
    if args.rerank:
        settings.update({f"end to end, re-ranked by {IMPLS[impl]}": reranked(impl) for impl in ("fastreid", "torch")})
    timed = {}
    for name, setting in settings.items():
        repeats = args.repeats if setting == plain else 1
        scores, seconds, peak = measure(
            lambda s=setting: evaluate_directions(features, pids, camids, directions, "vcm", s), repeats)
        summary = ", ".join(f"{d} R1 {100 * r.rank(1):.2f} mAP {100 * r.mAP:.2f} mINP {100 * r.mINP:.2f}"
                            for d, r in scores.items())
        timed[setting] = seconds, peak
        ratio = ""
        if setting.rerank and setting.impl == "torch" and reranked("fastreid") in timed:
            theirs = timed[reranked("fastreid")]
            ratio = f"{theirs[0] / seconds:.1f}x faster, {peak / theirs[1]:.2f}x the peak of fast-reid's; "
        rows.append([f"{name}: {setting.describe()}", seconds, peak, "", ratio + summary])
    if args.temporal:
        rows.append(temporal_row(args, data, labels))
    print(f"HITSZ-VCM scale: {len(ir)} infrared x {len(vis)} visible tracklets, {args.dim}-d, "
          f"both directions, torch threads {torch.get_num_threads()}")
    return rows


def temporal_row(args: argparse.Namespace, data: dict, labels: dict) -> list:
    """AuxNet's temporal re-ranking end to end, both directions: half-tracklet features are the whole
    ones plus noise of std ``--half-noise``."""
    rng = np.random.default_rng(args.seed + 1)
    whole = data["features"]
    halves = [{m: x + args.half_noise * torch.from_numpy(rng.standard_normal(x.shape, dtype=np.float32))
               for m, x in whole.items()} for _ in range(2)]
    pairs = {"IR->VIS": ("ir", "vis"), "VIS->IR": ("vis", "ir")}

    def run() -> dict:
        return {name: evaluate_vvi(temporal_rerank_distances(*((f[q], f[g]) for f in (whole, *halves))).numpy(),
                                   *labels[name]) for name, (q, g) in pairs.items()}

    scores, seconds, peak = measure(run, 1)
    summary = ", ".join(f"{d} R1 {100 * r['cmc'][0]:.2f} mAP {100 * r['mAP']:.2f} mINP {100 * r['mINP']:.2f}"
                        for d, r in scores.items())
    return ["end to end, AuxNet temporal re-ranking (k1 5, k2 3; euclidean 0.8, whole 0.2, halves 0.1 each)",
            seconds, peak, "", summary]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=4584, help="infrared tracklets")
    parser.add_argument("--gallery", type=int, default=5099, help="visible tracklets")
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--ids", type=int, default=427)
    parser.add_argument("--noise", type=float, default=3.5, help="noise std (identity centres have std 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-rerank", dest="rerank", action="store_false")
    parser.add_argument("--aqe", action="store_true", help="also time fast-reid's AQE end to end")
    parser.add_argument("--no-temporal", dest="temporal", action="store_false", help="skip AuxNet's re-ranking")
    parser.add_argument("--half-noise", type=float, default=1.0, help="half-tracklet features: whole + this noise")
    parser.add_argument("--scales", type=int, nargs="*", default=[1, 3, 10], help="re-ranking sweep: ours at these")
    parser.add_argument("--fastreid-scales", type=int, nargs="*", default=[1, 3], help="... fast-reid's at these")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sweep_worker(args)
        return

    print(tabulate(full_scale(args), headers=["stage (both directions)", "seconds", "peak MiB", "x ours", "note"],
                   tablefmt="github", floatfmt=".2f"))
    if args.scales or args.fastreid_scales:
        print(f"\nRe-ranked IR->VIS top 100 (k1 20, k2 6, lambda 0.3) at scale x HITSZ-VCM's test set, "
              f"{os.cpu_count()} CPUs")
        print(tabulate(sweep(args), headers=["re-ranking", "scale", "query x gallery", "seconds", "x faster",
                                             "peak MiB", "MiB above start", "x above start", "max |diff|, top 100"],
                       tablefmt="github", floatfmt=".2f"))


if __name__ == "__main__":
    main()

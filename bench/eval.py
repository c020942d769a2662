"""Video cross-modal evaluation at full HITSZ-VCM test scale: distances, metrics and re-ranking,
next to a vectorised per-query numpy loop and fast-reid's Cython metrics, in one run. Prints one table.

4,584 infrared queries x 5,099 visible gallery (IR->VIS) and the reverse, 1536-d random tracklet
features (an identity centre, a modality offset and noise; 427 test identities, 6 cameras shared
by both modalities), HITSZ-VCM protocol. Times: best of ``--repeats`` (one run for re-ranking);
memory: peak resident memory above the stage's start (Linux VmHWM, reset before each stage).

    .venv/bin/python bench/eval.py [--repeats 3] [--no-rerank] [--aqe]
"""

from __future__ import annotations

import argparse
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
from fastreid_vld.evaluation.vvi_evaluator import evaluate_directions


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


def vcm_like_features(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.ids, args.dim)).astype(np.float32)
    offsets = rng.standard_normal((2, args.dim)).astype(np.float32)  # visible, infrared
    sizes = {"ir": args.queries, "vis": args.gallery}
    pids = {m: rng.integers(0, args.ids, n) for m, n in sizes.items()}
    camids = {m: rng.integers(1, 7, n) for m, n in sizes.items()}
    features = {m: torch.from_numpy(centres[pids[m]] + offsets[int(m == "ir")]
                                    + args.noise * rng.standard_normal((n, args.dim)).astype(np.float32))
                for m, n in sizes.items()}
    return {"features": features, "pids": pids, "camids": camids}


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
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

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
        settings["end to end with k-reciprocal re-ranking"] = DistanceSettings(metric="cosine", rerank=True)
    for name, setting in settings.items():
        repeats = args.repeats if setting == plain else 1
        scores, seconds, peak = measure(
            lambda s=setting: evaluate_directions(features, pids, camids, directions, "vcm", s), repeats)
        summary = ", ".join(f"{d} R1 {100 * r.rank(1):.1f} mAP {100 * r.mAP:.1f}" for d, r in scores.items())
        rows.append([f"{name}: {setting.describe()}", seconds, peak, "", summary])

    print(f"HITSZ-VCM scale: {len(ir)} infrared x {len(vis)} visible tracklets, {args.dim}-d, "
          f"both directions, torch threads {torch.get_num_threads()}")
    print(tabulate(rows, headers=["stage (both directions)", "seconds", "peak MiB", "x ours", "note"],
                   tablefmt="github", floatfmt=".2f"))


if __name__ == "__main__":
    main()

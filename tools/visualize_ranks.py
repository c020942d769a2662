#!/usr/bin/env python
"""Draw rank lists of a trained model on a data set's test split: each row is a query tracklet (its
middle frame) and its top-k gallery tracklets, captioned with rank and distance, framed green where
the identity is right and red where it is wrong (the picture of fastreid_vld/evaluation/rank_picture.py,
as tools/search.py --draw).

    python tools/visualize_ranks.py --config-file OUTPUT_DIR/config.yaml --out ranks.png
        [--direction IR->VIS] [--queries 6] [--top 10] MODEL.WEIGHTS OUTPUT_DIR/model_final.pth [KEY VALUE ...]

Ranking is the evaluation's: the distances of fastreid_vld.evaluation.distances (TEST.METRIC,
TEST.AQE.*, TEST.RERANK.* honoured), ties to the lower gallery index, and for HITSZ-VCM the
same-identity same-camera gallery entries removed. On BUPTCampus ``--direction IR->VIS`` is the
official test subset's; ``all/IR->VIS`` names the other.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastreid_vld  # noqa: E402,F401  (first: adapts fast-reid, registers the plugin)

# isort: split
import numpy as np  # noqa: E402

from fastreid_vld.data import load_vvi_dataset  # noqa: E402
from fastreid_vld.engine.defaults import add_model_arguments, exits_on_input_errors, inference_config  # noqa: E402
from fastreid_vld.engine.extraction import middle_frame  # noqa: E402
from fastreid_vld.engine.predictor import TrackletPredictor  # noqa: E402
from fastreid_vld.evaluation.distances import DistanceSettings, direction_distances  # noqa: E402
from fastreid_vld.evaluation.rank_picture import Tile, draw_rank_lists, gallery_caption  # noqa: E402


def ranked_gallery(distances: np.ndarray, query_pid: int, query_camid: int, gallery_pids: np.ndarray,
                   gallery_camids: np.ndarray, protocol: str) -> np.ndarray:
    """Gallery positions of one query, nearest first, as the evaluation ranks them."""
    order = np.argsort(distances, kind="stable")
    if protocol == "vcm":
        order = order[~((gallery_pids[order] == query_pid) & (gallery_camids[order] == query_camid))]
    return order


@exits_on_input_errors
def main(argv: list[str] | None = None) -> Path:
    parser = add_model_arguments(argparse.ArgumentParser(description=__doc__,
                                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--direction", default="IR->VIS")
    parser.add_argument("--queries", type=int, default=6, help="rows: evenly spaced queries")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args(argv)
    cfg = inference_config(args.config_file, args.opts)
    dataset_name = cfg.DATASETS.TESTS[0]
    dataset = load_vvi_dataset(cfg, dataset_name, test_only=True)
    direction = dataset.labelled(args.direction)  # BUPTCampus: IR->VIS of the official test subset
    if direction not in dataset.directions:  # before the model is loaded and the features computed
        raise SystemExit(f"error: {dataset_name} has no direction {args.direction!r}: {list(dataset.directions)}")
    query_idx, gallery_idx = dataset.directions[direction]
    predictor = TrackletPredictor(cfg)  # rank lists of an untrained model are never drawn
    features = predictor.features([t.frames for t in dataset.test], description="test features")  # [N, D]
    distances = direction_distances(features[query_idx], features[gallery_idx],
                                    DistanceSettings.from_config(predictor.cfg))
    pids = np.asarray([int(t.pid) for t in dataset.test])
    camids = np.asarray([t.camid for t in dataset.test])
    rows = []
    for q in np.linspace(0, len(query_idx) - 1, args.queries).astype(int):
        order = ranked_gallery(distances[q], pids[query_idx[q]], camids[query_idx[q]], pids[gallery_idx],
                               camids[gallery_idx], dataset.protocol)[: args.top]
        rows.append((Tile(middle_frame(dataset.test[query_idx[q]].frames), f"query {pids[query_idx[q]]}"),
                     [Tile(middle_frame(dataset.test[gallery_idx[g]].frames), gallery_caption(rank, distances[q, g]),
                           bool(pids[gallery_idx[g]] == pids[query_idx[q]]))
                      for rank, g in enumerate(order, start=1)]))
    out = draw_rank_lists(rows, args.out)
    print(f"{direction} rank lists of {len(rows)} queries: {out}")
    return out


if __name__ == "__main__":
    main()

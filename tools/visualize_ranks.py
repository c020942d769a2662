#!/usr/bin/env python
"""Draw rank lists of a trained model on a data set's test split: each row is a query tracklet (its
middle frame) and its top-k gallery tracklets, captioned with rank and distance, then the cosine
similarity of the two features ("cos 0.83", in [-1, 1] whatever the metric), framed green where the
identity is right and red where it is wrong (the picture of fastreid_vld/evaluation/rank_picture.py,
and the options of tools/search.py --draw; --out, --queries and --top still work).

    python tools/visualize_ranks.py --config-file OUTPUT_DIR/config.yaml --draw ranks.png
        [--direction IR2VIS] [--draw-queries 6] [--topk 10] MODEL.WEIGHTS OUTPUT_DIR/model_final.pth [KEY VALUE ...]

Ranking is the evaluation's: the distances of fastreid_vld.evaluation.distances (TEST.METRIC,
TEST.AQE.*, TEST.RERANK.* honoured), ties to the lower gallery index, and for HITSZ-VCM the
same-identity same-camera gallery entries removed. --direction is IR2VIS (infrared queries, visible
gallery) or VIS2IR, in any case; on BUPTCampus ``IR2VIS`` is the official test subset's and
``all/IR2VIS`` names the other. The data set is the first of DATASETS.TESTS, a registered video data
set; a PNG that cannot be written is an error before the features are computed, and overrides of
training keys (SOLVER.*, ...) are named in a warning.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastreid_vld  # noqa: E402,F401  (first: adapts fast-reid, registers the plugin)

# isort: split
import numpy as np  # noqa: E402

from fastreid_vld.config import ConfigError  # noqa: E402
from fastreid_vld.data import is_vvi_dataset, load_vvi_dataset  # noqa: E402
from fastreid_vld.engine.defaults import (  # noqa: E402
    TRAINING_KEYS,
    add_model_arguments,
    check_output_file,
    exits_on_input_errors,
    inference_config,
    output_errors,
    warn_ignored_overrides,
)
from fastreid_vld.engine.extraction import middle_frame, video_dataset_names  # noqa: E402
from fastreid_vld.engine.predictor import TrackletPredictor  # noqa: E402
from fastreid_vld.evaluation.distances import DistanceSettings, direction_distances  # noqa: E402
from fastreid_vld.evaluation.rank_picture import Tile, draw_rank_lists, gallery_caption  # noqa: E402
from fastreid_vld.evaluation.search import direction_argument, ranked_cosines  # noqa: E402


def ranked_gallery(distances: np.ndarray, query_pid: int, query_camid: int, gallery_pids: np.ndarray,
                   gallery_camids: np.ndarray, protocol: str) -> np.ndarray:
    """Gallery positions of one query, nearest first, as the evaluation ranks them."""
    order = np.argsort(distances, kind="stable")
    if protocol == "vcm":
        order = order[~((gallery_pids[order] == query_pid) & (gallery_camids[order] == query_camid))]
    return order


def subset_direction(text: str) -> str:
    """argparse ``type=`` of --direction: a direction (``direction_argument``), behind a test subset
    where one is named (BUPTCampus: ``all/IR2VIS`` -> ``"all/IR->VIS"``)."""
    subset, slash, direction = text.rpartition("/")
    return subset + slash + direction_argument(direction)


def video_test_set(names: tuple[str, ...]) -> str:
    """The first of DATASETS.TESTS ``names``, the data set drawn; a ConfigError where it is no video data set."""
    if not is_vvi_dataset(names[0]):
        raise ConfigError(f"DATASETS.TESTS {names}: visualize_ranks draws the first, expected a registered video "
                          f"data set: {', '.join(video_dataset_names())}")
    return names[0]


def argument_parser() -> argparse.ArgumentParser:
    parser = add_model_arguments(argparse.ArgumentParser(description=__doc__,
                                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--draw", "--out", required=True, type=Path, metavar="PNG", help="picture of the rank lists")
    parser.add_argument("--direction", type=subset_direction, default="IR2VIS", metavar="[SUBSET/]{IR2VIS,VIS2IR}",
                        help="infrared queries and visible gallery (IR2VIS, the default), or the reverse")
    parser.add_argument("--draw-queries", "--queries", type=int, default=6, metavar="N",
                        help="rows of the picture: evenly spaced queries (default %(default)s)")
    parser.add_argument("--topk", "--top", type=int, default=10, metavar="K",
                        help="gallery entries per query (default %(default)s)")
    return parser


@exits_on_input_errors
def main(argv: list[str] | None = None) -> Path:
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.topk < 1 or args.draw_queries < 1:
        parser.error("--topk and --draw-queries must be at least 1")
    check_output_file(args.draw, "--draw", "ranks.png")  # before the data set is read and the features computed
    cfg = inference_config(args.config_file, args.opts)
    warn_ignored_overrides("visualize_ranks", args.opts, TRAINING_KEYS, "the model and test-time keys")
    dataset_name = video_test_set(tuple(cfg.DATASETS.TESTS))
    dataset = load_vvi_dataset(cfg, dataset_name, test_only=True)
    direction = dataset.labelled(args.direction)  # BUPTCampus: IR->VIS of the official test subset
    if direction not in dataset.directions:  # before the model is loaded and the features computed
        known = [name.replace("->", "2") for name in dataset.directions]
        raise SystemExit(f"error: {dataset_name} has no direction {args.direction!r}: expected one of {known}")
    query_idx, gallery_idx = dataset.directions[direction]
    predictor = TrackletPredictor(cfg)  # rank lists of an untrained model are never drawn
    features = predictor.features([t.frames for t in dataset.test], description="test features")  # [N, D]
    query_features, gallery_features = features[query_idx], features[gallery_idx]
    distances = direction_distances(query_features, gallery_features, DistanceSettings.from_config(predictor.cfg))
    pids = np.asarray([int(t.pid) for t in dataset.test])
    camids = np.asarray([t.camid for t in dataset.test])
    rows = []
    for q in np.linspace(0, len(query_idx) - 1, args.draw_queries).astype(int):
        order = ranked_gallery(distances[q], pids[query_idx[q]], camids[query_idx[q]], pids[gallery_idx],
                               camids[gallery_idx], dataset.protocol)[: args.topk]
        cosines = ranked_cosines(query_features[q: q + 1].numpy(), gallery_features.numpy(), order[None])[0]
        rows.append((Tile(middle_frame(dataset.test[query_idx[q]].frames), f"query {pids[query_idx[q]]}"),
                     [Tile(middle_frame(dataset.test[gallery_idx[g]].frames),
                           gallery_caption(rank, distances[q, g], cosine),
                           bool(pids[gallery_idx[g]] == pids[query_idx[q]]))
                      for rank, (g, cosine) in enumerate(zip(order, cosines, strict=True), start=1)]))
    with output_errors("--draw", args.draw):
        out = draw_rank_lists(rows, args.draw)
    print(f"{direction} rank lists of {len(rows)} queries: {out}")
    return out


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Search a gallery: the top-k gallery tracklets of each query, with their distances and cosine similarities.

    python tools/search.py --query query.npz --gallery gallery.npz --topk 10 --output results --draw ranks.png
    python tools/search.py --query my_query_tracklets/ --gallery gallery.npz [--config-file CFG KEY VALUE ...]

--query and --gallery are features files of tools/extract_features.py; --query may instead be a
folder of tracklet folders, extracted with the config and weights the gallery file records (or
--config-file with KEY VALUE overrides). Distances are those the evaluation computes
(fastreid_vld/evaluation/distances.py), with the gallery config's TEST.METRIC, TEST.AQE.* and
TEST.RERANK.* unless --metric, --aqe / --no-aqe, --rerank / --no-rerank say otherwise (KEY VALUE
overrides of those keys, and every override where --query is a file, change nothing: a warning names
them). A features file holding NaN is an error, as are an OUTPUT or PNG that cannot be written (checked
before the search). Ties go to the lower gallery index; --backend faiss (or auto, above 50 million
query-gallery pairs without AQE or re-ranking) searches with faiss instead of ranking every distance.

Writes OUTPUT.csv (query, rank, gallery, distance, cosine; query_pid, gallery_pid, match where both
files carry identities) and OUTPUT.json (the settings, then each query's list): the distance is the
one ranked by (smaller: nearer; the default inner product's is -q.g, e.g. -127), the cosine the
similarity of the two features in [-1, 1] (L2-normalised q.g, whatever the metric).

--draw PNG: rows of evenly spaced queries (--draw-queries) with their top-k, captioned with rank and
distance, then "cos 0.83", framed green (right identity), red (wrong) or grey (identities unknown);
tools/visualize_ranks.py takes the same options. --direction IR2VIS keeps infrared queries and a
visible gallery, VIS2IR the reverse (any case; both files from a data set: they carry modalities).
"""

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastreid_vld  # noqa: E402,F401  (first: adapts fast-reid, registers the plugin)

# isort: split
import numpy as np  # noqa: E402
from fastreid.config import CfgNode  # noqa: E402

from fastreid_vld.data.tracklets import INFRARED, VISIBLE  # noqa: E402
from fastreid_vld.engine.defaults import (  # noqa: E402
    READ_BY_INFERENCE,
    TRAINING_KEYS,
    check_output_file,
    exits_on_input_errors,
    inference_config,
    output_errors,
    warn_ignored_overrides,
)
from fastreid_vld.engine.extraction import folder_features  # noqa: E402
from fastreid_vld.engine.feature_files import FeatureFileError, FeatureSet, read_features  # noqa: E402
from fastreid_vld.evaluation.distances import METRICS, DistanceSettings  # noqa: E402
from fastreid_vld.evaluation.rank_picture import Tile, draw_rank_lists, gallery_caption  # noqa: E402
from fastreid_vld.evaluation.search import (  # noqa: E402
    BACKENDS,
    RankLists,
    direction_argument,
    match_row_files,
    match_rows,
    top_k,
    write_match_rows,
)

MODALITIES = {"IR->VIS": (INFRARED, VISIBLE), "VIS->IR": (VISIBLE, INFRARED)}  # direction: query's, gallery's
#: overrides a query folder's extraction does not read: the training keys, and TEST.* but its batch (the ranking's
#: TEST.METRIC, TEST.AQE.* and TEST.RERANK.* are the gallery config's, or --metric, --aqe, --rerank)
IGNORED_BY_EXTRACTION = (*TRAINING_KEYS, "TEST")


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--query", required=True, type=Path, help="query features (.npz) or a folder of tracklets")
    parser.add_argument("--gallery", required=True, type=Path, help="gallery features (.npz)")
    parser.add_argument("--topk", type=int, default=10, metavar="K",
                        help="gallery entries per query (default %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("search_results"), help="writes OUTPUT.csv, OUTPUT.json")
    parser.add_argument("--metric", choices=METRICS, help="default: the gallery config's TEST.METRIC")
    parser.add_argument("--aqe", action=argparse.BooleanOptionalAction, help="fast-reid's AQE (TEST.AQE.*)")
    parser.add_argument("--rerank", action=argparse.BooleanOptionalAction,
                        help="fast-reid's k-reciprocal re-ranking (TEST.RERANK.*)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="rank every distance, or faiss")
    parser.add_argument("--direction", type=direction_argument, metavar="{IR2VIS,VIS2IR}",
                        help="cross-modal: infrared queries and visible gallery (IR2VIS), or the reverse")
    parser.add_argument("--draw", type=Path, metavar="PNG", help="picture of the rank lists")
    parser.add_argument("--draw-queries", type=int, default=6, metavar="N",
                        help="rows of the picture: evenly spaced queries (default %(default)s)")
    parser.add_argument("--config-file", help="with a query folder: the model's config (default: the gallery's)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="with a query folder: KEY VALUE config overrides")
    return parser


def warn_ignored(args: argparse.Namespace) -> None:
    """A warning naming the KEY VALUE overrides (and --config-file) that do nothing: all of them where --query is a
    features file, those the query folder's extraction does not read otherwise."""
    if args.query.is_dir():
        warn_ignored_overrides("search", args.opts, IGNORED_BY_EXTRACTION, "the model and test-time keys, to extract "
                               "the query folder (it ranks by the gallery's TEST.METRIC, TEST.AQE.*, TEST.RERANK.*, "
                               "or --metric, --aqe, --rerank)", read=(*READ_BY_INFERENCE, "TEST.IMS_PER_BATCH"))
    elif args.opts or args.config_file:
        pairs = ["--config-file", args.config_file] * bool(args.config_file) + args.opts
        warn_ignored_overrides("search", pairs, pairs[::2], "the features files and its flags (--metric, --aqe, "
                               "--rerank set the ranking; --config-file and KEY VALUE overrides are for a query "
                               "folder)", read=())


def query_features(args: argparse.Namespace, gallery: FeatureSet) -> FeatureSet:
    """--query: a features file, or a folder extracted with --config-file or the gallery's config."""
    if not args.query.is_dir():
        return read_features(args.query)
    if args.config_file:
        return folder_features(inference_config(args.config_file, args.opts), args.query)
    if not gallery.config:
        raise FeatureFileError(f"{args.gallery}: records no config to extract the query folder {args.query} with: "
                               "give --config-file")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as config:
        config.write(gallery.config)
        config.flush()
        return folder_features(inference_config(config.name, args.opts), args.query)


def distance_settings(args: argparse.Namespace, gallery: FeatureSet) -> DistanceSettings:
    """The gallery config's TEST.METRIC / AQE / RERANK settings, with the flags' overrides."""
    settings = DistanceSettings.from_config(CfgNode.load_cfg(gallery.config)) if gallery.config else DistanceSettings()
    overrides = {"metric": args.metric, "aqe": args.aqe, "rerank": args.rerank}
    return dataclasses.replace(settings, **{key: value for key, value in overrides.items() if value is not None})


def cross_modal(query: FeatureSet, gallery: FeatureSet, direction: str, paths: tuple[Path, Path]):
    """The infrared queries and visible gallery entries (IR->VIS), or the reverse."""
    for features, path in zip((query, gallery), paths, strict=True):
        if features.modalities is None:
            raise FeatureFileError(f"{path}: --direction needs modalities (features of a data set's split)")
    query_modality, gallery_modality = MODALITIES[direction]
    return query.subset(query.modalities == query_modality), gallery.subset(gallery.modalities == gallery_modality)


def draw(query: FeatureSet, gallery: FeatureSet, lists: RankLists, rows: int, out: Path) -> Path:
    labelled = query.pids is not None and gallery.pids is not None
    picture = []
    for q in np.unique(np.linspace(0, len(query) - 1, rows).astype(int)):
        caption = f"query {query.pids[q]}" if query.pids is not None else f"query {query.names[q]}"
        picture.append((Tile(str(query.thumbnails[q]), caption),
                        [Tile(str(gallery.thumbnails[g]), gallery_caption(rank, distance, cosine),
                              bool(gallery.pids[g] == query.pids[q]) if labelled else None)
                         for rank, (g, distance, cosine)
                         in enumerate(zip(lists.indices[q], lists.distances[q], lists.cosines[q], strict=True), 1)]))
    return draw_rank_lists(picture, out)


@exits_on_input_errors
def main(argv: list[str] | None = None) -> RankLists:
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.topk < 1 or args.draw_queries < 1:
        parser.error("--topk and --draw-queries must be at least 1")
    for path in match_row_files(args.output):
        check_output_file(path, "--output")
    if args.draw:
        check_output_file(args.draw, "--draw", "ranks.png")
    warn_ignored(args)
    gallery = read_features(args.gallery)
    query = query_features(args, gallery)
    if query.features.shape[1] != gallery.features.shape[1]:
        raise FeatureFileError(f"{args.query}: features of dimension {query.features.shape[1]}, but {args.gallery}: "
                               f"{gallery.features.shape[1]}: expected features of one model")
    if args.direction:
        query, gallery = cross_modal(query, gallery, args.direction, (args.query, args.gallery))
    if not len(query) or not len(gallery):
        raise FeatureFileError(f"{args.query if not len(query) else args.gallery}: no tracklet to search with")
    settings = distance_settings(args, gallery)
    lists = top_k(query.features, gallery.features, settings, args.topk, args.backend)
    about = {"query": str(args.query), "gallery": str(args.gallery), "distance": settings.describe(),
             "topk": int(lists.indices.shape[1]), "direction": args.direction}
    with output_errors("--output", args.output):
        csv_path, json_path = write_match_rows(match_rows(query, gallery, lists), args.output, about)
    print(f"{len(query)} queries x {len(gallery)} gallery ({settings.describe()}): top-{about['topk']} in "
          f"{csv_path} and {json_path}")
    if args.draw:
        with output_errors("--draw", args.draw):
            picture = draw(query, gallery, lists, args.draw_queries, args.draw)
        print(f"rank lists of {min(args.draw_queries, len(query))} queries: {picture}")
    return lists


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Features of your own tracklets, or of a data set's query or gallery split, with a trained model:

    python tools/extract_features.py --config-file configs/VLD/vcm.yml --input my_tracklets/ --output feats.npz \\
        MODEL.WEIGHTS output/vcm/model_best.pth [KEY VALUE ...]
    python tools/extract_features.py --config-file configs/VLD/vcm.yml --dataset VCM --split query \\
        --output query.npz MODEL.WEIGHTS output/vcm/model_best.pth [DATASETS.ROOT datasets]

--input DIR: every folder under DIR that holds frames (.jpg/.jpeg/.png, in temporal order by name,
numbers by value) is one tracklet; camera or identity folders above them are fine. INPUT.SEQ_LEN
frames of each are chosen by the test frame rule (INPUT.TEST_FRAME_RULE, else that of the first of
DATASETS.TESTS), read, resized and normalised as the test loader does: the features are those
--eval-only evaluates. --dataset NAME --split query|gallery: that registered data set's own query
or gallery list under DATASETS.ROOT (only its test split is read), with identity labels.

OUT.npz holds features [N, D] float32, names [N] (tracklet folders relative to DIR), thumbnails [N]
(middle frames), the config and weights used, and for a data set pids, camids and modalities.
Batches of TEST.IMS_PER_BATCH tracklets, DATALOADER.NUM_WORKERS workers; the same input gives the
same file. A frame that cannot be read, a folder without frames, an --output that cannot be written
and a model that produces NaN are errors naming the file; overrides of keys extraction does not read
(SOLVER.*, ...) are named in a warning.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastreid_vld  # noqa: E402,F401  (first: adapts fast-reid, registers the plugin)

# isort: split
from fastreid_vld.engine.defaults import (  # noqa: E402
    TRAINING_KEYS,
    add_model_arguments,
    check_output_file,
    exits_on_input_errors,
    inference_config,
    output_errors,
    warn_ignored_overrides,
)
from fastreid_vld.engine.extraction import dataset_features, folder_features, video_dataset_names  # noqa: E402
from fastreid_vld.engine.feature_files import write_features  # noqa: E402

#: overrides with no effect on the features besides the training keys, by the source of the tracklets: what is
#: ignored, what is read instead
IGNORED = {"input": (("DATASETS.ROOT", "DATASETS.VCM", "DATASETS.BUPT"), "the tracklet folders of --input"),
           "dataset": (("DATASETS.TESTS",), "--dataset for the data set")}


def argument_parser() -> argparse.ArgumentParser:
    parser = add_model_arguments(argparse.ArgumentParser(description=__doc__,
                                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help="folder of tracklet folders")
    source.add_argument("--dataset", choices=video_dataset_names(), help="a registered video data set under "
                        "DATASETS.ROOT")
    parser.add_argument("--split", choices=("query", "gallery"), help="with --dataset: its query or gallery list")
    parser.add_argument("--output", required=True, type=Path, help="features file to write (.npz)")
    return parser


@exits_on_input_errors
def main(argv: list[str] | None = None) -> Path:
    parser = argument_parser()
    args = parser.parse_args(argv)
    if (args.dataset is None) != (args.split is None):
        parser.error("--dataset and --split go together")
    check_output_file(args.output, "--output", "features.npz")  # before the model is built
    cfg = inference_config(args.config_file, args.opts)
    warn_ignored_overrides("extract_features", args.opts, TRAINING_KEYS, "the model and test-time keys")
    warn_ignored_overrides("extract_features", args.opts, *IGNORED["input" if args.dataset is None else "dataset"],
                           read=())
    if args.dataset is not None:
        features = dataset_features(cfg, args.dataset, args.split)
    else:
        features = folder_features(cfg, args.input)
    with output_errors("--output", args.output):
        path = write_features(args.output, features)
    print(f"wrote features {list(features.features.shape)} of {len(features)} tracklets to {path}")
    return path


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Export a trained model as an ONNX or TorchScript file, checked against PyTorch:

    python tools/export.py --config-file configs/VLD/vcm.yml --format onnx --output output/vld_vcm.onnx \\
        MODEL.WEIGHTS output/vld_vcm/model_best.pth [KEY VALUE ...]
    python tools/export.py --config-file configs/VLD/vcm.yml --format torchscript --output output/vld_vcm.pt \\
        MODEL.WEIGHTS output/vld_vcm/model_best.pth

The file takes images [batch, T, 3, H, W] float32 RGB in 0..255 (T = INPUT.SEQ_LEN frames, resized to
INPUT.SIZE_TEST, not normalised: the pixel mean and std are inside), any batch size, and gives the
tracklet features [batch, D] float32 that tools/train_net.py --eval-only evaluates (VLD on ViT-B/16:
1536). ONNX: input "images", output "features", one self-contained file (torch.export-based exporter);
run it with onnxruntime. TorchScript: torch.jit.load(OUT)(images).

The model is loaded as --eval-only loads it (MODEL.WEIGHTS must hold every entry of the config's
model) and exported from the CPU in float32, whatever MODEL.DEVICE says. The file is then run on
random tracklets at batch sizes 1 and 3 (onnxruntime on the CPU, or torch.jit.load) beside PyTorch;
OUT is written only when the largest feature difference is at most --tolerance, and never for a model
that produces NaN. Overrides of keys the export does not read (SOLVER.*, DATASETS.*, TEST.*, ...) are
named in a warning.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastreid_vld  # noqa: E402,F401  (first: adapts fast-reid, registers the plugin)

# isort: split
import torch  # noqa: E402

from fastreid_vld.engine.defaults import (  # noqa: E402
    TRAINING_KEYS,
    add_model_arguments,
    check_output_file,
    exits_on_input_errors,
    inference_config,
    output_errors,
    warn_ignored_overrides,
)
from fastreid_vld.engine.export import (  # noqa: E402
    FORMATS,
    describe_differences,
    export_and_check,
    file_size,
    random_tracklets,
)
from fastreid_vld.engine.predictor import load_eval_model  # noqa: E402
from fastreid_vld.evaluation.metrics import check_finite_features  # noqa: E402

#: batch sizes the export is checked at: a single tracklet and one the example batch is not
CHECK_BATCHES = (1, 3)
#: overrides with no effect on the file: training keys, the data, the test settings, MODEL.DEVICE (exported from
#: the CPU); of SOLVER.* only SOLVER.MICRO_BATCH_SIZE is read
IGNORED = (*TRAINING_KEYS, "DATALOADER", "DATASETS", "TEST", "INPUT.TEST_FRAME_RULE", "MODEL.DEVICE")


def argument_parser() -> argparse.ArgumentParser:
    parser = add_model_arguments(argparse.ArgumentParser(description=__doc__,
                                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--format", required=True, choices=tuple(FORMATS), help="file format to write")
    parser.add_argument("--output", required=True, type=Path, help="file to write (.onnx, .pt)")
    parser.add_argument("--batch", type=int, default=2,
                        help="tracklets of the example the model is traced on (default 2; the file takes any batch)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest absolute feature difference from PyTorch accepted (default 1e-4)")
    return parser


@exits_on_input_errors
def main(argv: list[str] | None = None) -> Path:
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.batch < 2:
        parser.error(f"--batch {args.batch}: trace on 2 tracklets or more (an example of 1 can fix the batch "
                     "size in the file)")
    check_output_file(args.output, "--output", "model" + FORMATS[args.format])  # before the model is loaded
    cfg = inference_config(args.config_file, args.opts)
    warn_ignored_overrides("export", args.opts, IGNORED, "the model's keys (MODEL.* but MODEL.DEVICE: it exports "
                           "from the CPU), INPUT.SEQ_LEN, INPUT.SIZE_* and SOLVER.MICRO_BATCH_SIZE",
                           read=("SOLVER.MICRO_BATCH_SIZE",))
    cfg.MODEL.DEVICE = "cpu"  # a float32 file that loads anywhere
    cfg, model = load_eval_model(cfg)
    seq_len, size = cfg.INPUT.SEQ_LEN, tuple(cfg.INPUT.SIZE_TEST)
    example = random_tracklets(args.batch, seq_len, size)
    with torch.no_grad():
        features = model({"images": example})
    check_finite_features(features, f"random tracklets {list(example.shape)} with MODEL.WEIGHTS "
                                    f"{cfg.MODEL.WEIGHTS}: {args.output} not written")
    dim = features.shape[-1]
    start = time.perf_counter()
    with output_errors("--output", args.output):
        differences = export_and_check(model, args.format, example, args.output, CHECK_BATCHES, args.tolerance)
    seconds = time.perf_counter() - start
    print(f"wrote {args.format} {args.output} ({file_size(args.output) / 1e6:.1f} MB) in {seconds:.1f} s: "
          f"images [batch, {seq_len}, 3, {size[0]}, {size[1]}] float32 0..255 -> features [batch, {dim}]")
    print(f"max difference from PyTorch: {max(differences.values()):.2e} ({describe_differences(differences)}; "
          f"tolerance {args.tolerance:.0e})")
    return args.output


if __name__ == "__main__":
    main()

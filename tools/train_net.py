#!/usr/bin/env python
"""Train or evaluate with fast-reid conventions:

    python tools/train_net.py --config-file configs/VLD/vcm.yml [--eval-only [--untrained]] [--resume]
        [--num-gpus N [--num-machines M --machine-rank R --dist-url tcp://HOST:PORT]] [KEY VALUE ...]
    torchrun --nproc_per_node N tools/train_net.py --config-file configs/VLD/vcm.yml [KEY VALUE ...]

--eval-only needs trained weights (MODEL.WEIGHTS); --untrained evaluates the randomly initialised
model instead, on purpose (a chance-level baseline, as tools/demo.py reports). Under torchrun (env://)
the processes are torchrun's: fast-reid's --num-gpus / --num-machines / --machine-rank stay out.
"""

import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastreid_vld  # noqa: E402,F401  (first: adapts fast-reid, registers the plugin)

# isort: split
from fastreid.config import get_cfg  # noqa: E402
from fastreid.engine import default_argument_parser, default_setup  # noqa: E402
from fastreid.utils import comm  # noqa: E402
from fastreid.utils.logger import setup_logger  # noqa: E402

from fastreid_vld import VLDTrainer, add_vld_config  # noqa: E402
from fastreid_vld.checkpoint import check_weights_match  # noqa: E402
from fastreid_vld.config import ConfigError, check_config, merge_config  # noqa: E402
from fastreid_vld.engine.defaults import (  # noqa: E402
    cap_workers,
    fall_back_to_cpu,
    flush_denormals,
    log_to_files_only,
    quiet_failing_log_files,
    run_error_line,
    user_error_tracebacks_off_the_console,
)
from fastreid_vld.engine.launch import LaunchError, launch  # noqa: E402
from fastreid_vld.engine.predictor import load_eval_model  # noqa: E402
from fastreid_vld.engine.trainer import check_config_and_data  # noqa: E402
from fastreid_vld.modeling.backbones.width import resolve_backbone_width  # noqa: E402


def setup(args):
    cfg = merge_config(add_vld_config(get_cfg()), args.config_file, args.opts)
    check_config(cfg)
    check_output_dir(cfg.OUTPUT_DIR)
    # the plugin's own messages (warnings below, data-set and evaluation tables) in the console and log.txt
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="fastreid_vld")
    fall_back_to_cpu(cfg)
    cap_workers(cfg)
    flush_denormals(cfg)  # in every process of the run (setup runs in each)
    resolve_backbone_width(cfg)  # before config.yaml is written
    cfg.freeze()
    default_setup(cfg, args)  # seeds SEED + rank where SEED >= 0 (fastreid_vld.compat)
    user_error_tracebacks_off_the_console("fastreid", "fastreid_vld")  # their traceback in log.txt only
    quiet_failing_log_files("fastreid", "fastreid_vld")  # a full disk: one warning, not a traceback a line
    return cfg


def check_output_dir(output_dir: str) -> None:
    """OUTPUT_DIR must be a folder this process can create and write (checked on the main process)."""
    if not comm.is_main_process():
        return
    folder = Path(output_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"OUTPUT_DIR {output_dir}: expected a folder this run can create and write "
                          f"({error.strerror or error})") from None


def main(args):
    cfg = setup(args)
    if args.eval_only:
        cfg, model = eval_only_model(cfg, args.untrained)  # the weights first: the cheaper check
        check_config_and_data(cfg, test_only=True)
        return VLDTrainer.test(cfg, model)
    trainer = VLDTrainer(cfg)
    if cfg.MODEL.WEIGHTS and not (args.resume and trainer.resumable()):
        check_weights_match(trainer.model, cfg.MODEL.WEIGHTS)  # weights to start from must fit the model
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def eval_only_model(cfg, untrained: bool) -> tuple:
    """(config, model) for --eval-only: MODEL.WEIGHTS, every entry of the model loaded (the training
    split is neither needed nor read), or with --untrained the randomly initialised model."""
    if not untrained:
        return load_eval_model(cfg)
    logging.getLogger("fastreid_vld").warning("--untrained: evaluating the randomly initialised model")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = max(cfg.MODEL.HEADS.NUM_CLASSES, 1)  # the classifiers give no feature
    return cfg, VLDTrainer.build_model(cfg)


def checked_main(args):
    """main, with a user error (bad input, a diverged training, a file the file system refused: a full
    disk) as one ``error:`` line (``run_error_line``): on the console once, and in log.txt where the
    run has one; a bug keeps its traceback."""
    try:
        return main(args)
    except Exception as error:
        message = run_error_line(error)
        if message is None:
            raise
    log_to_files_only(logging.getLogger("fastreid_vld"), message, logging.ERROR)
    raise SystemExit(message)


def argument_parser():
    """fast-reid's flags, plus --untrained."""
    parser = default_argument_parser()
    parser.add_argument("--untrained", action="store_true",
                        help="with --eval-only: evaluate the randomly initialised model on purpose (no MODEL.WEIGHTS)")
    return parser


#: flags that may also come after the KEY VALUE pairs (argparse leaves them among the pairs)
TRAILING_FLAGS = {"--resume": "resume", "--eval-only": "eval_only", "--untrained": "untrained"}


def parse_args(argv: list[str] | None = None):
    args = argument_parser().parse_args(argv)
    for flag, name in TRAILING_FLAGS.items():
        while flag in args.opts:
            args.opts.remove(flag)
            setattr(args, name, True)
    return args


if __name__ == "__main__":
    args = parse_args()
    if args.untrained and not args.eval_only:
        raise SystemExit("error: --untrained goes with --eval-only (evaluate the randomly initialised model)")
    print("Command Line Args:", args)
    try:
        launch(checked_main, args)  # torchrun's processes (env://) or fast-reid's launch
    except LaunchError as error:
        raise SystemExit(f"error: {error}") from None

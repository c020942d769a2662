#!/usr/bin/env python
"""Convert a checkpoint of the official VLD code (github.com/Visuang/VLD, ``best_model.pth``) into a
fast-reid checkpoint of this plugin's VLD model:

    python tools/convert_official_vld.py best_model.pth output/vld_official.pth
    python tools/train_net.py --config-file configs/VLD/vcm.yml --eval-only MODEL.WEIGHTS output/vld_official.pth
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastreid_vld  # noqa: E402,F401  (first: adapts fast-reid)

# isort: split
import torch  # noqa: E402

from fastreid_vld.checkpoint import CheckpointReadError, read_checkpoint  # noqa: E402
from fastreid_vld.modeling import convert_official_state_dict  # noqa: E402
from fastreid_vld.modeling.convert import OfficialCheckpointError  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="official VLD state dict (Model.state_dict(), torch.save)")
    parser.add_argument("output", type=Path, help="fast-reid checkpoint to write ({'model': state dict})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.input.is_file():
        raise SystemExit(f"error: {args.input} not found")
    try:
        state_dict = convert_official_state_dict(read_checkpoint(args.input))
    except CheckpointReadError as error:
        raise SystemExit(f"error: {error}") from None
    except OfficialCheckpointError as error:
        raise SystemExit(f"error: {args.input}: {error}") from None
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state_dict}, args.output)
    print(f"wrote {len(state_dict)} entries to {args.output}")


if __name__ == "__main__":
    main()

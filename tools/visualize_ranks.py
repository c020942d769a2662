#!/usr/bin/env python
"""Draw rank lists of a trained model: each row is a query tracklet (its middle frame) and its
top-k gallery tracklets, framed green where the identity is right and red where it is wrong.

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
import torch  # noqa: E402
from fastreid.config import get_cfg  # noqa: E402
from fastreid.modeling import build_model  # noqa: E402
from fastreid.utils.checkpoint import Checkpointer  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from tqdm import tqdm  # noqa: E402

from fastreid_vld import add_vld_config
from fastreid_vld.checkpoint import CheckpointReadError, check_weights_match  # noqa: E402
from fastreid_vld.data import build_vvi_test_loader  # noqa: E402
from fastreid_vld.evaluation.distances import DistanceSettings, direction_distances  # noqa: E402

GREEN, RED, WHITE = (40, 180, 60), (220, 40, 40), (255, 255, 255)


def ranked_gallery(distances: np.ndarray, query_pid: int, query_camid: int, gallery_pids: np.ndarray,
                   gallery_camids: np.ndarray, protocol: str) -> np.ndarray:
    """Gallery positions of one query, nearest first, as the evaluation ranks them."""
    order = np.argsort(distances, kind="stable")
    if protocol == "vcm":
        order = order[~((gallery_pids[order] == query_pid) & (gallery_camids[order] == query_camid))]
    return order


def draw_rank_lists(rows: list[tuple[str, list[tuple[str, bool]]]], out: Path, tile: tuple[int, int] = (128, 64),
                    border: int = 4) -> Path:
    """``rows``: (query frame, [(gallery frame, is right), ...]) per query -> one PNG."""
    height, width = tile
    cell_w, cell_h = width + 2 * border, height + 2 * border
    gap = width // 2
    columns = 1 + max(len(gallery) for _, gallery in rows)
    canvas = Image.new("RGB", (columns * cell_w + gap, len(rows) * cell_h), WHITE)
    draw = ImageDraw.Draw(canvas)
    for r, (query, gallery) in enumerate(rows):
        y = r * cell_h
        canvas.paste(Image.open(query).convert("RGB").resize((width, height)), (border, y + border))
        for c, (frame, right) in enumerate(gallery, start=1):
            x = c * cell_w + gap
            draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], fill=GREEN if right else RED)
            canvas.paste(Image.open(frame).convert("RGB").resize((width, height)), (x + border, y + border))
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


@torch.no_grad()
def test_features(cfg, model: torch.nn.Module, dataset_name: str):
    loader, dataset = build_vvi_test_loader(cfg, dataset_name)
    features = [model(batch).cpu() for batch in tqdm(loader, desc="test features")]
    return torch.cat(features), dataset  # [N, D]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--direction", default="IR->VIS")
    parser.add_argument("--queries", type=int, default=6, help="rows: evenly spaced queries")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.MODEL.BACKBONE.PRETRAIN = False
    dataset_name = cfg.DATASETS.TESTS[0]
    model = build_model(cfg)
    try:
        check_weights_match(model, cfg.MODEL.WEIGHTS)  # rank lists of an untrained model are never drawn
    except (CheckpointReadError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    features, dataset = test_features(cfg, model, dataset_name)
    direction = dataset.labelled(args.direction)  # BUPTCampus: IR->VIS of the official test subset
    if direction not in dataset.directions:
        raise SystemExit(f"{dataset_name} has no direction {args.direction!r}: {list(dataset.directions)}")
    query_idx, gallery_idx = dataset.directions[direction]
    distances = direction_distances(features[query_idx], features[gallery_idx], DistanceSettings.from_config(cfg))
    pids = np.asarray([int(t.pid) for t in dataset.test])
    camids = np.asarray([t.camid for t in dataset.test])
    rows = []
    for q in np.linspace(0, len(query_idx) - 1, args.queries).astype(int):
        order = ranked_gallery(distances[q], pids[query_idx[q]], camids[query_idx[q]], pids[gallery_idx],
                               camids[gallery_idx], dataset.protocol)[: args.top]
        middle = lambda tracklet: tracklet.frames[len(tracklet.frames) // 2]  # noqa: E731
        rows.append((middle(dataset.test[query_idx[q]]),
                     [(middle(dataset.test[gallery_idx[g]]), bool(pids[gallery_idx[g]] == pids[query_idx[q]]))
                      for g in order]))
    print(f"{direction} rank lists of {len(rows)} queries: {draw_rank_lists(rows, args.out)}")


if __name__ == "__main__":
    main()

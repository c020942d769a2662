"""Parameter counts of VLD on CLIP ViT-B/16 at 288x144 (HITSZ-VCM: 500 training identities), by part.
Prints one table.

    .venv/bin/python bench/model_params.py [--num-classes 500]

The official model (network/model.py of the VLD code) holds the same parts plus three that its
training step never uses, and this plugin leaves out: a second 512-d classifier on the projected
STA feature (BatchNorm1d(512) + Linear(512, C)), an unused copy of ln_post (ln_post2) and an unused
logit_scale. Its count below is ours plus those, computed from their shapes (the official Model
built outside this repository with 500 identities holds the same 128,998,401).
"""

from __future__ import annotations

import argparse

import fastreid_vld  # noqa: F401

# isort: split
from fastreid.config import get_cfg
from fastreid.modeling import build_model
from tabulate import tabulate

from fastreid_vld import add_vld_config


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-classes", type=int, default=500)
    args = parser.parse_args()
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_file("configs/VLD/vcm.yml")
    cfg.merge_from_list(["MODEL.BACKBONE.PRETRAIN", False, "MODEL.DEVICE", "cpu",
                         "MODEL.HEADS.NUM_CLASSES", args.num_classes])
    model = build_model(cfg)
    heads = model.heads
    rows = [
        ["ViT-B/16 image encoder (18x9 patches)", count(model.backbone.visual)],
        ["STH hub tokens [T, T, 768]", model.backbone.hub.numel()],
        ["STA attention (768, 12 heads)", count(model.backbone.sta)],
        ["classifiers (768, 512, STA 768)", count(heads.classifier) + count(heads.classifier_proj)
         + count(heads.classifier_sta)],
        ["IMLP context vectors [C, 4, 512]", heads.prompt_learner.context.numel()],
        ["CLIP text tower (frozen)", count(heads.text_encoder)],
    ]
    ours = count(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    official_extra = (2 * 512 + 512 * args.num_classes) + 2 * 768 + 1
    rows += [["total (this plugin)", ours], ["trainable (this plugin)", trainable],
             ["official model (ours + unused classifier_proj_STP, ln_post2, logit_scale)", ours + official_extra]]
    print(tabulate([[name, f"{n:,}"] for name, n in rows], headers=["part", "parameters"], tablefmt="github"))


if __name__ == "__main__":
    main()

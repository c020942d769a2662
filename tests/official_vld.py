"""State dicts with the official VLD ``Model``'s key names and shapes (github.com/Visuang/VLD,
network/model.py), written by hand from the official code's structure, at any geometry."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Geometry:
    width: int          # ViT width
    embed: int          # CLIP embedding (projection) width
    text_width: int
    patches: int        # (H / 16) x (W / 16)
    vision_layers: int
    text_layers: int
    num_classes: int    # training identities
    frames: int         # T
    context: int = 77


#: configs/VLD/tiny.yml (tests/tiny_vld.py)
TINY = Geometry(width=64, embed=32, text_width=32, patches=(64 // 16) * (32 // 16), vision_layers=4, text_layers=2,
                num_classes=4, frames=6)
#: the paper's: CLIP ViT-B/16 at 288x144, T = 6, HITSZ-VCM's 500 training identities (configs/VLD/vcm.yml)
VIT_B16_VCM = Geometry(width=768, embed=512, text_width=512, patches=(288 // 16) * (144 // 16), vision_layers=12,
                       text_layers=12, num_classes=500, frames=6)


def _block(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    """OpenAI CLIP's residual attention block, as the official code names it."""
    return {f"{prefix}.attn.in_proj_weight": (3 * width, width), f"{prefix}.attn.in_proj_bias": (3 * width,),
            f"{prefix}.attn.out_proj.weight": (width, width), f"{prefix}.attn.out_proj.bias": (width,),
            f"{prefix}.ln_1.weight": (width,), f"{prefix}.ln_1.bias": (width,),
            f"{prefix}.mlp.c_fc.weight": (4 * width, width), f"{prefix}.mlp.c_fc.bias": (4 * width,),
            f"{prefix}.mlp.c_proj.weight": (width, 4 * width), f"{prefix}.mlp.c_proj.bias": (width,),
            f"{prefix}.ln_2.weight": (width,), f"{prefix}.ln_2.bias": (width,)}


def _classifier(prefix: str, dim: int, num_classes: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.BN.weight": (dim,), f"{prefix}.BN.bias": (dim,), f"{prefix}.BN.running_mean": (dim,),
            f"{prefix}.BN.running_var": (dim,), f"{prefix}.BN.num_batches_tracked": (),
            f"{prefix}.classifier.weight": (num_classes, dim)}


def official_shapes(g: Geometry = TINY) -> dict[str, tuple[int, ...]]:
    """Every entry of the official ``Model.state_dict()`` at geometry ``g``."""
    shapes = {"image_encoder.class_embedding": (g.width,),
              "image_encoder.positional_embedding": (1 + g.patches, g.width),
              "image_encoder.proj": (g.width, g.embed), "image_encoder.conv1.weight": (g.width, 3, 16, 16),
              "image_encoder.ln_pre.weight": (g.width,), "image_encoder.ln_pre.bias": (g.width,),
              "image_encoder.ln_post.weight": (g.width,), "image_encoder.ln_post.bias": (g.width,)}
    for i in range(g.vision_layers):
        shapes.update(_block(f"image_encoder.transformer.resblocks.{i}", g.width))
    for i in range(g.text_layers):
        shapes.update(_block(f"text_encoder.transformer.resblocks.{i}", g.text_width))
    shapes.update({"text_encoder.positional_embedding": (g.context, g.text_width),
                   "text_encoder.text_projection": (g.text_width, g.embed),
                   "text_encoder.ln_final.weight": (g.text_width,), "text_encoder.ln_final.bias": (g.text_width,),
                   "prompt_learner.cls_ctx": (g.num_classes, 4, g.text_width),
                   "prompt_learner.token_prefix": (1, 2, g.text_width),
                   "prompt_learner.token_suffix": (1, g.context - 6, g.text_width),
                   "logit_scale": (), "prompt_embedding": (g.frames, g.frames, g.width),
                   "attn.in_proj_weight": (3 * g.width, g.width), "attn.in_proj_bias": (3 * g.width,),
                   "attn.out_proj.weight": (g.width, g.width), "attn.out_proj.bias": (g.width,),
                   "ln_post2.weight": (g.width,), "ln_post2.bias": (g.width,)})
    for name, dim in (("classifier", g.width), ("classifier_proj", g.embed), ("classifier_STP", g.width),
                      ("classifier_proj_STP", g.embed)):
        shapes.update(_classifier(name, dim, g.num_classes))
    return shapes


def official_state_dict(seed: int = 0, g: Geometry = TINY, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Random entries (``scale`` x standard normal) of :func:`official_shapes`."""
    generator = torch.Generator().manual_seed(seed)
    return {key: (torch.tensor(7) if key.endswith("num_batches_tracked")
                  else torch.randn(shape, generator=generator) * scale)
            for key, shape in official_shapes(g).items()}

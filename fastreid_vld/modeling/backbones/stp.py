"""STP: spatial-temporal prompting of a CLIP ViT (VLD, TIFS 2025).

STH (spatial-temporal hub): a learnable [T, T, width] tensor. From block ``STH_START_LAYER``
on, frame t of a tracklet carries T extra tokens (row t of the hub), appended after its patch
tokens; before every later block the hub tokens of the tracklet's frames are transposed
(token j of frame t swaps with token t of frame j), so information moves across frames.

STA (spatial-temporal aggregation): after the last block, each frame's class token queries a
multi-head attention over the tracklet's T*T hub tokens; the result goes through the ViT's
ln_post.

The blocks run through :func:`~fastreid_vld.modeling.attention.residual_block` (fused attention);
the last block computes only the class and hub tokens, the only ones used after it.
``MODEL.STP.GRAD_CHECKPOINT`` recomputes each block in the backward pass instead of keeping its
activations (lower peak memory for one more forward of each block; the same gradients).

Under autocast every tensor has the official forward's dtype: fp16 (bf16 on the CPU) up to the
hub's join, where torch.cat with the fp32 hub makes the residual stream fp32 for every later block
(their matrix products still fp16); the class tokens are fp32, their projection and STA fp16.
"""

from __future__ import annotations

import torch
from fastreid.config import CfgNode
from fastreid.modeling.backbones import BACKBONE_REGISTRY
from torch import nn

from ..attention import adopt_blocks, residual_block
from ..clip import build_clip_image_tower, load_clip_weights, read_clip_state_dict

__all__ = ["STPBackbone", "build_stp_backbone"]


class STPBackbone(nn.Module):
    """open_clip ViT with STH and STA.

    Input [B*T, 3, H, W]: normalised frames, the T frames of each tracklet consecutive.
    Output, per frame: ``cls_penultimate`` [B*T, W] (class token entering the last block),
    ``cls`` [B*T, W] (last block, ln_post), ``cls_proj`` [B*T, E] (``cls`` @ proj) and, with STA,
    ``sta`` [B*T, W] (W: ViT width, 768 for ViT-B/16; E: CLIP embedding width, 512).
    """

    def __init__(self, visual: nn.Module, seq_len: int, sth_start_layer: int, use_sta: bool,
                 sta_heads: int, grad_checkpoint: bool = False) -> None:
        super().__init__()
        adopt_blocks(visual.transformer.resblocks, "image")
        depth = len(visual.transformer.resblocks)
        if not -1 <= sth_start_layer < depth:
            raise ValueError(f"MODEL.STP.STH_START_LAYER {sth_start_layer}: expected -1 (no STH) or a block "
                             f"index 0..{depth - 1}")
        if use_sta and sth_start_layer < 0:
            raise ValueError("MODEL.STP.STA needs the hub tokens of STH: set MODEL.STP.STH_START_LAYER >= 0 "
                             "or MODEL.STP.STA False")
        self.visual = visual
        self.seq_len = seq_len
        self.sth_start_layer = sth_start_layer
        self.use_sta = use_sta
        self.grad_checkpoint = grad_checkpoint
        width = visual.class_embedding.shape[0]
        if sth_start_layer >= 0:
            self.hub = nn.Parameter(torch.randn(seq_len, seq_len, width))  # [T, T, W], official init N(0, 1)
        if use_sta:
            self.sta = nn.MultiheadAttention(width, sta_heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[0] % self.seq_len:
            raise ValueError(f"STP backbone: {x.shape[0]} frames is not a multiple of INPUT.SEQ_LEN={self.seq_len}")
        v = self.visual
        x = self._embed(x)  # [N, 1 + h*w, W]
        blocks = v.transformer.resblocks
        for i, block in enumerate(blocks):
            if i == self.sth_start_layer:
                x = self._join_hub(x)  # [N, 1 + h*w + T, W]
            elif 0 <= self.sth_start_layer < i:
                x = self._exchange_hub(x)
            last = i == len(blocks) - 1
            if last:
                cls_penultimate = x[:, 0]
            x = residual_block(block, x, queries=self._used_after_last_block(x) if last else None,
                               grad_checkpoint=self.grad_checkpoint and self.training)
        # x: [N, 1 + T, W] (class token, then the hub tokens) with STH, else [N, 1, W]
        cls = v.ln_post(x[:, 0])
        features = {"cls_penultimate": cls_penultimate, "cls": cls, "cls_proj": cls @ v.proj}
        if self.use_sta:
            features["sta"] = v.ln_post(self._aggregate(x))
        return features

    def _used_after_last_block(self, x: torch.Tensor) -> torch.Tensor:
        """Positions of x [N, L, W] read after the last block: the class token and the hub tokens."""
        hub = range(x.shape[1] - self.seq_len, x.shape[1]) if self.sth_start_layer >= 0 else ()
        return torch.tensor([0, *hub], device=x.device)  # [1 + T] or [1]

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """open_clip's patch embedding, class token, positional embedding and ln_pre."""
        v = self.visual
        x = v.conv1(x).flatten(2).transpose(1, 2)  # [N, h*w, W]
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        return v.ln_pre(v.patch_dropout(torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)))

    def _join_hub(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, L, W] -> [N, L + T, W]. The hub keeps its own dtype: under autocast torch.cat promotes to
        the widest input, so the fp32 hub turns the fp16 stream fp32 for the later blocks, as officially."""
        tracklets = x.shape[0] // self.seq_len
        hub = self.hub.repeat(tracklets, 1, 1)  # [N, T, W]: frame t of each tracklet gets row t
        return torch.cat([x, hub], dim=1)

    def _exchange_hub(self, x: torch.Tensor) -> torch.Tensor:
        t = self.seq_len
        x = x.reshape(-1, t, x.shape[1], x.shape[2])  # [B, T, L + T, W]
        hub = x[:, :, -t:].transpose(1, 2)  # token j of frame i <-> token i of frame j
        return torch.cat([x[:, :, :-t], hub], dim=2).flatten(0, 1)  # [B*T, L + T, W]

    def _aggregate(self, x: torch.Tensor) -> torch.Tensor:
        t, width = self.seq_len, x.shape[-1]
        queries = x[:, 0].reshape(-1, t, width)  # [B, T, W]: each frame's class token
        hub = x[:, -t:].reshape(-1, t * t, width)  # [B, T*T, W]: the tracklet's hub tokens, frame-major
        return self.sta(queries, hub, hub, need_weights=False)[0].reshape(-1, width)  # [B*T, W]


def is_stp_backbone(cfg: CfgNode) -> bool:
    return cfg.MODEL.BACKBONE.NAME == "build_stp_backbone"


@BACKBONE_REGISTRY.register()
def build_stp_backbone(cfg: CfgNode) -> STPBackbone:
    """The CLIP image tower of MODEL.CLIP.NAME at INPUT.SIZE_TRAIN with MODEL.STP.*; CLIP weights
    from MODEL.BACKBONE.PRETRAIN_PATH (or the MODEL.CLIP.PRETRAINED tag) when MODEL.BACKBONE.PRETRAIN."""
    if tuple(cfg.INPUT.SIZE_TEST) != tuple(cfg.INPUT.SIZE_TRAIN):
        raise ValueError(f"build_stp_backbone: INPUT.SIZE_TEST {tuple(cfg.INPUT.SIZE_TEST)} must equal "
                         f"INPUT.SIZE_TRAIN {tuple(cfg.INPUT.SIZE_TRAIN)}: the positional embedding has one grid")
    visual = build_clip_image_tower(cfg)
    if cfg.MODEL.BACKBONE.PRETRAIN:
        state_dict = read_clip_state_dict(cfg, cfg.MODEL.BACKBONE.PRETRAIN_PATH, "MODEL.BACKBONE.PRETRAIN_PATH")
        load_clip_weights(visual, state_dict, "image", cfg.MODEL.CLIP.POS_EMBED_INTERPOLATION,
                          cfg.MODEL.BACKBONE.PRETRAIN_PATH or cfg.MODEL.CLIP.PRETRAINED)
    return STPBackbone(visual, cfg.INPUT.SEQ_LEN, cfg.MODEL.STP.STH_START_LAYER, cfg.MODEL.STP.STA,
                       cfg.MODEL.STP.STA_HEADS, cfg.MODEL.STP.GRAD_CHECKPOINT)

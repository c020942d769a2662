"""STP: spatial-temporal prompting of a CLIP ViT (VLD, TIFS 2025).

STH (spatial-temporal hub): a learnable [T, T, width] tensor. From block ``STH_START_LAYER``
on, frame t of a tracklet carries T extra tokens (row t of the hub); before every later
block the hub tokens of the tracklet's frames are transposed (token j of frame t swaps with
token t of frame j), so information moves across frames.
STA (spatial-temporal aggregation): after the last block, each frame's class token queries a
multi-head attention over the tracklet's T*T hub tokens; the result goes through ln_post.
"""

from __future__ import annotations

import torch
from fastreid.config import CfgNode
from fastreid.modeling.backbones import BACKBONE_REGISTRY
from torch import nn

from ..clip import build_clip, load_clip_weights


class STPBackbone(nn.Module):
    """Input [B*T, 3, H, W] (normalised frames, tracklet-major); output a dict of per-frame features:
    ``cls_penultimate`` [B*T, W] (class token entering the last block), ``cls`` [B*T, W] (after ln_post),
    ``cls_proj`` [B*T, E], and with STA ``sta`` [B*T, W], ``sta_proj`` [B*T, E]."""

    def __init__(self, visual: nn.Module, seq_len: int, sth_start_layer: int, use_sta: bool, sta_heads: int):
        super().__init__()
        self.visual = visual
        self.seq_len = seq_len
        self.sth_start_layer = sth_start_layer
        width = visual.class_embedding.shape[0]
        if sth_start_layer >= 0:
            self.hub = nn.Parameter(torch.randn(seq_len, seq_len, width))  # [T, T, W], official init
        if use_sta:
            if sth_start_layer < 0:
                raise ValueError("MODEL.STP.STA needs the hub tokens of STH: set MODEL.STP.STH_START_LAYER >= 0")
            self.sta = nn.MultiheadAttention(width, sta_heads, batch_first=True)
        self.use_sta = use_sta

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        v = self.visual
        x = v.conv1(x).flatten(2).transpose(1, 2)  # [N, gh*gw, W]
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = v.ln_pre(v.patch_dropout(torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)))
        blocks = v.transformer.resblocks
        for i, block in enumerate(blocks):
            if i == self.sth_start_layer:
                x = self._join_hub(x)
            elif 0 <= self.sth_start_layer < i:
                x = self._exchange_hub(x)
            if i == len(blocks) - 1:
                cls_penultimate = x[:, 0]
            x = block(x)  # [N, L (+T), W]
        out = {"cls_penultimate": cls_penultimate, "cls": v.ln_post(x[:, 0])}
        out["cls_proj"] = out["cls"] @ v.proj
        if self.use_sta:
            out["sta"] = v.ln_post(self._aggregate(x))
            out["sta_proj"] = out["sta"] @ v.proj
        return out

    def _join_hub(self, x: torch.Tensor) -> torch.Tensor:
        tracklets = x.shape[0] // self.seq_len
        hub = self.hub.to(x.dtype).repeat(tracklets, 1, 1)  # [N, T, W]: frame t gets row t
        return torch.cat([x, hub], dim=1)

    def _exchange_hub(self, x: torch.Tensor) -> torch.Tensor:
        t = self.seq_len
        x = x.reshape(-1, t, x.shape[1], x.shape[2])  # [B, T, L+T, W]
        hub = x[:, :, -t:].transpose(1, 2)  # token j of frame i <-> token i of frame j
        return torch.cat([x[:, :, :-t], hub], dim=2).flatten(0, 1)

    def _aggregate(self, x: torch.Tensor) -> torch.Tensor:
        t, width = self.seq_len, x.shape[-1]
        queries = x[:, 0].reshape(-1, t, width)  # [B, T, W]: each frame's class token
        hub = x[:, -t:].reshape(-1, t * t, width)  # [B, T*T, W]
        return self.sta(queries, hub, hub, need_weights=False)[0].reshape(-1, width)  # [B*T, W]


@BACKBONE_REGISTRY.register()
def build_stp_backbone(cfg: CfgNode) -> STPBackbone:
    clip = build_clip(cfg)
    if cfg.MODEL.BACKBONE.PRETRAIN:
        load_clip_weights(clip, cfg.MODEL.BACKBONE.PRETRAIN_PATH)
    return STPBackbone(clip.visual, cfg.INPUT.SEQ_LEN, cfg.MODEL.STP.STH_START_LAYER, cfg.MODEL.STP.STA,
                       cfg.MODEL.STP.STA_HEADS)

"""The losses of VLD's training step, by name, each weighted by its MODEL.LOSSES.VLD key.

Official step (and defaults): cross-entropy on the CLS classifier, the projected-CLS classifier
(1 each), the IMLP text logits (0.08) and the STA classifier (0.4, the identity-level term);
weighted-regularization triplet on the CLS entering the last block, the CLS, the projected CLS
and the STA feature (1 each); the image-text SupCon term is defined but off (0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fastreid.config import CfgNode

from .supcon import image_text_supcon
from .triplet import weighted_regularization_triplet

__all__ = ["LossTerm", "VLDLoss"]


@dataclass(frozen=True)
class LossTerm:
    """One weighted term: its kind ("ce", "triplet" or "supcon"), the head output it reads
    (a logits name for "ce", a tracklet feature name otherwise) and its weight key."""

    kind: str
    source: str
    weight_key: str


#: fast-reid loss name -> term. The loss dict keeps this order.
TERMS = {
    "loss_cls": LossTerm("ce", "cls", "CE"),
    "loss_cls_proj": LossTerm("ce", "cls_proj", "CE_PROJ"),
    "loss_text": LossTerm("ce", "text", "TEXT_CE"),
    "loss_cls_sta": LossTerm("ce", "sta", "STA_CE"),
    "loss_triplet_penultimate": LossTerm("triplet", "cls_penultimate", "TRI_PENULTIMATE"),
    "loss_triplet": LossTerm("triplet", "cls", "TRI"),
    "loss_triplet_proj": LossTerm("triplet", "cls_proj", "TRI_PROJ"),
    "loss_triplet_sta": LossTerm("triplet", "sta", "TRI_STA"),
    "loss_supcon": LossTerm("supcon", "cls_proj", "SUPCON"),
}


class VLDLoss:
    """``loss(outputs, targets)`` -> fast-reid's dict of named, already weighted losses, from the
    IMLP head's training outputs (``features``, ``logits``, ``text_features``)."""

    def __init__(self, weights: dict[str, float], ce_epsilon: float = 0.0) -> None:
        """``weights``: MODEL.LOSSES.VLD key -> weight; terms of weight 0 are not computed."""
        self.weights = {name: float(weights[term.weight_key]) for name, term in TERMS.items()}
        self.ce_epsilon = ce_epsilon

    @classmethod
    def from_config(cls, cfg: CfgNode) -> VLDLoss:
        return cls(dict(cfg.MODEL.LOSSES.VLD), cfg.MODEL.LOSSES.CE.EPSILON)

    def drop_unavailable(self, feature_names: tuple[str, ...], logit_names: tuple[str, ...]) -> list[str]:
        """Stop computing the weighted terms that read an output the model does not compute (the
        STP terms on another backbone, the STA terms without STA); their weight keys, for the log."""
        dropped = []
        for name, term in TERMS.items():
            available = logit_names if term.kind == "ce" else feature_names
            if self.weights[name] > 0 and term.source not in available:
                self.weights[name] = 0.0
                dropped.append(f"MODEL.LOSSES.VLD.{term.weight_key}")
        return dropped

    def __call__(self, outputs: dict, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = {}
        for name, term in TERMS.items():
            if self.weights[name] > 0:
                losses[name] = self.weights[name] * self._term(term, outputs, targets)
        return losses

    def _term(self, term: LossTerm, outputs: dict, targets: torch.Tensor) -> torch.Tensor:
        if term.kind == "ce":
            return F.cross_entropy(outputs["logits"][term.source].float(), targets, label_smoothing=self.ce_epsilon)
        if term.kind == "triplet":
            return weighted_regularization_triplet(outputs["features"][term.source], targets)
        return image_text_supcon(outputs["features"][term.source].float(), outputs["text_features"].float(), targets)

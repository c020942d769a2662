"""Image-text supervised contrastive loss (as CLIP-ReID): defined by VLD, off in its training step."""

from __future__ import annotations

import torch


def image_text_supcon(image: torch.Tensor, text: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """image [N, E], text [C, E] (one row per identity), targets [N] -> scalar: image->text plus
    text->image supervised contrastive terms, positives being the same identity."""
    text_of_sample = text[targets]  # [N, E]
    image_to_text = _supcon(image, text_of_sample, targets)
    text_to_image = _supcon(text_of_sample, image, targets)
    return image_to_text + text_to_image


def _supcon(anchors: torch.Tensor, others: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    positive = (targets[:, None] == targets[None, :]).float()
    logits = anchors @ others.t()
    logits = logits - logits.max(dim=1, keepdim=True)[0].detach()
    log_prob = logits - torch.log(torch.exp(logits).sum(dim=1, keepdim=True))
    return -((positive * log_prob).sum(dim=1) / positive.sum(dim=1)).mean()

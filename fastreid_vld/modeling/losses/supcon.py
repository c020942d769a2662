"""Image-text supervised contrastive loss (as CLIP-ReID; defined by VLD, off in its training step)."""

from __future__ import annotations

import torch

__all__ = ["image_text_supcon", "supervised_contrastive"]


def image_text_supcon(image: torch.Tensor, text: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """image [N, E] (projected tracklet features), text [C, E] (one row per identity), targets [N]
    -> scalar: image->text plus text->image terms over the batch, positives sharing the identity."""
    text_of_sample = text[targets]  # [N, E]
    return (supervised_contrastive(image, text_of_sample, targets, targets)
            + supervised_contrastive(text_of_sample, image, targets, targets))


def supervised_contrastive(anchors: torch.Tensor, others: torch.Tensor, anchor_targets: torch.Tensor,
                           other_targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """anchors [N, E], others [M, E] -> scalar: minus the mean, over anchors, of the mean log-softmax
    (over ``others``, logits = dot products / temperature) of the others with the anchor's identity."""
    positive = (anchor_targets[:, None] == other_targets[None, :]).float()  # [N, M]
    logits = anchors @ others.t() / temperature
    logits = logits - logits.max(dim=1, keepdim=True)[0].detach()
    log_prob = logits - torch.log(torch.exp(logits).sum(dim=1, keepdim=True))
    return -((positive * log_prob).sum(dim=1) / positive.sum(dim=1)).mean()

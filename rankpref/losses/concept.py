"""Losses of explicit-concept (SESA) training: a graded InfoNCE to rank items for a query and
a multi-label BCE that ties each concept dimension to its concept."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rankpref.registry import LOSSES

PADDING_VALUE = -1.0


@LOSSES.register("infonce", group="concepts")
def graded_info_nce(scores: torch.Tensor, labels: torch.Tensor, *, temperature: float = 1.0,
                    padding_value: float = PADDING_VALUE) -> torch.Tensor:
    """InfoNCE with graded positives over ``[batch, list_size]`` scores.

    Items whose label equals ``padding_value`` are left out of the softmax; the target
    distribution is the labels (> 0) normalised per row, so with one positive this is the
    usual InfoNCE, and with graded labels a higher grade pulls harder. Rows with no positive
    are left out; the result is the mean over the remaining rows (0 when there are none).
    """
    valid = labels != padding_value
    logits = (scores / temperature).masked_fill(~valid, float("-inf"))
    gains = torch.where(valid, labels.clamp_min(0), torch.zeros_like(labels))
    total = gains.sum(dim=1, keepdim=True)
    rows = total.squeeze(1) > 0
    if not rows.any():
        return scores.sum() * 0.0
    logp = F.log_softmax(logits[rows], dim=1)
    target = gains[rows] / total[rows]
    return -(target * logp.masked_fill(~valid[rows], 0.0)).sum(dim=1).mean()


@LOSSES.register("concept_bce", group="concepts")
def concept_bce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Multi-label BCE of the rows in ``mask`` (texts with known concepts); 0 if none."""
    if not mask.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[mask], labels[mask])

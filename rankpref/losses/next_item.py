"""Next-item losses over the states of the positions that have a target.

Shapes: ``states`` [P, d] (one row per target position, padding already removed),
``item_weights`` [num_items + 1, d] with row 0 the padding item, ``targets`` [P] in 1..num_items.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def full_cross_entropy(states: torch.Tensor, item_weights: torch.Tensor,
                       targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax cross-entropy over the whole catalogue (the padding item is excluded).

    ``exclude`` [num_items + 1] bool: items left out of the softmax (e.g. cold-start items
    held out of training, which "do not exist yet")."""
    logits = states @ item_weights.T
    logits[:, 0] = float("-inf")
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    return F.cross_entropy(logits, targets)


def _negative_logits(states, item_weights, targets, negatives):
    neg = torch.einsum("pd,pnd->pn", states, item_weights[negatives])
    return neg.masked_fill(negatives == targets.view(-1, 1), float("-inf"))


def bce_one_negative(states: torch.Tensor, item_weights: torch.Tensor, targets: torch.Tensor,
                     negatives: torch.Tensor) -> torch.Tensor:
    """SASRec's original loss: binary cross-entropy of the target against one sampled negative.

    ``negatives`` [P, 1]; a negative that equals the target is ignored.
    """
    pos = (states * item_weights[targets]).sum(-1)
    neg = _negative_logits(states, item_weights, targets, negatives)[:, 0]
    valid = torch.isfinite(neg)
    pos_loss = F.softplus(-pos)
    neg_loss = torch.where(valid, F.softplus(neg.masked_fill(~valid, 0.0)), torch.zeros_like(neg))
    return (pos_loss + neg_loss).mean()


def sampled_softmax(states: torch.Tensor, item_weights: torch.Tensor, targets: torch.Tensor,
                    negatives: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the target against N uniformly sampled negatives ``[P, N]``.

    Uniform sampling needs no log-q correction; negatives equal to the target are masked.
    """
    pos = (states * item_weights[targets]).sum(-1, keepdim=True)
    neg = _negative_logits(states, item_weights, targets, negatives)
    logits = torch.cat([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long,
                                               device=states.device))


NEXT_ITEM_LOSSES = {"ce": full_cross_entropy, "bce": bce_one_negative,
                    "sampled_softmax": sampled_softmax}

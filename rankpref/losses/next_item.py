"""Next-item losses over the states of the positions that have a target.

Shapes: ``states`` [P, d] (one row per target position, padding already removed),
``item_weights`` [num_items + 1, d] with row 0 the padding item, ``targets`` [P] in 1..num_items,
``negatives`` [P, N] sampled item indices. Every loss takes the same arguments; each is
registered with how many negatives it needs (``negatives``: ``None``, ``"one"``, ``"many"`` =
``loss.num_negatives``), which the training step samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rankpref.registry import LOSSES


@LOSSES.register("ce", group="next_item", negatives=None)
def full_cross_entropy(states: torch.Tensor, item_weights: torch.Tensor,
                       targets: torch.Tensor, negatives: torch.Tensor | None = None,
                       exclude: torch.Tensor | None = None) -> torch.Tensor:
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


@LOSSES.register("bce", group="next_item", negatives="one")
def bce_one_negative(states: torch.Tensor, item_weights: torch.Tensor, targets: torch.Tensor,
                     negatives: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """SASRec's original loss: binary cross-entropy of the target against one sampled negative.

    ``negatives`` [P, 1]; a negative that equals the target is ignored.
    """
    pos = (states * item_weights[targets]).sum(-1)
    neg = _negative_logits(states, item_weights, targets, negatives)[:, 0]
    valid = torch.isfinite(neg)
    pos_loss = F.softplus(-pos)
    neg_loss = torch.where(valid, F.softplus(neg.masked_fill(~valid, 0.0)), torch.zeros_like(neg))
    return (pos_loss + neg_loss).mean()


@LOSSES.register("sampled_softmax", group="next_item", negatives="many")
def sampled_softmax(states: torch.Tensor, item_weights: torch.Tensor, targets: torch.Tensor,
                    negatives: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the target against N uniformly sampled negatives ``[P, N]``.

    Uniform sampling needs no log-q correction; negatives equal to the target are masked.
    """
    pos = (states * item_weights[targets]).sum(-1, keepdim=True)
    neg = _negative_logits(states, item_weights, targets, negatives)
    logits = torch.cat([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long,
                                               device=states.device))

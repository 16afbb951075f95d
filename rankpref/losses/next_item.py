"""Next-item losses over the states of the positions that have a target.

Shapes: ``states`` [P, d] (one row per target position, padding already removed),
``item_weights`` [num_items + 1, d] with row 0 the padding item, ``targets`` [P] in 1..num_items,
``negatives`` [P, N] sampled item indices. Every loss takes the same arguments; each is
registered with how many negatives it needs (``negatives``: ``None``, ``"one"``, ``"many"`` =
``loss.num_negatives``), which the training step samples. A loss may take more keyword
arguments, each filled by the training step when the loss names it: ``num_items`` (the
catalogue size, which a subset ``item_weights`` does not show), ``calibration``
(``loss.calibration``), ``in_batch`` [M] items drawn from the step's own targets and
``popularity`` [num_items + 1] (each item's share of the training targets).
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


@LOSSES.register("gbce", group="next_item", negatives="many")
def gbce(states: torch.Tensor, item_weights: torch.Tensor, targets: torch.Tensor,
         negatives: torch.Tensor, exclude: torch.Tensor | None = None, *, num_items: int,
         calibration: float = 0.75) -> torch.Tensor:
    """gSASRec's generalised binary cross-entropy (Petrov & Macdonald, RecSys 2023).

    BCE over the target and N uniform negatives, with the positive probability raised to
    ``beta = alpha * (t * (1 - 1/alpha) + 1/alpha)``, ``alpha = N / (num_items - 1)`` the
    sampling rate and ``t = calibration``: it undoes the overconfidence that negative
    sampling gives plain BCE (t = 0 is BCE; t = 1 is calibrated to the full softmax). Averaged
    over all 1 + N logits of a row, as the reference. Negatives equal to the target are
    ignored."""
    if not 0 <= calibration <= 1:
        raise ValueError(f"calibration must be in [0, 1], got {calibration}")
    n = negatives.shape[1]
    alpha = n / max(num_items - 1, 1)
    beta = alpha * (calibration * (1 - 1 / alpha) + 1 / alpha)
    pos = (states * item_weights[targets]).sum(-1)
    neg = _negative_logits(states, item_weights, targets, negatives)
    # -log(sigmoid(pos) ** beta) = beta * softplus(-pos); softplus(-inf) = 0 drops a masked one
    per_row = beta * F.softplus(-pos) + F.softplus(neg).sum(1)
    return (per_row / (1 + n)).mean()


@LOSSES.register("sampled_softmax_logq", group="next_item", negatives="many", in_batch=True)
def sampled_softmax_logq(states: torch.Tensor, item_weights: torch.Tensor,
                         targets: torch.Tensor, negatives: torch.Tensor,
                         exclude: torch.Tensor | None = None, *, in_batch: torch.Tensor,
                         popularity: torch.Tensor, num_items: int) -> torch.Tensor:
    """Sampled softmax over mixed negatives, corrected for how they were drawn (logQ).

    Candidates of row ``p``: its target, its N uniform ``negatives[p]`` and the M ``in_batch``
    items shared by all rows (drawn from the step's targets, so in proportion to
    popularity). Every candidate's logit, the target's included, is lowered by the log of
    how often the mixture draws it, ``log(M * q_j + N / num_items)`` with ``q_j`` =
    ``popularity[j]`` (Yi et al., RecSys 2019, for in-batch; Yang et al., WWW 2020,
    for the mixture): without it popular items are pushed down for being drawn often.
    Candidates equal to the row's target are dropped (accidental hits)."""
    n, m = negatives.shape[1], len(in_batch)
    log_q = torch.log(m * popularity + n / num_items)  # [num_items + 1]
    pos = (states * item_weights[targets]).sum(-1, keepdim=True) - log_q[targets].unsqueeze(1)
    uniform = _negative_logits(states, item_weights, targets, negatives) - log_q[negatives]
    shared = states @ item_weights[in_batch].T - log_q[in_batch]
    shared = shared.masked_fill(in_batch.view(1, -1) == targets.view(-1, 1), float("-inf"))
    logits = torch.cat([pos, uniform, shared], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long,
                                               device=states.device))

"""Listwise ranking losses: pure functions over ``[batch, list_size]`` scores and labels.

Every loss takes ``scores`` (model outputs) and ``labels`` (graded relevance, e.g. a mean
rating) of the same shape ``[batch, list_size]`` and an explicit ``padding_value``: positions
whose label equals it are padding and take no part in the loss (their scores may be anything,
even NaN). Lists with fewer than two real items carry no ranking information and are left out;
a batch with no usable list gives a zero loss that still has a gradient (of zeros).

Losses (allRank conventions unless noted):

* :func:`ranknet_loss`  mean of ``softplus(s_j - s_i)`` over all pairs with ``y_i > y_j``.
* :func:`listnet_loss`  cross-entropy between ``softmax(y)`` and ``softmax(s)``, mean over lists.
* :func:`listmle_loss`  Plackett-Luce negative log-likelihood of the label order, summed over a
  list and averaged over lists; tied labels are ordered by position (or at random with a
  generator).
* :func:`approx_ndcg_loss`  minus the mean NDCG computed with smooth ranks
  ``1 + sum_j sigmoid(alpha (s_j - s_i))``.
* :func:`lambda_loss`  LambdaLoss (Wang et al., CIKM 2018) with the NDCG-Loss2++ weights
  (or the LambdaRank weights), ranks taken from the current scores.
* :func:`ranklist_loss`  RankList, as implemented here (formulation below).
* :func:`mse_loss`  the pointwise baseline: mean squared error between scores and labels over
  every real item (a regression on the ratings, trained through the same lists).

RankList formulation used by rankpref
-------------------------------------
Sort a list by label, best first; item ``i`` gets position ``p_i`` (ties keep list order).
The constraint set is

    C = {(i, j) : y_i - y_j >= W,  y_i > y_j,  p_j - p_i in K,  p_j - p_i <= k_max(epoch)}

with ``W`` the minimum label margin, ``K`` the pair set (``local``: {1}, neighbours;
``nonlocal``: every distance; ``skip``: a given set of distances such as {1, 2, 4}) and
``k_max`` the skip curriculum (:func:`curriculum_max_skip`: only neighbours at the start, one
more skip distance every ``every`` epochs; ``None`` means all visible). Each constraint is a
RankNet probability ``P(i > j) = sigmoid(s_i - s_j)`` and the list's loss is the negative log
of their product,

    exact:  L = sum_{(i,j) in C} log(1 + exp(s_j - s_i)),

divided by ``|C|`` (``normalize=True``) and averaged over lists. The log-sum-exp
approximation merges the constraints of one anchor ``i`` (``C_i = {j : (i, j) in C}``):

    lse:    L = sum_i log(1 + sum_{j in C_i} exp(s_j - s_i)),

which is one log per item instead of one per pair. Because
``1 + sum_j a_j <= prod_j (1 + a_j) <= (1 + sum_j a_j)^{|C_i|}`` for ``a_j >= 0``,
``lse <= exact <= max_i |C_i| * lse`` (equality when every ``|C_i| <= 1``, e.g. ``local``).

With ``pairs="nonlocal"``, ``W = 0``, no tied labels, no curriculum and ``normalize=False`` the
``lse`` form *is* ListMLE; RankList differs from ListMLE exactly through the margin (pairs
closer than ``W``, and all ties, are dropped rather than ordered arbitrarily), the pair set
(local/skip pairs instead of "everything below"), the curriculum, the per-pair (``exact``)
likelihood, and the normalisation by the number of constraints. The tests show each one.
"""

from __future__ import annotations

from typing import Iterable, Literal

import torch
import torch.nn.functional as F

from rankpref.registry import LOSSES

PADDING_VALUE = -1.0
"""allRank's padding label: real labels must differ from it (pass another value if yours can
be -1)."""

LN2 = 0.6931471805599453


def _prepare(scores: torch.Tensor, labels: torch.Tensor, padding_value: float):
    if scores.shape != labels.shape or scores.dim() != 2:
        raise ValueError(f"scores and labels must both be [batch, list_size], got "
                         f"{tuple(scores.shape)} and {tuple(labels.shape)}")
    valid = labels != padding_value
    if torch.isnan(labels[valid]).any():
        raise ValueError("labels contain NaN (use the padding value for missing items)")
    labels = labels.to(scores.dtype)
    # padded scores may be NaN/inf: replace them so no NaN reaches the gradient
    scores = scores.masked_fill(~valid, 0.0)
    labels = labels.masked_fill(~valid, 0.0)
    usable = valid.sum(dim=1) >= 2
    return scores, labels, valid, usable


def _zero(scores: torch.Tensor) -> torch.Tensor:
    return (scores * 0.0).sum()


def _pair_valid(valid: torch.Tensor) -> torch.Tensor:
    return valid[:, :, None] & valid[:, None, :]


def ranknet_loss(scores: torch.Tensor, labels: torch.Tensor,
                 padding_value: float = PADDING_VALUE) -> torch.Tensor:
    """RankNet over all pairs ``y_i > y_j`` of each list: mean of ``-log sigmoid(s_i - s_j)``."""
    scores, labels, valid, _ = _prepare(scores, labels, padding_value)
    pairs = _pair_valid(valid) & (labels[:, :, None] > labels[:, None, :])
    if not pairs.any():
        return _zero(scores)
    diff = scores[:, :, None] - scores[:, None, :]
    return F.softplus(-diff)[pairs].mean()


def listnet_loss(scores: torch.Tensor, labels: torch.Tensor,
                 padding_value: float = PADDING_VALUE) -> torch.Tensor:
    """ListNet (top-one probabilities): ``-sum softmax(y) * log_softmax(s)``, mean over lists."""
    scores, labels, valid, usable = _prepare(scores, labels, padding_value)
    if not usable.any():
        return _zero(scores)
    neg_inf = torch.finfo(scores.dtype).min
    log_p = torch.log_softmax(scores.masked_fill(~valid, neg_inf), dim=1)
    target = torch.softmax(labels.masked_fill(~valid, neg_inf), dim=1)
    per_list = -(target * log_p.masked_fill(~valid, 0.0)).sum(dim=1)
    return per_list[usable].mean()


def _label_order(labels: torch.Tensor, valid: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices that sort each list by label, best first, padding last; ties keep list order
    (or a random order when a generator is given)."""
    key = labels.masked_fill(~valid, float("-inf"))
    if generator is None:
        return torch.sort(key, dim=1, descending=True, stable=True).indices
    perm = torch.argsort(torch.rand(key.shape, generator=generator), dim=1).to(key.device)
    order = torch.sort(key.gather(1, perm), dim=1, descending=True, stable=True).indices
    return perm.gather(1, order)


def listmle_loss(scores: torch.Tensor, labels: torch.Tensor,
                 padding_value: float = PADDING_VALUE,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """ListMLE: ``sum_i [logsumexp(s_{pi(i..n)}) - s_{pi(i)}]`` for the label order ``pi``,
    mean over lists."""
    scores, labels, valid, usable = _prepare(scores, labels, padding_value)
    if not usable.any():
        return _zero(scores)
    order = _label_order(labels, valid, generator)
    s = scores.gather(1, order)
    v = valid.gather(1, order)  # padding is at the end of every sorted list
    tail = torch.logcumsumexp(s.masked_fill(~v, float("-inf")).flip(1), dim=1).flip(1)
    per_list = torch.where(v, tail - s, torch.zeros_like(s)).sum(dim=1)
    return per_list[usable].mean()


def _gains(labels: torch.Tensor, gain: str) -> torch.Tensor:
    if gain == "exp2":
        return torch.pow(2.0, labels) - 1.0
    if gain == "linear":
        return labels
    raise ValueError(f"gain must be 'exp2' or 'linear', got {gain!r}")


def _ideal_dcg(gains: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    g = torch.sort(gains.masked_fill(~valid, 0.0), dim=1, descending=True).values
    pos = torch.arange(1, g.shape[1] + 1, dtype=g.dtype, device=g.device)
    return (g / torch.log2(1.0 + pos)).sum(dim=1)


def approx_ndcg_loss(scores: torch.Tensor, labels: torch.Tensor,
                     padding_value: float = PADDING_VALUE, alpha: float = 1.0,
                     gain: Literal["exp2", "linear"] = "exp2") -> torch.Tensor:
    """ApproxNDCG (Qin et al. 2010): ``-NDCG`` with the smooth rank
    ``r_i = 1 + sum_{j != i} sigmoid(alpha (s_j - s_i))``, mean over lists with a non-zero
    ideal DCG."""
    scores, labels, valid, usable = _prepare(scores, labels, padding_value)
    gains = _gains(labels, gain).masked_fill(~valid, 0.0)
    idcg = _ideal_dcg(gains, valid)
    keep = usable & (idcg > 0)
    if not keep.any():
        return _zero(scores)
    diff = scores[:, None, :] - scores[:, :, None]  # [b, i, j] = s_j - s_i
    others = _pair_valid(valid) & ~torch.eye(scores.shape[1], dtype=torch.bool,
                                              device=scores.device)
    ranks = 1.0 + torch.where(others, torch.sigmoid(alpha * diff), torch.zeros_like(diff)).sum(2)
    dcg = (gains / torch.log2(1.0 + ranks)).sum(dim=1)
    return -(dcg[keep] / idcg[keep]).mean()


def lambda_loss(scores: torch.Tensor, labels: torch.Tensor,
                padding_value: float = PADDING_VALUE,
                scheme: Literal["ndcg2pp", "ndcg2", "lambdarank"] = "ndcg2pp",
                mu: float = 10.0, sigma: float = 1.0,
                gain: Literal["exp2", "linear"] = "exp2") -> torch.Tensor:
    """LambdaLoss with NDCG weighting: ``-sum_{y_i > y_j} w_ij log2 sigmoid(sigma (s_i - s_j))``
    per list, mean over lists with a non-zero ideal DCG.

    Ranks ``r`` come from the current scores (detached); ``G = gain / maxDCG``,
    ``D(r) = log2(1 + r)``. ``lambdarank``: ``w = |G_i - G_j| |1/D(r_i) - 1/D(r_j)|``;
    ``ndcg2``: ``w = |G_i - G_j| |1/D(|r_i - r_j|) - 1/D(|r_i - r_j| + 1)|``;
    ``ndcg2pp``: ``mu * ndcg2 + lambdarank`` (Wang et al. 2018, eq. 13: the NDCG-Loss2 weight
    scaled by ``mu``, plus LambdaRank's).
    """
    if scheme not in ("ndcg2pp", "ndcg2", "lambdarank"):
        raise ValueError(f"scheme must be ndcg2pp, ndcg2 or lambdarank, got {scheme!r}")
    scores, labels, valid, usable = _prepare(scores, labels, padding_value)
    gains = _gains(labels, gain).masked_fill(~valid, 0.0)
    idcg = _ideal_dcg(gains, valid)
    keep = usable & (idcg > 0)
    if not keep.any():
        return _zero(scores)
    g = gains / idcg.clamp_min(1e-12)[:, None]
    # rank of every item under the current scores (padding ranked last), 1-based
    key = scores.detach().masked_fill(~valid, float("-inf"))
    order = torch.sort(key, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order).scatter_(
        1, order, torch.arange(1, scores.shape[1] + 1, device=scores.device).expand_as(order))
    r = ranks.to(scores.dtype)
    g_diff = (g[:, :, None] - g[:, None, :]).abs()
    inv_d = 1.0 / torch.log2(1.0 + r)
    lambdarank = g_diff * (inv_d[:, :, None] - inv_d[:, None, :]).abs()
    if scheme == "lambdarank":
        weights = lambdarank
    else:
        gap = (r[:, :, None] - r[:, None, :]).abs().clamp_min(1.0)
        delta = (1.0 / torch.log2(1.0 + gap) - 1.0 / torch.log2(2.0 + gap)).abs()
        weights = g_diff * delta
        if scheme == "ndcg2pp":  # the paper's (rho_ij + mu delta_ij) |G_i - G_j|, as allRank
            weights = mu * weights + lambdarank
    pairs = _pair_valid(valid) & (labels[:, :, None] > labels[:, None, :]) & keep[:, None, None]
    diff = scores[:, :, None] - scores[:, None, :]
    terms = weights * F.softplus(-sigma * diff) / LN2
    per_list = torch.where(pairs, terms, torch.zeros_like(terms)).sum(dim=(1, 2))
    return per_list[keep].mean()


def curriculum_max_skip(epoch: int, list_size: int, every: int | None = 1,
                        start: int = 1) -> int | None:
    """The largest skip distance visible at ``epoch`` (0-based): ``start`` at first, one more
    every ``every`` epochs, at most ``list_size - 1``. ``every=None`` turns the curriculum off
    (returns ``None``: every distance visible)."""
    if every is None:
        return None
    if every < 1 or start < 1 or epoch < 0 or list_size < 2:
        raise ValueError(f"curriculum needs every >= 1, start >= 1, epoch >= 0, list_size >= 2;"
                         f" got every={every}, start={start}, epoch={epoch}, "
                         f"list_size={list_size}")
    return min(list_size - 1, start + epoch // every)


def ranklist_pairs(labels: torch.Tensor, valid: torch.Tensor, *,
                   pairs: Literal["local", "nonlocal", "skip"] = "nonlocal",
                   skips: Iterable[int] | None = None, margin: float = 0.0,
                   max_skip: int | None = None) -> torch.Tensor:
    """The constraint set ``C`` as a boolean ``[batch, n, n]`` mask: ``[b, i, j]`` is True when
    item ``i`` must score above item ``j`` (see the module docstring)."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    n = labels.shape[1]
    order = _label_order(labels, valid)
    pos = torch.empty_like(order).scatter_(
        1, order, torch.arange(n, device=labels.device).expand_as(order))
    dist = pos[:, None, :] - pos[:, :, None]  # p_j - p_i
    y_gap = labels[:, :, None] - labels[:, None, :]
    mask = _pair_valid(valid) & (y_gap > 0) & (y_gap >= margin) & (dist >= 1)
    if pairs == "local":
        mask &= dist == 1
    elif pairs == "skip":
        ks = sorted({int(k) for k in (skips or [])})
        if not ks or ks[0] < 1:
            raise ValueError("pairs='skip' needs skips, a set of distances >= 1, e.g. (1, 2, 4)")
        mask &= torch.isin(dist, torch.tensor(ks, device=labels.device))
    elif pairs != "nonlocal":
        raise ValueError(f"pairs must be local, nonlocal or skip, got {pairs!r}")
    if max_skip is not None:
        mask &= dist <= max_skip
    return mask


def ranklist_loss(scores: torch.Tensor, labels: torch.Tensor,
                  padding_value: float = PADDING_VALUE, *,
                  pairs: Literal["local", "nonlocal", "skip"] = "nonlocal",
                  skips: Iterable[int] | None = None, margin: float = 0.0,
                  max_skip: int | None = None,
                  approx: Literal["exact", "lse"] = "exact",
                  normalize: bool = True) -> torch.Tensor:
    """RankList: RankNet likelihood over a chosen, margin-filtered, curriculum-limited set of
    label-order constraints, exact per pair or merged per anchor by log-sum-exp (see the
    module docstring for the formulation and the bound between the two)."""
    if approx not in ("exact", "lse"):
        raise ValueError(f"approx must be 'exact' or 'lse', got {approx!r}")
    scores, labels, valid, _ = _prepare(scores, labels, padding_value)
    mask = ranklist_pairs(labels, valid, pairs=pairs, skips=skips, margin=margin,
                          max_skip=max_skip)
    counts = mask.sum(dim=(1, 2))
    keep = counts > 0
    if not keep.any():
        return _zero(scores)
    diff = scores[:, None, :] - scores[:, :, None]  # [b, i, j] = s_j - s_i
    if approx == "exact":
        terms = torch.where(mask, F.softplus(diff), torch.zeros_like(diff))
        per_list = terms.sum(dim=(1, 2))
    else:
        logits = diff.masked_fill(~mask, float("-inf"))
        zero = torch.zeros_like(logits[:, :, :1])
        per_anchor = torch.logsumexp(torch.cat([zero, logits], dim=2), dim=2)
        per_list = per_anchor.sum(dim=1)
    if normalize:
        per_list = per_list / counts.clamp_min(1).to(per_list.dtype)
    return per_list[keep].mean()


def mse_loss(scores: torch.Tensor, labels: torch.Tensor,
             padding_value: float = PADDING_VALUE) -> torch.Tensor:
    """Pointwise regression: mean of ``(s_i - y_i)^2`` over the real items of the batch."""
    scores, labels, valid, _ = _prepare(scores, labels, padding_value)
    if not valid.any():
        return _zero(scores)
    return ((scores - labels) ** 2)[valid].mean()


for _name, _fn in (("ranknet", ranknet_loss), ("listnet", listnet_loss),
                  ("listmle", listmle_loss), ("approxndcg", approx_ndcg_loss),
                  ("lambdaloss", lambda_loss), ("ranklist", ranklist_loss),
                  ("mse", mse_loss)):
    LOSSES.register(_name, _fn, group="listwise")

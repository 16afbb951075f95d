"""Metrics for ranking by subjective ratings: pure, vectorised numpy functions.

* :func:`kendall_tau_b`  over a whole test set (pairs counted in row chunks, O(n^2) time,
  O(chunk * n) memory), equal to ``scipy.stats.kendalltau`` (variant b).
* :func:`ranking_accuracy`  the share of pairs with a label gap of at least ``margin`` that the
  predictions order the same way; tied predictions count one half.
* :func:`spearman`  Pearson correlation of average ranks (= ``scipy.stats.spearmanr``).
* :func:`list_ndcg_at_k`  mean NDCG@k over padded ``[lists, list_size]`` arrays, ties
  broken against the model (least relevant first), the rule of :mod:`rankpref.metrics.ranking`.

One tie rule for all of them: values closer than ``TIE_RTOL`` times the largest magnitude
(at least 1) are equal (:func:`snap_ties`), so the float32 noise between the predictions of
two identical feature rows (~1e-8) is a tie, not an ordering. Otherwise they equal scipy's.
Correlations of a constant input are undefined and returned as NaN, as scipy does; NaN or
infinite values are refused (an infinite label would also equal the -inf padding).
"""

from __future__ import annotations

import numpy as np

TIE_RTOL = 1e-6
"""Values closer than this, relative to the largest magnitude (at least 1), are tied."""


def snap_ties(x, rtol: float = TIE_RTOL) -> np.ndarray:
    """``x`` with every run of sorted values that lie within ``rtol * max(1, max|x|)`` of the
    run's first value replaced by that value (infinities are left as they are)."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.ravel()
    finite = np.isfinite(flat)
    values = flat[finite]
    if values.size < 2:
        return x.copy()
    tol = rtol * max(1.0, float(np.abs(values).max()))
    order = np.argsort(values, kind="stable")
    xs = values[order]
    snapped = np.empty_like(xs)
    start = xs[0]
    for i, value in enumerate(xs):  # one pass; a run starts where a value leaves the window
        if value - start > tol:
            start = value
        snapped[i] = start
    out = flat.copy()
    values[order] = snapped
    out[finite] = values
    return out.reshape(x.shape)


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64).ravel()
    target = np.asarray(target, dtype=np.float64).ravel()
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in length: {pred.size} vs {target.size}")
    if np.isnan(pred).any() or np.isnan(target).any():
        raise ValueError("pred/target contain NaN")
    if not (np.isfinite(pred).all() and np.isfinite(target).all()):
        raise ValueError("pred/target contain an infinite value")
    return snap_ties(pred), snap_ties(target)


def _pair_sums(pred: np.ndarray, target: np.ndarray, margin: float | None, chunk: int):
    """Sums over ordered pairs (i, j): concordance, |sign| of each side, and, with a margin,
    (pairs kept, correct among them)."""
    concord = tied_free_p = tied_free_t = kept = correct = 0.0
    for start in range(0, pred.size, chunk):
        dp = np.sign(pred[start:start + chunk, None] - pred[None, :])
        dt_raw = target[start:start + chunk, None] - target[None, :]
        dt = np.sign(dt_raw)
        concord += float((dp * dt).sum())
        tied_free_p += float(np.abs(dp).sum())
        tied_free_t += float(np.abs(dt).sum())
        if margin is not None:
            keep = (np.abs(dt_raw) >= margin) & (dt != 0)
            kept += float(keep.sum())
            correct += float(((dp * dt)[keep] + 1.0).sum() / 2.0)  # 1 right, 0.5 tie, 0 wrong
    return concord, tied_free_p, tied_free_t, kept, correct


def kendall_tau_b(pred, target, chunk: int = 2048) -> float:
    """Kendall's tau-b: ``(C - D) / sqrt((n0 - n1)(n0 - n2))``."""
    pred, target = _pair(pred, target)
    concord, np_, nt, _, _ = _pair_sums(pred, target, None, chunk)
    if np_ == 0 or nt == 0:
        return float("nan")
    return concord / np.sqrt(np_ * nt)


def ranking_accuracy(pred, target, margin: float = 0.0, chunk: int = 2048) -> float:
    """Share of pairs with ``|y_i - y_j| >= margin`` (and ``y_i != y_j``) ordered correctly by
    ``pred``; a prediction tie counts 0.5. NaN when no pair passes the margin."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    pred, target = _pair(pred, target)
    _, _, _, kept, correct = _pair_sums(pred, target, margin, chunk)
    return correct / kept if kept else float("nan")


def average_ranks(x) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks."""
    x = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.r_[True, xs[1:] != xs[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], xs.size] - 1
    mean_rank = (first + last) / 2.0 + 1.0
    ranks = np.empty_like(xs)
    ranks[order] = mean_rank[group]
    return ranks


def spearman(pred, target) -> float:
    """Spearman's rho with average ranks for ties."""
    pred, target = _pair(pred, target)
    a, b = average_ranks(pred), average_ranks(target)
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def list_ndcg_at_k(scores, labels, k: int, padding_value: float = -1.0,
                   gain: str = "exp2") -> float:
    """Mean NDCG@k over lists (rows); positions whose label is ``padding_value`` are left out,
    lists with a zero ideal DCG are skipped. Items of equal score (within the tie rule) are
    ordered least relevant first. ``gain``: ``exp2`` (``2^y - 1``) or ``linear`` (``y``).
    Gains must not be negative: labels below 0 are refused (shift the scale first, as
    ``rankpref rank`` does)."""
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    labels = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in shape: {scores.shape} vs {labels.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    valid = labels != padding_value
    if np.isnan(labels[valid]).any() or not np.isfinite(labels[valid]).all():
        raise ValueError("labels contain NaN or an infinite value")
    if (labels[valid] < 0).any():
        raise ValueError(f"labels must be >= 0 for NDCG gains, got {labels[valid].min():g}")
    scores = snap_ties(np.where(valid, scores, np.nan))
    if gain == "exp2":
        gains = np.where(valid, np.power(2.0, labels) - 1.0, 0.0)
    elif gain == "linear":
        gains = np.where(valid, labels, 0.0)
    else:
        raise ValueError(f"gain must be 'exp2' or 'linear', got {gain!r}")
    kk = min(k, scores.shape[1])
    discount = 1.0 / np.log2(np.arange(2, kk + 2))
    key = np.where(valid, np.nan_to_num(scores, nan=-np.inf), -np.inf)
    # primary: score, best first; secondary (ties): gain, least first
    order = np.lexsort((gains, -key), axis=1)[:, :kk]
    dcg = (np.take_along_axis(gains, order, axis=1) * discount).sum(axis=1)
    ideal = (-np.sort(-gains, axis=1)[:, :kk] * discount).sum(axis=1)
    keep = ideal > 0
    if not keep.any():
        return float("nan")
    return float((dcg[keep] / ideal[keep]).mean())


def ranking_report(pred, target, margins=(0.0,), prefix: str = "") -> dict[str, float]:
    """The standard numbers for one split: kendall_tau, spearman, ranking_acc@W per margin."""
    out = {f"{prefix}kendall_tau": kendall_tau_b(pred, target),
           f"{prefix}spearman": spearman(pred, target)}
    for w in margins:
        out[f"{prefix}ranking_acc@{w:g}"] = ranking_accuracy(pred, target, w)
    return out

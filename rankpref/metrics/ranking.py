"""Ranking metrics: pure, vectorised functions over score matrices and target ranks.

Conventions
-----------
* A *rank* is 0-based: rank 0 means the target is the top item.
* **One tie rule, everywhere in rankpref**: ties are broken against the model. Every other
  item that scores the same as a single target is placed above it; with graded relevance,
  items of equal score are ordered least relevant first. A model that gives every item the
  same score gets the worst result, never the best. NaN scores rank last.
* With a single relevant item per row, Recall@k equals the hit ratio HR@k.
* NDCG uses linear gains and log2(rank + 2) discounts (as trec_eval and ranx's ``ndcg``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of ``targets[b]`` in ``scores[b]`` ([batch, n_items] -> [batch])."""
    scores = scores.nan_to_num(nan=float("-inf"))  # a NaN score never ranks well
    target_scores = scores.gather(1, targets.view(-1, 1))
    above = (scores > target_scores).sum(dim=1)
    ties = (scores == target_scores).sum(dim=1) - 1
    return above + ties


def metrics_from_ranks(ranks: torch.Tensor, ks: list[int]) -> dict[str, torch.Tensor]:
    """Per-row Recall@k, NDCG@k and MRR@k for single-target rows, as float tensors [batch]."""
    ranks = ranks.to(torch.float64)
    out = {}
    for k in ks:
        hit = (ranks < k).to(torch.float64)
        out[f"recall@{k}"] = hit
        out[f"ndcg@{k}"] = hit / torch.log2(ranks + 2.0)
        out[f"mrr@{k}"] = hit / (ranks + 1.0)
    return out


def pessimistic_order(scores: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """Column indices of each row, best score first, ties least relevant first (the tie rule)."""
    scores = scores.nan_to_num(nan=float("-inf"))
    by_relevance = torch.argsort(relevance, dim=1, stable=True)
    order = torch.argsort(scores.gather(1, by_relevance), dim=1, descending=True, stable=True)
    return by_relevance.gather(1, order)


def _topk_gains(scores: torch.Tensor, relevance: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, scores.shape[1])
    idx = pessimistic_order(scores, relevance)[:, :k]
    return relevance.gather(1, idx).to(torch.float64)


def _discounts(k: int, device) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(k, device=device, dtype=torch.float64) + 2.0)


def ndcg_at_k(scores: torch.Tensor, relevance: torch.Tensor, k: int) -> torch.Tensor:
    """NDCG@k per row for graded (or binary) relevance [batch, n_items]; 0 where nothing is relevant."""
    gains = _topk_gains(scores, relevance, k)
    disc = _discounts(gains.shape[1], scores.device)
    dcg = (gains * disc).sum(dim=1)
    ideal = relevance.to(torch.float64).topk(gains.shape[1], dim=1).values
    idcg = (ideal * disc).sum(dim=1)
    return torch.where(idcg > 0, dcg / idcg.clamp_min(1e-12), torch.zeros_like(dcg))


def recall_at_k(scores: torch.Tensor, relevance: torch.Tensor, k: int) -> torch.Tensor:
    """Share of the relevant items (relevance > 0) found in the top k, per row."""
    hits = (_topk_gains(scores, relevance, k) > 0).sum(dim=1).to(torch.float64)
    n_rel = (relevance > 0).sum(dim=1).to(torch.float64)
    return torch.where(n_rel > 0, hits / n_rel.clamp_min(1), torch.zeros_like(hits))


def mrr_at_k(scores: torch.Tensor, relevance: torch.Tensor, k: int) -> torch.Tensor:
    """Reciprocal rank of the first relevant item within the top k (0 if none), per row."""
    rel = _topk_gains(scores, relevance, k) > 0
    positions = torch.arange(1, rel.shape[1] + 1, device=scores.device, dtype=torch.float64)
    rr = torch.where(rel, 1.0 / positions, torch.zeros_like(positions))
    return rr.max(dim=1).values if rel.shape[1] else torch.zeros(scores.shape[0])


def history_mask(history: torch.Tensor, num_columns: int) -> torch.Tensor:
    """Boolean [batch, num_columns]: True where the item is in the row's history (pad excluded)."""
    mask = torch.zeros(history.shape[0], num_columns, dtype=torch.bool, device=history.device)
    mask.scatter_(1, history, True)
    mask[:, 0] = False
    return mask


def batch_ranks(scores: torch.Tensor, history: torch.Tensor, targets: torch.Tensor, *,
                mask_history: bool = True, sampled: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """0-based ranks of the targets. ``scores`` is [batch, num_items + 1] (column 0 = padding).

    Same result as masking the padding column (and the history) with -inf and calling
    :func:`target_ranks`, but without materialising a masked copy of the
    score matrix: it counts the items scoring at least the target's score once, then takes
    off the padding column, the (de-duplicated) history items and the target itself.
    """
    scores = scores.float()
    rows = torch.arange(len(targets), device=scores.device)
    if sampled is not None:
        seen = history_mask(history, scores.shape[1])
        weights = (~seen).float()
        weights[:, 0] = 0.0
        weights[rows, targets] = 0.0
        available = int(weights.sum(dim=1).min().item())
        if available < sampled:
            raise ValueError(f"only {available} unseen items to sample, need {sampled}")
        negatives = torch.multinomial(weights.cpu(), sampled, replacement=False,
                                      generator=generator).to(scores.device)
        candidates = torch.cat([targets.view(-1, 1), negatives], dim=1)
        return target_ranks(scores.gather(1, candidates), torch.zeros_like(targets))
    target = scores.gather(1, targets.view(-1, 1))
    at_least = (scores >= target).sum(dim=1)
    at_least -= (scores[:, :1] >= target).squeeze(1).long()  # the padding column
    if mask_history:
        hist, _ = history.sort(dim=1)
        first = torch.ones_like(hist, dtype=torch.bool)
        first[:, 1:] = hist[:, 1:] != hist[:, :-1]
        counted = first & (hist != 0) & (hist != targets.view(-1, 1))
        at_least -= ((scores.gather(1, hist) >= target) & counted).sum(dim=1)
    ranks = at_least - 1  # the target itself
    worst = torch.full_like(ranks, scores.shape[1] - 1)
    return torch.where(torch.isnan(target.squeeze(1)), worst, ranks)


@dataclass
class MetricAccumulator:
    """Sums of per-example metrics; ``result`` divides once, so batching does not matter."""

    ks: list[int]
    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0

    def add(self, ranks: torch.Tensor) -> None:
        for name, values in metrics_from_ranks(ranks, self.ks).items():
            self.sums[name] = self.sums.get(name, 0.0) + float(values.sum())
        self.count += int(ranks.numel())

    def names(self) -> list[str]:
        return [f"{m}@{k}" for k in self.ks for m in ("recall", "ndcg", "mrr")]

    def as_tensor(self) -> torch.Tensor:
        """Sums then count, for an all-reduce across processes."""
        return torch.tensor([self.sums.get(n, 0.0) for n in self.names()] + [float(self.count)],
                            dtype=torch.float64)

    def load_tensor(self, values: torch.Tensor) -> None:
        names = self.names()
        self.sums = {n: float(values[i]) for i, n in enumerate(names)}
        self.count = int(values[-1])

    def result(self) -> dict[str, float]:
        if self.count == 0:
            return {n: 0.0 for n in self.names()}
        return {n: self.sums.get(n, 0.0) / self.count for n in self.names()}

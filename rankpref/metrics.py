"""Ranking metrics: pure, vectorised functions over score matrices and target ranks.

Conventions
-----------
* A *rank* is 0-based: rank 0 means the target is the top item.
* Ties are counted pessimistically: every other item that scores the same as the target is
  placed above it, so a model that gives every item the same score gets the worst rank, not
  the best.
* With a single relevant item per row, Recall@k equals the hit ratio HR@k.
* NDCG uses linear gains and log2(rank + 2) discounts (as trec_eval and ranx's ``ndcg``).
"""

from __future__ import annotations

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


def _topk_gains(scores: torch.Tensor, relevance: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, scores.shape[1])
    idx = scores.topk(k, dim=1).indices
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

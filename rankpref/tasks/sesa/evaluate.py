"""Evaluation of SESA networks: full ranking of the catalogue for a split's queries (graded
NDCG@10, Recall@10, MRR), concept prediction (micro F1) and how concentrated scores are on a
few concepts (top-5 share)."""

from __future__ import annotations

import torch

from rankpref.errors import DataError
from rankpref.metrics.ranking import mrr_at_k, ndcg_at_k, recall_at_k
from rankpref.models.sesa import SESA, top_share
from rankpref.tasks.sesa.data import TaskInputs


@torch.no_grad()
def embed(model: SESA, inputs: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.cat([model(inputs[i:i + batch_size].to(device))
                     for i in range(0, len(inputs), batch_size)])
    model.train(was)
    return out


def ranking_metrics(scores: torch.Tensor, relevance: torch.Tensor, exclude: torch.Tensor | None = None,
                    ks: tuple[int, ...] = (10,)) -> dict[str, float]:
    """Mean NDCG@k (graded), Recall@k and MRR (no cut-off) over query rows.

    ``exclude`` [n_q, n_items] marks items that are never ranked (the query itself).
    """
    scores = scores.to(torch.float64)
    if exclude is not None:
        scores = scores.masked_fill(exclude, float("-inf"))
        relevance = relevance.masked_fill(exclude, 0)
    out = {}
    for k in ks:
        out[f"ndcg@{k}"] = float(ndcg_at_k(scores, relevance, k).mean())
        out[f"recall@{k}"] = float(recall_at_k(scores, relevance, k).mean())
    out["mrr"] = float(mrr_at_k(scores, relevance, scores.shape[1]).mean())
    return out


def micro_f1(predicted: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    tp = float((predicted & labels).sum())
    fp = float((predicted & ~labels).sum())
    fn = float((~predicted & labels).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"concept_precision": p, "concept_recall": r,
            "concept_micro_f1": 2 * p * r / (p + r) if p + r else 0.0}


@torch.no_grad()
def evaluate(model: SESA, prep: TaskInputs, split: str, top_items: int = 10) -> dict:
    """Full ranking of every item for the split's queries, concept prediction, top-5 shares."""
    rows = prep.task.indices(split)
    if len(rows) == 0:
        raise DataError(f"the {split} split has no queries", field="split")
    items = embed(model, prep.item_inputs)
    queries = embed(model, prep.query_inputs[torch.from_numpy(rows)])
    scores = model.score(queries, items)
    relevance = torch.from_numpy(prep.task.relevance_matrix(rows)).to(scores.device)
    exclude = torch.from_numpy(prep.task.exclude_matrix(rows)).to(scores.device)
    out = {"queries": len(rows), **ranking_metrics(scores, relevance, exclude)}
    if model.explicit:
        labels = prep.query_labels[torch.from_numpy(rows)].to(queries.device) > 0
        has = labels.any(dim=1)
        out.update(micro_f1(queries[has] > 0, labels[has]))
        out["concept_rows"] = int(has.sum())
        top = scores.masked_fill(exclude, float("-inf")).topk(top_items, dim=1).indices
        q = queries.unsqueeze(1).expand(-1, top_items, -1).reshape(-1, queries.shape[1])
        share = top_share(q, items[top.reshape(-1)], model.weights(), k=5)
        out["top5_share"] = float(share.nanmean()) if (~share.isnan()).any() else float("nan")
        out["top5_share_pairs"] = int((~share.isnan()).sum())
        out["active_concepts_per_query"] = float((queries > 0).sum(1).to(torch.float64).mean())
    return out

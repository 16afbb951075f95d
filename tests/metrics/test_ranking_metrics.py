"""Tests for rankpref.metrics: target ranks (pessimistic ties) and the ranking metrics,
checked against plain-Python references and against ranx."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from rankpref.metrics.ranking import (metrics_from_ranks, mrr_at_k, ndcg_at_k, recall_at_k,
                              target_ranks)

# ----------------------------------------------------------------------------- references


def ref_rank(row: list[float], target: int) -> int:
    """0-based pessimistic rank: every other item scoring >= the target is above it."""
    t = row[target]
    return sum(1 for j, s in enumerate(row) if j != target and s >= t)


def ref_single(rank: int, k: int) -> dict[str, float]:
    hit = rank < k
    return {"recall": 1.0 if hit else 0.0,
            "ndcg": 1.0 / math.log2(rank + 2) if hit else 0.0,
            "mrr": 1.0 / (rank + 1) if hit else 0.0}


def ref_order(row: list[float]) -> list[int]:
    return sorted(range(len(row)), key=lambda j: -row[j])


def ref_ndcg(row: list[float], rel: list[float], k: int) -> float:
    order = ref_order(row)[:k]
    dcg = sum(rel[j] / math.log2(i + 2) for i, j in enumerate(order))
    ideal = sorted(rel, reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def ref_recall(row: list[float], rel: list[float], k: int) -> float:
    n_rel = sum(1 for g in rel if g > 0)
    if n_rel == 0:
        return 0.0
    return sum(1 for j in ref_order(row)[:k] if rel[j] > 0) / n_rel


def ref_mrr(row: list[float], rel: list[float], k: int) -> float:
    for i, j in enumerate(ref_order(row)[:k]):
        if rel[j] > 0:
            return 1.0 / (i + 1)
    return 0.0


def random_case(seed: int, batch: int, n_items: int, graded: bool, max_relevant: int = 6):
    """Continuous random scores (no ties) and a relevance matrix with >= 1 relevant item/row."""
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((batch, n_items))
    rel = np.zeros((batch, n_items), dtype=np.int64)
    for b in range(batch):
        n = rng.integers(1, max_relevant + 1)
        cols = rng.choice(n_items, size=n, replace=False)
        rel[b, cols] = rng.integers(1, 4, size=n) if graded else 1
    return torch.from_numpy(scores), torch.from_numpy(rel)


# ----------------------------------------------------------------------------- target_ranks


def test_target_ranks_simple():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3],
                           [0.1, 0.9, 0.5, 0.3],
                           [0.1, 0.9, 0.5, 0.3]])
    ranks = target_ranks(scores, torch.tensor([1, 2, 0]))
    assert ranks.tolist() == [0, 1, 3]


def test_target_ranks_all_equal_scores_give_worst_rank():
    n = 17
    scores = torch.zeros(4, n)
    ranks = target_ranks(scores, torch.tensor([0, 5, 16, 9]))
    assert ranks.tolist() == [n - 1] * 4


def test_target_ranks_ties_are_pessimistic():
    # target (col 2) ties with cols 0 and 3, one item (col 1) strictly above, col 4 below
    scores = torch.tensor([[0.5, 0.8, 0.5, 0.5, 0.1]])
    assert target_ranks(scores, torch.tensor([2])).tolist() == [3]
    # the target alone at the top, others tied below it
    scores = torch.tensor([[0.2, 0.2, 0.9, 0.2]])
    assert target_ranks(scores, torch.tensor([2])).tolist() == [0]


def test_target_ranks_with_minus_inf_columns():
    scores = torch.tensor([[float("-inf"), 0.3, 0.7, float("-inf"), 0.1]])
    assert target_ranks(scores, torch.tensor([4])).tolist() == [2]
    assert target_ranks(scores, torch.tensor([2])).tolist() == [0]


@pytest.mark.parametrize("seed", range(5))
def test_target_ranks_match_python_reference(seed):
    g = torch.Generator().manual_seed(seed)
    # small integer scores -> many ties
    scores = torch.randint(0, 5, (30, 12), generator=g).float()
    targets = torch.randint(0, 12, (30,), generator=g)
    got = target_ranks(scores, targets).tolist()
    want = [ref_rank(scores[b].tolist(), int(targets[b])) for b in range(30)]
    assert got == want


def test_target_ranks_nan_target_is_worst_rank():
    scores = torch.full((2, 6), float("nan"))
    scores[1, :3] = torch.tensor([0.1, 0.2, 0.3])
    ranks = target_ranks(scores, torch.tensor([4, 5]))
    assert ranks.tolist() == [5, 5]
    m = metrics_from_ranks(ranks, [10])
    assert all(torch.isfinite(v).all() for v in m.values())
    assert m["ndcg@10"].max() <= 1.0


# ----------------------------------------------------------------------------- metrics_from_ranks


def test_metrics_from_ranks_against_loop():
    ks = [1, 3, 5, 10, 20]
    ranks = torch.tensor([0, 1, 2, 3, 4, 5, 9, 10, 19, 20, 100, 0, 7])
    out = metrics_from_ranks(ranks, ks)
    assert set(out) == {f"{m}@{k}" for m in ("recall", "ndcg", "mrr") for k in ks}
    for k in ks:
        for i, r in enumerate(ranks.tolist()):
            want = ref_single(r, k)
            for m in ("recall", "ndcg", "mrr"):
                got = out[f"{m}@{k}"][i]
                assert got.dtype == torch.float64
                assert float(got) == pytest.approx(want[m], abs=1e-15), (m, k, r)


def test_metrics_from_ranks_known_values():
    out = metrics_from_ranks(torch.tensor([0, 1, 9, 10]), [10])
    assert out["recall@10"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert out["ndcg@10"].tolist() == pytest.approx([1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0])
    assert out["mrr@10"].tolist() == pytest.approx([1.0, 0.5, 0.1, 0.0])


def test_single_target_metrics_equal_relevance_metrics():
    """With one relevant item and no ties, the rank-based and the relevance-based metrics agree."""
    g = torch.Generator().manual_seed(3)
    scores = torch.rand(50, 40, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 40, (50,), generator=g)
    rel = torch.zeros(50, 40, dtype=torch.int64)
    rel[torch.arange(50), targets] = 1
    per_rank = metrics_from_ranks(target_ranks(scores, targets), [5, 10])
    for k in (5, 10):
        torch.testing.assert_close(per_rank[f"ndcg@{k}"], ndcg_at_k(scores, rel, k))
        torch.testing.assert_close(per_rank[f"recall@{k}"], recall_at_k(scores, rel, k))
        torch.testing.assert_close(per_rank[f"mrr@{k}"], mrr_at_k(scores, rel, k))


# ----------------------------------------------------------------------------- vs plain Python


@pytest.mark.parametrize("graded", [False, True])
@pytest.mark.parametrize("k", [1, 5, 10, 60])
def test_relevance_metrics_match_python_reference(graded, k):
    scores, rel = random_case(11 + k, 25, 30, graded)
    nd, rc, mr = ndcg_at_k(scores, rel, k), recall_at_k(scores, rel, k), mrr_at_k(scores, rel, k)
    for b in range(scores.shape[0]):
        row, r = scores[b].tolist(), rel[b].tolist()
        assert float(nd[b]) == pytest.approx(ref_ndcg(row, r, k), abs=1e-12)
        assert float(rc[b]) == pytest.approx(ref_recall(row, r, k), abs=1e-12)
        assert float(mr[b]) == pytest.approx(ref_mrr(row, r, k), abs=1e-12)


def test_relevance_metrics_rows_without_relevant_items_are_zero():
    scores = torch.rand(3, 8, dtype=torch.float64)
    rel = torch.zeros(3, 8, dtype=torch.int64)
    rel[1, 2] = 1
    for fn in (ndcg_at_k, recall_at_k, mrr_at_k):
        out = fn(scores, rel, 5)
        assert out[0] == 0 and out[2] == 0
        assert torch.isfinite(out).all()


def test_relevance_metrics_perfect_ranking_is_one():
    rel = torch.tensor([[3, 0, 2, 1, 0, 0]])
    scores = rel.to(torch.float64) + torch.tensor([[0.0, 0.01, 0.0, 0.0, 0.02, 0.03]])
    assert float(ndcg_at_k(scores, rel, 3)) == pytest.approx(1.0)
    assert float(recall_at_k(scores, rel, 3)) == pytest.approx(1.0)
    assert float(mrr_at_k(scores, rel, 3)) == pytest.approx(1.0)
    # reverse the order: nothing relevant in the top 3
    assert float(ndcg_at_k(-scores, rel, 3)) == 0.0
    assert float(recall_at_k(-scores, rel, 3)) == 0.0
    assert float(mrr_at_k(-scores, rel, 3)) == 0.0


# ----------------------------------------------------------------------------- vs ranx


def ranx_metrics(scores: torch.Tensor, rel: torch.Tensor, k: int) -> dict[str, np.ndarray]:
    from ranx import Qrels, Run, evaluate

    qrels, run = {}, {}
    for b in range(scores.shape[0]):
        q = f"q{b:05d}"
        qrels[q] = {f"d{j:05d}": int(rel[b, j]) for j in range(rel.shape[1]) if rel[b, j] > 0}
        run[q] = {f"d{j:05d}": float(scores[b, j]) for j in range(scores.shape[1])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = evaluate(Qrels(qrels), Run(run), [f"ndcg@{k}", f"recall@{k}", f"mrr@{k}"],
                       return_mean=False)
    return {name: np.asarray(v, dtype=np.float64) for name, v in out.items()}


@pytest.mark.parametrize("graded", [False, True], ids=["binary", "graded"])
@pytest.mark.parametrize("seed", [0, 1])
def test_relevance_metrics_match_ranx(graded, seed):
    k = 10
    scores, rel = random_case(100 + seed, 40, 60, graded, max_relevant=12)
    want = ranx_metrics(scores, rel, k)
    np.testing.assert_allclose(ndcg_at_k(scores, rel, k).numpy(), want["ndcg@10"], atol=1e-6)
    np.testing.assert_allclose(recall_at_k(scores, rel, k).numpy(), want["recall@10"], atol=1e-6)
    np.testing.assert_allclose(mrr_at_k(scores, rel, k).numpy(), want["mrr@10"], atol=1e-6)


def test_single_target_rank_metrics_match_ranx():
    g = torch.Generator().manual_seed(7)
    scores = torch.rand(60, 30, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 30, (60,), generator=g)
    rel = torch.zeros(60, 30, dtype=torch.int64)
    rel[torch.arange(60), targets] = 1
    got = metrics_from_ranks(target_ranks(scores, targets), [10])
    want = ranx_metrics(scores, rel, 10)
    for name in ("ndcg@10", "recall@10", "mrr@10"):
        np.testing.assert_allclose(got[name].numpy(), want[name], atol=1e-6)


def test_graded_metrics_break_ties_against_the_model():
    """One tie rule: among equal scores the least relevant item comes first, so a constant
    scorer gets the worst NDCG/recall/MRR, and the result does not depend on column order."""
    rel = torch.tensor([[0.0, 0.0, 2.0, 0.0]])
    flat = torch.zeros(1, 4)
    assert float(ndcg_at_k(flat, rel, 2)) == 0.0
    assert float(recall_at_k(flat, rel, 3)) == 0.0
    assert float(mrr_at_k(flat, rel, 4)) == pytest.approx(0.25)
    for perm in (torch.tensor([2, 0, 1, 3]), torch.tensor([3, 2, 1, 0])):
        assert float(ndcg_at_k(flat[:, perm], rel[:, perm], 3)) == float(ndcg_at_k(flat, rel, 3))
    nan = torch.tensor([[float("nan"), 0.0, 1.0, 0.5]])
    assert float(mrr_at_k(nan, torch.tensor([[1.0, 0.0, 0.0, 0.0]]), 4)) == pytest.approx(0.25)

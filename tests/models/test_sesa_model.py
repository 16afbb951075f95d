"""SESA network pieces: activations, exact explanations, shares, losses, metrics, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rankpref.errors import DataError
from rankpref.models.sesa import (SESA, SESAConfig, build_word_vocab, contributions, encode_words,
                                  tokenize, top_share)
from rankpref.losses.concept import concept_bce, graded_info_nce
from rankpref.tasks.sesa.evaluate import micro_f1, ranking_metrics

torch.set_num_threads(1)


def _features_model(**kw) -> SESA:
    torch.manual_seed(0)
    return SESA(SESAConfig(encoder="features", num_concepts=12, input_dim=8, hidden=16, **kw))


@pytest.mark.parametrize("weights", [False, True])
def test_contributions_sum_exactly_to_score(weights):
    model = _features_model(concept_weights=weights).eval()
    if weights:
        with torch.no_grad():
            model.raw_weight.copy_(torch.randn(12))
    x = torch.randn(5, 8)
    with torch.no_grad():
        e = model(x)
    assert (e >= 0).all() and (e == 0).any()  # relu: non-negative and sparse
    with torch.no_grad():
        scores = model.score(e, e)
        w = model.weights()
    for i in range(5):
        for j in range(5):
            c = contributions(e[i], e[j], w)
            assert (c >= 0).all()
            assert math.isclose(float(c.sum()), float(scores[i, j]), rel_tol=1e-5, abs_tol=1e-6)


def test_top_k_keeps_k_largest():
    model = _features_model(top_k=3).eval()
    x = torch.randn(20, 8)
    dense = torch.relu(model.logits(x))
    sparse = model(x)
    assert ((sparse > 0).sum(1) <= 3).all()
    kept = sparse > 0
    assert torch.equal(sparse[kept], dense[kept])
    assert torch.equal(sparse.topk(3, dim=1).values, dense.topk(3, dim=1).values)


def test_latent_head_is_unconstrained():
    torch.manual_seed(0)
    model = SESA(SESAConfig(encoder="features", head="latent", latent_dim=6, input_dim=8, hidden=16)).eval()
    out = model(torch.randn(10, 8))
    assert out.shape == (10, 6) and (out < 0).any() and not model.explicit


def test_top_share_against_loop():
    g = torch.Generator().manual_seed(1)
    q = torch.relu(torch.randn(30, 12, generator=g))
    d = torch.relu(torch.randn(30, 12, generator=g))
    w = torch.rand(12, generator=g) + 0.5
    got = top_share(q, d, w, k=5)
    for i in range(30):
        prod = sorted((q[i] * d[i] * w).tolist(), reverse=True)
        if sum(prod) > 0:
            assert math.isclose(float(got[i]), sum(prod[:5]) / sum(prod), rel_tol=1e-5)
        else:
            assert math.isnan(float(got[i]))


def test_graded_info_nce_against_reference():
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(4, 7, generator=g)
    labels = torch.tensor([[1, 0, 0, 0, 0, 0, 0], [0, 3, 2, 0, 1, -1, -1],
                           [0, 0, 0, 0, 0, 0, 0], [-1, 0, 2, 0, 0, 0, 0]], dtype=torch.float32)
    loss = graded_info_nce(scores, labels, temperature=0.5)
    ref = []
    for s, y in zip(scores.numpy() / 0.5, labels.numpy()):
        keep = y != -1
        if y[keep].clip(0).sum() == 0:
            continue  # no positive: left out
        logp = s[keep] - np.log(np.exp(s[keep]).sum())
        p = y[keep].clip(0) / y[keep].clip(0).sum()
        ref.append(-(p * logp).sum())
    assert math.isclose(float(loss), float(np.mean(ref)), rel_tol=1e-5)
    # a single positive: the usual cross-entropy
    ce = torch.nn.functional.cross_entropy(scores[:1], torch.tensor([0]))
    assert math.isclose(float(graded_info_nce(scores[:1], labels[:1])), float(ce), rel_tol=1e-5)
    # padded items do not matter, even as NaN
    nan_scores = scores.clone()
    nan_scores[1, 5:] = float("nan")
    assert torch.isfinite(graded_info_nce(nan_scores, labels))
    zero = graded_info_nce(scores[2:3], labels[2:3])
    assert float(zero) == 0.0


def test_concept_bce_masks_rows_without_concepts():
    logits = torch.randn(3, 4, requires_grad=True)
    labels = torch.tensor([[1., 0, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0]])
    mask = labels.sum(1) > 0
    ref = torch.nn.functional.binary_cross_entropy_with_logits(logits[[0, 2]], labels[[0, 2]])
    assert torch.isclose(concept_bce(logits, labels, mask), ref)
    none = concept_bce(logits, labels, torch.zeros(3, dtype=torch.bool))
    none.backward()
    assert float(none.detach()) == 0.0


def _reference_metrics(scores, relevance, exclude, k=10):
    """Plain numpy per-row NDCG@k (linear gains), Recall@k, MRR, excluded items removed."""
    out = {"ndcg@10": [], "recall@10": [], "mrr": []}
    for s, rel, ex in zip(scores, relevance, exclude):
        s, rel = s[~ex], rel[~ex]
        order = np.argsort(-s, kind="stable")
        gains = rel[order]
        disc = 1 / np.log2(np.arange(2, len(s) + 2))
        ideal = np.sort(rel)[::-1]
        out["ndcg@10"].append((gains[:k] * disc[:k]).sum() / (ideal[:k] * disc[:k]).sum())
        out["recall@10"].append((gains[:k] > 0).sum() / (rel > 0).sum())
        out["mrr"].append(1 / (np.flatnonzero(gains > 0)[0] + 1))
    return {key: float(np.mean(v)) for key, v in out.items()}


def test_ranking_metrics_against_reference():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(6, 30, generator=g)
    relevance = torch.zeros(6, 30)
    for r in range(6):
        idx = torch.randperm(29, generator=g)[: r + 1] + 1
        relevance[r, idx] = torch.randint(1, 4, (r + 1,), generator=g).float()
    relevance[:, 0] = 3.0  # the query itself: relevant to itself, but excluded
    scores[:, 0] = 100.0
    exclude = torch.zeros(6, 30, dtype=torch.bool)
    exclude[:, 0] = True
    got = ranking_metrics(scores, relevance, exclude)
    ref = _reference_metrics(scores.numpy(), relevance.numpy(), exclude.numpy())
    for key in ("ndcg@10", "recall@10", "mrr"):
        assert math.isclose(got[key], ref[key], rel_tol=1e-9), key
    unexcluded = ranking_metrics(scores, relevance)
    assert unexcluded["mrr"] == 1.0 and got["mrr"] < 1.0


def test_micro_f1():
    pred = torch.tensor([[True, False, True], [False, False, True]])
    gold = torch.tensor([[True, True, False], [False, False, True]])
    out = micro_f1(pred, gold)  # tp 2, fp 1, fn 1
    assert math.isclose(out["concept_micro_f1"], 2 / 3)


def test_words_and_long_queries():
    assert tokenize("Senior C++ / Node.js developer, AutoCAD") == ["senior", "c++", "node.js",
                                                                   "developer", "autocad"]
    words = build_word_vocab(["data engineer", "data scientist", "nurse"], min_count=2)
    assert words == ["<pad>", "<unk>", "data"]
    ids, cut = encode_words(["data engineer", "", "data data data"], words, 2)
    assert ids.tolist() == [[2, 1], [1, 0], [2, 2]] and cut == 1
    with pytest.raises(DataError, match="query, line 1, field 'text': 3 words, the encoder reads at most 2"):
        encode_words(["data data data"], words, 2, on_long="error", where="query")


def test_gru_encoder_handles_padding():
    torch.manual_seed(0)
    model = SESA(SESAConfig(encoder="gru", num_concepts=5, vocab_size=10, embed_dim=4, hidden=8)).eval()
    a = torch.tensor([[2, 3, 4]])
    b = torch.tensor([[2, 3, 4, 0, 0]])  # the same text, padded
    assert torch.allclose(model(a), model(b), atol=1e-6)

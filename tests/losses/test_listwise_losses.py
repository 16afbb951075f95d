"""Listwise losses against plain numpy references (loops over lists and pairs), with padding,
ties and extreme scores; RankList's differences from ListMLE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit, log_softmax, logsumexp, softmax

from rankpref.errors import ConfigError
from rankpref.registry import LOSSES
from rankpref.losses.listwise import (PADDING_VALUE, curriculum_max_skip, listmle_loss,
                                      listnet_loss, ranklist_loss, ranklist_pairs, ranknet_loss)

PAD = PADDING_VALUE
torch.set_num_threads(1)


# ---------------------------------------------------------------- numpy references

def _lists(scores, labels):
    for s, y in zip(scores, labels):
        keep = y != PAD
        yield s[keep].astype(np.float64), y[keep].astype(np.float64)


def ref_ranknet(scores, labels):
    terms = []
    for s, y in _lists(scores, labels):
        for i in range(len(y)):
            for j in range(len(y)):
                if y[i] > y[j]:
                    terms.append(np.logaddexp(0.0, s[j] - s[i]))
    return float(np.mean(terms))


def ref_mse(scores, labels):
    sq = [(si - yi) ** 2 for s, y in _lists(scores, labels) for si, yi in zip(s, y)]
    return float(np.mean(sq))  # every real item counts, even alone in its list


def ref_listnet(scores, labels):
    out = [-(softmax(y) * log_softmax(s)).sum() for s, y in _lists(scores, labels) if len(y) >= 2]
    return float(np.mean(out))


def ref_listmle(scores, labels):
    out = []
    for s, y in _lists(scores, labels):
        if len(y) < 2:
            continue
        order = np.argsort(-y, kind="stable")
        out.append(sum(logsumexp(s[order[i:]]) - s[order[i]] for i in range(len(y))))
    return float(np.mean(out))


def _idcg(g):
    g = np.sort(g)[::-1]
    return float((g / np.log2(np.arange(2, len(g) + 2))).sum())


def ref_approx_ndcg(scores, labels, alpha=1.0):
    out = []
    for s, y in _lists(scores, labels):
        g = 2.0 ** y - 1.0
        if len(y) < 2 or _idcg(g) <= 0:
            continue
        dcg = 0.0
        for i in range(len(y)):
            rank = 1.0 + sum(expit(alpha * (s[j] - s[i]))
                             for j in range(len(y)) if j != i)
            dcg += g[i] / np.log2(1.0 + rank)
        out.append(dcg / _idcg(g))
    return -float(np.mean(out))


def ref_lambda(scores, labels, scheme="ndcg2pp", mu=10.0):
    out = []
    for s, y in _lists(scores, labels):
        g = 2.0 ** y - 1.0
        if len(y) < 2 or _idcg(g) <= 0:
            continue
        G = g / _idcg(g)
        rank = np.empty(len(s), dtype=int)
        rank[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)
        total = 0.0
        for i in range(len(y)):
            for j in range(len(y)):
                if not y[i] > y[j]:
                    continue
                lr = abs(G[i] - G[j]) * abs(1 / np.log2(1 + rank[i]) - 1 / np.log2(1 + rank[j]))
                gap = abs(rank[i] - rank[j])
                n2 = abs(G[i] - G[j]) * abs(1 / np.log2(1 + gap) - 1 / np.log2(2 + gap))
                w = {"lambdarank": lr, "ndcg2": n2, "ndcg2pp": mu * n2 + lr}[scheme]
                total += w * np.logaddexp(0.0, s[j] - s[i]) / np.log(2.0)
        out.append(total)
    return float(np.mean(out))


def ref_ranklist(scores, labels, pairs="nonlocal", skips=(), margin=0.0, max_skip=None,
                 approx="exact", normalize=True):
    out = []
    for s, y in _lists(scores, labels):
        pos = np.empty(len(y), dtype=int)
        pos[np.argsort(-y, kind="stable")] = np.arange(len(y))
        per_anchor = {}
        for i in range(len(y)):
            for j in range(len(y)):
                d = pos[j] - pos[i]
                ok = y[i] > y[j] and y[i] - y[j] >= margin and d >= 1
                ok &= {"local": d == 1, "nonlocal": True, "skip": d in skips}[pairs]
                ok &= max_skip is None or d <= max_skip
                if ok:
                    per_anchor.setdefault(i, []).append(s[j] - s[i])
        n_pairs = sum(len(v) for v in per_anchor.values())
        if n_pairs == 0:
            continue
        if approx == "exact":
            total = sum(np.logaddexp(0.0, x) for v in per_anchor.values() for x in v)
        else:
            total = sum(logsumexp([0.0] + v) for v in per_anchor.values())
        out.append(total / n_pairs if normalize else total)
    return float(np.mean(out))


# ---------------------------------------------------------------- fixtures

def _batch(seed=0, b=5, n=9, ties=False, pad=True, scale=1.0):
    rng = np.random.default_rng(seed)
    labels = (rng.integers(0, 4, size=(b, n)) if ties else rng.normal(3, 1, size=(b, n)))
    labels = np.abs(labels).astype(np.float64) + (0 if ties else 0.01)
    scores = rng.normal(size=(b, n)) * scale
    if pad:
        for row in range(b):
            cut = rng.integers(2, n + 1)
            labels[row, cut:] = PAD
            scores[row, cut:] = np.nan  # padded scores must not matter
        labels[-1, 1:] = PAD  # one list with a single real item (ignored)
    return scores, labels


def _torch(x, grad=False):
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


CASES = [
    ("ranknet", ref_ranknet, {}),
    ("listnet", ref_listnet, {}),
    ("listmle", ref_listmle, {}),
    ("approxndcg", ref_approx_ndcg, {}),
    ("lambdaloss", ref_lambda, {}),
    ("lambdaloss", ref_lambda, {"scheme": "lambdarank"}),
    ("lambdaloss", ref_lambda, {"scheme": "ndcg2"}),
    ("ranklist", ref_ranklist, {}),
    ("ranklist", ref_ranklist, {"approx": "lse"}),
    ("ranklist", ref_ranklist, {"pairs": "local"}),
    ("ranklist", ref_ranklist, {"pairs": "skip", "skips": (2, 3)}),
    ("ranklist", ref_ranklist, {"margin": 0.8, "max_skip": 3, "approx": "lse",
                                "normalize": False}),
    ("mse", ref_mse, {}),
]


@pytest.mark.parametrize("name,ref,kwargs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("ties", [False, True])
def test_loss_matches_numpy_reference_with_padding_and_ties(name, ref, kwargs, ties):
    scores, labels = _batch(seed=3, ties=ties)
    s = _torch(scores, grad=True)
    got = LOSSES.get(name, "listwise")(s, _torch(labels), **kwargs)
    assert got.item() == pytest.approx(ref(scores, labels, **kwargs), rel=1e-9, abs=1e-12)
    got.backward()
    assert torch.isfinite(s.grad).all()
    assert (s.grad[torch.tensor(labels) == PAD] == 0).all()  # padding gets no gradient


@pytest.mark.parametrize("name,ref,kwargs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_loss_with_extreme_scores_is_finite_and_matches(name, ref, kwargs):
    scores, labels = _batch(seed=5, scale=500.0)
    s = _torch(scores, grad=True)
    got = LOSSES.get(name, "listwise")(s, _torch(labels), **kwargs)
    assert np.isfinite(got.item())
    assert got.item() == pytest.approx(ref(scores, labels, **kwargs), rel=1e-7, abs=1e-9)
    got.backward()
    assert torch.isfinite(s.grad).all()


def test_float32_matches_float64():
    scores, labels = _batch(seed=9, pad=True)
    for name, fn in ((e.name, e.obj) for e in LOSSES.entries("listwise")):
        a = fn(torch.tensor(scores, dtype=torch.float32), torch.tensor(labels, dtype=torch.float32))
        b = fn(_torch(scores), _torch(labels))
        assert a.item() == pytest.approx(b.item(), rel=1e-4, abs=1e-5), name


def test_all_padding_gives_zero_loss_with_gradient():
    scores = torch.randn(2, 4, requires_grad=True)
    labels = torch.full((2, 4), PAD)
    labels[0, 0] = 3.0  # a single real item: nothing to rank
    for name, fn in ((e.name, e.obj) for e in LOSSES.entries("listwise")):
        if name == "mse":  # pointwise: one real item is a regression target; none is nothing
            labels_ = torch.full((2, 4), PAD)
            assert fn(scores, labels_).item() == 0.0
            assert fn(scores, labels).item() > 0.0
            continue
        loss = fn(scores, labels)
        assert loss.item() == 0.0, name
        loss.backward()
        assert torch.equal(scores.grad, torch.zeros_like(scores)), name
        scores.grad = None


def test_shape_mismatch_and_nan_labels_are_errors():
    with pytest.raises(ValueError, match="batch, list_size"):
        ranknet_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="NaN"):
        listnet_loss(torch.zeros(1, 3), torch.tensor([[1.0, float("nan"), 2.0]]))
    with pytest.raises(ConfigError, match="unknown loss 'softmax' for listwise"):
        LOSSES.get("softmax", "listwise")
    with pytest.raises(ValueError, match="skips"):
        ranklist_loss(torch.zeros(1, 3), torch.tensor([[1.0, 2.0, 3.0]]), pairs="skip")
    with pytest.raises(ValueError, match="margin"):
        ranklist_loss(torch.zeros(1, 3), torch.tensor([[1.0, 2.0, 3.0]]), margin=-1)


def test_lower_loss_for_the_right_order():
    labels = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    good, bad = labels.clone() * 3, -labels.clone() * 3
    for name, fn in ((e.name, e.obj) for e in LOSSES.entries("listwise")):
        assert fn(good, labels).item() < fn(bad, labels).item(), name


# ---------------------------------------------------------------- RankList vs ListMLE

def test_ranklist_lse_nonlocal_no_margin_no_ties_equals_listmle():
    """The obvious log-sum-exp form is ListMLE: the baseline under another name."""
    scores, labels = _batch(seed=11, ties=False)
    s, y = _torch(scores), _torch(labels)
    a = ranklist_loss(s, y, approx="lse", normalize=False)
    assert a.item() == pytest.approx(listmle_loss(s, y).item(), rel=1e-12)


def test_ties_listmle_depends_on_tie_order_ranklist_does_not():
    labels = torch.tensor([[3.0, 2.0, 2.0, 1.0]], dtype=torch.float64)
    scores = torch.tensor([[0.5, -1.0, 2.0, 0.0]], dtype=torch.float64)
    swap = [0, 2, 1, 3]  # exchange the two tied items' positions
    mle = listmle_loss(scores, labels), listmle_loss(scores[:, swap], labels[:, swap])
    assert abs(mle[0].item() - mle[1].item()) > 0.1  # ListMLE orders ties arbitrarily
    for approx in ("exact", "lse"):
        rl = (ranklist_loss(scores, labels, approx=approx),
              ranklist_loss(scores[:, swap], labels[:, swap], approx=approx))
        assert rl[0].item() == pytest.approx(rl[1].item(), rel=1e-12)
    # and no constraint joins the tied pair
    mask = ranklist_pairs(labels, labels != PAD)
    assert not mask[0, 1, 2] and not mask[0, 2, 1]


def test_margin_removes_pairs_and_their_gradient():
    labels = torch.tensor([[3.0, 2.9, 2.0, 1.0]], dtype=torch.float64)
    valid = labels != PAD
    assert ranklist_pairs(labels, valid).sum() == 6
    mask = ranklist_pairs(labels, valid, margin=0.5)
    assert mask.sum() == 5 and not mask[0, 0, 1]  # 3.0 vs 2.9 is closer than W
    scores = torch.tensor([[0.0, 1.0, -1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    # only items 0 and 1 violate; with W = 0.5 and a local pair set there is nothing pushing them
    ranklist_loss(scores, labels, margin=0.5, pairs="local").backward()
    g_rl = scores.grad.clone()
    scores.grad = None
    listmle_loss(scores, labels).backward()
    g_mle = scores.grad.clone()
    assert g_mle[0, 1] > 0.1  # ListMLE pushes the 2.9 item down below the 3.0 item
    # RankList: the 2.9 item only meets its neighbour 2.0 (a satisfied pair): a tiny push
    assert abs(g_rl[0, 1]) < 0.2 * abs(g_mle[0, 1])
    assert not torch.allclose(g_rl, g_mle)


def test_margin_larger_than_every_gap_gives_no_pairs():
    labels = torch.tensor([[3.0, 2.5, 2.0]])
    assert ranklist_pairs(labels, labels != PAD, margin=1.5).sum() == 0
    loss = ranklist_loss(torch.zeros(1, 3, requires_grad=True), labels, margin=1.5)
    assert loss.item() == 0.0


def test_curriculum_grows_the_visible_pair_set():
    assert [curriculum_max_skip(e, 8, every=2) for e in range(0, 16, 2)] == [1, 2, 3, 4, 5, 6, 7, 7]
    assert curriculum_max_skip(5, 8, every=None) is None
    with pytest.raises(ValueError):
        curriculum_max_skip(0, 8, every=0)
    labels = torch.arange(8, 0, -1, dtype=torch.float64)[None]
    valid = labels != PAD
    counts = [int(ranklist_pairs(labels, valid, max_skip=curriculum_max_skip(e, 8, every=1))
                  .sum()) for e in range(8)]
    # distances 1..k of 8 sorted items: 7, 7+6, 7+6+5, ...; finally all 28 pairs
    assert counts == [7, 13, 18, 22, 25, 27, 28, 28]
    local = ranklist_pairs(labels, valid, pairs="local")
    assert torch.equal(ranklist_pairs(labels, valid, max_skip=1), local)
    scores = torch.randn(1, 8, dtype=torch.float64)
    assert ranklist_loss(scores, labels, max_skip=1).item() != pytest.approx(
        ranklist_loss(scores, labels, max_skip=7).item())


def test_skip_pairs_are_exactly_k_apart_in_label_order():
    labels = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0, 6.0]])  # label order: 5,1,3,2,4,0
    mask = ranklist_pairs(labels, labels != PAD, pairs="skip", skips=[2])
    got = {(int(i), int(j)) for _, i, j in mask.nonzero()}
    # positions 0..5 hold items 5,1,3,2,4,0; pairs (p, p+2)
    assert got == {(5, 3), (1, 2), (3, 4), (2, 0)}


def test_lse_bound_against_exact_pair_sum():
    """lse <= exact <= max_i |C_i| * lse per list; equal when each anchor has one pair."""
    rng = np.random.default_rng(2)
    for trial in range(20):
        y = torch.tensor(rng.permutation(10)[None] + 1.0, dtype=torch.float64)
        s = torch.tensor(rng.normal(size=(1, 10)) * (1 + trial), dtype=torch.float64)
        kw = dict(normalize=False, margin=float(trial % 3))
        exact = ranklist_loss(s, y, approx="exact", **kw).item()
        lse = ranklist_loss(s, y, approx="lse", **kw).item()
        per_anchor = ranklist_pairs(y, y != PAD, margin=float(trial % 3)).sum(2).max().item()
        assert lse <= exact + 1e-12
        assert exact <= per_anchor * lse + 1e-9
        loc = [ranklist_loss(s, y, pairs="local", approx=a, normalize=False).item()
               for a in ("exact", "lse")]
        assert loc[0] == pytest.approx(loc[1], rel=1e-9)


def test_ranklist_differs_from_listmle_with_margin():
    scores, labels = _batch(seed=21, ties=False, pad=False)
    s1, s2 = _torch(scores, grad=True), _torch(scores, grad=True)
    y = _torch(labels)
    ranklist_loss(s1, y, margin=1.0, approx="lse", normalize=False).backward()
    listmle_loss(s2, y).backward()
    assert not torch.allclose(s1.grad, s2.grad, atol=1e-3)


def test_ndcg2pp_by_hand_from_the_paper():
    """NDCG-Loss2++ on one 3-item list, written out term by term from Wang et al. (CIKM 2018):
    l = sum_{y_i > y_j} (rho_ij + mu delta_ij) |G_i - G_j| log2(1 + exp(-(s_i - s_j))), with
    rho_ij = |1/D_i - 1/D_j|, delta_ij = |1/D(|i-j|) - 1/D(|i-j| + 1)|, D(r) = log2(1 + r),
    G = (2^y - 1) / maxDCG, ranks from the scores. Not the code path of the vectorised
    reference above."""
    import math

    s, y, mu = [0.5, 2.0, -1.0], [2.0, 1.0, 0.0], 10.0
    rank = {1: 1, 0: 2, 2: 3}  # positions under the scores 2.0 > 0.5 > -1.0
    gains = [2 ** v - 1 for v in y]  # 3, 1, 0
    max_dcg = 3 / math.log2(2) + 1 / math.log2(3)
    G = [g / max_dcg for g in gains]
    D = lambda r: math.log2(1 + r)  # noqa: E731
    total = 0.0
    for i, j in ((0, 1), (0, 2), (1, 2)):  # the pairs with y_i > y_j
        rho = abs(1 / D(rank[i]) - 1 / D(rank[j]))
        gap = abs(rank[i] - rank[j])
        delta = abs(1 / D(gap) - 1 / D(gap + 1))
        total += (rho + mu * delta) * abs(G[i] - G[j]) * math.log2(1 + math.exp(-(s[i] - s[j])))
    from rankpref.losses.listwise import lambda_loss

    got = lambda_loss(torch.tensor([s]), torch.tensor([y]), scheme="ndcg2pp", mu=mu)
    assert float(got) == pytest.approx(total, rel=1e-6)
    # the old reading, ndcg2 + mu * lambdarank, gives another value
    wrong = 0.0
    for i, j in ((0, 1), (0, 2), (1, 2)):
        rho = abs(1 / D(rank[i]) - 1 / D(rank[j]))
        gap = abs(rank[i] - rank[j])
        delta = abs(1 / D(gap) - 1 / D(gap + 1))
        wrong += (mu * rho + delta) * abs(G[i] - G[j]) * math.log2(1 + math.exp(-(s[i] - s[j])))
    assert abs(wrong - total) > 0.1

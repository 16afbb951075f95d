"""Tests for rankpref.losses.next_item against plain numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankpref.registry import LOSSES
from rankpref.losses import (bce_one_negative, full_cross_entropy, gbce,
                             sampled_softmax, sampled_softmax_logq)

# ----------------------------------------------------------------------------- numpy references


def np_logsumexp(x: np.ndarray) -> float:
    m = np.max(x)
    return float(m + np.log(np.sum(np.exp(x - m))))


def np_softplus(x: float) -> float:
    return float(np.logaddexp(0.0, x))


def ref_full_ce(states, weights, targets) -> float:
    logits = states.astype(np.float64) @ weights.astype(np.float64).T
    losses = [np_logsumexp(row[1:]) - row[t] for row, t in zip(logits, targets)]
    return float(np.mean(losses))


def ref_bce(states, weights, targets, negatives) -> float:
    s, w = states.astype(np.float64), weights.astype(np.float64)
    losses = []
    for p, t in enumerate(targets):
        pos = s[p] @ w[t]
        loss = np_softplus(-pos)
        n = int(negatives[p, 0])
        if n != t:
            loss += np_softplus(s[p] @ w[n])
        losses.append(loss)
    return float(np.mean(losses))


def ref_sampled_softmax(states, weights, targets, negatives) -> float:
    s, w = states.astype(np.float64), weights.astype(np.float64)
    losses = []
    for p, t in enumerate(targets):
        pos = s[p] @ w[t]
        negs = [s[p] @ w[int(n)] for n in negatives[p] if int(n) != t]
        losses.append(np_logsumexp(np.array([pos] + negs)) - pos)
    return float(np.mean(losses))


def ref_gbce(states, weights, targets, negatives, num_items, t) -> float:
    """gSASRec's loss as its reference computes it: the positive logit turned into
    logit(sigmoid(s) ** beta), then plain BCE averaged over every logit of every row."""
    s, w = states.astype(np.float64), weights.astype(np.float64)
    k = negatives.shape[1]
    alpha = k / (num_items - 1)
    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha)
    total, count = 0.0, 0
    for p, tgt in enumerate(targets):
        prob = (1 / (1 + np.exp(-(s[p] @ w[tgt])))) ** beta
        total += -np.log(prob)
        for n in negatives[p]:
            if int(n) != tgt:  # an accidental hit is ignored, but still counted in the mean
                total += np_softplus(s[p] @ w[int(n)])
        count += 1 + k
    return total / count


def ref_logq(states, weights, targets, negatives, in_batch, popularity, num_items) -> float:
    """Sampled softmax over {target} + uniform + shared in-batch candidates, each logit minus
    log(M * q_j + N / num_items), accidental hits dropped."""
    s, w = states.astype(np.float64), weights.astype(np.float64)
    n, m = negatives.shape[1], len(in_batch)
    log_q = np.log(m * popularity.astype(np.float64) + n / num_items)
    losses = []
    for p, tgt in enumerate(targets):
        pos = s[p] @ w[tgt] - log_q[tgt]
        cands = [s[p] @ w[int(j)] - log_q[int(j)] for j in list(negatives[p]) + list(in_batch)
                 if int(j) != tgt]
        losses.append(np_logsumexp(np.array([pos] + cands)) - pos)
    return float(np.mean(losses))


# ----------------------------------------------------------------------------- inputs


def small_inputs(seed: int, p: int = 7, d: int = 5, num_items: int = 12, n_neg: int = 4,
                 scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(p, d, generator=g) * scale
    weights = torch.randn(num_items + 1, d, generator=g)
    targets = torch.randint(1, num_items + 1, (p,), generator=g)
    negatives = torch.randint(1, num_items + 1, (p, n_neg), generator=g)
    negatives[0, 0] = targets[0]   # a negative equal to the target
    if p > 2:
        negatives[2, :] = targets[2]   # a row whose negatives all equal the target
    return states, weights, targets, negatives


def extreme_inputs(num_items: int = 6):
    """Identity item vectors, so the logits are the states themselves: ±50 exactly."""
    weights = torch.eye(num_items + 1)
    logits = torch.tensor([
        [0.0, 50.0, -50.0, 0.0, 1.0, -1.0, 2.0],
        [0.0, -50.0, 50.0, 50.0, -50.0, 0.0, 0.0],
        [0.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0],
        [0.0, -50.0, -50.0, -50.0, -50.0, -50.0, -50.0],
        [0.0, -50.0, 3.0, -50.0, 50.0, 0.5, -0.5],
    ])
    targets = torch.tensor([2, 1, 3, 4, 1])         # includes targets at -50 and at +50
    negatives = torch.tensor([[1, 3, 4], [2, 1, 5], [3, 3, 3], [1, 2, 6], [4, 4, 2]])
    return logits, weights, targets, negatives


# ----------------------------------------------------------------------------- full CE


@pytest.mark.parametrize("seed", range(3))
def test_full_cross_entropy_matches_numpy(seed):
    states, weights, targets, _ = small_inputs(seed)
    got = float(full_cross_entropy(states, weights, targets))
    want = ref_full_ce(states.numpy(), weights.numpy(), targets.numpy())
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_full_cross_entropy_excludes_padding_item():
    states, weights, targets, _ = small_inputs(0)
    base = float(full_cross_entropy(states, weights, targets))
    w2 = weights.clone()
    w2[0] = 1000.0 * states.mean(0)   # the padding row would dominate the softmax if counted
    assert float(full_cross_entropy(states, w2, targets)) == pytest.approx(base, rel=1e-6)


def test_full_cross_entropy_extreme_scores():
    logits, weights, targets, _ = extreme_inputs()
    got = float(full_cross_entropy(logits, weights, targets))
    want = ref_full_ce(logits.numpy(), weights.numpy(), targets.numpy())
    assert np.isfinite(got)
    assert got == pytest.approx(want, rel=1e-5)


# ----------------------------------------------------------------------------- BCE


@pytest.mark.parametrize("seed", range(3))
def test_bce_one_negative_matches_numpy(seed):
    states, weights, targets, negatives = small_inputs(seed)
    neg1 = negatives[:, :1].contiguous()
    got = float(bce_one_negative(states, weights, targets, neg1))
    want = ref_bce(states.numpy(), weights.numpy(), targets.numpy(), neg1.numpy())
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_bce_negative_equal_to_target_is_ignored():
    states, weights, targets, _ = small_inputs(1)
    same = targets.view(-1, 1).clone()   # every negative equals its target
    got = float(bce_one_negative(states, weights, targets, same))
    pos = (states * weights[targets]).sum(-1)
    assert got == pytest.approx(float(torch.nn.functional.softplus(-pos).mean()), rel=1e-6)


def test_bce_one_negative_extreme_scores():
    logits, weights, targets, negatives = extreme_inputs()
    neg1 = negatives[:, :1].contiguous()
    got = float(bce_one_negative(logits, weights, targets, neg1))
    want = ref_bce(logits.numpy(), weights.numpy(), targets.numpy(), neg1.numpy())
    assert np.isfinite(got)
    assert got == pytest.approx(want, rel=1e-5)


# ----------------------------------------------------------------------------- sampled softmax


@pytest.mark.parametrize("seed", range(3))
def test_sampled_softmax_matches_numpy(seed):
    states, weights, targets, negatives = small_inputs(seed, n_neg=6)
    got = float(sampled_softmax(states, weights, targets, negatives))
    want = ref_sampled_softmax(states.numpy(), weights.numpy(), targets.numpy(),
                               negatives.numpy())
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_sampled_softmax_masked_negative_equals_dropping_it():
    states, weights, targets, _ = small_inputs(4, p=3)
    others = torch.tensor([[1, 2], [3, 4], [5, 6]])
    others = torch.where(others == targets.view(-1, 1), others % 12 + 1, others)
    with_target = torch.cat([others, targets.view(-1, 1)], dim=1)
    a = float(sampled_softmax(states, weights, targets, others))
    b = float(sampled_softmax(states, weights, targets, with_target))
    assert b == pytest.approx(a, rel=1e-6)


def test_sampled_softmax_extreme_scores():
    logits, weights, targets, negatives = extreme_inputs()
    got = float(sampled_softmax(logits, weights, targets, negatives))
    want = ref_sampled_softmax(logits.numpy(), weights.numpy(), targets.numpy(),
                               negatives.numpy())
    assert np.isfinite(got)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


# ----------------------------------------------------------------------------- gBCE


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("t", [0.0, 0.75, 1.0])
def test_gbce_matches_numpy(seed, t):
    states, weights, targets, negatives = small_inputs(seed, n_neg=5)
    got = float(gbce(states, weights, targets, negatives, num_items=12, calibration=t))
    want = ref_gbce(states.numpy(), weights.numpy(), targets.numpy(), negatives.numpy(), 12, t)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_gbce_at_t_zero_is_bce_over_all_negatives():
    states, weights, targets, negatives = small_inputs(3, n_neg=4)
    got = float(gbce(states, weights, targets, negatives, num_items=12, calibration=0.0))
    logits_pos = (states * weights[targets]).sum(-1)
    neg = torch.einsum("pd,pnd->pn", states, weights[negatives])
    neg = neg.masked_fill(negatives == targets.view(-1, 1), float("-inf"))
    plain = (torch.nn.functional.softplus(-logits_pos)
             + torch.nn.functional.softplus(neg).sum(1)) / 5
    assert got == pytest.approx(float(plain.mean()), rel=1e-6)


def test_gbce_extreme_scores_and_bad_calibration():
    logits, weights, targets, negatives = extreme_inputs()
    got = float(gbce(logits, weights, targets, negatives, num_items=6))
    assert np.isfinite(got)
    assert got == pytest.approx(ref_gbce(logits.numpy(), weights.numpy(), targets.numpy(),
                                         negatives.numpy(), 6, 0.75), rel=1e-5)
    with pytest.raises(ValueError, match="calibration"):
        gbce(logits, weights, targets, negatives, num_items=6, calibration=1.5)


# ----------------------------------------------------------------------------- logQ softmax


def _logq_inputs(seed):
    states, weights, targets, negatives = small_inputs(seed, n_neg=4)
    g = torch.Generator().manual_seed(100 + seed)
    in_batch = targets[torch.randint(len(targets), (6,), generator=g)]
    counts = torch.bincount(torch.randint(1, 13, (40,), generator=g), minlength=13).float()
    counts[0] = 0
    return states, weights, targets, negatives, in_batch, counts / counts.sum()


@pytest.mark.parametrize("seed", range(3))
def test_sampled_softmax_logq_matches_numpy(seed):
    states, weights, targets, negatives, in_batch, pop = _logq_inputs(seed)
    got = float(sampled_softmax_logq(states, weights, targets, negatives, in_batch=in_batch,
                                     popularity=pop, num_items=12))
    want = ref_logq(states.numpy(), weights.numpy(), targets.numpy(), negatives.numpy(),
                    in_batch.numpy(), pop.numpy(), 12)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_logq_correction_changes_the_loss_and_uniform_popularity_is_a_constant_shift():
    states, weights, targets, negatives, in_batch, pop = _logq_inputs(1)
    kw = dict(in_batch=in_batch, num_items=12)
    skewed = float(sampled_softmax_logq(states, weights, targets, negatives, popularity=pop, **kw))
    flat = torch.full((13,), 1 / 12)
    flat[0] = 0
    even = float(sampled_softmax_logq(states, weights, targets, negatives, popularity=flat, **kw))
    # with every item equally popular the correction is one constant: plain sampled softmax
    # over the same candidates
    plain = float(sampled_softmax(states, weights, targets,
                                  torch.cat([negatives, in_batch.expand(len(targets), -1)], 1)))
    assert even == pytest.approx(plain, rel=1e-5)
    assert abs(skewed - even) > 1e-3


# ----------------------------------------------------------------------------- gradients


def _call(name, states, weights, targets, negatives):
    fn = LOSSES.get(name, "next_item")
    if name == "ce":
        return fn(states, weights, targets)
    if name == "bce":
        return fn(states, weights, targets, negatives[:, :1].contiguous())
    num_items = weights.shape[0] - 1
    if name == "gbce":
        return fn(states, weights, targets, negatives, num_items=num_items)
    if name == "sampled_softmax_logq":
        pop = torch.arange(num_items + 1, dtype=weights.dtype) / (num_items * (num_items + 1) / 2)
        return fn(states, weights, targets, negatives, in_batch=targets.flip(0)[:3],
                  popularity=pop, num_items=num_items)
    return fn(states, weights, targets, negatives)


NAMES = ["ce", "bce", "sampled_softmax", "gbce", "sampled_softmax_logq"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("extreme", [False, True], ids=["normal", "extreme"])
def test_gradients_finite(name, extreme):
    if extreme:
        states, weights, targets, negatives = extreme_inputs()
    else:
        states, weights, targets, negatives = small_inputs(5)
    states = states.clone().requires_grad_(True)
    weights = weights.clone().requires_grad_(True)
    loss = _call(name, states, weights, targets, negatives)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(states.grad).all()
    assert torch.isfinite(weights.grad).all()
    assert states.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_finite_differences(name):
    states, weights, targets, negatives = small_inputs(6, p=4, d=3, num_items=6, n_neg=3)
    states = states.double().requires_grad_(True)
    weights = weights.double().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s, w: _call(name, s, w, targets, negatives), (states, weights))


def test_masked_negative_gets_no_gradient_from_negative_term():
    """A negative equal to the target must not push the target's vector down."""
    states, weights, targets, _ = small_inputs(7, p=1)
    weights = weights.requires_grad_(True)
    negs = targets.view(1, 1).repeat(1, 3)
    loss = sampled_softmax(states, weights, targets, negs)
    loss.backward()
    # only the positive logit is left, so the loss is log(1) = 0 and nothing moves
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-7)
    assert torch.count_nonzero(weights.grad) == 0
    weights.grad = None
    loss = bce_one_negative(states, weights, targets, negs[:, :1])
    loss.backward()
    pos = float(states[0] @ weights[targets[0]].detach())
    expected = -torch.sigmoid(torch.tensor(-pos)) * states[0]   # d softplus(-pos) / d w_t
    torch.testing.assert_close(weights.grad[targets[0]], expected, rtol=1e-5, atol=1e-7)


def test_loss_registry():
    got = {e.name: (e.obj, e.negatives) for e in LOSSES.entries("next_item")}
    assert got == {"ce": (full_cross_entropy, None), "bce": (bce_one_negative, "one"),
                   "sampled_softmax": (sampled_softmax, "many"), "gbce": (gbce, "many"),
                   "sampled_softmax_logq": (sampled_softmax_logq, "many")}

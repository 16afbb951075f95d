"""Subjective-ranking metrics against scipy / scikit-learn / plain loops."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr
from sklearn.metrics import ndcg_score

from rankpref.metrics.correlation import (average_ranks, kendall_tau_b, list_ndcg_at_k,
                                         ranking_accuracy, ranking_report, snap_ties,
                                         spearman)


def _data(seed, n=700, ties=True):
    rng = np.random.default_rng(seed)
    # values at least 1e-4 apart unless equal: the tie tolerance (1e-6) never merges them
    target = np.round(rng.normal(3, 0.4, n), 1) if ties else np.round(rng.normal(size=n), 4)
    pred = np.round(target + rng.normal(0, 0.4, n), 1 if ties else 4)
    return pred, target


@pytest.mark.parametrize("seed,ties", [(0, True), (1, False), (2, True)])
def test_kendall_and_spearman_match_scipy(seed, ties):
    pred, target = _data(seed, ties=ties)
    assert kendall_tau_b(pred, target, chunk=97) == pytest.approx(
        kendalltau(pred, target, variant="b").statistic, abs=1e-12)
    assert spearman(pred, target) == pytest.approx(spearmanr(pred, target).statistic, abs=1e-12)


def test_float_noise_between_equal_predictions_is_a_tie():
    """Two identical feature rows scored in different batches differ by ~2e-8 (float32): the
    metrics must see the tie scipy would see on the exact values."""
    target = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 4.0])
    exact = np.array([0.1, 0.3, 0.3, 0.2, 0.5, 0.5])
    noisy = exact + np.array([0, 2e-8, -1e-8, 0, 3e-8, 0])
    expected = kendalltau(exact, target, variant="b").statistic
    assert kendall_tau_b(noisy, target) == pytest.approx(expected, abs=1e-12)
    assert spearman(noisy, target) == pytest.approx(spearmanr(exact, target).statistic)
    assert ranking_accuracy(noisy, target) == ranking_accuracy(exact, target)
    # a tied pair inside a list is ordered least relevant first, noise or not
    assert list_ndcg_at_k(noisy[None, :], target[None, :], 3) == pytest.approx(
        list_ndcg_at_k(exact[None, :], target[None, :], 3))
    assert snap_ties([1.0, 1.0 + 5e-7, 1.0 + 2e-6]).tolist() == [1.0, 1.0, 1.0 + 2e-6]


def test_infinite_or_negative_labels_are_refused():
    with pytest.raises(ValueError, match="infinite"):
        kendall_tau_b([1.0, 2.0, 3.0], [1.0, np.inf, 2.0])
    with pytest.raises(ValueError, match="infinite"):
        list_ndcg_at_k([[1.0, 2.0]], [[np.inf, 1.0]], 2)
    with pytest.raises(ValueError, match=">= 0"):
        list_ndcg_at_k([[1.0, 2.0]], [[-0.5, 1.0]], 2)


def test_average_ranks_match_scipy():
    from scipy.stats import rankdata
    x = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0])
    assert np.array_equal(average_ranks(x), rankdata(x))


def test_constant_input_is_nan_like_scipy():
    assert np.isnan(kendall_tau_b([1, 2, 3], [2, 2, 2]))
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_ranking_accuracy_matches_a_loop():
    pred, target = _data(3, n=120)
    for margin in (0.0, 0.3, 0.8):
        right = total = 0.0
        for i in range(len(pred)):
            for j in range(i + 1, len(pred)):
                gap = target[i] - target[j]
                if gap == 0 or abs(gap) < margin:
                    continue
                total += 1
                d = pred[i] - pred[j]
                right += 1.0 if d * gap > 0 else (0.5 if d == 0 else 0.0)
        assert ranking_accuracy(pred, target, margin, chunk=7) == pytest.approx(right / total)
    assert np.isnan(ranking_accuracy(pred, target, margin=100.0))
    with pytest.raises(ValueError):
        ranking_accuracy(pred, target, margin=-1)


def test_ndcg_matches_sklearn_with_padding():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, size=(6, 10)).astype(float)
    scores = rng.normal(size=(6, 10))
    for k in (1, 3, 10):
        ref = ndcg_score(2.0 ** labels - 1.0, scores, k=k, ignore_ties=True)
        assert list_ndcg_at_k(scores, labels, k) == pytest.approx(ref, abs=1e-12)
        assert list_ndcg_at_k(scores, labels, k, gain="linear") == pytest.approx(
            ndcg_score(labels, scores, k=k, ignore_ties=True), abs=1e-12)
    # padding: the padded tail of a list is the same as dropping it
    padded = labels.copy()
    padded[0, 6:] = -1.0
    one = list_ndcg_at_k(scores[:1], padded[:1], 5)
    assert one == pytest.approx(ndcg_score(2.0 ** labels[:1, :6] - 1, scores[:1, :6], k=5))


def test_list_ndcg_breaks_ties_against_the_model():
    """Equal scores: the less relevant item is ranked first (the one tie rule)."""
    labels = np.array([[0.0, 3.0, 1.0]])
    assert list_ndcg_at_k(np.zeros((1, 3)), labels, 1) == 0.0
    assert list_ndcg_at_k(np.array([[0.0, 1.0, 1.0]]), labels, 1) == pytest.approx(
        (2 ** 1 - 1) / (2 ** 3 - 1))  # the tie at the top goes to the label-1 item


def test_report_and_bad_input():
    pred, target = _data(5)
    rep = ranking_report(pred, target, margins=(0.0, 0.5))
    assert set(rep) == {"kendall_tau", "spearman", "ranking_acc@0", "ranking_acc@0.5"}
    with pytest.raises(ValueError, match="length"):
        kendall_tau_b([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="NaN"):
        spearman([1, np.nan], [1, 2])

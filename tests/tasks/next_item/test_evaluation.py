"""Tests for rankpref.evaluation: batch-size invariance, history masking, padding, the
sampled protocol, protocol parsing and the metric accumulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from rankpref.tasks.next_item.data import EvalSet, collate_eval
from rankpref.data.splits import EvalExamples
from rankpref.errors import ConfigError
from rankpref.metrics.ranking import MetricAccumulator, batch_ranks, history_mask
from rankpref.tasks.next_item.config import parse_protocol
from rankpref.tasks.next_item.evaluate import evaluate
from rankpref.metrics.ranking import metrics_from_ranks

KS = [1, 5, 10, 20]


def make_examples(n_users: int, num_items: int, seed: int = 0, max_hist: int = 30,
                  repeat_target_every: int = 5) -> EvalExamples:
    """Random examples; every ``repeat_target_every``-th target also occurs in the history."""
    rng = np.random.default_rng(seed)
    users, histories, targets = [], [], []
    for u in range(n_users):
        length = int(rng.integers(1, max_hist + 1))
        hist = rng.integers(1, num_items + 1, size=length).astype(np.int64)
        target = int(rng.integers(1, num_items + 1))
        if u % repeat_target_every == 0:
            target = int(hist[rng.integers(0, length)])
        users.append(u)
        histories.append(hist)
        targets.append(target)
    return EvalExamples(np.array(users, np.int64), histories, np.array(targets, np.int64))


def loader(examples: EvalExamples, batch_size: int, max_len: int = 10) -> DataLoader:
    return DataLoader(EvalSet(examples, max_len), batch_size=batch_size, shuffle=False,
                      collate_fn=collate_eval)


def table_score_fn(table: torch.Tensor):
    """A fake model: a fixed score row per user (independent of the batch it is in)."""
    return lambda batch: table[batch["users"]].clone()


def python_ranks(table: torch.Tensor, ex: EvalExamples, mask_history: bool) -> list[int]:
    """Plain-Python full ranking: items 1..N, pessimistic ties, optional history mask."""
    ranks = []
    for u, hist, t in zip(ex.users, ex.histories, ex.targets):
        row = table[int(u)].tolist()
        t = int(t)
        excluded = {0}
        if mask_history:
            excluded |= {int(i) for i in hist if int(i) != t}
        ranks.append(sum(1 for j in range(len(row))
                         if j != t and j not in excluded and row[j] >= row[t]))
    return ranks


# ----------------------------------------------------------------------------- batching


@pytest.mark.parametrize("mask_history", [True, False])
def test_evaluate_independent_of_batch_size(mask_history):
    num_items, n_users = 200, 150
    ex = make_examples(n_users, num_items, seed=1)
    g = torch.Generator().manual_seed(0)
    table = torch.randn(n_users, num_items + 1, generator=g)
    results = [evaluate(table_score_fn(table), loader(ex, bs), ks=KS, mask_history=mask_history)
               for bs in (1, 7, 64, 1000)]
    assert results[0]["examples"] == n_users
    for other in results[1:]:
        assert other.keys() == results[0].keys()
        for key, value in results[0].items():
            assert other[key] == pytest.approx(value, abs=1e-12), key


def test_scoring_in_row_chunks_bounds_memory_and_keeps_the_metrics(monkeypatch):
    """With a score budget of 3 users' rows, every score matrix has at most 3 rows, and the
    metrics equal unchunked evaluation exactly."""
    import rankpref.tasks.next_item.data as data

    num_items, n_users = 50, 40
    ex = make_examples(n_users, num_items, seed=4)
    table = torch.randn(n_users, num_items + 1, generator=torch.Generator().manual_seed(2))
    whole = evaluate(table_score_fn(table), loader(ex, 16), ks=KS)
    seen = []

    def score(batch):
        seen.append(len(batch["users"]))
        return table[batch["users"]].clone()

    monkeypatch.setattr(data, "SCORE_BUDGET", 3 * (num_items + 1))
    assert data.score_rows(num_items) == 3 and data.score_rows(10 ** 9) == 1
    chunked = evaluate(score, loader(ex, 16), ks=KS, num_items=num_items)
    assert max(seen) == 3 and sum(seen) == n_users
    assert chunked.keys() == whole.keys()
    for key, value in whole.items():  # the same ranks, summed in another order
        assert chunked[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("mask_history", [True, False])
def test_evaluate_matches_python_reference(mask_history):
    num_items, n_users = 40, 60
    ex = make_examples(n_users, num_items, seed=2, max_hist=15)
    g = torch.Generator().manual_seed(1)
    # coarse scores: many ties, so pessimistic tie handling is exercised as well
    table = torch.randint(0, 6, (n_users, num_items + 1), generator=g).float()
    got = evaluate(table_score_fn(table), loader(ex, 16), ks=KS, mask_history=mask_history)
    ranks = torch.tensor(python_ranks(table, ex, mask_history))
    want = {name: float(v.mean()) for name, v in metrics_from_ranks(ranks, KS).items()}
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
    assert got["examples"] == n_users


def test_evaluate_uses_full_history_not_just_model_inputs():
    """The history mask covers items older than the last max_len inputs too."""
    num_items = 30
    hist = np.arange(1, 21, dtype=np.int64)  # 20 items, max_len 5 -> inputs are items 16..20
    ex = EvalExamples(np.array([0]), [hist], np.array([25]))
    table = torch.zeros(1, num_items + 1)
    table[0, 1] = 10.0  # an old history item, outside the model inputs, scores highest
    table[0, 25] = 5.0
    masked = evaluate(table_score_fn(table), loader(ex, 1, max_len=5), ks=[1])
    unmasked = evaluate(table_score_fn(table), loader(ex, 1, max_len=5), ks=[1],
                        mask_history=False)
    assert masked["recall@1"] == 1.0
    assert unmasked["recall@1"] == 0.0


# ----------------------------------------------------------------------------- masking by hand


def hand_case():
    """One user: history [3, 5], target 7; history item 5 scores above the target."""
    num_items = 9
    ex = EvalExamples(np.array([0]), [np.array([3, 5], np.int64)], np.array([7]))
    scores = torch.zeros(1, num_items + 1)
    scores[0, 5] = 3.0   # history item above the target
    scores[0, 7] = 2.0   # target
    scores[0, 3] = 1.0   # history item below the target
    scores[0, 1] = -1.0
    return ex, scores


def test_mask_history_hand_made_case():
    ex, scores = hand_case()
    batch = collate_eval([EvalSet(ex, 10)[0]])
    masked = batch_ranks(scores, batch["history"], batch["targets"], mask_history=True)
    unmasked = batch_ranks(scores, batch["history"], batch["targets"], mask_history=False)
    assert masked.tolist() == [0]
    assert unmasked.tolist() == [1]
    m = evaluate(table_score_fn(scores), loader(ex, 1), ks=[1, 5])
    u = evaluate(table_score_fn(scores), loader(ex, 1), ks=[1, 5], mask_history=False)
    assert m["recall@1"] == 1.0 and m["mrr@5"] == 1.0
    assert u["recall@1"] == 0.0 and u["mrr@5"] == pytest.approx(0.5)
    assert u["ndcg@5"] == pytest.approx(1 / np.log2(3))


def test_padding_column_is_never_ranked():
    num_items = 6
    targets = torch.tensor([2, 4])
    history = torch.tensor([[0, 0, 1], [3, 5, 1]])  # left-padded histories
    scores = torch.zeros(2, num_items + 1)
    scores[:, 0] = 100.0          # padding scores highest
    scores[0, 2] = 1.0
    scores[1, 4] = 1.0
    for mask in (True, False):
        ranks = batch_ranks(scores, history, targets, mask_history=mask)
        assert ranks.tolist() == [0, 0], mask
    # an all-zero model: the target ties with every real item but never with the padding
    flat = torch.zeros(2, num_items + 1)
    assert batch_ranks(flat, history, targets, mask_history=False).tolist() == [num_items - 1] * 2
    # with the history masked, only the unmasked real items tie with the target
    assert batch_ranks(flat, history, targets, mask_history=True).tolist() == [
        num_items - 1 - 1, num_items - 1 - 3]


def test_history_mask_excludes_padding():
    mask = history_mask(torch.tensor([[0, 0, 2], [1, 3, 3]]), 5)
    assert mask.tolist() == [[False, False, True, False, False],
                             [False, True, False, True, False]]


def test_target_in_history_stays_rankable():
    num_items = 8
    history = torch.tensor([[2, 4, 6]])
    targets = torch.tensor([4])          # the target was seen before
    scores = torch.zeros(1, num_items + 1)
    scores[0, 4] = 5.0
    scores[0, 6] = 9.0                   # another history item above it (masked)
    assert batch_ranks(scores, history, targets, mask_history=True).tolist() == [0]
    assert batch_ranks(scores, history, targets, mask_history=False).tolist() == [1]
    # via evaluate and the real collate function
    ex = EvalExamples(np.array([0]), [np.array([2, 4, 6], np.int64)], np.array([4]))
    out = evaluate(table_score_fn(scores), loader(ex, 1), ks=[1])
    assert out["recall@1"] == 1.0


def test_batch_ranks_does_not_modify_scores():
    scores = torch.randn(3, 11)
    before = scores.clone()
    batch_ranks(scores, torch.tensor([[1, 2], [0, 3], [4, 5]]), torch.tensor([1, 3, 9]))
    assert torch.equal(scores, before)


# ----------------------------------------------------------------------------- sampled protocol


def test_default_protocol_is_full_ranking():
    num_items = 500
    ex = EvalExamples(np.array([0]), [np.array([1], np.int64)], np.array([2]))
    table = -torch.arange(num_items + 1, dtype=torch.float32).view(1, -1)
    table[0, 2] = -float(num_items) - 1  # the target scores lowest of all
    full = evaluate(table_score_fn(table), loader(ex, 1), ks=[1000])
    explicit = evaluate(table_score_fn(table), loader(ex, 1), ks=[1000], protocol="full")
    assert full == explicit
    assert full["mrr@1000"] == pytest.approx(1 / (num_items - 2 + 1))  # 498 items above it
    sampled = evaluate(table_score_fn(table), loader(ex, 1), ks=[1000], protocol="sampled_100")
    assert sampled["mrr@1000"] == pytest.approx(1 / 101)  # last of 101 candidates


def test_sampled_protocol_ranks_among_101_candidates():
    num_items = 300
    n_users = 20
    ex = make_examples(n_users, num_items, seed=4, max_hist=10, repeat_target_every=1000)
    # target scores lowest: its rank is exactly the number of negatives, 100
    low = torch.rand(n_users, num_items + 1) + 1.0
    low[torch.arange(n_users), torch.as_tensor(ex.targets)] = 0.0
    out = evaluate(table_score_fn(low), loader(ex, 8), ks=[100, 101], protocol="sampled_100")
    assert out["recall@100"] == 0.0
    assert out["recall@101"] == 1.0
    assert out["mrr@101"] == pytest.approx(1 / 101)
    # target scores highest: rank 0
    high = torch.rand(n_users, num_items + 1)
    high[torch.arange(n_users), torch.as_tensor(ex.targets)] = 2.0
    out = evaluate(table_score_fn(high), loader(ex, 8), ks=[1], protocol="sampled_100")
    assert out["recall@1"] == 1.0


def test_sampled_protocol_never_samples_history_or_padding():
    num_items = 150
    n_users = 30
    ex = make_examples(n_users, num_items, seed=5, max_hist=25, repeat_target_every=3)
    table = torch.rand(n_users, num_items + 1)
    for u, (hist, t) in enumerate(zip(ex.histories, ex.targets)):
        table[u, 0] = 10.0                         # padding far above the target
        table[u, torch.as_tensor(hist)] = 10.0     # history items far above the target
        table[u, int(t)] = 5.0                     # above every other (unseen) item
    for seed in range(3):
        out = evaluate(table_score_fn(table), loader(ex, 7), ks=[1], protocol="sampled_100",
                       seed=seed)
        assert out["recall@1"] == 1.0, seed


def test_sampled_protocol_deterministic_for_a_seed():
    num_items = 400
    n_users = 50
    ex = make_examples(n_users, num_items, seed=6)
    table = torch.randn(n_users, num_items + 1, generator=torch.Generator().manual_seed(3))

    def run(seed):
        return evaluate(table_score_fn(table), loader(ex, 16), ks=[5, 10, 50],
                        protocol="sampled_100", seed=seed)

    a, b, c = run(0), run(0), run(1)
    assert a == b
    assert a != c
    full = evaluate(table_score_fn(table), loader(ex, 16), ks=[5, 10, 50])
    assert a != full
    # sampled ranks can only be better (lower) than full ranks
    assert a["recall@10"] >= full["recall@10"]


def test_sampled_protocol_candidates_in_batch_ranks():
    scores = torch.arange(201, dtype=torch.float32).view(1, -1)  # score = item index
    g = torch.Generator().manual_seed(0)
    rank = batch_ranks(scores, torch.tensor([[1, 2]]), torch.tensor([200]), sampled=100,
                       generator=g)
    assert rank.tolist() == [0]
    rank = batch_ranks(scores, torch.tensor([[1, 2]]), torch.tensor([3]), sampled=100,
                       generator=torch.Generator().manual_seed(0))
    # items 1 and 2 (the only items below 3) are history, so all 100 negatives are above it
    assert rank.tolist() == [100]


def test_sampled_protocol_not_enough_unseen_items():
    scores = torch.randn(1, 51)
    with pytest.raises(ValueError, match="unseen"):
        batch_ranks(scores, torch.tensor([[1, 2, 3]]), torch.tensor([4]), sampled=100,
                    generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- parse_protocol


def test_parse_protocol_valid():
    assert parse_protocol("full") is None
    assert parse_protocol("sampled_100") == 100
    assert parse_protocol("sampled_1") == 1


@pytest.mark.parametrize("bad", ["sampled_x", "foo", "sampled_", "sampled_0", "sampled_-5",
                                 "Full", "", "sampled"])
def test_parse_protocol_rejects_junk(bad):
    with pytest.raises(ConfigError, match="protocol"):
        parse_protocol(bad)


def test_evaluate_rejects_bad_protocol_before_scoring():
    calls = []
    ex = make_examples(3, 10)

    def score_fn(batch):
        calls.append(1)
        return torch.zeros(len(batch["targets"]), 11)

    with pytest.raises(ConfigError):
        evaluate(score_fn, loader(ex, 2), ks=[5], protocol="sampled_x")
    assert calls == []


# ----------------------------------------------------------------------------- accumulator


def test_metric_accumulator_tensor_roundtrip():
    acc = MetricAccumulator([5, 10])
    acc.add(torch.tensor([0, 3, 7, 12]))
    acc.add(torch.tensor([1, 40]))
    tensor = acc.as_tensor()
    assert tensor.dtype == torch.float64
    assert tensor.shape == (len(acc.names()) + 1,)
    assert float(tensor[-1]) == 6.0
    other = MetricAccumulator([5, 10])
    other.load_tensor(tensor)
    assert other.count == acc.count == 6
    assert other.result() == acc.result()
    # summing two accumulators' tensors (what all_reduce does) gives the pooled result
    a, b = MetricAccumulator([5, 10]), MetricAccumulator([5, 10])
    a.add(torch.tensor([0, 3, 7, 12]))
    b.add(torch.tensor([1, 40]))
    pooled = MetricAccumulator([5, 10])
    pooled.load_tensor(a.as_tensor() + b.as_tensor())
    for name, value in acc.result().items():
        assert pooled.result()[name] == pytest.approx(value, abs=1e-15)


def test_metric_accumulator_result_values():
    acc = MetricAccumulator([10])
    acc.add(torch.tensor([0, 1, 9, 10]))
    res = acc.result()
    assert set(res) == {"recall@10", "ndcg@10", "mrr@10"}
    assert res["recall@10"] == pytest.approx(0.75)
    assert res["mrr@10"] == pytest.approx((1 + 0.5 + 0.1) / 4)
    empty = MetricAccumulator([10])
    assert empty.result() == {"recall@10": 0.0, "ndcg@10": 0.0, "mrr@10": 0.0}
    assert float(empty.as_tensor()[-1]) == 0.0


def _reference_ranks(scores, history, targets, mask_history):
    """The plain way: mask padding (and history except the target) with -inf, then rank."""
    from rankpref.metrics.ranking import target_ranks
    s = scores.clone().float()
    s[:, 0] = float("-inf")
    if mask_history:
        for b in range(len(targets)):
            for item in history[b].tolist():
                if item != 0 and item != int(targets[b]):
                    s[b, item] = float("-inf")
    return target_ranks(s, targets)


@pytest.mark.parametrize("mask_history", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_fast_batch_ranks_match_the_masked_reference(mask_history, seed):
    from rankpref.metrics.ranking import batch_ranks
    g = torch.Generator().manual_seed(seed)
    n_items, batch = 60, 40
    # coarse scores so that ties are frequent
    scores = torch.randint(0, 6, (batch, n_items + 1), generator=g).float()
    targets = torch.randint(1, n_items + 1, (batch,), generator=g)
    history = torch.randint(0, n_items + 1, (batch, 9), generator=g)  # repeats and padding
    history[:4, 0] = targets[:4]  # some targets are also in the history
    fast = batch_ranks(scores, history, targets, mask_history=mask_history)
    slow = _reference_ranks(scores, history, targets, mask_history)
    assert torch.equal(fast, slow)


def test_evaluate_model_follows_eval_mask_history():
    """A model that scores the user's own history items highest: with eval.mask_history the
    history is removed and the target can rank first; without, the history outranks it. So
    the two settings must give different numbers, in that order (equality means the
    setting did not reach the evaluation)."""
    from rankpref.data.datasets import prepare
    from rankpref.tasks.next_item import load_config
    from rankpref.tasks.next_item.data import datamodule, training_split
    from rankpref.tasks.next_item.evaluate import evaluate_model

    results = {}
    for mask in (True, False):
        cfg = load_config(None, ["data.name=demo", f"eval.mask_history={str(mask).lower()}"])
        dataset = prepare(cfg.data, quiet=True)
        split, _ = training_split(dataset, cfg.data)
        dm = datamodule(cfg, split, dataset.num_items)

        class HistoryFirst(torch.nn.Module):
            def score_all(self, inputs):
                scores = torch.rand(inputs.shape[0], dataset.num_items + 1,
                                    generator=torch.Generator().manual_seed(0))
                scores.scatter_(1, inputs, 10.0)  # inputs: item indices, 0 = padding
                return scores

        results[mask] = evaluate_model(HistoryFirst(), dm, cfg, "test")
    assert results[True]["examples"] == results[False]["examples"]
    assert results[False]["ndcg@10"] < 0.5 * results[True]["ndcg@10"]
    assert results[False]["recall@10"] < 0.5 * results[True]["recall@10"]

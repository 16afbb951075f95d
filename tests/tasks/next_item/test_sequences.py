"""Tests for rankpref.data.sequences: training windows, bucketed batches, collation, loaders."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch

from rankpref.data.preprocess import preprocess
from rankpref.tasks.next_item.data import (
    BucketBatchSampler,
    EvalSet,
    SequenceDataModule,
    TrainWindows,
    collate_eval,
    collate_train,
    training_windows,
)
from rankpref.data.splits import EvalExamples, leave_one_out

# --------------------------------------------------------------------------- training_windows


def window_cases():
    rng = random.Random(0)
    cases = {(n, m) for n in range(0, 12) for m in range(1, 8)}            # tiny: len 0/1, < max
    cases |= {(k * m + 1, m) for m in (1, 2, 3, 5, 50) for k in (1, 2, 3)}  # exact multiples
    cases |= {(k * m, m) for m in (2, 5, 50) for k in (1, 2, 3)}
    cases |= {(rng.randint(1, 400), rng.randint(1, 60)) for _ in range(150)}
    return sorted(cases)


def test_training_windows_properties_over_many_lengths():
    for n, max_len in window_cases():
        seq = np.arange(n, dtype=np.int64) * 7 + 3  # unique values: position = (v - 3) / 7
        windows = training_windows(seq, max_len)
        pos = {int(v): p for p, v in enumerate(seq)}
        all_targets = []
        for inputs, targets in windows:
            assert 0 < len(inputs) == len(targets) <= max_len, (n, max_len)
            for x, y in zip(inputs.tolist(), targets.tolist()):
                assert pos[y] == pos[x] + 1, (n, max_len)  # input precedes its target
            all_targets.extend(targets.tolist())
        # every target seq[1:] exactly once, in chronological order
        assert all_targets == seq[1:].tolist(), (n, max_len)
        assert len(windows) == -(-(max(n - 1, 0)) // max_len)
        # cut from the end: only the first (oldest) window may be short
        assert all(len(w[0]) == max_len for w in windows[1:]), (n, max_len)


def test_training_windows_short_sequences():
    assert training_windows(np.array([5]), 3) == []
    assert training_windows(np.array([], dtype=np.int64), 3) == []
    ((inputs, targets),) = training_windows(np.array([5, 6, 7]), 50)
    assert inputs.tolist() == [5, 6] and targets.tolist() == [6, 7]


def test_training_windows_cut_from_the_end():
    seq = np.arange(1, 9)  # 7 targets, max_len 3 -> [1], [2..4], [5..7] as inputs
    got = [(i.tolist(), t.tolist()) for i, t in training_windows(seq, 3)]
    assert got == [([1], [2]), ([2, 3, 4], [3, 4, 5]), ([5, 6, 7], [6, 7, 8])]


def test_train_windows_dataset_lengths():
    seqs = [np.arange(1, 12), np.array([4]), np.array([2, 3])]
    ds = TrainWindows(seqs, max_len=4)
    assert len(ds) == 3 + 0 + 1
    assert ds.lengths.tolist() == [len(ds[i][0]) for i in range(len(ds))] == [2, 4, 4, 1]


# --------------------------------------------------------------------------- sampler


def lengths(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 51, size=n)


def epoch_batches(sampler: BucketBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(iter(sampler))


@pytest.mark.parametrize("n, batch_size, pool", [(1037, 32, 4), (64, 8, 50), (5, 16, 2),
                                                  (1000, 10, 3)])
def test_bucket_sampler_yields_every_index_once(n, batch_size, pool):
    sampler = BucketBatchSampler(lengths(n), batch_size, seed=3, pool_batches=pool)
    for epoch in range(3):
        batches = epoch_batches(sampler, epoch)
        assert len(batches) == len(sampler)
        assert all(0 < len(b) <= batch_size for b in batches)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(n))


def test_bucket_sampler_deterministic_per_seed_and_epoch():
    lens = lengths(500)
    a = BucketBatchSampler(lens, 16, seed=7, pool_batches=5)
    b = BucketBatchSampler(lens, 16, seed=7, pool_batches=5)
    assert epoch_batches(a, 2) == epoch_batches(b, 2)
    assert epoch_batches(a, 0) != epoch_batches(a, 1)
    other_seed = BucketBatchSampler(lens, 16, seed=8, pool_batches=5)
    assert epoch_batches(other_seed, 2) != epoch_batches(a, 2)


def test_bucket_sampler_order_depends_on_set_epoch_alone():
    """Iterating again without set_epoch repeats the epoch: a resumed run (a fresh sampler set
    to epoch e) gets the same batches as a run that was never stopped."""
    lens = lengths(300)
    sampler = BucketBatchSampler(lens, 16, seed=1)
    sampler.set_epoch(3)
    assert list(sampler) == list(sampler) == epoch_batches(BucketBatchSampler(lens, 16, seed=1), 3)
    assert list(sampler) != epoch_batches(sampler, 2)


def test_bucket_sampler_groups_similar_lengths():
    # one pool holding everything: the batches are consecutive slices of the length order
    lens = lengths(640, seed=4)
    sampler = BucketBatchSampler(lens, 32, seed=0, pool_batches=100)
    ranges = sorted((lens[b].min(), lens[b].max()) for b in epoch_batches(sampler, 0))
    for (_, hi), (lo, _) in zip(ranges, ranges[1:]):
        assert hi <= lo


@pytest.mark.parametrize("n", [1000, 1030, 33])  # even and odd numbers of batches
def test_bucket_sampler_two_ranks_are_disjoint_with_equal_counts(n):
    lens = lengths(n)
    batch_size = 32
    for epoch in range(3):
        ranks = [epoch_batches(BucketBatchSampler(lens, batch_size, seed=5, rank=r, world=2,
                                                  pool_batches=4), epoch) for r in (0, 1)]
        assert len(ranks[0]) == len(ranks[1]) == len(BucketBatchSampler(lens, batch_size,
                                                                        world=2))
        seen = [set(i for b in batches for i in b) for batches in ranks]
        assert not seen[0] & seen[1]
        assert sum(len(b) for batches in ranks for b in batches) == len(seen[0] | seen[1])
        assert len(seen[0] | seen[1]) >= n - batch_size  # at most one batch dropped


# --------------------------------------------------------------------------- collation


def test_collate_train_left_pads_with_zero():
    batch = [(np.array([1, 2, 3]), np.array([2, 3, 4])), (np.array([9]), np.array([8]))]
    out = collate_train(batch)
    assert out["inputs"].dtype == torch.int64
    assert out["inputs"].tolist() == [[1, 2, 3], [0, 0, 9]]
    assert out["targets"].tolist() == [[2, 3, 4], [0, 0, 8]]


def examples() -> EvalExamples:
    hists = [np.arange(1, 8), np.array([5]), np.array([4, 2, 6]), np.array([], dtype=np.int64)]
    return EvalExamples(np.array([10, 11, 12, 13]), hists, np.array([20, 21, 22, 23]))


def test_eval_set_feeds_the_last_max_len_items_and_the_full_history():
    ex = examples()
    ds = EvalSet(ex, max_len=3)
    assert len(ds) == 4
    served = [ds[i] for i in range(len(ds))]
    # shortest fed input first (ties in example order), every example exactly once
    assert [s[0] for s in served] == [13, 11, 10, 12]
    by_user = {s[0]: s for s in served}
    for user, hist, target in zip(ex.users, ex.histories, ex.targets):
        _, inputs, full, t = by_user[int(user)]
        assert inputs.tolist() == hist.tolist()[-3:]
        assert full.tolist() == hist.tolist()
        assert t == target


def test_collate_eval_pads_inputs_and_history():
    ds = EvalSet(examples(), max_len=3)
    out = collate_eval([ds[i] for i in range(len(ds))])
    assert out["users"].tolist() == [13, 11, 10, 12]
    assert out["targets"].tolist() == [23, 21, 20, 22]
    assert out["inputs"].tolist() == [[0, 0, 0], [0, 0, 5], [5, 6, 7], [4, 2, 6]]
    assert out["history"].shape == (4, 7)
    assert out["history"][2].tolist() == list(range(1, 8))
    assert out["history"][3].tolist() == [0] * 4 + [4, 2, 6]
    assert out["history"][1].tolist() == [0] * 6 + [5]
    assert out["history"][0].tolist() == [0] * 7


def test_collate_eval_all_empty_histories_gives_one_column():
    out = collate_eval([(1, np.array([], np.int64), np.array([], np.int64), 4)])
    assert out["inputs"].shape == (1, 1) and out["history"].shape == (1, 1)


# --------------------------------------------------------------------------- data module


def tiny_split():
    rng = np.random.default_rng(0)
    rows = {"user_id": [], "item_id": [], "timestamp": []}
    for u in range(40):
        n = int(rng.integers(1, 30))
        rows["user_id"] += [f"u{u}"] * n
        rows["item_id"] += [f"i{i}" for i in rng.choice(60, size=n, replace=False)]
        rows["timestamp"] += list(range(n))
    frame, vocab, _ = preprocess(pl.DataFrame(rows), min_user=0, min_item=0)
    return leave_one_out(frame), vocab.num_items


def test_data_module_loaders_have_consistent_shapes():
    split, num_items = tiny_split()
    max_len = 6
    dm = SequenceDataModule(split, num_items, max_len=max_len, batch_size=8, eval_batch_size=7)
    n_targets = 0
    seen_targets = []
    for batch in dm.train_dataloader():
        inputs, targets = batch["inputs"], batch["targets"]
        assert inputs.shape == targets.shape and inputs.dim() == 2
        assert inputs.shape[0] <= 8 and 1 <= inputs.shape[1] <= max_len
        assert torch.equal(inputs == 0, targets == 0)  # same padding
        assert int(targets.max()) <= num_items
        n_targets += int((targets != 0).sum())
        seen_targets += targets[targets != 0].tolist()
    assert n_targets == sum(max(len(s) - 1, 0) for s in split.train_sequences)
    assert sorted(seen_targets) == sorted(i for s in split.train_sequences for i in s[1:].tolist())
    for name, loader, ex in (("valid", dm.val_dataloader(), split.valid),
                             ("test", dm.test_dataloader(), split.test),
                             ("valid", dm.eval_dataloader("valid"), split.valid),
                             ("test", dm.eval_dataloader("test"), split.test)):
        users, targets = [], []
        for batch in loader:
            b = batch["users"].shape[0]
            assert batch["targets"].shape == (b,) and b <= 7
            assert batch["inputs"].shape[0] == b and batch["inputs"].shape[1] <= max_len
            assert batch["history"].shape[0] == b
            assert batch["history"].shape[1] >= batch["inputs"].shape[1]
            # inputs are the tail of the history
            k = batch["inputs"].shape[1]
            assert torch.equal(batch["history"][:, -k:], batch["inputs"])
            users += batch["users"].tolist()
            targets += batch["targets"].tolist()
        assert sorted(zip(users, targets)) == sorted(zip(ex.users.tolist(),
                                                         ex.targets.tolist())), name


def test_data_module_splits_work_across_two_ranks():
    split, num_items = tiny_split()
    per_rank = []
    for rank in (0, 1):
        dm = SequenceDataModule(split, num_items, max_len=5, batch_size=4, eval_batch_size=3)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2, current_epoch=0)
        train = [int(t) for b in dm.train_dataloader() for t in b["targets"][b["targets"] != 0]]
        valid = [(int(u), int(t)) for b in dm.val_dataloader()
                 for u, t in zip(b["users"], b["targets"])]
        per_rank.append((len(dm.train_dataloader()), train, valid))
    assert per_rank[0][0] == per_rank[1][0] > 0
    assert per_rank[0][1] and per_rank[1][1]
    assert not set(per_rank[0][2]) & set(per_rank[1][2])
    assert sorted(per_rank[0][2] + per_rank[1][2]) == sorted(
        zip(split.valid.users.tolist(), split.valid.targets.tolist()))

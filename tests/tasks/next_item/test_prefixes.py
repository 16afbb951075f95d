"""The every-prefix training recipe: each training interaction after a user's first is the
target of exactly one sample, at its last position, after the max_len items before it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankpref.tasks.next_item.data import (TrainPrefixes, TrainWindows, collate_train,
                                          training_samples)


def test_every_target_once_with_the_items_before_it():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 50, size=n) for n in (1, 2, 3, 7, 12)]
    ds = TrainPrefixes(seqs, max_len=4)
    assert len(ds) == sum(len(s) - 1 for s in seqs)
    seen = []
    for i in range(len(ds)):
        inputs, targets, owner = ds[i]
        seq = seqs[int(ds.seq_ids[i])]
        end = int(ds.ends[i])
        assert (targets[:-1] == 0).all() and targets[-1] == seq[end]
        assert inputs.tolist() == seq[max(0, end - 4):end].tolist()
        assert len(inputs) == ds.lengths[i] <= 4
        seen.append((int(ds.seq_ids[i]), end))
        # the owner is set on the sample that predicts the user's last training item
        assert owner == (int(ds.seq_ids[i]) if end == len(seq) - 1 else -1)
    assert len(set(seen)) == len(seen)


def test_a_batch_scores_only_the_last_position():
    ds = TrainPrefixes([np.array([3, 4, 5, 6])], max_len=3)
    batch = collate_train([ds[i] for i in range(len(ds))])
    keep = batch["targets"] != 0
    assert keep[:, :-1].sum() == 0 and keep[:, -1].all()
    assert batch["targets"][:, -1].tolist() == [4, 5, 6]
    assert torch.equal(batch["inputs"][-1], torch.tensor([3, 4, 5]))


def test_training_samples_picks_the_recipe():
    seqs = [np.array([1, 2, 3])]
    assert isinstance(training_samples(seqs, 5), TrainWindows)
    assert isinstance(training_samples(seqs, 5, "every_prefix"), TrainPrefixes)
    with pytest.raises(ValueError, match="train_on"):
        training_samples(seqs, 5, "every_other")


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_sliding_windows_score_every_target_once_with_context(stride):
    rng = np.random.default_rng(stride)
    seqs = [rng.integers(1, 50, size=n) for n in (1, 2, 5, 9, 13)]
    ds = TrainPrefixes(seqs, max_len=4, stride=stride)
    scored = {}
    for i in range(len(ds)):
        inputs, targets, _ = ds[i]
        pos, end = int(ds.seq_ids[i]), int(ds.ends[i])
        seq = seqs[pos]
        start = max(0, end - 4)
        assert inputs.tolist() == seq[start:end].tolist()
        for j in np.flatnonzero(targets):
            t = start + 1 + j                          # the target's position in seq
            assert targets[j] == seq[t]
            assert (pos, t) not in scored
            scored[(pos, t)] = t - start               # items of context it was scored after
    assert sorted(scored) == [(p, t) for p, s in enumerate(seqs) for t in range(1, len(s))]
    # each target sees at least max_len - stride items before it, where there are that many
    assert all(ctx >= min(t, 4 - stride + 1) for (p, t), ctx in scored.items())


def test_stride_max_len_cuts_the_windows_of_every_position():
    seq = np.arange(1, 12)
    a = TrainPrefixes([seq], max_len=4, stride=4)
    b = TrainWindows([seq], max_len=4)
    assert [(x.tolist(), t.tolist()) for x, t, _ in (a[i] for i in range(len(a)))] == \
        [(x.tolist(), t.tolist()) for x, t in b.windows]

"""Tests for rankpref.data.splits, above all THE leakage test: no valid or test target is ever
part of a training input, for both protocols, on synthetic, demo and real (Beauty) data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from rankpref.tasks.next_item.config import DataConfig
from rankpref.data.datasets import prepare
from rankpref.data.preprocess import preprocess
from rankpref.data.splits import Split, leave_one_out, make_split, temporal
from rankpref.errors import DataError

PROTOCOLS = ("leave_one_out", "temporal")


# --------------------------------------------------------------------------- helpers


def full_sequences(frame: pl.DataFrame) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """user -> (items, timestamps) in table order, built without rankpref.data.splits."""
    users = frame["user_idx"].to_numpy()
    items = frame["item_idx"].to_numpy()
    times = frame["timestamp"].to_numpy()
    # the encoded table is sorted by user then time; the split relies on it
    assert np.all(np.diff(users) >= 0)
    same_user = np.diff(users) == 0
    assert np.all(np.diff(times)[same_user] >= 0)
    out = {}
    bounds = np.flatnonzero(np.diff(users)) + 1
    for chunk_u, chunk_i, chunk_t in zip(np.split(users, bounds), np.split(items, bounds),
                                          np.split(times, bounds)):
        if len(chunk_u):
            out[int(chunk_u[0])] = (chunk_i, chunk_t)
    return out


def train_events(split: Split) -> set[tuple[int, int]]:
    return {(int(u), int(i)) for u, seq in zip(split.train_users, split.train_sequences)
            for i in seq}


def target_events(split: Split) -> dict[str, set[tuple[int, int]]]:
    return {name: {(int(u), int(t)) for u, t in zip(ex.users, ex.targets)}
            for name, ex in (("valid", split.valid), ("test", split.test))}


def assert_no_leakage_loo(frame: pl.DataFrame, split: Split) -> None:
    full = full_sequences(frame)
    # items are unique per user (user_item dedupe), so (user, item) identifies an event
    for seq, _ in full.values():
        assert len(np.unique(seq)) == len(seq)
    assert split.protocol == "leave_one_out"
    train = {int(u): s for u, s in zip(split.train_users, split.train_sequences)}
    assert set(train) == set(full)  # every user trains (short ones on everything)
    assert len(train) == len(split.train_users)
    evaluated = {u for u, (seq, _) in full.items() if len(seq) >= 3}
    assert split.train_only_users == len(full) - len(evaluated)
    for u, (seq, _) in full.items():
        expected = seq[:-2] if u in evaluated else seq
        np.testing.assert_array_equal(train[u], expected)
    for name, ex, offset in (("valid", split.valid, 2), ("test", split.test, 1)):
        assert sorted(ex.users.tolist()) == sorted(evaluated), name
        assert len(set(ex.users.tolist())) == len(ex.users)
        for u, hist, target in zip(ex.users, ex.histories, ex.targets):
            seq = full[int(u)][0]
            assert target == seq[-offset], name
            assert target not in set(train[int(u)].tolist()), f"{name} target leaks into train"
            np.testing.assert_array_equal(hist, seq[:-offset])
    valid = {int(u): (h, t) for u, h, t in zip(split.valid.users, split.valid.histories,
                                                split.valid.targets)}
    for u, hist, target in zip(split.test.users, split.test.histories, split.test.targets):
        v_hist, v_target = valid[int(u)]
        np.testing.assert_array_equal(v_hist, train[int(u)])       # valid history == train
        np.testing.assert_array_equal(hist, np.append(train[int(u)], v_target))  # + valid
    targets = target_events(split)
    assert not (targets["valid"] | targets["test"]) & train_events(split)
    assert not targets["valid"] & targets["test"]


def assert_no_leakage_temporal(frame: pl.DataFrame, split: Split, valid_fraction: float = 0.1,
                               test_fraction: float = 0.1) -> None:
    full = full_sequences(frame)
    for seq, _ in full.values():
        assert len(np.unique(seq)) == len(seq)
    assert split.protocol == "temporal"
    ts = frame["timestamp"]
    cut_valid = ts.quantile(1 - valid_fraction - test_fraction, interpolation="lower")
    cut_test = ts.quantile(1 - test_fraction, interpolation="lower")
    time_of = {(u, int(i)): int(t) for u, (seq, times) in full.items()
               for i, t in zip(seq, times)}
    train = {int(u): s for u, s in zip(split.train_users, split.train_sequences)}
    assert len(train) == len(split.train_users)
    train_times = [time_of[e] for e in train_events(split)]
    for u, seq in train.items():
        assert len(seq) > 0
        items, times = full[u]
        np.testing.assert_array_equal(seq, items[:len(seq)])  # a chronological prefix
        assert np.all(times[:len(seq)] < cut_valid)
        assert np.all(times[len(seq):] >= cut_valid)  # ... holding everything before the cut
    for u, (items, times) in full.items():
        if u not in train:
            assert np.all(times >= cut_valid)
    targets = target_events(split)
    valid_times = [time_of[e] for e in targets["valid"]]
    test_times = [time_of[e] for e in targets["test"]]
    assert all(t >= cut_valid for t in valid_times + test_times)
    assert all(t < cut_test for t in valid_times)
    assert all(t >= cut_test for t in test_times)
    if train_times and (valid_times or test_times):
        assert max(train_times) < min(valid_times + test_times)
    assert not (targets["valid"] | targets["test"]) & train_events(split)
    for name, ex in (("valid", split.valid), ("test", split.test)):
        assert len(set(ex.users.tolist())) == len(ex.users), name
        for u, hist, target in zip(ex.users, ex.histories, ex.targets):
            items = full[int(u)][0]
            assert len(hist) > 0
            np.testing.assert_array_equal(hist, items[:len(hist)])  # history = prefix
            assert items[len(hist)] == target                       # target = next event
            assert (int(u), int(target)) not in train_events_of(train, int(u))
        if name == "valid":
            for u, hist in zip(ex.users, ex.histories):
                np.testing.assert_array_equal(hist, train[int(u)])  # valid history == train


def train_events_of(train: dict[int, np.ndarray], user: int) -> set[tuple[int, int]]:
    return {(user, int(i)) for i in train.get(user, ())}


def synthetic_frame(seed: int, users: int = 120, items: int = 400, ties: bool = True):
    """Encoded frame with unique items per user and (optionally) many equal timestamps."""
    rng = np.random.default_rng(seed)
    rows = {"user_id": [], "item_id": [], "timestamp": []}
    for u in range(users):
        n = int(rng.integers(1, 25))
        chosen = rng.choice(items, size=n, replace=False)
        times = np.sort(rng.integers(0, 50 if ties else 10**9, size=n))
        rows["user_id"] += [f"u{u}"] * n
        rows["item_id"] += [f"i{i}" for i in chosen]
        rows["timestamp"] += times.tolist()
    df = pl.DataFrame(rows, schema_overrides={"timestamp": pl.Int64})
    out, _, _ = preprocess(df, min_user=0, min_item=0)
    return out


# --------------------------------------------------------------------------- leakage: synthetic


@pytest.mark.parametrize("seed", range(4))
def test_no_leakage_leave_one_out_synthetic(seed):
    frame = synthetic_frame(seed)
    split = make_split(frame, "leave_one_out")
    assert len(split.valid) > 0 and split.train_only_users > 0
    assert_no_leakage_loo(frame, split)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("fractions", [(0.1, 0.1), (0.2, 0.3), (0.05, 0.05)])
def test_no_leakage_temporal_synthetic(seed, fractions):
    frame = synthetic_frame(seed, ties=seed % 2 == 0)
    split = make_split(frame, "temporal", *fractions)
    assert len(split.valid) > 0 and len(split.test) > 0
    assert_no_leakage_temporal(frame, split, *fractions)


def test_leakage_checker_catches_a_leaky_split():
    """The checkers must fail on a split that trains on the valid target."""
    frame = synthetic_frame(0)
    split = leave_one_out(frame)
    full = full_sequences(frame)
    split.train_sequences = [full[int(u)][0][:-1] if len(full[int(u)][0]) >= 3 else s
                             for u, s in zip(split.train_users, split.train_sequences)]
    with pytest.raises(AssertionError):
        assert_no_leakage_loo(frame, split)
    tsplit = temporal(frame)
    tsplit.train_sequences = [full[int(u)][0] for u in tsplit.train_users]
    with pytest.raises(AssertionError):
        assert_no_leakage_temporal(frame, tsplit)


# --------------------------------------------------------------------------- leakage: real data


@pytest.fixture(scope="module")
def demo_frame(tmp_path_factory):
    return prepare(DataConfig(name="demo"), cache_dir=tmp_path_factory.mktemp("cache"),
                   quiet=True).interactions


@pytest.fixture(scope="module")
def beauty_frame(tmp_path_factory, shared_data):
    shared_data("amazon_beauty", "sequences.tsv")
    return prepare(DataConfig(name="beauty"), cache_dir=tmp_path_factory.mktemp("cache"),
                   quiet=True).interactions


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_leakage_demo(demo_frame, protocol):
    split = make_split(demo_frame, protocol)
    assert len(split.valid) > 100 and len(split.test) > 100
    if protocol == "leave_one_out":
        assert len(split.valid) == len(split.test) == demo_frame["user_idx"].n_unique()
        assert_no_leakage_loo(demo_frame, split)
    else:
        assert_no_leakage_temporal(demo_frame, split)


@pytest.mark.shared_data
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_leakage_beauty(beauty_frame, protocol):
    split = make_split(beauty_frame, protocol)
    assert len(split.valid) > 1000 and len(split.test) > 1000
    if protocol == "leave_one_out":
        # the S3-Rec Beauty set is 5-core: every user is evaluated
        assert split.train_only_users == 0
        assert len(split.test) == beauty_frame["user_idx"].n_unique()
        assert_no_leakage_loo(beauty_frame, split)
    else:
        assert_no_leakage_temporal(beauty_frame, split)


# --------------------------------------------------------------------------- protocol details


def encoded(rows: list[tuple]) -> pl.DataFrame:
    df = pl.DataFrame({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                       "timestamp": [r[2] for r in rows]},
                      schema_overrides={"timestamp": pl.Int64})
    return preprocess(df, min_user=0, min_item=0)[0]


def test_leave_one_out_small_example():
    frame = encoded([("u", "a", 1), ("u", "b", 2), ("u", "c", 3), ("u", "d", 4),
                     ("v", "a", 1), ("v", "b", 2)])
    split = leave_one_out(frame)
    # items: a=1 b=2 c=3 d=4; users: u=0 v=1
    assert [s.tolist() for s in split.train_sequences] == [[1, 2], [1, 2]]
    assert split.valid.users.tolist() == [0] and split.valid.targets.tolist() == [3]
    assert split.test.users.tolist() == [0] and split.test.targets.tolist() == [4]
    assert split.test.histories[0].tolist() == [1, 2, 3]
    assert split.train_only_users == 1
    assert split.stats() == {"protocol": "leave_one_out", "train_users": 2,
                             "train_interactions": 4, "valid_examples": 1,
                             "test_examples": 1, "train_only_users": 1}


def test_temporal_small_example_with_ties_at_the_cut():
    # timestamps 1..10; fractions 0.2/0.2 -> cut_valid = q(0.6, lower), cut_test = q(0.8, lower)
    rows = [("u", f"i{t}", t) for t in range(1, 11)]
    rows += [("v", "x", 7), ("v", "y", 9)]  # v: valid-window event and a test event only
    frame = encoded(rows)
    ts = frame["timestamp"]
    cut_valid = ts.quantile(0.6, interpolation="lower")
    cut_test = ts.quantile(0.8, interpolation="lower")
    split = temporal(frame, 0.2, 0.2)
    u_items = frame.filter(pl.col("user_id") == "u")
    time_of = dict(zip(u_items["item_idx"].to_list(), u_items["timestamp"].to_list()))
    (train_seq,) = [s for uu, s in zip(split.train_users, split.train_sequences) if uu == 0]
    assert all(time_of[i] < cut_valid for i in train_seq.tolist())
    assert len(train_seq) == sum(t < cut_valid for t in range(1, 11))
    valid_target = dict(zip(split.valid.users.tolist(), split.valid.targets.tolist()))[0]
    assert time_of[valid_target] == min(t for t in range(1, 11) if t >= cut_valid)
    test_target = dict(zip(split.test.users.tolist(), split.test.targets.tolist()))
    assert time_of[test_target[0]] == min(t for t in range(1, 11) if t >= cut_test)
    # v has no training events: no valid example, but a test example with history [x]
    v = frame.filter(pl.col("user_id") == "v")["user_idx"][0]
    assert v not in split.train_users.tolist() and v not in split.valid.users.tolist()
    assert v in test_target


def test_make_split_dispatches():
    frame = synthetic_frame(3)
    assert make_split(frame, "leave_one_out").protocol == "leave_one_out"
    assert make_split(frame, "temporal", 0.2, 0.1).protocol == "temporal"


def test_make_split_unknown_protocol_raises():
    with pytest.raises(DataError, match="unknown split"):
        make_split(synthetic_frame(0), "random")


@pytest.mark.parametrize("fractions", [(0.0, 0.1), (0.1, 0.0), (0.5, 0.5), (0.7, 0.4),
                                       (1.2, 0.1), (-0.1, 0.2), (0.1, 1.0)])
def test_temporal_bad_fractions_raise(fractions):
    with pytest.raises(DataError, match="fractions"):
        temporal(synthetic_frame(0), *fractions)
    with pytest.raises(DataError):
        make_split(synthetic_frame(0), "temporal", *fractions)


def test_temporal_coarse_timestamps_raise():
    frame = encoded([("u", "a", 5), ("u", "b", 5), ("v", "a", 5), ("v", "c", 5)])
    with pytest.raises(DataError, match="too coarse"):
        temporal(frame)


def test_temporal_train_only_users_counts_only_users_kept_for_training():
    rows = [("u", f"i{t}", t) for t in range(1, 11)]
    rows += [("late", "x", 10)]  # only an event in the test window: not trained, not evaluated
    split = temporal(encoded(rows), 0.2, 0.2)
    evaluated = set(split.valid.users.tolist()) | set(split.test.users.tolist())
    kept_only = [u for u in split.train_users.tolist() if u not in evaluated]
    assert split.train_only_users == len(kept_only)

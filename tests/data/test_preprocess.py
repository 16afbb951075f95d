"""Tests for rankpref.data.preprocess: dedupe, iterative k-core, ordering, vocabulary."""

from __future__ import annotations

import random

import polars as pl
import pytest

from rankpref.data.preprocess import (
    Vocabulary,
    add_source_row,
    deduplicate,
    k_core,
    preprocess,
)
from rankpref.data.schema import INTERACTION_SCHEMA
from rankpref.data.splits import leave_one_out
from rankpref.errors import DataError


def frame(rows: list[tuple], with_rating: bool = False) -> pl.DataFrame:
    """Interaction frame from (user, item, timestamp[, rating]) tuples, in source order."""
    cols = {"user_id": [str(r[0]) for r in rows], "item_id": [str(r[1]) for r in rows],
            "timestamp": [int(r[2]) for r in rows]}
    if with_rating:
        cols["rating"] = [float(r[3]) for r in rows]
    return pl.DataFrame(cols, schema_overrides={"timestamp": pl.Int64})


def numbered(rows: list[tuple], with_rating: bool = False) -> pl.DataFrame:
    return add_source_row(frame(rows, with_rating)).collect()


def sequences(encoded: pl.DataFrame, vocab: Vocabulary) -> dict[str, list[str]]:
    """user id -> item ids in the encoded (chronological) row order."""
    out: dict[str, list[str]] = {}
    for u, i in zip(encoded["user_idx"].to_list(), encoded["item_idx"].to_list()):
        out.setdefault(vocab.users[u], []).append(vocab.items[i])
    return out


# --------------------------------------------------------------------------- dedupe


def test_dedupe_user_item_keeps_the_earliest_then_first_in_source():
    rows = [("u1", "a", 5, 1.0),   # later duplicate of (u1, a)
            ("u1", "a", 3, 2.0),   # earliest -> kept
            ("u1", "a", 3, 3.0),   # same time, later in the source -> dropped
            ("u1", "b", 4, 4.0),
            ("u2", "a", 9, 5.0)]   # other user: not a duplicate
    kept, dropped = deduplicate(numbered(rows, with_rating=True), "user_item")
    assert dropped == 2
    got = {(r["user_id"], r["item_id"]): (r["timestamp"], r["rating"]) for r in kept.to_dicts()}
    assert got == {("u1", "a"): (3, 2.0), ("u1", "b"): (4, 4.0), ("u2", "a"): (9, 5.0)}


def test_dedupe_exact_drops_only_identical_user_item_timestamp():
    rows = [("u1", "a", 3, 1.0), ("u1", "a", 3, 2.0), ("u1", "a", 5, 3.0), ("u1", "b", 3, 4.0)]
    kept, dropped = deduplicate(numbered(rows, with_rating=True), "exact")
    assert dropped == 1
    assert sorted((r["item_id"], r["timestamp"], r["rating"]) for r in kept.to_dicts()) == [
        ("a", 3, 1.0), ("a", 5, 3.0), ("b", 3, 4.0)]


def test_dedupe_none_keeps_everything():
    rows = [("u1", "a", 3), ("u1", "a", 3), ("u1", "a", 5)]
    kept, dropped = deduplicate(numbered(rows), "none")
    assert dropped == 0 and kept.height == 3


def test_dedupe_unknown_mode_raises():
    with pytest.raises(DataError, match="dedupe"):
        deduplicate(numbered([("u", "a", 1)]), "bogus")


@pytest.mark.parametrize("mode, expected_rows", [("user_item", 2), ("exact", 3), ("none", 4)])
def test_preprocess_reports_duplicates_per_mode(mode, expected_rows):
    rows = [("u1", "a", 1), ("u1", "a", 1), ("u1", "a", 2), ("u1", "b", 3)]
    out, _, report = preprocess(frame(rows), dedupe=mode, min_user=0, min_item=0)
    assert out.height == expected_rows
    assert report.rows_read == 4
    assert report.duplicates_dropped == 4 - expected_rows


# --------------------------------------------------------------------------- k-core


def reference_k_core(pairs: set[tuple[str, str]], min_user: int, min_item: int):
    """Brute-force k-core: drop any user/item under its threshold until nothing changes."""
    pairs = set(pairs)
    while True:
        users: dict[str, int] = {}
        items: dict[str, int] = {}
        for u, i in pairs:
            users[u] = users.get(u, 0) + 1
            items[i] = items.get(i, 0) + 1
        keep = {(u, i) for u, i in pairs if users[u] >= min_user and items[i] >= min_item}
        if keep == pairs:
            return pairs
        pairs = keep


def test_k_core_iterates_until_stable_where_one_pass_is_not_enough():
    # Round 1 drops item d (1 user), then user u3 (only c left). That leaves item c with a
    # single user (u1), which only a second round removes. A one-pass filter would keep (u1, c).
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3),
            ("u2", "a", 1), ("u2", "b", 2),
            ("u3", "c", 1), ("u3", "d", 2)]
    out, rounds = k_core(numbered(rows), 2, 2)
    got = set(zip(out["user_id"].to_list(), out["item_id"].to_list()))
    assert got == {("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")}
    assert got == reference_k_core({(u, i) for u, i, _ in rows}, 2, 2)
    assert rounds > 2  # two rounds that remove something, one that confirms


def test_k_core_through_preprocess_reports_rounds_and_rows():
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3),
            ("u2", "a", 1), ("u2", "b", 2),
            ("u3", "c", 1), ("u3", "d", 2)]
    out, vocab, report = preprocess(frame(rows), min_user=2, min_item=2)
    assert vocab.users == ["u1", "u2"] and vocab.items == ["<pad>", "a", "b"]
    assert report.kcore_rounds > 1
    assert report.kcore_rows_dropped == 3 and out.height == 4


@pytest.mark.parametrize("seed", range(8))
def test_k_core_matches_brute_force_on_random_graphs(seed):
    rng = random.Random(seed)
    pairs = {(f"u{rng.randrange(40)}", f"i{rng.randrange(30)}") for _ in range(rng.randrange(40, 260))}
    min_user, min_item = rng.randint(2, 5), rng.randint(2, 5)
    rows = [(u, i, n) for n, (u, i) in enumerate(sorted(pairs))]
    out, rounds = k_core(numbered(rows), min_user, min_item)
    got = set(zip(out["user_id"].to_list(), out["item_id"].to_list()))
    assert got == reference_k_core(pairs, min_user, min_item)
    assert rounds >= 1
    if got:
        assert out.group_by("user_id").len()["len"].min() >= min_user
        assert out.group_by("item_id").len()["len"].min() >= min_item


def test_k_core_thresholds_of_zero_or_one_keep_everything():
    rows = [("u1", "a", 1), ("u2", "b", 1)]
    for k in (0, 1):
        out, rounds = k_core(numbered(rows), k, k)
        assert out.height == 2 and rounds == 1


def test_k_core_that_removes_everything_raises():
    with pytest.raises(DataError, match="core"):
        preprocess(frame([("u1", "a", 1), ("u2", "b", 1)]), min_user=2, min_item=2)


# --------------------------------------------------------------------------- ordering


def test_equal_timestamps_keep_source_row_order():
    # All of u1's events share one timestamp: the source order z, a, m must be kept
    # (not the item-id order a, m, z). u2's events are out of order in the source.
    rows = [("u1", "z", 7), ("u2", "b", 20), ("u1", "a", 7), ("u2", "a", 10), ("u1", "m", 7)]
    out, vocab, _ = preprocess(frame(rows), min_user=0, min_item=0)
    assert sequences(out, vocab) == {"u1": ["z", "a", "m"], "u2": ["a", "b"]}
    assert out["source_row"].to_list() == [0, 2, 4, 3, 1]


def test_equal_timestamps_keep_source_row_order_after_a_shuffle():
    # With an explicit source_row, the physical row order of the input does not matter.
    rng = random.Random(0)
    rows = [(f"u{rng.randrange(15)}", f"i{rng.randrange(25)}", rng.randrange(6))
            for _ in range(400)]
    base = numbered(rows)
    expected = preprocess(base, min_user=0, min_item=0)
    for seed in range(3):
        shuffled = base.sample(fraction=1.0, shuffle=True, seed=seed)
        assert shuffled["source_row"].to_list() != base["source_row"].to_list()
        out, vocab, report = preprocess(shuffled, min_user=0, min_item=0)
        assert out.equals(expected[0])
        assert vocab == expected[1]
        assert report == expected[2]


def test_preprocess_is_deterministic_for_the_same_input():
    rng = random.Random(1)
    rows = [(f"u{rng.randrange(30)}", f"i{rng.randrange(20)}", rng.randrange(10))
            for _ in range(600)]
    first = preprocess(frame(rows), min_user=3, min_item=3)
    second = preprocess(frame(rows), min_user=3, min_item=3)
    assert first[0].equals(second[0])
    assert first[1] == second[1] and first[2] == second[2]
    # chronological within each user, ties by source row
    keys = first[0].select("user_idx", "timestamp", "source_row").rows()
    assert keys == sorted(keys)


def test_preprocess_accepts_a_lazy_frame():
    out, vocab, _ = preprocess(frame([("u", "a", 1), ("u", "b", 2)]).lazy(),
                               min_user=0, min_item=0)
    assert out.height == 2 and vocab.num_items == 2


def test_preprocess_empty_frame_raises():
    empty = pl.DataFrame(schema=INTERACTION_SCHEMA)
    with pytest.raises(DataError, match="no interactions"):
        preprocess(empty, min_user=0, min_item=0)


def test_preprocess_null_user_raises():
    bad = pl.DataFrame({"user_id": ["u", None], "item_id": ["a", "b"], "timestamp": [1, 2]})
    with pytest.raises(DataError, match="user_id"):
        preprocess(bad, min_user=0, min_item=0)


def test_short_users_are_kept_for_training_and_counted():
    rows = [("long", "a", 1), ("long", "b", 2), ("long", "c", 3), ("long", "d", 4),
            ("one", "a", 1), ("two", "b", 1), ("two", "c", 2), ("three", "a", 5),
            ("three", "b", 6), ("three", "c", 7)]
    out, vocab, _ = preprocess(frame(rows), min_user=0, min_item=0)
    assert sorted(vocab.users) == ["long", "one", "three", "two"]
    split = leave_one_out(out)
    assert split.train_only_users == 2
    index = vocab.user_index()
    train = {int(u): s.tolist() for u, s in zip(split.train_users, split.train_sequences)}
    assert set(train) == set(index.values())
    items = vocab.item_index()
    assert train[index["one"]] == [items["a"]]
    assert train[index["two"]] == [items["b"], items["c"]]
    assert train[index["three"]] == [items["a"]]
    assert sorted(split.valid.users.tolist()) == sorted([index["long"], index["three"]])
    assert split.stats()["train_only_users"] == 2


# --------------------------------------------------------------------------- vocabulary


def test_vocabulary_pad_is_index_zero_and_ids_are_contiguous():
    out, vocab, _ = preprocess(frame([("u2", "b", 1), ("u1", "a", 1), ("u1", "c", 2)]),
                               min_user=0, min_item=0)
    assert vocab.items[0] == Vocabulary.PAD == "<pad>"
    assert vocab.num_items == 3
    assert vocab.item_index() == {"a": 1, "b": 2, "c": 3}
    assert vocab.user_index() == {"u1": 0, "u2": 1}
    assert out["item_idx"].min() == 1 and out["item_idx"].max() == 3
    assert out["user_idx"].to_list() == [0, 0, 1]
    for row in out.to_dicts():
        assert vocab.items[row["item_idx"]] == row["item_id"]
        assert vocab.users[row["user_idx"]] == row["user_id"]


def test_vocabulary_sorts_numeric_ids_numerically():
    rows = [("10", "100", 1), ("9", "9", 1), ("100", "10", 1), ("9", "20", 2)]
    _, vocab, _ = preprocess(frame(rows), min_user=0, min_item=0)
    assert vocab.users == ["9", "10", "100"]
    assert vocab.items == ["<pad>", "9", "10", "20", "100"]


def test_vocabulary_sorts_mixed_ids_as_strings():
    rows = [("u", "10", 1), ("u", "9", 2), ("u", "a", 3)]
    _, vocab, _ = preprocess(frame(rows), min_user=0, min_item=0)
    assert vocab.items == ["<pad>", "10", "9", "a"]


def test_vocabulary_keeps_ids_with_leading_zeros():
    rows = [("u1", "007", 1), ("u1", "010", 2), ("u2", "007", 1), ("u2", "8", 2)]
    out, vocab, _ = preprocess(frame(rows), min_user=0, min_item=0)
    assert out.height == 4
    assert vocab.items == ["<pad>", "007", "8", "010"]


def test_vocabulary_json_roundtrip():
    vocab = Vocabulary(users=["u1", "u2"], items=["<pad>", "a", "b"])
    obj = vocab.to_json()
    assert obj == {"users": ["u1", "u2"], "items": ["<pad>", "a", "b"]}
    import json

    again = Vocabulary.from_json(json.loads(json.dumps(obj)))
    assert again == vocab and again.num_items == 2


@pytest.mark.parametrize("obj", [
    {"users": ["u"], "items": ["a", "<pad>"]},
    {"users": ["u"], "items": []},
    {"users": ["u"]},
    {"items": ["<pad>"]},
    ["<pad>", "a"],
])
def test_vocabulary_from_json_rejects_bad_objects(obj):
    with pytest.raises(DataError):
        Vocabulary.from_json(obj)

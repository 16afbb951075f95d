"""Tests for rankpref.data.datasets.prepare: the prepared-dataset cache and dataset lookup.

Every prepare() here writes under tmp_path (never into the repository's .cache).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from rankpref.tasks.next_item.config import DataConfig
from rankpref.data import datasets
from rankpref.data.datasets import load_prepared, prepare
from rankpref.errors import DataError
from rankpref.settings import DATA_DIR_ENV

CACHE_FILES = {"interactions.parquet", "items.parquet", "vocab.json", "stats.json"}


def snapshot(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- the cache


def test_prepare_demo_writes_a_complete_cache_folder(tmp_path):
    cache = tmp_path / "cache"
    ds = prepare(DataConfig(name="demo"), cache_dir=cache, quiet=True)
    assert ds.path.parent == cache and ds.path.name.startswith("demo-")
    assert {p.name for p in ds.path.iterdir()} == CACHE_FILES
    assert [p.name for p in cache.iterdir()] == [ds.path.name]  # no temporary folder left
    assert ds.interactions.columns == ["user_idx", "item_idx", "timestamp", "rating", "review"]
    stats = json.loads((ds.path / "stats.json").read_text("utf-8"))
    assert stats == ds.stats
    assert stats["users"] == len(ds.vocab.users) == ds.interactions["user_idx"].n_unique()
    assert stats["items"] == ds.num_items == ds.interactions["item_idx"].n_unique()
    assert stats["interactions"] == ds.interactions.height
    assert stats["k_core"] == [5, 5]
    assert ds.interactions.group_by("user_idx").len()["len"].min() >= 5
    assert ds.interactions.group_by("item_idx").len()["len"].min() >= 5
    vocab = json.loads((ds.path / "vocab.json").read_text("utf-8"))
    assert vocab["items"][0] == "<pad>" and vocab == ds.vocab.to_json()
    assert ds.items is not None
    assert ds.items["item_idx"].to_list() == list(range(1, ds.num_items + 1))
    assert ds.items["item_id"].to_list() == ds.vocab.items[1:]
    assert {"title", "brand", "categories"} <= set(ds.items.columns)


def test_prepare_reuses_the_cache(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    first = prepare(DataConfig(name="demo"), cache_dir=cache)
    assert "prepared demo" in capsys.readouterr().out
    before = snapshot(first.path)
    folder_mtime = first.path.stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("preprocess must not run on a cache hit")

    monkeypatch.setattr(datasets, "preprocess", boom)
    second = prepare(DataConfig(name="demo"), cache_dir=cache)
    assert second.path == first.path
    assert snapshot(second.path) == before
    assert second.path.stat().st_mtime_ns == folder_mtime
    assert capsys.readouterr().out == ""
    assert second.interactions.equals(first.interactions)
    assert second.vocab == first.vocab and second.stats == first.stats
    assert len(list(cache.iterdir())) == 1


def test_prepare_force_rebuilds(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = prepare(DataConfig(name="demo"), cache_dir=cache, quiet=True)
    (first.path / "sentinel").write_text("x")
    calls = []
    real = datasets.preprocess
    monkeypatch.setattr(datasets, "preprocess", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = prepare(DataConfig(name="demo"), cache_dir=cache, force=True, quiet=True)
    assert calls == [1]
    assert again.path == first.path
    assert {p.name for p in again.path.iterdir()} == CACHE_FILES  # a fresh folder
    assert again.interactions.equals(first.interactions)
    assert [p.name for p in cache.iterdir()] == [first.path.name]  # no .old/.tmp left


def test_prepare_cache_key_follows_settings(tmp_path):
    cache = tmp_path / "cache"
    a = prepare(DataConfig(name="demo"), cache_dir=cache, quiet=True)
    b = prepare(DataConfig(name="demo", dedupe="exact"), cache_dir=cache, quiet=True)
    c = prepare(DataConfig(name="demo", min_user_interactions=8), cache_dir=cache, quiet=True)
    assert len({a.path, b.path, c.path}) == 3
    assert c.interactions.group_by("user_idx").len()["len"].min() >= 8
    assert c.stats["k_core"] == [8, 5]


def test_prepare_unreadable_cache_raises(tmp_path):
    ds = prepare(DataConfig(name="demo"), cache_dir=tmp_path, quiet=True)
    (ds.path / "vocab.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable"):
        prepare(DataConfig(name="demo"), cache_dir=tmp_path, quiet=True)
    again = prepare(DataConfig(name="demo"), cache_dir=tmp_path, force=True, quiet=True)
    assert again.vocab == load_prepared(again.path).vocab


# --------------------------------------------------------------------------- interrupted writes


def fail_second_parquet_write(monkeypatch):
    real = pl.DataFrame.write_parquet
    calls = []

    def write_parquet(self, *args, **kwargs):
        calls.append(args[0] if args else kwargs.get("file"))
        if len(calls) == 2:  # after interactions.parquet, while writing items.parquet
            raise OSError("disk full (simulated)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", write_parquet)
    return calls


def fail_vocab_json(monkeypatch):
    real = json.dumps
    calls = []

    def dumps(obj, *args, **kwargs):
        if isinstance(obj, dict) and set(obj) == {"users", "items"}:
            calls.append(obj)
            raise OSError("interrupted (simulated)")
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(datasets.json, "dumps", dumps)
    return calls


@pytest.mark.parametrize("fail", [fail_second_parquet_write, fail_vocab_json])
def test_interrupted_prepare_leaves_no_folder(tmp_path, monkeypatch, fail):
    cache = tmp_path / "cache"
    calls = fail(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        prepare(DataConfig(name="demo"), cache_dir=cache, quiet=True)
    assert calls  # the failure really happened midway through the write
    assert list(cache.iterdir()) == []  # neither the final folder nor a .tmp folder
    monkeypatch.undo()
    ds = prepare(DataConfig(name="demo"), cache_dir=cache, quiet=True)
    assert {p.name for p in ds.path.iterdir()} == CACHE_FILES
    assert [p.name for p in cache.iterdir()] == [ds.path.name]


def test_interrupted_force_rebuild_keeps_the_old_folder(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = prepare(DataConfig(name="demo"), cache_dir=cache, quiet=True)
    before = snapshot(first.path)
    fail_second_parquet_write(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        prepare(DataConfig(name="demo"), cache_dir=cache, force=True, quiet=True)
    assert [p.name for p in cache.iterdir()] == [first.path.name]
    assert leftovers(cache) == []
    assert snapshot(first.path) == before
    assert load_prepared(first.path).interactions.equals(first.interactions)


# --------------------------------------------------------------------------- dataset lookup


def test_unknown_dataset_names_the_valid_ones(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'nope'") as info:
        prepare(DataConfig(name="nope"), cache_dir=tmp_path, quiet=True)
    for name in ("demo", "beauty", "ml-100k", "sports", "toys"):
        assert name in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["beauty", "ml-100k", "sports", "toys"])
def test_missing_shared_dataset_mentions_the_env_var(tmp_path, monkeypatch, name):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(empty))
    with pytest.raises(DataError) as info:
        prepare(DataConfig(name=name), cache_dir=tmp_path / "cache", quiet=True)
    message = str(info.value)
    assert DATA_DIR_ENV in message and str(empty) in message and name in message
    assert not (tmp_path / "cache").exists()


def test_no_name_needs_format_and_path(tmp_path):
    with pytest.raises(DataError, match="data.format and data.path"):
        prepare(DataConfig(name=None), cache_dir=tmp_path, quiet=True)


def test_data_dir_fixture_follows_the_env_var(monkeypatch, tmp_path, data_dir):
    from rankpref.settings import data_dir as current

    assert data_dir == current()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert current() == tmp_path


# --------------------------------------------------------------------------- custom tables


def write_table(path: Path) -> Path:
    path.write_text(
        "uid,iid,when,stars\n"
        "bob,x,2,4\n"
        "ann,y,5,3\n"
        "ann,x,5,5\n"     # tie with (ann, y): source order y, x is kept
        "bob,z,1,2\n"
        "ann,z,9,1\n"
        "ann,x,11,1\n",   # later duplicate of (ann, x): dropped
        encoding="utf-8")
    return path


def table_config(path: Path, **extra) -> DataConfig:
    return DataConfig(name=None, format="table", path=str(path),
                      columns={"user_id": "uid", "item_id": "iid", "timestamp": "when",
                               "rating": "stars"},
                      min_user_interactions=0, min_item_interactions=0, **extra)


def test_custom_table_end_to_end(tmp_path):
    source = write_table(tmp_path / "shop.csv")
    ds = prepare(table_config(source), cache_dir=tmp_path / "cache", quiet=True)
    assert ds.path.name.startswith("shop-")
    assert ds.vocab.users == ["ann", "bob"] and ds.vocab.items == ["<pad>", "x", "y", "z"]
    assert ds.items is None
    assert ds.stats["rows_read"] == 6 and ds.stats["duplicates_dropped"] == 1
    rows = [(ds.vocab.users[u], ds.vocab.items[i], t, r) for u, i, t, r in
            ds.interactions.select("user_idx", "item_idx", "timestamp", "rating").rows()]
    assert rows == [("ann", "y", 5, 3.0), ("ann", "x", 5, 5.0), ("ann", "z", 9, 1.0),
                    ("bob", "z", 1, 2.0), ("bob", "x", 2, 4.0)]
    # and the prepared table feeds a split
    from rankpref.data.splits import leave_one_out

    split = leave_one_out(ds.interactions)
    assert split.test.targets.tolist() == [3] and split.train_only_users == 1


def test_custom_table_cache_follows_the_source_file(tmp_path):
    source = write_table(tmp_path / "shop.csv")
    cache = tmp_path / "cache"
    first = prepare(table_config(source), cache_dir=cache, quiet=True)
    with source.open("a", encoding="utf-8") as handle:
        handle.write("cid,w,20,5\n")
    second = prepare(table_config(source), cache_dir=cache, quiet=True)
    assert second.path != first.path
    assert "cid" in second.vocab.users and "cid" not in first.vocab.users


def test_custom_table_with_items_file_and_column_mapping(tmp_path):
    source = write_table(tmp_path / "shop.csv")
    items = tmp_path / "items.csv"
    items.write_text("iid,title\nx,Ex\ny,Why\nz,Zed\n", encoding="utf-8")
    ds = prepare(table_config(source, items_path=str(items)), cache_dir=tmp_path / "cache",
                 quiet=True)
    assert ds.items is not None
    assert ds.items["title"].to_list() == ["Ex", "Why", "Zed"]


def test_reviews_follow_their_rows_through_dedupe_and_sorting(tmp_path):
    """prepare runs the pipeline without the review texts and gathers them back by source
    row: each kept interaction still carries its own review."""
    path = tmp_path / "reviews.csv"
    rows = [("bob", "x", 2, "bob x two"), ("ann", "y", 5, "ann y five"), ("ann", "x", 5, "ann x five"),
            ("bob", "z", 1, "bob z one"), ("ann", "z", 9, "ann z nine"), ("ann", "x", 11, "dropped")]
    path.write_text("uid,iid,when,text\n" + "".join(f"{u},{i},{t},{r}\n" for u, i, t, r in rows),
                    encoding="utf-8")
    cfg = DataConfig(name=None, format="table", path=str(path), min_user_interactions=0,
                     min_item_interactions=0, columns={"user_id": "uid", "item_id": "iid",
                                                       "timestamp": "when", "review": "text"})
    ds = prepare(cfg, cache_dir=tmp_path / "cache", quiet=True)
    got = [(ds.vocab.users[u], ds.vocab.items[i], t, r) for u, i, t, r in
           ds.interactions.select("user_idx", "item_idx", "timestamp", "review").rows()]
    assert got == [("ann", "y", 5, "ann y five"), ("ann", "x", 5, "ann x five"),
                   ("ann", "z", 9, "ann z nine"), ("bob", "z", 1, "bob z one"),
                   ("bob", "x", 2, "bob x two")]
    assert leftovers(tmp_path / "cache") == []  # the staging parquet is gone

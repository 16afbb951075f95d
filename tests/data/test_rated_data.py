"""Rated pools and training lists: margins, seeds, raters, feature sources, bad input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from rankpref.data import rated
from rankpref.errors import DataError


class FakeEncoder:
    model_id = "fake"

    def encode(self, texts):
        return np.array([[len(t), t.count("a")] for t in texts], dtype=np.float32)


def _emobank_like_labels(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.normal(3.0, 0.35, n), 1), 1.0, 5.0)


# ------------------------------------------------------------------ sampling

@pytest.mark.parametrize("margin", [0.1, 0.3])
def test_margin_lists_have_neighbours_at_least_w_apart(margin):
    labels = _emobank_like_labels()
    lists, stats = rated.sample_lists(labels, 16, margin=margin, num_lists=50, seed=1)
    assert stats.lists == lists.shape[0] > 0
    for row in lists:
        ys = np.sort(labels[row[row != rated.LIST_PAD]])
        assert ys.size >= 2
        assert (np.diff(ys) >= margin - 1e-6).all()
    # labels pile up near 3.0, so wide margins give shorter lists, and that is counted
    if margin == 0.3:
        assert stats.short_lists > 0 and stats.as_dict()["mean_list_size"] < 16


def test_no_margin_lists_cover_every_item_once_and_are_seeded():
    labels = np.arange(100, dtype=float)
    lists, stats = rated.sample_lists(labels, 8, seed=3)
    assert lists.shape == (13, 8)
    flat = lists[lists != rated.LIST_PAD]
    assert np.array_equal(np.sort(flat), np.arange(100))
    again, _ = rated.sample_lists(labels, 8, seed=3)
    other, _ = rated.sample_lists(labels, 8, seed=4)
    assert np.array_equal(lists, again) and not np.array_equal(lists, other)


def test_per_rater_lists_stay_within_one_rater_and_count_skips():
    labels = np.array([1, 2, 3, 4, 5, 1, 2, 3, 9, 2.0, 2.0, 2.0])
    raters = np.array(["a"] * 5 + ["b"] * 3 + ["c"] + ["d"] * 3)
    lists, stats = rated.sample_lists(labels, 4, groups=raters, num_lists=4, seed=0)
    for row in lists:
        assert len(set(raters[row[row != rated.LIST_PAD]])) == 1
    assert stats.groups == 4
    assert stats.skipped_groups == 1  # rater c has one item
    assert stats.dropped_tied >= 1  # rater d's labels are all tied


def test_all_tied_lists_are_dropped_with_a_count():
    labels = np.array([2.0, 2.0, 2.0, 2.0, 3.0, 4.0])
    lists, stats = rated.sample_lists(labels, 2, num_lists=30, seed=0)
    assert stats.dropped_tied > 0
    assert all(np.ptp(labels[row]) > 0 for row in lists)


def test_sampling_bad_input():
    with pytest.raises(DataError, match="list size must be >= 2"):
        rated.sample_lists(np.arange(5.0), 1)
    with pytest.raises(DataError, match="at least 2 rated items"):
        rated.sample_lists(np.array([1.0]), 4)
    with pytest.raises(DataError, match="NaN"):
        rated.sample_lists(np.array([1.0, np.nan, 2.0]), 2)
    with pytest.raises(DataError, match="larger than the label range"):
        rated.sample_lists(np.array([1.0, 2.0, 3.0]), 2, margin=2.5)
    with pytest.raises(DataError, match="rater ids"):
        rated.sample_lists(np.arange(4.0), 2, groups=np.array(["a"]))


def test_gather_lists_pads():
    feats = np.arange(8, dtype=np.float32).reshape(4, 2)
    x, y = rated.gather_lists(feats, np.array([1.0, 2.0, 3.0, 4.0]),
                              np.array([[2, 0, -1]]), float("-inf"))
    assert x.tolist() == [[[4, 5], [0, 1], [0, 0]]]
    assert y.tolist() == [[3.0, 1.0, float("-inf")]]


# ------------------------------------------------------------------ tables and sources

def _csv(tmp_path, text, name="pool.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_columns_source_and_fixed_split(tmp_path):
    rows = "\n".join(f"{i},{i % 7},{(i * 3) % 5}" for i in range(50))
    path = _csv(tmp_path, "score,f1,f2\n" + rows + "\n")
    spec = rated.resolve_source(str(path), target="score", feature_columns=["f1", "f2"])
    pool = rated.load_pool(spec)
    assert pool.features.shape == (50, 2) and pool.feature_names == ["f1", "f2"]
    assert sorted(np.unique(pool.split, return_counts=True)[1].tolist()) == [5, 5, 40]
    assert np.array_equal(pool.split, rated.load_pool(spec).split)  # seeded


def test_text_source_with_encoder_and_split_column(tmp_path):
    path = _csv(tmp_path, "id,split,V,text\na,train,3.0,aaa\nb,dev,2.0,ab\nc,test,4.0,bbbb\n"
                "d,valid,1.0,a\n")
    spec = rated.resolve_source(str(path), target="V", text_column="text", split_column="split",
                                id_column="id")
    pool = rated.load_pool(spec, encoder=FakeEncoder())
    assert pool.features.tolist() == [[3, 3], [2, 1], [4, 0], [1, 1]]
    assert pool.split.tolist() == ["train", "valid", "test", "valid"]
    assert pool.ids.tolist() == ["a", "b", "c", "d"]


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_embeddings_source(tmp_path, suffix):
    path = _csv(tmp_path, "y\n" + "\n".join(str(i % 4) for i in range(12)) + "\n")
    emb = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    emb_path = tmp_path / f"emb{suffix}"
    if suffix == ".npy":
        np.save(emb_path, emb)
    else:
        pl.DataFrame({"vec": emb.tolist()}).write_parquet(emb_path)
    pool = rated.load_pool(rated.resolve_source(str(path), target="y"), embeddings=emb_path)
    assert np.allclose(pool.features, emb)


def test_nan_label_names_the_line_and_field(tmp_path):
    path = _csv(tmp_path, "y,f\n1,0.5\n,0.7\n3,0.1\n")
    with pytest.raises(DataError, match=r"pool.csv, line 3, field 'y': 1 missing/NaN"):
        rated.load_pool(rated.resolve_source(str(path), target="y", feature_columns=["f"]))


def test_constant_labels_are_an_error(tmp_path):
    path = _csv(tmp_path, "y,f\n2,0.5\n2,0.7\n2,0.1\n")
    with pytest.raises(DataError, match="all 3 labels equal 2: nothing to rank"):
        rated.load_pool(rated.resolve_source(str(path), target="y", feature_columns=["f"]))


def test_missing_feature_column_names_it(tmp_path):
    path = _csv(tmp_path, "y,f\n1,0.5\n2,0.7\n")
    with pytest.raises(DataError, match="field 'g': missing column"):
        rated.load_pool(rated.resolve_source(str(path), target="y", feature_columns=["f", "g"]))
    with pytest.raises(DataError, match="field 'quality'"):
        rated.load_pool(rated.resolve_source(str(path), target="quality",
                                             feature_columns=["f"]))


def test_non_numeric_feature_names_the_line(tmp_path):
    path = _csv(tmp_path, "y,f\n1,0.5\n2,abc\n3,0.2\n")
    with pytest.raises(DataError, match=r"line 3, field 'f': not a number: 'abc'"):
        rated.load_pool(rated.resolve_source(str(path), target="y", feature_columns=["f"]))


def test_embedding_row_count_mismatch(tmp_path):
    path = _csv(tmp_path, "y\n1\n2\n3\n")
    np.save(tmp_path / "e.npy", np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(DataError, match="4 embedding rows but the table has 3 rows"):
        rated.load_pool(rated.resolve_source(str(path), target="y"),
                        embeddings=tmp_path / "e.npy")


def test_unknown_dataset_and_bad_split_value(tmp_path):
    with pytest.raises(DataError, match="not a built-in dataset"):
        rated.resolve_source("no-such-data.csv", target="y")
    path = _csv(tmp_path, "y,s,f\n1,train,1\n2,holdout,2\n")
    with pytest.raises(DataError, match="line 3, field 's': split 'holdout'"):
        rated.load_pool(rated.resolve_source(str(path), target="y", feature_columns=["f"],
                                             split_column="s"))


def test_margin_larger_than_label_range():
    with pytest.raises(DataError, match=r"margin W=5 is larger than the label range 1\.2\.\.4\.6"):
        rated.check_margin(np.array([1.2, 3.0, 4.6]), 5.0)


# ------------------------------------------------------------------ built-in data

def test_builtin_slices_when_shared_data_is_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKPREF_DATA_DIR", str(tmp_path))
    spec = rated.resolve_source("wine-red")
    assert spec.path.name == "winequality-red_slice.csv" and spec.target == "quality"
    pool = rated.load_pool(spec)
    assert pool.features.shape == (1599, 11)
    emo = rated.resolve_source("emobank", target="A")
    assert emo.path.name == "emobank_slice.csv" and emo.text_column == "text"
    df = rated.read_frame(emo.path)
    assert df.height == 2000 and set(df["split"].unique()) == {"train", "dev", "test"}


def test_builtin_uses_full_shared_data(shared_data):
    path = shared_data("wine_quality", "winequality-white.csv")
    spec = rated.resolve_source("wine-white")
    assert spec.path.resolve() == path.resolve()
    pool = rated.load_pool(spec)
    assert len(pool) == 4898
    counts = {s: int((pool.split == s).sum()) for s in rated.SPLITS}
    assert counts == {"train": 3918, "valid": 490, "test": 490}
    assert rated.resolve_source("wine-white-slice").path.name == "winequality-white_slice.csv"


def test_emobank_full_keeps_official_split(shared_data):
    path = shared_data("emobank", "emobank.csv")
    spec = rated.resolve_source("emobank")
    assert spec.path.resolve() == path.resolve()
    df = rated.read_frame(spec.path)
    assert df.height == 10062
    counts = df.group_by("split").len().sort("split").rows()
    assert counts == [("dev", 1000), ("test", 1000), ("train", 8062)]  # the file's own names

"""Concept vocabularies: validation, labels, round trips, building from real label lists."""

from __future__ import annotations

import numpy as np
import pytest

from rankpref.data.concepts import ConceptVocabulary, from_label_lists, from_names, label_mask
from rankpref.errors import DataError, UnknownIdError


def test_multi_hot_and_index():
    vocab = from_names(["Spreadsheet software", "CAD software", "Drama"])
    m, stats = vocab.multi_hot([["CAD software"], ["Drama", "Spreadsheet software"], []])
    np.testing.assert_array_equal(m, [[0, 1, 0], [1, 0, 1], [0, 0, 0]])
    assert stats.no_concepts == 1 and stats.unknown == 0
    assert label_mask(m).tolist() == [True, True, False]
    assert vocab.index("Drama") == 2
    with pytest.raises(UnknownIdError, match="Nope"):
        vocab.index("Nope")


def test_unknown_labels_error_or_counted():
    vocab = from_names(["a", "b"])
    with pytest.raises(DataError, match=r"train\.jsonl, line 2, field 'concepts'.*'zzz'"):
        vocab.multi_hot([["a"], ["zzz"]], where="train.jsonl")
    m, stats = vocab.multi_hot([["a", "zzz"], ["zzz"]], on_unknown="skip")
    assert stats.unknown == 2 and stats.no_concepts == 1 and stats.unknown_names == ("zzz",)
    np.testing.assert_array_equal(m, [[1, 0], [0, 0]])


@pytest.mark.parametrize("names, message", [
    (["a", "b", "a"], "duplicate concept 'a' \\(entries 1 and 3\\)"),
    (["a", ""], "line 2, field 'name': concept 1 has an empty name"),
    (["a", "  "], "empty name"),
    ([" a"], "leading or trailing spaces"),
    ([], "empty"),
])
def test_bad_vocabularies(names, message):
    with pytest.raises(DataError, match=message):
        from_names(names, source="my_concepts.json")


def test_descriptions_must_match():
    with pytest.raises(DataError, match="1 descriptions for 2 concepts"):
        from_names(["a", "b"], ["only one"])


def test_save_load_round_trip(tmp_path):
    vocab = from_names(["a", "b"], ["first", "second"], source="test")
    vocab.save(tmp_path / "concepts.json")
    back = ConceptVocabulary.load(tmp_path / "concepts.json")
    assert back.names == vocab.names and back.descriptions == vocab.descriptions
    (tmp_path / "bad.json").write_text('{"names": ["x", "x"]}')
    with pytest.raises(DataError, match="bad.json.*duplicate"):
        ConceptVocabulary.load(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text('{"names": ')
    with pytest.raises(DataError, match="broken.json.*cannot read"):
        ConceptVocabulary.load(tmp_path / "broken.json")


def test_from_label_lists_counts_each_row_once():
    vocab = from_label_lists([["x", "x", "y"], ["y", " z "], ["y", None, ""]], min_count=2)
    assert vocab.names == ("y",)  # x is in one row only (counted once), z in one row
    assert from_label_lists([["b", "a"], ["a"]]).names == ("a", "b")  # by count, then name
    with pytest.raises(DataError, match="no concept is used by at least 5 rows"):
        from_label_lists([["a"]], min_count=5)


def test_movielens_genres_as_concepts(shared_data):
    """A vocabulary from MovieLens-100k genres (RecBole's ml-100k.item)."""
    import polars as pl

    folder = shared_data("ml-100k")
    items = next(folder.glob("*.item"), None)
    if items is None:
        pytest.skip("no .item file in ml-100k")
    table = pl.read_csv(items, separator="\t", quote_char=None, infer_schema=False)
    col = next(c for c in table.columns if c.startswith("class"))
    labels = [str(v).split() for v in table[col].to_list()]
    vocab = from_label_lists(labels, source=str(items))
    assert "Drama" in vocab and "Comedy" in vocab and len(vocab) <= 20
    m, stats = vocab.multi_hot(labels)
    assert m.shape == (table.height, len(vocab)) and stats.unknown == 0

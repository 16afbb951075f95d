"""Tests for rankpref.data.readers: every format from tiny files, bad input, real data."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from rankpref.data import readers
from rankpref.data.readers import (
    collect,
    read_amazon2023_meta,
    read_amazon2023_reviews,
    read_amazon_meta,
    read_amazon_reviews,
    read_interactions,
    read_items,
    read_items_jsonl,
    read_recbole_interactions,
    read_recbole_items,
    read_recbole_users,
    read_s3rec_sequences,
    read_table,
)
from rankpref.data.schema import INTERACTION_SCHEMA, ITEM_SCHEMA
from rankpref.errors import DataError
from rankpref.settings import data_dir


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_gz(path: Path, text: str) -> Path:
    path.write_bytes(gzip.compress(text.encode("utf-8")))
    return path


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def rows(frame: pl.LazyFrame, source: Path | str = "test") -> list[dict]:
    return collect(frame, source).to_dicts()


def assert_interactions(frame: pl.LazyFrame) -> None:
    assert isinstance(frame, pl.LazyFrame)
    assert dict(frame.collect_schema()) == INTERACTION_SCHEMA


def assert_items(frame: pl.LazyFrame) -> None:
    assert isinstance(frame, pl.LazyFrame)
    assert dict(frame.collect_schema()) == ITEM_SCHEMA


def raises_data_error(call, path: Path, line: int | None = None,
                      field: str | None = None, text: str | None = None) -> DataError:
    with pytest.raises(DataError) as info:
        result = call()
        if isinstance(result, pl.LazyFrame):
            collect(result, path)
    error = info.value
    message = str(error)
    assert path.name in message
    if line is not None:
        assert error.line == line and f"line {line}" in message
    if field is not None:
        assert error.field == field and f"'{field}'" in message
    if text is not None:
        assert text in message
    return error


# --------------------------------------------------------------------------- RecBole

INTER = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\textra:token\n"
         "196\t242\t3\t881250949\tx\n"
         "007\tB1\t4.5\t881250950.0\ty\n"
         "\n")


def test_recbole_interactions(tmp_path):
    frame = read_recbole_interactions(write(tmp_path / "d.inter", INTER))
    assert_interactions(frame)
    assert rows(frame) == [
        {"user_id": "196", "item_id": "242", "timestamp": 881250949, "rating": 3.0,
         "review": None},
        {"user_id": "007", "item_id": "B1", "timestamp": 881250950, "rating": 4.5,
         "review": None},
    ]


def test_recbole_interactions_without_rating(tmp_path):
    path = write(tmp_path / "d.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    assert rows(read_recbole_interactions(path)) == [
        {"user_id": "1", "item_id": "2", "timestamp": 3, "rating": None, "review": None}]


def test_recbole_items(tmp_path):
    path = write(tmp_path / "d.item",
                 "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                 "1\tToy Story\t1995\tAnimation Children's  Comedy\n"
                 "2\t\t1995\t\n")
    frame = read_recbole_items(path)
    assert_items(frame)
    assert rows(frame) == [
        {"item_id": "1", "title": "Toy Story", "brand": None,
         "categories": ["Animation", "Children's", "Comedy"], "description": None},
        {"item_id": "2", "title": None, "brand": None, "categories": [], "description": None},
    ]


def test_recbole_items_title_and_token_category(tmp_path):
    path = write(tmp_path / "d.item", "item_id:token\tname:token\tgenre:token\n"
                                      "a\tSome Name\tScience Fiction\n")
    assert rows(read_recbole_items(path)) == [
        {"item_id": "a", "title": "Some Name", "brand": None,
         "categories": ["Science Fiction"], "description": None}]


def test_recbole_users(tmp_path):
    path = write(tmp_path / "d.user", "user_id:token\tage:float\ttags:token_seq\tzip\n"
                                      "1\t24\ta b\t00711\n")
    frame = read_recbole_users(path)
    assert frame.collect_schema() == pl.Schema({"user_id": pl.String, "age": pl.Float64,
                                                "tags": pl.List(pl.String), "zip": pl.String})
    assert rows(frame) == [{"user_id": "1", "age": 24.0, "tags": ["a", "b"], "zip": "00711"}]


# --------------------------------------------------------------------------- Amazon 2014/2018

REVIEWS = [
    {"reviewerID": "A1", "asin": "B01", "unixReviewTime": 1400000000, "overall": 5.0,
     "summary": "Great", "reviewText": "Works well.", "vote": "2", "style": {"Size:": "L"}},
    {"reviewerID": "A2", "asin": "B02", "unixReviewTime": 1400000100, "overall": 3,
     "reviewText": "Only text"},
    {"reviewerID": "A3", "asin": "B01", "unixReviewTime": 1400000200, "summary": "Only summary",
     "reviewText": ""},
    {"reviewerID": "A1", "asin": "B01", "unixReviewTime": 1400000000, "overall": 5.0},
]
EXPECTED_REVIEWS = [
    {"user_id": "A1", "item_id": "B01", "timestamp": 1400000000, "rating": 5.0,
     "review": "Great. Works well."},
    {"user_id": "A2", "item_id": "B02", "timestamp": 1400000100, "rating": 3.0,
     "review": "Only text"},
    {"user_id": "A3", "item_id": "B01", "timestamp": 1400000200, "rating": None,
     "review": "Only summary"},
    {"user_id": "A1", "item_id": "B01", "timestamp": 1400000000, "rating": 5.0,
     "review": None},
]


def test_amazon_reviews_json_lines(tmp_path):
    frame = read_amazon_reviews(write(tmp_path / "r.json", jsonl(REVIEWS) + "\n"))
    assert_interactions(frame)
    assert rows(frame) == EXPECTED_REVIEWS  # duplicates are kept


def test_amazon_reviews_python_dict_lines(tmp_path):
    text = "".join(repr(record) + "\n" for record in REVIEWS)
    assert text.startswith("{'reviewerID'")
    frame = read_amazon_reviews(write(tmp_path / "r.json", text))
    assert_interactions(frame)
    assert rows(frame) == EXPECTED_REVIEWS


def test_amazon_reviews_gzip_detected_by_magic_bytes(tmp_path):
    # No .gz suffix: the reader must look at the bytes.
    frame = read_amazon_reviews(write_gz(tmp_path / "reviews.json", jsonl(REVIEWS)))
    assert rows(frame) == EXPECTED_REVIEWS
    frame = read_amazon_reviews(write_gz(tmp_path / "reviews.json.gz", jsonl(REVIEWS)),
                                batch_rows=1)
    assert rows(frame) == EXPECTED_REVIEWS


def test_amazon_meta_2014_dict_lines(tmp_path):
    records = [
        {"asin": "B01", "title": "Lipstick", "brand": "Acme", "price": 3.5,
         "categories": [["Beauty", "Makeup", "Lips"], ["Beauty", "Gifts"]],
         "description": "  Red.  ", "salesRank": {"Beauty": 12}},
        {"asin": "B02", "categories": []},
    ]
    frame = read_amazon_meta(write_gz(tmp_path / "meta_Beauty.json.gz",
                                      "".join(repr(r) + "\n" for r in records)))
    assert_items(frame)
    assert rows(frame) == [
        {"item_id": "B01", "title": "Lipstick", "brand": "Acme",
         "categories": ["Beauty", "Makeup", "Lips"], "description": "Red."},
        {"item_id": "B02", "title": None, "brand": None, "categories": [], "description": None},
    ]


def test_amazon_meta_2018_json(tmp_path):
    records = [{"asin": "B01", "title": "Shampoo", "brand": "Acme",
                "category": ["Beauty", "Hair Care", ""],
                "description": ["Gentle.", "", "For all hair."]}]
    frame = read_amazon_meta(write(tmp_path / "meta.json", jsonl(records)))
    assert rows(frame) == [{"item_id": "B01", "title": "Shampoo", "brand": "Acme",
                            "categories": ["Beauty", "Hair Care"],
                            "description": "Gentle. For all hair."}]


# --------------------------------------------------------------------------- Amazon 2023

REVIEWS_2023 = [
    {"rating": 5.0, "title": "Love it", "text": "Smells nice", "images": [], "asin": "B0X",
     "parent_asin": "B0P", "user_id": "U1", "timestamp": 1588687728923, "helpful_vote": 0,
     "verified_purchase": True},
    {"rating": 2.0, "title": "", "text": "Meh", "asin": "B0Y", "parent_asin": "B0Q",
     "user_id": "U2", "timestamp": 1588687729999},
]
EXPECTED_2023 = [
    {"user_id": "U1", "item_id": "B0P", "timestamp": 1588687728, "rating": 5.0,
     "review": "Love it. Smells nice"},
    {"user_id": "U2", "item_id": "B0Q", "timestamp": 1588687729, "rating": 2.0,
     "review": "Meh"},
]


@pytest.mark.parametrize("compressed", [False, True])
def test_amazon2023_reviews(tmp_path, compressed):
    text = jsonl(REVIEWS_2023)
    path = (write_gz(tmp_path / "All_Beauty.jsonl.gz", text) if compressed
            else write(tmp_path / "All_Beauty.jsonl", text))
    frame = read_amazon2023_reviews(path)
    assert_interactions(frame)
    assert rows(frame) == EXPECTED_2023


@pytest.mark.parametrize("compressed", [False, True])
def test_amazon2023_meta(tmp_path, compressed):
    records = [
        {"main_category": "All Beauty", "title": "Soap", "average_rating": 4.1,
         "features": ["x"], "description": ["Mild soap.", "Vegan."], "price": None,
         "store": "Acme", "categories": ["Beauty", "Soap"], "details": {"Brand": "A"},
         "parent_asin": "B0P"},
        {"title": "Brush", "description": [], "store": None, "categories": [],
         "parent_asin": "B0Q"},
    ]
    text = jsonl(records)
    path = (write_gz(tmp_path / "meta.jsonl.gz", text) if compressed
            else write(tmp_path / "meta.jsonl", text))
    frame = read_amazon2023_meta(path)
    assert_items(frame)
    assert rows(frame) == [
        {"item_id": "B0P", "title": "Soap", "brand": "Acme", "categories": ["Beauty", "Soap"],
         "description": "Mild soap. Vegan."},
        {"item_id": "B0Q", "title": "Brush", "brand": None, "categories": [],
         "description": None},
    ]


# --------------------------------------------------------------------------- S3-Rec

EXPECTED_S3REC = [
    {"user_id": "1", "item_id": "1", "timestamp": 0, "rating": None, "review": None},
    {"user_id": "1", "item_id": "2", "timestamp": 1, "rating": None, "review": None},
    {"user_id": "1", "item_id": "3", "timestamp": 2, "rating": None, "review": None},
    {"user_id": "2", "item_id": "4", "timestamp": 0, "rating": None, "review": None},
    {"user_id": "2", "item_id": "2", "timestamp": 1, "rating": None, "review": None},
]


def test_s3rec_space_separated(tmp_path):
    frame = read_s3rec_sequences(write(tmp_path / "Beauty.txt", "1 1 2 3\n\n2 4  2 \n3\n"))
    assert_interactions(frame)
    assert rows(frame) == EXPECTED_S3REC  # user 3 has no items: no rows


def test_s3rec_tsv_with_header(tmp_path):
    path = write(tmp_path / "sequences.tsv",
                 "user_id\treviewer_id\titem_ids\n1\tAX\t1 2 3\n2\tAY\t4 2\n")
    frame = read_s3rec_sequences(path)
    assert_interactions(frame)
    assert rows(frame) == EXPECTED_S3REC


def test_items_jsonl(tmp_path):
    records = [
        {"item_id": 1, "asin": "B004", "title": "OPI Lacquer", "brand": "OPI",
         "categories": ["Makeup", "Nails"], "attribute_ids": [1, 2]},
        {"item_id": 2, "asin": "B005", "title": "", "brand": None, "categories": []},
    ]
    frame = read_items_jsonl(write(tmp_path / "items.jsonl", jsonl(records)))
    assert_items(frame)
    assert rows(frame) == [
        {"item_id": "1", "title": "OPI Lacquer", "brand": "OPI",
         "categories": ["Makeup", "Nails"], "description": None},
        {"item_id": "2", "title": None, "brand": None, "categories": [], "description": None},
    ]


# --------------------------------------------------------------------------- tables


def test_table_csv_with_mapping(tmp_path):
    path = write(tmp_path / "events.csv",
                 'uid,product,ts,stars,note\n'
                 '001,p1,1600000000,4,"fine, really"\n'
                 '002,p2,1600000001.0,,\n')
    frame = read_table(path, {"user_id": "uid", "item_id": "product", "timestamp": "ts",
                              "rating": "stars", "review": "note"})
    assert_interactions(frame)
    assert rows(frame) == [
        {"user_id": "001", "item_id": "p1", "timestamp": 1600000000, "rating": 4.0,
         "review": "fine, really"},
        {"user_id": "002", "item_id": "p2", "timestamp": 1600000001, "rating": None,
         "review": None},
    ]


def test_table_tsv_identity_mapping(tmp_path):
    path = write(tmp_path / "events.tsv", "user_id\titem_id\ttimestamp\n1\t2\t3\n")
    assert rows(read_table(path)) == [
        {"user_id": "1", "item_id": "2", "timestamp": 3, "rating": None, "review": None}]


def test_table_parquet(tmp_path):
    path = tmp_path / "events.parquet"
    pl.DataFrame({
        "u": [1, 2],
        "i": ["a", "b"],
        "when": [datetime(2020, 1, 1, tzinfo=timezone.utc),
                 datetime(2020, 1, 2, tzinfo=timezone.utc)],
        "rating": [1, 5],
    }).write_parquet(path)
    frame = read_table(path, {"user_id": "u", "item_id": "i", "timestamp": "when"})
    assert_interactions(frame)
    assert rows(frame) == [
        {"user_id": "1", "item_id": "a", "timestamp": 1577836800, "rating": 1.0, "review": None},
        {"user_id": "2", "item_id": "b", "timestamp": 1577923200, "rating": 5.0, "review": None},
    ]


def test_table_items_csv_and_parquet(tmp_path):
    csv_path = write(tmp_path / "items.csv", "id,name,cats\nx,Pen,Office| Pens\ny,,\n")
    frame = read_table(csv_path, {"item_id": "id", "title": "name", "categories": "cats"},
                       kind="items")
    assert_items(frame)
    expected = [
        {"item_id": "x", "title": "Pen", "brand": None, "categories": ["Office", "Pens"],
         "description": None},
        {"item_id": "y", "title": None, "brand": None, "categories": [], "description": None},
    ]
    assert rows(frame) == expected
    parquet_path = tmp_path / "items.parquet"
    pl.DataFrame({"item_id": ["x", "y"], "title": ["Pen", None],
                  "categories": [["Office", "Pens"], None]}).write_parquet(parquet_path)
    assert rows(read_table(parquet_path, kind="items")) == expected


# --------------------------------------------------------------------------- dispatch


def test_dispatch(tmp_path):
    inter = write(tmp_path / "d.inter", INTER)
    assert rows(read_interactions(inter, "recbole")) == rows(read_recbole_interactions(inter))
    csv_path = write(tmp_path / "e.csv", "u,i,t\n1,2,3\n")
    frame = read_interactions(csv_path, "table",
                              columns={"user_id": "u", "item_id": "i", "timestamp": "t"})
    assert rows(frame)[0]["timestamp"] == 3
    items = write(tmp_path / "items.jsonl", jsonl([{"item_id": 7, "title": "T"}]))
    assert rows(read_items(items, "s3rec"))[0]["item_id"] == "7"
    items_csv = write(tmp_path / "items.csv", "item_id,title\n7,T\n")
    assert rows(read_items(items_csv, "table"))[0]["title"] == "T"
    reviews = write(tmp_path / "r.json", jsonl(REVIEWS))
    assert rows(read_interactions(reviews, "amazon2018", batch_rows=2)) == EXPECTED_REVIEWS


def test_dispatch_unknown_format_and_option(tmp_path):
    path = tmp_path / "d.inter"
    error = raises_data_error(lambda: read_interactions(path, "movielens"), path)
    for name in ("recbole", "amazon2018", "amazon2023", "s3rec", "table"):
        assert name in str(error)
    raises_data_error(lambda: read_items(path, "nope"), path, text="valid:")
    raises_data_error(lambda: read_interactions(path, "recbole", separator=","), path,
                      text="unknown option")


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    path = tmp_path / "absent.inter"
    raises_data_error(lambda: read_recbole_interactions(path), path, text="not found")
    raises_data_error(lambda: read_amazon_reviews(path), path, text="not found")
    raises_data_error(lambda: read_table(tmp_path / "absent.csv"), tmp_path / "absent.csv")


@pytest.mark.parametrize("compressed", [False, True])
def test_json_line_missing_field(tmp_path, compressed):
    text = jsonl([REVIEWS[0], {"reviewerID": "A9", "unixReviewTime": 1}])
    path = (write_gz(tmp_path / "r.json.gz", text) if compressed
            else write(tmp_path / "r.json", text))
    raises_data_error(lambda: read_amazon_reviews(path), path, line=2, field="asin",
                      text="missing field")


def test_dict_line_missing_field_in_meta(tmp_path):
    path = write(tmp_path / "meta.json", "{'asin': 'B1'}\n{'title': 'no asin'}\n")
    raises_data_error(lambda: read_amazon_meta(path), path, line=2, field="asin")


def test_amazon2023_missing_parent_asin(tmp_path):
    path = write(tmp_path / "r.jsonl", jsonl([{"user_id": "U", "timestamp": 1}]))
    raises_data_error(lambda: read_amazon2023_reviews(path), path, line=1,
                      field="parent_asin")


def test_timestamp_not_a_number(tmp_path):
    bad = dict(REVIEWS[0], unixReviewTime="yesterday")
    path = write(tmp_path / "r.json", jsonl([REVIEWS[0], REVIEWS[1], bad]))
    raises_data_error(lambda: read_amazon_reviews(path), path, line=3,
                      field="unixReviewTime", text="expected a number")
    path = write(tmp_path / "d.inter", "user_id:token\titem_id:token\ttimestamp:float\n"
                                       "1\t2\t3\n1\t2\tsoon\n")
    raises_data_error(lambda: read_recbole_interactions(path), path, line=3, field="timestamp")
    path = write(tmp_path / "e.csv", "u,i,t\n1,2,3\n1,2,soon\n")
    raises_data_error(lambda: read_table(path, {"user_id": "u", "item_id": "i",
                                                "timestamp": "t"}),
                      path, line=3, field="timestamp")


def test_bad_value_after_checked_lines_names_its_line_at_collect(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "HEAD_LINES", 1)
    path = write(tmp_path / "d.inter", "user_id:token\titem_id:token\ttimestamp:float\n"
                                       "1\t2\t3\n1\t2\tsoon\n")
    frame = read_recbole_interactions(path)  # only line 2 is checked eagerly
    error = raises_data_error(lambda: collect(frame, path), path, line=3, field="timestamp")
    assert "soon" in str(error)
    path = write(tmp_path / "r.jsonl", jsonl([REVIEWS_2023[0], REVIEWS_2023[0]]) + "oops\n")
    raises_data_error(lambda: collect(read_amazon2023_reviews(path), path), path, line=3,
                      text="not a JSON object")


@pytest.mark.parametrize("reader,name,content", [
    (read_amazon_reviews, "r.json", ""),
    (read_amazon_reviews, "r.json.gz", None),
    (read_amazon2023_reviews, "r.jsonl", "\n\n"),
    (read_recbole_interactions, "d.inter", ""),
    (read_recbole_interactions, "d.inter", "user_id:token\titem_id:token\ttimestamp:float\n"),
    (read_s3rec_sequences, "s.txt", ""),
    (read_s3rec_sequences, "s.tsv", "user_id\treviewer_id\titem_ids\n"),
    (read_table, "e.csv", "user_id,item_id,timestamp\n"),
    (read_table, "e.csv", ""),
])
def test_empty_file(tmp_path, reader, name, content):
    path = (write_gz(tmp_path / name, "") if content is None
            else write(tmp_path / name, content))
    raises_data_error(lambda: reader(path), path, text="no interactions")


def test_empty_item_files(tmp_path):
    path = write(tmp_path / "meta.json", "")
    raises_data_error(lambda: read_amazon_meta(path), path, text="no items")
    path = write(tmp_path / "d.item", "item_id:token\ttitle:token\n")
    raises_data_error(lambda: read_recbole_items(path), path, text="no items")


def test_truncated_gzip(tmp_path):
    data = gzip.compress(jsonl(REVIEWS * 50).encode())
    path = tmp_path / "r.json.gz"
    path.write_bytes(data[: len(data) // 2])
    raises_data_error(lambda: read_amazon_reviews(path), path,
                      text="truncated or corrupt gzip")
    csv_data = gzip.compress(("user_id,item_id,timestamp\n" + "1,2,3\n" * 5000).encode())
    csv_path = tmp_path / "e.csv.gz"
    csv_path.write_bytes(csv_data[: len(csv_data) // 2])
    raises_data_error(lambda: read_table(csv_path), csv_path, text="truncated or corrupt gzip")


def test_not_utf8(tmp_path):
    path = tmp_path / "r.json"
    path.write_bytes(jsonl(REVIEWS[:1]).encode() + b'{"reviewerID": "A\xff"}\n')
    raises_data_error(lambda: read_amazon_reviews(path), path, line=2, text="UTF-8")
    path = tmp_path / "d.inter"
    path.write_bytes(b"user_id:token\titem_id:token\ttimestamp:float\n1\t\xe9\t3\n")
    raises_data_error(lambda: read_recbole_interactions(path), path, line=2, text="UTF-8")


def test_not_json_nor_dict(tmp_path):
    path = write(tmp_path / "r.json", jsonl(REVIEWS[:1]) + "reviewerID=A2, asin=B2\n")
    raises_data_error(lambda: read_amazon_reviews(path), path, line=2,
                      text="not a JSON object nor a Python dict")
    path = write(tmp_path / "r2.json", jsonl(REVIEWS[:1]) + "[1, 2]\n")
    raises_data_error(lambda: read_amazon_reviews(path), path, line=2, text="expected an object")


def test_no_eval_of_python_code(tmp_path):
    path = write(tmp_path / "r.json", "{'reviewerID': __import__('os').getcwd()}\n")
    raises_data_error(lambda: read_amazon_reviews(path), path, line=1)


def test_missing_columns(tmp_path):
    path = write(tmp_path / "d.inter", "user_id:token\titem_id:token\trating:float\n1\t2\t3\n")
    raises_data_error(lambda: read_recbole_interactions(path), path, line=1, field="timestamp")
    path = write(tmp_path / "e.csv", "uid,item_id,timestamp\n1,2,3\n")
    raises_data_error(lambda: read_table(path), path, field="user_id", text="missing column")
    raises_data_error(lambda: read_table(path, {"user_id": "uid", "rating": "stars"}), path,
                      field="rating")
    raises_data_error(lambda: read_table(path, {"userid": "uid"}), path, text="userid")
    path = write(tmp_path / "s.tsv", "user_id\treviewer_id\n1\tA\n")
    raises_data_error(lambda: read_s3rec_sequences(path), path, line=1, text="item_ids")


def test_malformed_rows(tmp_path):
    path = write(tmp_path / "d.inter", "user_id:token\titem_id:token\ttimestamp:float\n"
                                       "1\t2\t3\n1\t2\n")
    raises_data_error(lambda: read_recbole_interactions(path), path, line=3,
                      text="expected 3 tab-separated fields")
    path = write(tmp_path / "d2.inter", "user_id:token\titem_id:token\ttimestamp:float\n"
                                        "1\t\t3\n")
    raises_data_error(lambda: read_recbole_interactions(path), path, line=2, field="item_id")
    path = write(tmp_path / "d.item", "item_id:token\tprice:bogus\n1\t2\n")
    raises_data_error(lambda: read_recbole_items(path), path, line=1, field="price")
    path = write(tmp_path / "s.tsv", "user_id\treviewer_id\titem_ids\n1\tA\n")
    raises_data_error(lambda: read_s3rec_sequences(path), path, line=2)
    path = write(tmp_path / "m.json", jsonl([{"asin": "B1", "categories": "x",
                                              "title": {"a": 1}}]))
    raises_data_error(lambda: read_amazon_meta(path), path, line=1, field="title")


# --------------------------------------------------------------------------- real data


def shared(*parts: str) -> Path:
    path = data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set RANKPREF_DATA_DIR)")
    return path


@pytest.mark.shared_data
def test_real_ml100k():
    path = shared("ml-100k", "ml-100k.inter")
    frame = collect(read_recbole_interactions(path), path)
    assert frame.height == 100_000
    assert frame["user_id"].n_unique() == 943
    assert frame["item_id"].n_unique() == 1682
    nulls = frame.null_count().row(0, named=True)
    assert nulls["user_id"] == nulls["item_id"] == nulls["timestamp"] == nulls["rating"] == 0
    items = collect(read_recbole_items(shared("ml-100k", "ml-100k.item")), path)
    assert items.height == 1682
    assert items.row(0, named=True) == {"item_id": "1", "title": "Toy Story", "brand": None,
                                        "categories": ["Animation", "Children's", "Comedy"],
                                        "description": None}
    users = collect(read_recbole_users(shared("ml-100k", "ml-100k.user")), path)
    assert users.height == 943 and users.columns[:2] == ["user_id", "age"]


@pytest.mark.shared_data
def test_real_beauty():
    tsv = shared("amazon_beauty", "sequences.tsv")
    frame = collect(read_s3rec_sequences(tsv), tsv)
    assert frame.height == 198_502
    assert frame["user_id"].n_unique() == 22_363
    assert frame["item_id"].n_unique() == 12_101
    raw = shared("amazon_beauty", "raw", "Beauty.txt")
    assert collect(read_s3rec_sequences(raw), raw).equals(frame)
    items_path = shared("amazon_beauty", "items.jsonl")
    items = collect(read_items_jsonl(items_path), items_path)
    assert items.height == 12_101 and items["item_id"].n_unique() == 12_101
    assert set(frame["item_id"].unique()) == set(items["item_id"])

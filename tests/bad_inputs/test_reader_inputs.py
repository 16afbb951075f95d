"""Interaction files a reader must read right or refuse with the file and line: line endings,
huge fields, bad values past the eagerly checked head, unknown column mappings."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

HEADER = "user_id,item_id,timestamp,rating"
ROWS = [f"u{i % 7},i{i % 11},{1000 + i},{i % 5 + 1}" for i in range(60)]
LATE = 1500  # rows before the bad one: past the 1,000 lines checked before the lazy scan


def prepare(invoke, tmp_path: Path, path: Path, fmt: str = "table", *sets: str):
    args = ["prepare", "--set", "data.name=null", "--set", f"data.format={fmt}",
            "--set", f"data.path={path}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
            "--set", "data.min_user_interactions=0", "--set", "data.min_item_interactions=0"]
    for kv in sets:
        args += ["--set", kv]
    return invoke(*args)


def prepared(tmp_path: Path) -> pl.DataFrame:
    (folder,) = (tmp_path / "cache").iterdir()
    return pl.read_parquet(folder / "interactions.parquet")


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r\r\n"], ids=["lf", "crlf", "cr-cr-lf"])
def test_line_endings_read_the_same(invoke, tmp_path, ending):
    """A CRLF file converted twice ends lines in CR CR LF: the last header used to read as
    'rating\\r' and every rating as null, silently."""
    path = tmp_path / "r.csv"
    path.write_bytes((ending.join([HEADER] + ROWS) + ending).encode())
    outcome = prepare(invoke, tmp_path, path)
    assert outcome.exit_code == 0, outcome.output
    frame = prepared(tmp_path)
    assert frame.height == 60 and frame["rating"].null_count() == 0
    assert frame["rating"].sum() == sum(i % 5 + 1 for i in range(60))


def test_a_required_column_last_in_a_cr_cr_lf_file(invoke, tmp_path):
    path = tmp_path / "r.csv"
    rows = [f"u{i % 7},i{i % 11},3,{1000 + i}" for i in range(60)]
    path.write_bytes(("\r\r\n".join(["user_id,item_id,rating,timestamp"] + rows)
                      + "\r\r\n").encode())
    outcome = prepare(invoke, tmp_path, path)
    assert outcome.exit_code == 0, outcome.output
    assert prepared(tmp_path)["timestamp"].null_count() == 0


def test_cr_only_line_endings_are_refused(invoke, tmp_path, refused):
    path = tmp_path / "mac.csv"
    path.write_bytes(("\r".join([HEADER] + ROWS) + "\r").encode())
    refused(prepare(invoke, tmp_path, path), "mac.csv", "line 1", "CR only",
            absent=[tmp_path / "cache"])


def test_a_field_over_the_csv_module_limit_is_read(invoke, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(HEADER + ",note\n" + "\n".join(r + ",x" for r in ROWS) + "\n"
                    + "u99,i99,5,3," + "y" * 200_000 + "\n")
    outcome = prepare(invoke, tmp_path, path)
    assert outcome.exit_code == 0, outcome.output
    assert prepared(tmp_path).height == 61


def _late(bad: str) -> str:
    good = "\n".join(f"u{i % 7},i{i % 11},{1000 + i},3" for i in range(LATE))
    return f"{HEADER}\n{good}\n{bad}\n"


@pytest.mark.parametrize("bad,needles", [
    ("u1,i2,notatime,3", ("line 1502", "field 'timestamp'", "expected a number")),
    ("u1,i2,5,3,9,9", ("line 1502", "expected 4 fields, found 6")),
    (",i2,5,3", ("line 1502", "field 'user_id'", "empty value")),
    ('u1,"i2,5,3', ("line 1502",)),
], ids=["not-a-number", "too-many-fields", "empty-id", "open-quote"])
def test_a_bad_table_row_past_line_1000_names_its_line(invoke, tmp_path, refused, bad,
                                                       needles):
    path = tmp_path / "late.csv"
    path.write_text(_late(bad))
    refused(prepare(invoke, tmp_path, path), "late.csv", *needles, absent=[tmp_path / "cache"])


def test_bad_lines_past_1000_name_their_line_in_every_scanned_format(invoke, tmp_path,
                                                                     refused):
    inter = tmp_path / "late.inter"
    inter.write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                     + "".join(f"u{i % 7}\ti{i % 11}\t{1000 + i}\n" for i in range(LATE))
                     + "u1\ti2\tsoon\n")
    refused(prepare(invoke, tmp_path, inter, "recbole"), "late.inter", "line 1502",
            "field 'timestamp'")
    reviews = tmp_path / "late.json"
    reviews.write_text("".join(json.dumps({"reviewerID": f"u{i % 7}", "asin": f"i{i % 11}",
                                           "unixReviewTime": 1000 + i, "overall": 3}) + "\n"
                               for i in range(LATE))
                       + json.dumps({"reviewerID": "u1", "asin": "i3",
                                     "unixReviewTime": "x"}) + "\n")
    refused(prepare(invoke, tmp_path, reviews, "amazon2018"), "late.json", "line 1501",
            "field 'unixReviewTime'")
    sequences = tmp_path / "late.txt"
    sequences.write_text("user_id\treviewer_id\titem_ids\n"
                         + "".join(f"{i}\tr{i}\ti1 i2 i3\n" for i in range(LATE))
                         + "5\tr\ti1\t9\n")
    refused(prepare(invoke, tmp_path, sequences, "s3rec"), "late.txt", "line 1502",
            "expected 3 tab-separated fields")


def test_a_mapping_key_that_is_not_a_schema_column_is_an_error(invoke, tmp_path, refused):
    """It used to be ignored: the ratings became null and the run went on."""
    path = tmp_path / "r.csv"
    path.write_text("user_id,item_id,timestamp,stars\n" + "\n".join(ROWS) + "\n")
    refused(prepare(invoke, tmp_path, path, "table", "data.columns={stars: rating}"),
            "data.columns", "stars: not a schema column", absent=[tmp_path / "cache"])

"""`rankpref prepare` on bad input files: one clear line naming the file/line/field, exit 2,
no traceback and no cache folder left behind."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from typer.testing import CliRunner

from rankpref.cli import app

runner = CliRunner()


def prepare(tmp_path: Path, fmt: str, path: Path, *extra: str):
    args = ["prepare", "--set", "data.name=null", "--set", f"data.format={fmt}",
            "--set", f"data.path={path}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
            "--set", "data.min_user_interactions=0", "--set", "data.min_item_interactions=0"]
    for kv in extra:
        args += ["--set", kv]
    return runner.invoke(app, args)


def assert_clean_failure(result, tmp_path: Path, *needles: str) -> str:
    out = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 2, out
    assert "error:" in out and "Traceback" not in out
    for needle in needles:
        assert needle in out, f"{needle!r} not in {out!r}"
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir()), "a half-written cache was left"
    return out


def review(user="u1", asin="i1", ts=1_300_000_000, rating=5.0):
    return json.dumps({"reviewerID": user, "asin": asin, "unixReviewTime": ts,
                       "overall": rating, "summary": "ok", "reviewText": "fine"})


def write_lines(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_missing_column(tmp_path):
    f = write_lines(tmp_path / "r.json", [review(), json.dumps({"reviewerID": "u2",
                                                               "unixReviewTime": 1})])
    assert_clean_failure(prepare(tmp_path, "amazon2018", f), tmp_path, "r.json", "line 2", "asin")


def test_wrong_type(tmp_path):
    bad = json.dumps({"reviewerID": "u1", "asin": "i2", "unixReviewTime": "yesterday",
                      "overall": 4})
    f = write_lines(tmp_path / "r.json", [review(), bad])
    assert_clean_failure(prepare(tmp_path, "amazon2018", f), tmp_path, "r.json", "line 2",
                         "unixReviewTime")


def test_empty_file(tmp_path):
    f = tmp_path / "r.json"
    f.write_bytes(b"")
    assert_clean_failure(prepare(tmp_path, "amazon2018", f), tmp_path, "r.json",
                         "no interactions")


def test_truncated_gzip(tmp_path):
    full = gzip.compress(("\n".join(review(asin=f"i{i}") for i in range(2000)) + "\n").encode())
    f = tmp_path / "r.json.gz"
    f.write_bytes(full[: len(full) // 2])
    assert_clean_failure(prepare(tmp_path, "amazon2018", f), tmp_path, "r.json.gz", "gzip")


def test_not_utf8(tmp_path):
    f = tmp_path / "r.json"
    f.write_bytes(review().encode() + b"\n" + b'{"reviewerID": "\xff\xfe", "asin": "x"}\n')
    assert_clean_failure(prepare(tmp_path, "amazon2018", f), tmp_path, "r.json", "line 2")


def test_recbole_wrong_type(tmp_path):
    f = tmp_path / "x.inter"
    f.write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t100\n1\t3\tsoon\n")
    assert_clean_failure(prepare(tmp_path, "recbole", f), tmp_path, "x.inter")


def test_recbole_missing_column(tmp_path):
    f = tmp_path / "x.inter"
    f.write_text("user_id:token\titem_id:token\n1\t2\n")
    assert_clean_failure(prepare(tmp_path, "recbole", f), tmp_path, "x.inter", "timestamp")


def test_missing_file(tmp_path):
    assert_clean_failure(prepare(tmp_path, "amazon2018", tmp_path / "nope.json"), tmp_path,
                         "nope.json")


def test_duplicate_rows_are_dropped_and_counted(tmp_path):
    lines = [review("u1", "a", 1), review("u1", "a", 1), review("u1", "b", 2),
             review("u1", "b", 3), review("u1", "c", 4)]
    f = write_lines(tmp_path / "r.json", lines)
    result = prepare(tmp_path, "amazon2018", f)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output[result.output.index("{"):])
    assert stats["rows_read"] == 5 and stats["duplicates_dropped"] == 2
    assert stats["interactions"] == 3


def test_users_with_fewer_than_3_interactions_are_train_only_and_counted(tmp_path):
    lines = [review("short", "a", 1), review("short", "b", 2)]
    lines += [review("long", x, i) for i, x in enumerate("abcd")]
    f = write_lines(tmp_path / "r.json", lines)
    result = prepare(tmp_path, "amazon2018", f)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output[result.output.index("{"):])
    assert stats["split"]["train_only_users"] == 1
    assert stats["split"]["valid_examples"] == 1 and stats["split"]["test_examples"] == 1


def test_kcore_removing_everything_is_a_clear_error(tmp_path):
    f = write_lines(tmp_path / "r.json", [review("u1", "a", 1), review("u1", "b", 2)])
    result = prepare(tmp_path, "amazon2018", f, "data.min_user_interactions=5")
    assert_clean_failure(result, tmp_path, "min_user_interactions")


def test_unknown_config_key(tmp_path):
    result = runner.invoke(app, ["prepare", "--data", "demo", "--set", "data.bogus=1"])
    assert_clean_failure(result, tmp_path, "data.bogus", "unknown key")

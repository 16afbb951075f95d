"""Readers: source files -> polars LazyFrames in rankpref's two tables.

Every reader returns a LazyFrame conforming to ``INTERACTION_SCHEMA`` or ``ITEM_SCHEMA``
(see ``rankpref.data.schema``) and raises ``DataError`` naming the file and, where known,
the 1-based line and the field.

Two ways of reading:

* Scanned (lazy): RecBole atomic files, S3-Rec sequences, CSV/TSV/parquet tables and
  uncompressed JSON lines (Amazon 2014/2018 reviews, Amazon 2023 reviews and metadata,
  ``items.jsonl``). The reader checks the header and the first ``HEAD_LINES`` lines eagerly,
  with line numbers. Problems further down surface only when the frame is collected: use
  ``collect(frame, path)``, which then reruns the same check over the whole file so the
  ``DataError`` names the line. A required value missing further down becomes a null;
  ``locate(path)`` finds its line the same way.
* Streamed (eager, in batches of ``batch_rows`` lines): gzip JSON files, Python-dict lines
  (``{'reviewerID': ...}``, parsed with ``ast.literal_eval``) and all Amazon 2014/2018
  metadata (its field shapes vary from line to line). Every line is checked when the reader
  is called, so every error names its line; the result is an in-memory frame made lazy.

Line numbers count physical lines (CSV records with quoted newlines shift them). Line
endings may be LF, CRLF or CR CR LF (a CRLF file converted twice); CR-only files (classic
Mac) are refused with a one-line error. Row order is the file's order; duplicate rows are
kept (preprocessing removes them).
"""

from __future__ import annotations

import ast
import csv
import gzip
import inspect
import json
import math
import zlib
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator

import polars as pl

from rankpref.data.schema import INTERACTION_SCHEMA, ITEM_SCHEMA, conform
from rankpref.errors import DataError

HEAD_LINES = 1000
"""Lines checked eagerly (with line numbers) before a file is scanned lazily."""

CSV_FIELD_LIMIT = 1 << 30
"""Largest CSV field the header check accepts (Python's csv module stops at 131,072)."""

BATCH_ROWS = 100_000
"""Lines parsed into one polars frame at a time when a file is streamed."""

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_STRINGS = pl.List(pl.String)
_EMPTY_LIST = pl.lit([], dtype=_STRINGS)

Row = tuple[Any, ...]
RowFn = Callable[[dict, Path, int], Row]


# --------------------------------------------------------------------------- files


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=path)
    if not path.is_file():
        raise DataError("not a regular file", path=path)
    return path


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(magic)) == magic
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc}", path=path) from None


def _is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes (whatever its suffix)."""
    return _starts_with(path, _GZIP_MAGIC)


def _iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` of a plain or gzip file, one line at a time.

    Decodes UTF-8 strictly; the newline is stripped, and a UTF-8 BOM on line 1.
    """
    gz = _is_gzip(path)
    lineno = 0
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(f"not valid UTF-8 (bad byte at position {exc.start + 1})",
                                    path=path, line=lineno) from None
                if lineno == 1 and text.startswith("\ufeff"):
                    text = text[1:]
                yield lineno, text.rstrip("\r\n")
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"truncated or corrupt gzip (after line {lineno}: {exc})",
                        path=path) from None
    except OSError as exc:
        if gz:
            raise DataError(f"truncated or corrupt gzip (after line {lineno}: {exc})",
                            path=path) from None
        raise DataError(f"cannot read the file: {exc}", path=path) from None


def _lines(path: Path, limit: int | None) -> Iterator[tuple[int, str]]:
    """The first ``limit`` lines, or all of them for None, one at a time."""
    lines = _iter_lines(path)
    try:
        yield from (lines if limit is None else islice(lines, limit))
    finally:
        lines.close()


def _checked_lines(path: Path, whole_file: bool) -> Iterator[tuple[int, str]]:
    """The lines a header check reads: the header and ``HEAD_LINES`` more, or all."""
    return _lines(path, None if whole_file else HEAD_LINES + 1)


def _check_line_endings(path: Path) -> None:
    """Refuse CR-only line endings, which polars reads as one endless line."""
    try:
        with gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb") as handle:
            chunk = handle.read(1 << 16)
    except (OSError, EOFError, zlib.error):
        return  # _iter_lines names a damaged file better
    if b"\r" in chunk and b"\n" not in chunk:
        raise DataError("the lines end in CR only (classic Mac line endings); convert them to "
                        "LF first, e.g. tr '\\r' '\\n' < in > out", path=path, line=1)


# Full-file checks by path, run only when a lazy scan fails, to name the line at fault.
_LOCATORS: dict[str, Callable[[], object]] = {}


def _remember(path: Path, check: Callable[[], object]) -> None:
    _LOCATORS[str(Path(path).resolve())] = check


def locate(source: str | Path) -> None:
    """Rerun the reader's line check over the whole of ``source``: raises a ``DataError``
    naming the first bad line, or returns when none is found (or the file has no check)."""
    try:
        check = _LOCATORS.get(str(Path(source).resolve()))
    except OSError:
        return
    if check is not None:
        check()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def collect(frame: pl.LazyFrame, source: str | Path) -> pl.DataFrame:
    """Collect ``frame``; polars and I/O errors become a ``DataError`` naming ``source``."""
    try:
        return frame.collect()
    except DataError:
        raise
    except (pl.exceptions.PolarsError, OSError) as exc:
        _read_failed(exc, source)


def sink_parquet(frame: pl.LazyFrame, target: Path, source: str | Path) -> None:
    """Write ``frame`` to ``target`` with polars' streaming engine, so a file read by a scan
    (JSON lines, CSV, parquet) passes through in batches instead of all at once; errors as
    in :func:`collect`."""
    try:
        frame.sink_parquet(target)
    except DataError:
        raise
    except (pl.exceptions.PolarsError, OSError) as exc:
        _read_failed(exc, source)


def _read_failed(exc: BaseException, source: str | Path):
    locate(source)
    source_path = Path(source)
    if (isinstance(exc, OSError) and source_path.is_file()
            and _starts_with(source_path, _GZIP_MAGIC)):
        raise DataError(f"truncated or corrupt gzip ({_first_line(exc)})", path=source) from exc
    raise DataError(f"could not read the file: {_first_line(exc)}", path=source) from exc


def _scan(path: Path, make: Callable[[], pl.LazyFrame]) -> pl.LazyFrame:
    """Build a scan, turning errors polars raises while planning into ``DataError``."""
    try:
        frame = make()
        frame.collect_schema()
        return frame
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"could not read the file: {_first_line(exc)}", path=path) from exc


def _not_blank_rows(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Drop the all-null rows that polars' CSV scanner makes of blank lines."""
    return frame.filter(pl.any_horizontal(pl.all().is_not_null()))


# --------------------------------------------------------------------------- records


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _parse_record(text: str, path: Path, lineno: int) -> tuple[dict, bool]:
    """Parse a JSON object or a Python dict literal; return it and whether it was JSON."""
    try:
        record, is_json = json.loads(text), True
    except ValueError:
        try:
            record, is_json = ast.literal_eval(text.strip()), False
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise DataError("not a JSON object nor a Python dict", path=path,
                            line=lineno) from None
    if not isinstance(record, dict):
        raise DataError(f"expected an object {{...}}, got {_describe(record)}", path=path,
                        line=lineno)
    return record, is_json


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _required(record: dict, key: str, path: Path, lineno: int) -> Any:
    value = record.get(key)
    if _blank(value):
        problem = "empty value" if key in record else "missing field"
        raise DataError(problem, path=path, line=lineno, field=key)
    return value


def _id(record: dict, key: str, path: Path, lineno: int) -> str:
    value = _required(record, key, path, lineno)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"expected a string or integer id, got {_describe(value)}", path=path,
                        line=lineno, field=key)
    return str(value).strip()


def _number(value: Any, key: str, path: Path, lineno: int) -> float | int | None:
    """A JSON number (int or finite float), or None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise DataError(f"expected a number, got {_describe(value)}", path=path, line=lineno,
                        field=key)
    return value


def _timestamp(record: dict, key: str, path: Path, lineno: int) -> int:
    return int(_number(_required(record, key, path, lineno), key, path, lineno))


def _rating(record: dict, key: str, path: Path, lineno: int) -> float | None:
    value = _number(record.get(key), key, path, lineno)
    return None if value is None else float(value)


def _text(record: dict, key: str, path: Path, lineno: int) -> str | None:
    """A string (stripped; empty -> None); numbers are turned into strings."""
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise DataError(f"expected text, got {_describe(value)}", path=path, line=lineno, field=key)


def _strings(value: Any, key: str, path: Path, lineno: int) -> list[str]:
    """A list of strings (empty ones dropped); a lone string is a one-element list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, list):
        out = []
        for element in value:
            if isinstance(element, str):
                if element.strip():
                    out.append(element.strip())
            elif isinstance(element, (int, float)) and not isinstance(element, bool):
                out.append(str(element))
            elif element is not None:
                raise DataError(f"expected a list of strings, found {_describe(element)}",
                                path=path, line=lineno, field=key)
        return out
    raise DataError(f"expected a list of strings, got {_describe(value)}", path=path,
                    line=lineno, field=key)


def _joined(record: dict, key: str, path: Path, lineno: int) -> str | None:
    """A string, or a list of strings joined with spaces (empty -> None)."""
    value = record.get(key)
    if isinstance(value, list):
        return " ".join(_strings(value, key, path, lineno)) or None
    return _text(record, key, path, lineno)


def _join_review(summary: str | None, text: str | None) -> str | None:
    """``"summary. text"``; either part may be missing; None when both are."""
    parts = [part for part in (summary, text) if part]
    return ". ".join(parts) if parts else None


def _stream(path: Path, row_fn: RowFn, schema: dict[str, pl.DataType], what: str,
            batch_rows: int) -> pl.LazyFrame:
    """Parse every line of a (gzip) JSON / dict-lines file into frames, ``batch_rows`` at a time."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    frames: list[pl.DataFrame] = []
    rows: list[Row] = []
    for lineno, text in _iter_lines(path):
        if not text.strip():
            continue
        record, _ = _parse_record(text, path, lineno)
        rows.append(row_fn(record, path, lineno))
        if len(rows) >= batch_rows:
            frames.append(pl.DataFrame(rows, schema=schema, orient="row"))
            rows = []
    if rows:
        frames.append(pl.DataFrame(rows, schema=schema, orient="row"))
    if not frames:
        raise DataError(f"no {what} (the file is empty)", path=path)
    return pl.concat(frames).lazy()


def _scannable_json(path: Path, row_fn: RowFn, what: str) -> bool:
    """Check the first lines; True when the file is uncompressed JSON lines polars can scan.

    False for gzip files and Python-dict lines, which must be streamed instead.
    """
    if _is_gzip(path):
        return False
    seen = 0
    for lineno, text in _lines(path, HEAD_LINES):
        if not text.strip():
            continue
        record, is_json = _parse_record(text, path, lineno)
        if not is_json:
            return False
        row_fn(record, path, lineno)
        seen += 1
    if not seen:
        raise DataError(f"no {what} (the file is empty)", path=path)
    _remember(path, lambda: _check_json_lines(path, row_fn))
    return True


def _check_json_lines(path: Path, row_fn: RowFn) -> None:
    for lineno, text in _lines(path, None):
        if not text.strip():
            continue
        record, is_json = _parse_record(text, path, lineno)
        if not is_json:
            raise DataError("a Python dict line in a JSON-lines file (use one or the other)",
                            path=path, line=lineno)
        row_fn(record, path, lineno)


def _clean_str(name: str) -> pl.Expr:
    """Column ``name`` stripped, empty strings as null."""
    value = pl.col(name).str.strip_chars()
    return pl.when(value != "").then(value)


def _clean_list(name: str) -> pl.Expr:
    """List column ``name`` with elements stripped, empty ones dropped, null as []."""
    return (pl.col(name)
            .list.eval(pl.element().str.strip_chars().filter(pl.element().str.strip_chars() != ""))
            .fill_null(_EMPTY_LIST))


def _review_expr(summary: str, text: str) -> pl.Expr:
    joined = pl.concat_str([_clean_str(summary), _clean_str(text)], separator=". ",
                           ignore_nulls=True)
    return pl.when(joined != "").then(joined)


# --------------------------------------------------------------------------- Amazon 2014/2018

_AMAZON_REVIEW_JSON = {"reviewerID": pl.String, "asin": pl.String,
                       "unixReviewTime": pl.Float64, "overall": pl.Float64,
                       "summary": pl.String, "reviewText": pl.String}


def _amazon_review_row(record: dict, path: Path, lineno: int) -> Row:
    return (_id(record, "reviewerID", path, lineno),
            _id(record, "asin", path, lineno),
            _timestamp(record, "unixReviewTime", path, lineno),
            _rating(record, "overall", path, lineno),
            _join_review(_text(record, "summary", path, lineno),
                         _text(record, "reviewText", path, lineno)))


def read_amazon_reviews(path: str | Path, *, batch_rows: int = BATCH_ROWS) -> pl.LazyFrame:
    """Amazon reviews 2014/2018: JSON or Python-dict lines, plain or gzip.

    reviewerID -> user_id, asin -> item_id, unixReviewTime -> timestamp, overall -> rating,
    review = "summary. reviewText". Uncompressed JSON lines are scanned, the rest streamed.
    """
    path = _existing_file(path)
    if not _scannable_json(path, _amazon_review_row, "interactions"):
        return conform(_stream(path, _amazon_review_row, INTERACTION_SCHEMA, "interactions",
                               batch_rows), INTERACTION_SCHEMA)
    frame = _scan(path, lambda: pl.scan_ndjson(path, schema=_AMAZON_REVIEW_JSON))
    return conform(frame.select(
        user_id=pl.col("reviewerID").str.strip_chars(),
        item_id=pl.col("asin").str.strip_chars(),
        timestamp=pl.col("unixReviewTime").cast(pl.Int64),
        rating=pl.col("overall"),
        review=_review_expr("summary", "reviewText"),
    ), INTERACTION_SCHEMA)


def _amazon_categories(record: dict, path: Path, lineno: int) -> list[str]:
    """2018 ``category`` (list of strings) or 2014 ``categories`` (list of paths: the first)."""
    if record.get("category") is not None:
        return _strings(record["category"], "category", path, lineno)
    value = record.get("categories")
    if isinstance(value, list) and value and isinstance(value[0], list):
        return _strings(value[0], "categories", path, lineno)
    return _strings(value, "categories", path, lineno)


def _amazon_meta_row(record: dict, path: Path, lineno: int) -> Row:
    return (_id(record, "asin", path, lineno),
            _text(record, "title", path, lineno),
            _text(record, "brand", path, lineno),
            _amazon_categories(record, path, lineno),
            _joined(record, "description", path, lineno))


def read_amazon_meta(path: str | Path, *, batch_rows: int = BATCH_ROWS) -> pl.LazyFrame:
    """Amazon metadata 2014/2018 (JSON or Python-dict lines, plain or gzip; always streamed).

    asin -> item_id, title, brand, categories (2018 ``category``; 2014 ``categories``: the
    first path), description (a string, or a list joined with spaces).
    """
    path = _existing_file(path)
    return conform(_stream(path, _amazon_meta_row, ITEM_SCHEMA, "items", batch_rows),
                   ITEM_SCHEMA)


# --------------------------------------------------------------------------- Amazon 2023

_AMAZON2023_REVIEW_JSON = {"user_id": pl.String, "parent_asin": pl.String,
                           "timestamp": pl.Float64, "rating": pl.Float64,
                           "title": pl.String, "text": pl.String}
_AMAZON2023_META_JSON = {"parent_asin": pl.String, "title": pl.String, "store": pl.String,
                         "categories": _STRINGS, "description": _STRINGS}


def _amazon2023_review_row(record: dict, path: Path, lineno: int) -> Row:
    return (_id(record, "user_id", path, lineno),
            _id(record, "parent_asin", path, lineno),
            _timestamp(record, "timestamp", path, lineno) // 1000,
            _rating(record, "rating", path, lineno),
            _join_review(_text(record, "title", path, lineno),
                         _text(record, "text", path, lineno)))


def read_amazon2023_reviews(path: str | Path, *, batch_rows: int = BATCH_ROWS) -> pl.LazyFrame:
    """Amazon Reviews 2023 JSONL (plain or gzip).

    user_id, parent_asin -> item_id, timestamp in ms -> seconds (integer division), rating,
    review = "title. text".
    """
    path = _existing_file(path)
    if not _scannable_json(path, _amazon2023_review_row, "interactions"):
        return conform(_stream(path, _amazon2023_review_row, INTERACTION_SCHEMA,
                               "interactions", batch_rows), INTERACTION_SCHEMA)
    frame = _scan(path, lambda: pl.scan_ndjson(path, schema=_AMAZON2023_REVIEW_JSON))
    return conform(frame.select(
        user_id=pl.col("user_id").str.strip_chars(),
        item_id=pl.col("parent_asin").str.strip_chars(),
        timestamp=(pl.col("timestamp").cast(pl.Int64) // 1000),
        rating=pl.col("rating"),
        review=_review_expr("title", "text"),
    ), INTERACTION_SCHEMA)


def _amazon2023_meta_row(record: dict, path: Path, lineno: int) -> Row:
    return (_id(record, "parent_asin", path, lineno),
            _text(record, "title", path, lineno),
            _text(record, "store", path, lineno),
            _strings(record.get("categories"), "categories", path, lineno),
            _joined(record, "description", path, lineno))


def read_amazon2023_meta(path: str | Path, *, batch_rows: int = BATCH_ROWS) -> pl.LazyFrame:
    """Amazon Reviews 2023 item metadata JSONL (plain or gzip).

    parent_asin -> item_id, title, store -> brand, categories, description (list joined
    with spaces).
    """
    path = _existing_file(path)
    if not _scannable_json(path, _amazon2023_meta_row, "items"):
        return conform(_stream(path, _amazon2023_meta_row, ITEM_SCHEMA, "items", batch_rows),
                       ITEM_SCHEMA)
    frame = _scan(path, lambda: pl.scan_ndjson(path, schema=_AMAZON2023_META_JSON))
    description = pl.col("description").list.eval(
        pl.element().str.strip_chars().filter(pl.element().str.strip_chars() != "")
    ).list.join(" ")
    return conform(frame.select(
        item_id=pl.col("parent_asin").str.strip_chars(),
        title=_clean_str("title"),
        brand=_clean_str("store"),
        categories=_clean_list("categories"),
        description=pl.when(description != "").then(description),
    ), ITEM_SCHEMA)


# --------------------------------------------------------------------------- items.jsonl

_ITEMS_JSON = {"item_id": pl.String, "title": pl.String, "brand": pl.String,
               "categories": _STRINGS, "description": pl.String}


def _items_jsonl_row(record: dict, path: Path, lineno: int) -> Row:
    return (_id(record, "item_id", path, lineno),
            _text(record, "title", path, lineno),
            _text(record, "brand", path, lineno),
            _strings(record.get("categories"), "categories", path, lineno),
            _text(record, "description", path, lineno))


def read_items_jsonl(path: str | Path, *, batch_rows: int = BATCH_ROWS) -> pl.LazyFrame:
    """An ``items.jsonl`` item table: item_id (int or string -> string), title, brand,
    categories (list), description; other keys (asin, attribute_ids) are ignored."""
    path = _existing_file(path)
    if not _scannable_json(path, _items_jsonl_row, "items"):
        return conform(_stream(path, _items_jsonl_row, ITEM_SCHEMA, "items", batch_rows),
                       ITEM_SCHEMA)
    frame = _scan(path, lambda: pl.scan_ndjson(path, schema=_ITEMS_JSON))
    return conform(frame.select(
        item_id=pl.col("item_id").str.strip_chars(),
        title=_clean_str("title"),
        brand=_clean_str("brand"),
        categories=_clean_list("categories"),
        description=_clean_str("description"),
    ), ITEM_SCHEMA)


# --------------------------------------------------------------------------- RecBole

_RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
_RECBOLE_TITLE = ("title", "movie_title", "name")
_RECBOLE_CATEGORIES = ("categories", "class", "genre", "genres")


def _recbole_head(path: Path, what: str, numeric: tuple[str, ...] = (),
                  required: tuple[str, ...] = (),
                  whole_file: bool = False) -> list[tuple[str, str]]:
    """Parse the typed header (``name:type`` columns) and check the first lines (all of
    them for ``whole_file``).

    Returns the ``(name, type)`` fields. Columns of type float, and those named in
    ``numeric``, must hold numbers; those named in ``required`` must be present in the
    header and not empty. A file without data rows has no ``what``.
    """
    _check_line_endings(path)
    lines = _checked_lines(path, whole_file)
    first = next(lines, None)
    if first is None or not first[1].strip():
        raise DataError(f"no {what} (the file is empty)", path=path)
    fields: list[tuple[str, str]] = []
    for column in first[1].split("\t"):
        name, _, kind = column.strip().partition(":")
        kind = kind or "token"
        if not name:
            raise DataError("empty column name in the header", path=path, line=1)
        if kind not in _RECBOLE_TYPES:
            raise DataError(f"unknown RecBole type '{kind}' (expected one of "
                            f"{', '.join(_RECBOLE_TYPES)})", path=path, line=1, field=name)
        if name in (known for known, _ in fields):
            raise DataError("duplicate column in the header", path=path, line=1, field=name)
        fields.append((name, kind))
    names = [name for name, _ in fields]
    for name in required:
        if name not in names:
            raise DataError(f"missing column (the header has: {', '.join(names)})", path=path,
                            line=1, field=name)
    rows = 0
    for lineno, text in lines:
        if not text.strip():
            continue
        values = text.split("\t")
        if len(values) != len(fields):
            raise DataError(f"expected {len(fields)} tab-separated fields, found "
                            f"{len(values)}", path=path, line=lineno)
        for (name, kind), value in zip(fields, values):
            value = value.strip()
            if not value:
                if name in required:
                    raise DataError("empty value", path=path, line=lineno, field=name)
                continue
            if kind == "float" or name in numeric:
                tokens = [value]
            elif kind == "float_seq":
                tokens = value.split()
            else:
                continue
            for token in tokens:
                try:
                    float(token)
                except ValueError:
                    raise DataError(f"expected a number, got {token!r}", path=path,
                                    line=lineno, field=name) from None
        rows += 1
    if not rows:
        raise DataError(f"no {what} (the file has only a header)", path=path)
    if not whole_file:
        _remember(path, lambda: _recbole_head(path, what, numeric, required, True))
    return fields


def _scan_recbole(path: Path, fields: list[tuple[str, str]]) -> pl.LazyFrame:
    """All columns as strings, named without their ``:type`` suffix; blank lines dropped."""
    names = [name for name, _ in fields]
    frame = _scan(path, lambda: pl.scan_csv(path, separator="\t", quote_char=None,
                                            infer_schema=False,
                                            with_column_names=lambda _: names))
    return _not_blank_rows(frame)


def _to_float(name: str) -> pl.Expr:
    return pl.col(name).str.strip_chars().cast(pl.Float64, strict=True)


def read_recbole_interactions(path: str | Path) -> pl.LazyFrame:
    """A RecBole ``.inter`` file: user_id, item_id, timestamp (float -> int seconds),
    rating and review when present; other columns are ignored."""
    path = _existing_file(path)
    fields = _recbole_head(path, "interactions", numeric=("timestamp", "rating"),
                           required=("user_id", "item_id", "timestamp"))
    names = {name for name, _ in fields}
    columns = {
        "user_id": pl.col("user_id").str.strip_chars(),
        "item_id": pl.col("item_id").str.strip_chars(),
        "timestamp": _to_float("timestamp").cast(pl.Int64, strict=True),
    }
    if "rating" in names:
        columns["rating"] = _to_float("rating")
    if "review" in names:
        columns["review"] = pl.col("review")
    frame = _scan_recbole(path, fields).select(**columns)
    return conform(frame, INTERACTION_SCHEMA)


def read_recbole_items(path: str | Path) -> pl.LazyFrame:
    """A RecBole ``.item`` file: item_id; title from title/movie_title/name; categories from
    categories/class/genre/genres (token_seq split on spaces); brand and description when
    columns of those names exist; other columns are ignored."""
    path = _existing_file(path)
    fields = _recbole_head(path, "items", required=("item_id",))
    kinds = dict(fields)
    columns = {"item_id": pl.col("item_id").str.strip_chars()}
    title = next((name for name in _RECBOLE_TITLE if name in kinds), None)
    if title:
        columns["title"] = _clean_str(title)
    for name in ("brand", "description"):
        if name in kinds:
            columns[name] = _clean_str(name)
    category = next((name for name in _RECBOLE_CATEGORIES if name in kinds), None)
    if category is None:
        pass
    elif kinds[category].endswith("_seq"):
        columns["categories"] = pl.col(category).str.extract_all(r"\S+").fill_null(_EMPTY_LIST)
    else:
        columns["categories"] = pl.concat_list([_clean_str(category)]).list.drop_nulls()
    frame = _scan_recbole(path, fields).select(**columns)
    return conform(frame, ITEM_SCHEMA)


def read_recbole_users(path: str | Path) -> pl.LazyFrame:
    """A RecBole ``.user`` file as a plain LazyFrame, column names without ``:type``.

    token -> String, token_seq -> List(String) (split on spaces), float -> Float64,
    float_seq -> List(Float64).
    """
    path = _existing_file(path)
    fields = _recbole_head(path, "users", required=("user_id",))
    columns = {}
    for name, kind in fields:
        if kind == "token":
            columns[name] = pl.col(name)
        elif kind == "token_seq":
            columns[name] = pl.col(name).str.extract_all(r"\S+").fill_null(_EMPTY_LIST)
        elif kind == "float":
            columns[name] = _to_float(name)
        else:
            columns[name] = (pl.col(name).str.extract_all(r"\S+")
                             .list.eval(pl.element().cast(pl.Float64, strict=True)))
    return _scan_recbole(path, fields).select(**columns)


# --------------------------------------------------------------------------- S3-Rec


def _s3rec_head(path: Path, whole_file: bool = False) -> list[str]:
    """Check the first lines (all of them for ``whole_file``); the header's names for the
    TSV form, else the first line's tokens."""
    _check_line_endings(path)
    every = _checked_lines(path, whole_file)
    lines = ((lineno, text) for lineno, text in every if text.strip())
    first = next(lines, None)
    if first is None:
        raise DataError("no interactions (the file is empty)", path=path)
    header_line, header_text = first
    header = [name.strip() for name in header_text.split("\t")]
    if "item_ids" not in header:
        if "\t" in header_text:
            raise DataError("tab-separated, but the header has no 'item_ids' column (expected "
                            "'user_id<TAB>reviewer_id<TAB>item_ids', or space-separated "
                            "'user item item ...' lines)", path=path, line=header_line)
        return header
    if "user_id" not in header:
        raise DataError(f"missing column (the header has: {', '.join(header)})",
                        path=path, line=header_line, field="user_id")
    rows = 0
    for lineno, text in lines:
        values = text.split("\t")
        if len(values) != len(header):
            raise DataError(f"expected {len(header)} tab-separated fields, found "
                            f"{len(values)}", path=path, line=lineno)
        if not values[header.index("user_id")].strip():
            raise DataError("empty value", path=path, line=lineno, field="user_id")
        rows += 1
    if not rows:
        raise DataError("no interactions (the file has only a header)", path=path)
    if not whole_file:
        _remember(path, lambda: _s3rec_head(path, True))
    return header


def read_s3rec_sequences(path: str | Path) -> pl.LazyFrame:
    """S3-Rec sequences: ``user item item ...`` lines (space-separated), or a TSV with a
    ``user_id<TAB>reviewer_id<TAB>item_ids`` header (item_ids space-separated).

    The source has no times, only order: timestamp is the 0-based position of the item in
    the user's sequence. user_id is the S3-Rec user id (reviewer_id is dropped); a user with
    no items gives no rows. Plain or gzip (polars decompresses gzip itself).
    """
    path = _existing_file(path)
    header = _s3rec_head(path)
    if "item_ids" in header:
        frame = _scan(path, lambda: pl.scan_csv(path, separator="\t", quote_char=None,
                                                infer_schema=False,
                                                with_column_names=lambda _: header))
        frame = _not_blank_rows(frame).select(
            user_id=pl.col("user_id").str.strip_chars(),
            items=pl.col("item_ids").str.extract_all(r"\S+").fill_null(_EMPTY_LIST))
    else:
        tokens = pl.col("line").str.extract_all(r"\S+")
        frame = (_scan(path, lambda: pl.scan_lines(path, name="line"))
                 .select(tokens=tokens)
                 .filter(pl.col("tokens").list.len() > 0)
                 .select(user_id=pl.col("tokens").list.first(),
                         items=pl.col("tokens").list.slice(1)))
    frame = (frame.filter(pl.col("items").list.len() > 0)
             .with_columns(timestamp=pl.int_ranges(0, pl.col("items").list.len(),
                                                   dtype=pl.Int64))
             .explode(["items", "timestamp"])
             .rename({"items": "item_id"}))
    return conform(frame, INTERACTION_SCHEMA)


# --------------------------------------------------------------------------- tables

_TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def _table_kind(path: Path, separator: str | None) -> str | None:
    """None for parquet, else the CSV separator (from ``separator`` or the suffix)."""
    if _starts_with(path, _PARQUET_MAGIC):
        return None
    if separator is not None:
        return separator
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        raise DataError("not a parquet file (no PAR1 magic bytes)", path=path)
    if suffixes and suffixes[-1] in _TABLE_SEPARATORS:
        return _TABLE_SEPARATORS[suffixes[-1]]
    raise DataError("cannot tell the table format from the file name (expected .csv, .tsv, "
                    ".tab, .parquet, optionally .gz for text; or pass separator=)", path=path)


def _check_csv_head(path: Path, separator: str, wanted: dict[str, str],
                    required: tuple[str, ...], numeric: tuple[str, ...], what: str,
                    whole_file: bool = False) -> list[str]:
    """Check the header and the first lines (all of them for ``whole_file``); return the
    file's column names, stripped of spaces (and of the CR a CR CR LF file leaves)."""
    _check_line_endings(path)
    previous_limit = csv.field_size_limit(CSV_FIELD_LIMIT)
    lines = _checked_lines(path, whole_file)
    reader = csv.reader((text for _, text in lines), delimiter=separator)
    try:
        return _check_csv_records(path, reader, wanted, required, numeric, what, whole_file)
    except csv.Error as exc:
        raise DataError(f"not valid CSV: {exc}", path=path, line=reader.line_num) from None
    finally:
        csv.field_size_limit(previous_limit)


def _check_csv_records(path: Path, reader, wanted: dict[str, str], required: tuple[str, ...],
                       numeric: tuple[str, ...], what: str, whole_file: bool) -> list[str]:
    header = next(reader, None)
    while header is not None and not header:
        header = next(reader, None)
    if header is None:
        raise DataError(f"no {what} (the file is empty)", path=path)
    header = [name.strip() for name in header]
    header_line = reader.line_num
    for name, column in wanted.items():
        if column not in header and (name in required or column != name):
            raise DataError(f"missing column '{column}' (the file has: {', '.join(header)})",
                            path=path, line=header_line, field=name)
    index = {name: header.index(column) for name, column in wanted.items()
             if column in header}
    rows = 0
    for values in reader:
        if not values or all(not value.strip() for value in values):
            continue
        if len(values) > len(header):
            raise DataError(f"expected {len(header)} fields, found {len(values)}", path=path,
                            line=reader.line_num)
        rows += 1
        for name, position in index.items():
            value = values[position].strip() if position < len(values) else ""
            if not value:
                if name in required:
                    raise DataError("empty value", path=path, line=reader.line_num, field=name)
                continue
            if name in numeric:
                try:
                    float(value)
                except ValueError:
                    raise DataError(f"expected a number, got {value!r}", path=path,
                                    line=reader.line_num, field=name) from None
    if not rows:
        raise DataError(f"no {what} (the file has only a header)", path=path)
    if not whole_file:
        _remember(path, lambda: _check_csv_head(path, reader.dialect.delimiter, wanted,
                                                required, numeric, what, True))
    return header


def _timestamp_expr(column: str, dtype: pl.DataType) -> pl.Expr:
    """Seconds since the epoch as Int64 from a numeric, string or datetime column."""
    expr = pl.col(column)
    if dtype == pl.Datetime or dtype == pl.Date:
        return expr.dt.epoch("s")
    if dtype == pl.String:
        expr = expr.str.strip_chars().cast(pl.Float64, strict=True)
    return expr.cast(pl.Int64, strict=True)


def read_table(path: str | Path, columns: dict[str, str] | None = None,
               kind: str = "interactions", *, separator: str | None = None,
               list_separator: str = "|") -> pl.LazyFrame:
    """Any CSV/TSV (plain or gzip) or parquet file, with a column mapping.

    ``columns`` maps schema names to the file's column names (``{"user_id": "uid"}``);
    schema names it leaves out are looked up under their own name. ``kind`` is
    "interactions" or "items". The format comes from the magic bytes (parquet) or the suffix
    (.csv, .tsv, .tab; ``separator=`` overrides). Text columns are read as strings (ids keep
    leading zeros); timestamp may be a number, a numeric string or a datetime; a string
    categories column is split on ``list_separator``.
    """
    if kind not in ("interactions", "items"):
        raise DataError(f"unknown table kind '{kind}' (expected 'interactions' or 'items')",
                        path=path)
    schema = INTERACTION_SCHEMA if kind == "interactions" else ITEM_SCHEMA
    required = ("user_id", "item_id", "timestamp") if kind == "interactions" else ("item_id",)
    numeric = ("timestamp", "rating") if kind == "interactions" else ()
    mapping = dict(columns or {})
    unknown = sorted(set(mapping) - set(schema))
    if unknown:
        raise DataError(f"unknown schema column(s) in the mapping: {', '.join(unknown)} "
                        f"(valid for {kind}: {', '.join(schema)})", path=path)
    wanted = {name: mapping.get(name, name) for name in schema}
    path = _existing_file(path)
    separator = _table_kind(path, separator)
    if separator is None:
        frame = _scan(path, lambda: pl.scan_parquet(path))
        file_schema = frame.collect_schema()
        for name, column in wanted.items():
            if column not in file_schema and (name in required or column != name):
                raise DataError(f"missing column '{column}' (the file has: "
                                f"{', '.join(file_schema.names())})", path=path, field=name)
    else:
        header = _check_csv_head(path, separator, wanted, required, numeric,
                                 "interactions" if kind == "interactions" else "items")
        frame = _not_blank_rows(_scan(path, lambda: pl.scan_csv(
            path, separator=separator, infer_schema=False,
            with_column_names=lambda _: header)))
        # a CR CR LF file ends every last field in CR
        frame = frame.with_columns(pl.col(pl.String).str.strip_chars_end("\r"))
        file_schema = frame.collect_schema()
    exprs = []
    for name, column in wanted.items():
        if column not in file_schema:
            continue
        dtype = file_schema[column]
        if name == "timestamp":
            expr = _timestamp_expr(column, dtype)
        elif name == "rating":
            expr = pl.col(column)
            if dtype == pl.String:
                expr = expr.str.strip_chars()
            expr = expr.cast(pl.Float64, strict=True)
        elif name == "categories":
            if dtype == pl.String:
                expr = (pl.col(column).str.split(list_separator)
                        .list.eval(pl.element().str.strip_chars()
                                   .filter(pl.element().str.strip_chars() != ""))
                        .fill_null(_EMPTY_LIST))
            else:
                expr = pl.col(column).cast(_STRINGS, strict=True).fill_null(_EMPTY_LIST)
        elif dtype == pl.String:
            expr = pl.col(column).str.strip_chars() if name.endswith("_id") else pl.col(column)
        else:
            expr = pl.col(column).cast(pl.String, strict=True)
        exprs.append(expr.alias(name))
    return conform(frame.select(exprs), schema)


# --------------------------------------------------------------------------- dispatch


def _read_table_items(path: str | Path, columns: dict[str, str] | None = None, *,
                      separator: str | None = None, list_separator: str = "|") -> pl.LazyFrame:
    return read_table(path, columns, kind="items", separator=separator,
                      list_separator=list_separator)


def _read_table_interactions(path: str | Path, columns: dict[str, str] | None = None, *,
                             separator: str | None = None) -> pl.LazyFrame:
    return read_table(path, columns, kind="interactions", separator=separator)


INTERACTION_READERS: dict[str, Callable[..., pl.LazyFrame]] = {
    "recbole": read_recbole_interactions,
    "amazon2018": read_amazon_reviews,
    "amazon2023": read_amazon2023_reviews,
    "s3rec": read_s3rec_sequences,
    "table": _read_table_interactions,
}

ITEM_READERS: dict[str, Callable[..., pl.LazyFrame]] = {
    "recbole": read_recbole_items,
    "amazon2018": read_amazon_meta,
    "amazon2023": read_amazon2023_meta,
    "s3rec": read_items_jsonl,
    "table": _read_table_items,
}


def _dispatch(readers: dict[str, Callable[..., pl.LazyFrame]], path: str | Path, format: str,
              options: dict[str, Any]) -> pl.LazyFrame:
    reader = readers.get(format)
    if reader is None:
        raise DataError(f"unknown format '{format}' (valid: {', '.join(readers)})", path=path)
    parameters = list(inspect.signature(reader).parameters)[1:]
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise DataError(f"unknown option(s) for format '{format}': {', '.join(unknown)} "
                        f"(valid: {', '.join(parameters) or 'none'})", path=path)
    return reader(path, **options)


def read_interactions(path: str | Path, format: str, **options: Any) -> pl.LazyFrame:
    """Read an interaction file of ``format`` (recbole, amazon2018, amazon2023, s3rec, table)."""
    return _dispatch(INTERACTION_READERS, path, format, options)


def read_items(path: str | Path, format: str, **options: Any) -> pl.LazyFrame:
    """Read an item file of ``format`` (recbole, amazon2018, amazon2023, s3rec = items.jsonl,
    table)."""
    return _dispatch(ITEM_READERS, path, format, options)

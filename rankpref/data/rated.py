"""Rated pools -> training lists.

A *pool* is a set of rated items: one feature row per item, one numeric label (e.g. a mean
rating), optionally a rater id, a rating std and a split name. Feature sources:

* text through :class:`rankpref.text.TextEncoder` (``text_column``; EmoBank),
* numeric columns of any CSV/TSV/parquet table (``feature_columns``; wine, or eGeMAPS
  functionals exported by openSMILE),
* precomputed embeddings, a ``.npy`` matrix or a parquet file (one row per item, in table order),
* audio clips or images named by a column (``audio_column`` / ``image_column``), through
  :mod:`rankpref.data.clips` (openSMILE functionals or a local model; refused files drop their
  rows and are named).

Built-in names (:func:`resolve_source`): ``emobank`` / ``wine-red`` / ``wine-white`` read the
full shared data under :func:`rankpref.settings.data_dir` when it is there and the shipped slices
in ``datasets/`` otherwise; ``emobank-slice`` / ``wine-red-slice`` / ``wine-white-slice`` always
read the slices. Anything else is a path to a table.

Lists (:func:`sample_lists`) are index arrays ``[num_lists, list_size]`` padded with ``-1``.
With a margin ``W > 0`` a list only takes items whose label is at least ``W`` away from every
label already in it, so neighbours in label order differ by ``>= W``; lists that end up with
fewer than two items, or with all labels tied, are dropped and counted. With rater ids, lists
are drawn within each rater. Everything is seeded.
"""

from __future__ import annotations

import bisect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from rankpref.errors import DataError
from rankpref.settings import data_dir
from rankpref.settings import shipped as shipped_path

LIST_PAD = -1
"""Index used for padding in list arrays."""

MARGIN_TOL = 1e-6
"""Label gaps within this of the margin count as meeting it (labels such as 3.1 - 3.0 are not
exact in floating point)."""

SPLITS = ("train", "valid", "test")
_SPLIT_ALIASES = {"train": "train", "dev": "valid", "valid": "valid", "validation": "valid",
                  "val": "valid", "test": "test"}


@dataclass(frozen=True)
class SourceSpec:
    """Where a pool comes from and how to read it (filled in for built-in names)."""

    name: str
    path: Path
    target: str
    text_column: str | None = None
    feature_columns: tuple[str, ...] | None = None
    split_column: str | None = None
    id_column: str | None = None
    audio_column: str | None = None
    image_column: str | None = None

    @property
    def media_column(self) -> str | None:
        return self.audio_column or self.image_column


WINE_FEATURES = ("fixed acidity", "volatile acidity", "citric acid", "residual sugar",
                 "chlorides", "free sulfur dioxide", "total sulfur dioxide", "density", "pH",
                 "sulphates", "alcohol")

_BUILTIN = {
    # name: (shared-data path parts, shipped slice parts, defaults)
    "emobank": (("emobank", "emobank.csv"), ("emobank", "emobank_slice.csv"),
                dict(target="V", text_column="text", split_column="split", id_column="id")),
    "wine-red": (("wine_quality", "winequality-red.csv"),
                 ("wine_quality", "winequality-red_slice.csv"),
                 dict(target="quality", feature_columns=WINE_FEATURES)),
    "wine-white": (("wine_quality", "winequality-white.csv"),
                   ("wine_quality", "winequality-white_slice.csv"),
                   dict(target="quality", feature_columns=WINE_FEATURES)),
}
BUILTIN_NAMES = tuple(_BUILTIN) + tuple(f"{n}-slice" for n in _BUILTIN)


def resolve_source(name: str, target: str | None = None, text_column: str | None = None,
                   feature_columns: Sequence[str] | None = None,
                   split_column: str | None = None, id_column: str | None = None,
                   audio_column: str | None = None,
                   image_column: str | None = None) -> SourceSpec:
    """A built-in dataset name or a path to a table, with explicit settings taking precedence."""
    base = name[: -len("-slice")] if name.endswith("-slice") else name
    if base in _BUILTIN:
        shared, shipped, defaults = _BUILTIN[base]
        full = data_dir().joinpath(*shared)
        if not name.endswith("-slice") and full.exists():
            path = full
        else:
            path = shipped_path(*shipped)
        settings = dict(defaults)
    else:
        path = Path(name)
        if not path.exists():
            raise DataError(f"no such file, and not a built-in dataset "
                            f"({', '.join(BUILTIN_NAMES)})", path=name)
        settings = {}
    if audio_column and image_column:
        raise DataError("give an audio column or an image column, not both", path=path)
    explicit = dict(target=target, text_column=text_column, split_column=split_column,
                    id_column=id_column, audio_column=audio_column, image_column=image_column,
                    feature_columns=tuple(feature_columns) if feature_columns else None)
    for key, value in explicit.items():
        if value is not None:
            settings[key] = value
    if audio_column or image_column:  # a media column replaces a built-in feature source
        if text_column is None:
            settings.pop("text_column", None)
        if feature_columns is None:
            settings.pop("feature_columns", None)
    if text_column is not None and feature_columns is None:
        settings.pop("feature_columns", None)
    if feature_columns is not None and text_column is None:
        settings.pop("text_column", None)
    if not settings.get("target"):
        raise DataError("no target column given (--target)", path=path)
    return SourceSpec(name=name, path=path, **settings)


@dataclass
class RatedPool:
    """Rated items: ``features`` [n, d] float32, ``labels`` [n] float64, parallel arrays."""

    features: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    split: np.ndarray | None = None
    raters: np.ndarray | None = None
    std: np.ndarray | None = None
    feature_names: list[str] = field(default_factory=list)
    source: str = ""
    media: dict | None = None  # what happened to the files of a media column

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, mask: np.ndarray) -> "RatedPool":
        def take(a):
            return None if a is None else a[mask]
        return RatedPool(self.features[mask], self.labels[mask], self.ids[mask],
                         take(self.split), take(self.raters), take(self.std),
                         list(self.feature_names), self.source, self.media)

    def part(self, name: str) -> "RatedPool":
        if self.split is None:
            raise DataError("the pool has no split", path=self.source)
        return self.subset(self.split == name)


# ------------------------------------------------------------------ reading tables

def read_frame(path: str | Path) -> pl.DataFrame:
    """CSV, TSV or parquet into polars, with errors that name the file."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=path)
    try:
        if path.suffix == ".parquet":
            df = pl.read_parquet(path)
        else:
            sep = "\t" if path.suffix in (".tsv", ".tab") else ","
            df = pl.read_csv(path, separator=sep, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read table ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                        path=path) from None
    if df.height == 0:
        raise DataError("no rows", path=path)
    return df


def _require(df: pl.DataFrame, columns: Sequence[str], path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {', '.join(repr(c) for c in missing)}; "
                        f"the file has {', '.join(df.columns)}", path=path, field=missing[0])


def _numeric(df: pl.DataFrame, column: str, path) -> np.ndarray:
    """A numeric column as float64; non-numbers and missing values name their line."""
    col = df[column]
    if col.dtype == pl.String:
        parsed = col.str.strip_chars().cast(pl.Float64, strict=False)
        bad = parsed.is_null() & col.is_not_null() & (col.str.strip_chars() != "")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"not a number: {col[row]!r}", path=path, line=row + 2, field=column)
        col = parsed
    elif not col.dtype.is_numeric():
        raise DataError(f"column is {col.dtype}, not numeric", path=path, field=column)
    values = col.cast(pl.Float64).to_numpy().astype(np.float64, copy=True)
    for bad, what in ((np.isnan(values), "missing/NaN"), (np.isinf(values), "infinite")):
        rows = np.flatnonzero(bad)
        if rows.size:
            lines = ", ".join(str(int(i) + 2) for i in rows[:5])
            raise DataError(f"{rows.size} {what} value(s) (lines {lines}"
                            f"{', ...' if rows.size > 5 else ''})", path=path,
                            line=int(rows[0]) + 2, field=column)
    return values


def read_embeddings(path: str | Path, rows: int | None = None) -> np.ndarray:
    """A ``.npy`` matrix (no pickle) or a parquet file of numeric columns / one list column."""
    path = Path(path)
    if not path.exists():
        raise DataError("embeddings file not found", path=path)
    if path.suffix == ".npy":
        try:
            matrix = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"not a plain .npy matrix ({exc})", path=path) from None
    elif path.suffix == ".parquet":
        df = read_frame(path)
        if df.width == 1 and isinstance(df.dtypes[0], (pl.List, pl.Array)):
            matrix = np.asarray(df[df.columns[0]].to_list(), dtype=np.float64)
        else:
            matrix = np.column_stack([_numeric(df, c, path) for c in df.columns])
    else:
        raise DataError("embeddings must be .npy or .parquet", path=path)
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number):
        raise DataError(f"embeddings must be a 2-D numeric matrix, got shape {matrix.shape}",
                        path=path)
    if rows is not None and matrix.shape[0] != rows:
        raise DataError(f"{matrix.shape[0]} embedding rows but the table has {rows} rows",
                        path=path)
    if not np.isfinite(matrix).all():
        row = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
        raise DataError(f"non-finite value in embedding row {row}", path=path)
    return matrix.astype(np.float32)


def table_features(df: pl.DataFrame, path, *, text_column: str | None = None,
                   feature_columns: Sequence[str] | None = None,
                   embeddings: str | Path | None = None, encoder=None,
                   ) -> tuple[np.ndarray, list[str]]:
    """Features for every row of ``df`` from exactly one source."""
    given = [x is not None for x in (text_column, feature_columns, embeddings)]
    if sum(given) != 1:
        raise DataError("give exactly one feature source: a text column, feature columns or "
                        "an embeddings file", path=path)
    if embeddings is not None:
        matrix = read_embeddings(embeddings, rows=df.height)
        return matrix, [f"emb{i}" for i in range(matrix.shape[1])]
    if feature_columns is not None:
        cols = list(feature_columns)
        if not cols:
            raise DataError("empty list of feature columns", path=path)
        _require(df, cols, path)
        return np.column_stack([_numeric(df, c, path) for c in cols]).astype(np.float32), cols
    _require(df, [text_column], path)
    texts = df[text_column].cast(pl.String).to_list()
    empty = [i for i, t in enumerate(texts) if t is None or not t.strip()]
    if empty:
        raise DataError(f"{len(empty)} empty text(s)", path=path, line=empty[0] + 2,
                        field=text_column)
    if encoder is None:
        from rankpref.text import TextEncoder
        encoder = TextEncoder(progress=False)
    return np.asarray(encoder.encode(texts), dtype=np.float32), [f"{text_column}:{getattr(encoder, 'model_id', 'encoder')}"]


def media_features(df: pl.DataFrame, path, column: str, media, *,
                   allow_outside: bool = False) -> tuple[np.ndarray, list[str], dict]:
    """Features of the files a column names (:class:`rankpref.data.clips.MediaFeatures`):
    ``[n, d]`` with NaN rows for refused files, the names, and the report. Each refused file
    is named on stderr; none usable is an error."""
    from rankpref.data.clips import resolve_paths

    _require(df, [column], path)
    paths = resolve_paths(df[column].cast(pl.String).to_list(), Path(path), column,
                          allow_outside=allow_outside)
    matrix, names, report = media.features(paths)
    for row, why in list(report.refused.items())[:20]:
        sys.stderr.write(f"skipped {why} ({path} line {row + 2})\n")
    if len(report.refused) > 20:
        sys.stderr.write(f"... and {len(report.refused) - 20} more skipped files\n")
    if len(report.refused) == len(paths):
        raise DataError(f"none of the {len(paths)} files in column {column!r} is usable "
                        f"(first: {next(iter(report.refused.values()))})", path=path,
                        field=column)
    return matrix, names, report.as_dict()


def load_pool(spec: SourceSpec, *, embeddings: str | Path | None = None, encoder=None,
              media=None, allow_outside: bool = False,
              rater_column: str | None = None, std_column: str | None = None,
              split_seed: int = 0, fractions: tuple[float, float] = (0.1, 0.1)) -> RatedPool:
    """Read a table into a :class:`RatedPool` with a split (the table's own split column, or a
    fixed seeded train/valid/test split with ``fractions`` = (valid, test)). With a media
    column, rows whose file is refused are left out (the split is drawn over the whole table
    first, so a refused file never moves other rows between splits)."""
    df = read_frame(spec.path)
    path = spec.path
    _require(df, [spec.target], path)
    labels = _numeric(df, spec.target, path)
    if np.ptp(labels) == 0:
        raise DataError(f"all {labels.size} labels equal {labels[0]:g}: nothing to rank",
                        path=path, field=spec.target)
    report = None
    if spec.media_column and embeddings is None:
        if media is None:
            raise DataError(f"column {spec.media_column!r} names files but no feature "
                            "extractor was given", path=path)
        features, names, report = media_features(df, path, spec.media_column, media,
                                                 allow_outside=allow_outside)
    else:
        features, names = table_features(
            df, path, text_column=None if embeddings is not None else spec.text_column,
            feature_columns=None if embeddings is not None or spec.text_column else
            spec.feature_columns, embeddings=embeddings, encoder=encoder)
    ids = (df[spec.id_column].cast(pl.String).to_numpy() if spec.id_column
           and spec.id_column in df.columns else np.arange(df.height).astype(str))
    if spec.split_column and spec.split_column in df.columns:
        split = _split_column(df, spec.split_column, path)
    else:
        split = fixed_split(df.height, fractions, split_seed)
    raters = None
    if rater_column:
        _require(df, [rater_column], path)
        raters = df[rater_column].cast(pl.String).fill_null("").to_numpy()
    std = None
    if std_column:
        _require(df, [std_column], path)
        std = _numeric(df, std_column, path)
    pool = RatedPool(features, labels, ids, split, raters, std, names, str(path), report)
    if report is not None and report["refused"]:
        pool = pool.subset(~np.isnan(features).any(axis=1))
        if np.ptp(pool.labels) == 0:
            raise DataError("all labels of the usable files are equal: nothing to rank",
                            path=path, field=spec.target)
    return pool


def _split_column(df: pl.DataFrame, column: str, path) -> np.ndarray:
    raw = df[column].cast(pl.String).to_list()
    out = []
    for i, value in enumerate(raw):
        name = _SPLIT_ALIASES.get((value or "").strip().lower())
        if name is None:
            raise DataError(f"split {value!r} is not train, valid (or dev) or test", path=path,
                            line=i + 2, field=column)
        out.append(name)
    return np.asarray(out)


def fixed_split(n: int, fractions: tuple[float, float] = (0.1, 0.1),
                seed: int = 0) -> np.ndarray:
    """A seeded train/valid/test assignment: ``fractions`` = (valid, test) of the rows."""
    dev_f, test_f = fractions
    if not (0 < dev_f < 1 and 0 < test_f < 1 and dev_f + test_f < 1):
        raise DataError(f"split fractions must be in (0, 1) and sum below 1, got {fractions}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_dev = int(round(n * test_f)), int(round(n * dev_f))
    split = np.full(n, "train", dtype=object)
    split[perm[:n_test]] = "test"
    split[perm[n_test:n_test + n_dev]] = "valid"
    return split.astype(str)


# ------------------------------------------------------------------ standardisation

def feature_stats(features: np.ndarray) -> dict:
    mean = features.mean(axis=0)
    std = features.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return {"mean": mean.astype(float).tolist(), "std": std.astype(float).tolist()}


def standardize(features: np.ndarray, stats: dict | None) -> np.ndarray:
    if stats is None:
        return features.astype(np.float32)
    mean = np.asarray(stats["mean"], dtype=np.float32)
    std = np.asarray(stats["std"], dtype=np.float32)
    if mean.shape[0] != features.shape[1]:
        raise DataError(f"{features.shape[1]} features, but the model was trained on "
                        f"{mean.shape[0]}")
    return ((features - mean) / std).astype(np.float32)


# ------------------------------------------------------------------ list sampling

@dataclass
class ListStats:
    lists: int = 0
    items: int = 0
    short_lists: int = 0
    dropped_short: int = 0
    dropped_tied: int = 0
    groups: int = 0
    skipped_groups: int = 0

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["mean_list_size"] = self.items / self.lists if self.lists else 0.0
        return d


def check_margin(labels: np.ndarray, margin: float, source: str | None = None) -> None:
    if margin < 0:
        raise DataError(f"margin W must be >= 0, got {margin}", path=source)
    spread = float(np.ptp(labels)) if labels.size else 0.0
    if margin > spread + MARGIN_TOL:
        raise DataError(f"margin W={margin:g} is larger than the label range "
                        f"{labels.min():g}..{labels.max():g} ({spread:g}): no pair can "
                        "meet it", path=source)


def _greedy_list(labels: np.ndarray, candidates: np.ndarray, size: int,
                 margin: float) -> list[int]:
    """Take candidates in order while each keeps a gap >= margin to all taken labels."""
    taken: list[int] = []
    values: list[float] = []
    limit = margin - MARGIN_TOL
    for idx in candidates:
        y = float(labels[idx])
        pos = bisect.bisect_left(values, y)
        if pos < len(values) and values[pos] - y < limit:
            continue
        if pos > 0 and y - values[pos - 1] < limit:
            continue
        values.insert(pos, y)
        taken.append(int(idx))
        if len(taken) == size:
            break
    return taken


def _group_lists(labels: np.ndarray, members: np.ndarray, list_size: int, num_lists: int,
                 margin: float, rng: np.random.Generator) -> list[list[int]]:
    out = []
    if margin <= 0:
        # every item once per pass, in a fresh random order each pass
        order = np.array([], dtype=np.int64)
        while len(out) < num_lists:
            if order.size < 2:
                order = rng.permutation(members)
            chunk, order = order[:list_size], order[list_size:]
            out.append(chunk.tolist())
        return out
    budget = min(members.size, 8 * list_size)
    for _ in range(num_lists):
        candidates = rng.choice(members, size=budget, replace=False)
        out.append(_greedy_list(labels, candidates, list_size, margin))
    return out


def sample_lists(labels: np.ndarray, list_size: int, *, margin: float = 0.0,
                 num_lists: int | None = None, seed: int = 0,
                 groups: np.ndarray | None = None) -> tuple[np.ndarray, ListStats]:
    """Sample training lists of up to ``list_size`` item indices (``-1`` padded).

    ``num_lists`` defaults to ``ceil(n / list_size)`` (about one pass over the items); with
    ``groups`` (rater ids) each group with >= 2 items gets lists of its own, in proportion to
    its size. See the module docstring for the margin rule and what is dropped.
    """
    labels = np.asarray(labels, dtype=np.float64)
    if list_size < 2:
        raise DataError(f"list size must be >= 2, got {list_size}")
    if labels.size < 2:
        raise DataError(f"need at least 2 rated items to make lists, got {labels.size}")
    if np.isnan(labels).any():
        raise DataError("labels contain NaN")
    check_margin(labels, margin)
    rng = np.random.default_rng(seed)
    stats = ListStats()
    if groups is None:
        parts = [np.arange(labels.size)]
    else:
        groups = np.asarray(groups)
        if groups.shape[0] != labels.shape[0]:
            raise DataError(f"{groups.shape[0]} rater ids for {labels.shape[0]} labels")
        _, inverse = np.unique(groups, return_inverse=True)
        parts = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    stats.groups = len(parts)
    total = num_lists if num_lists is not None else -(-labels.size // list_size)
    lists: list[list[int]] = []
    for members in parts:
        if members.size < 2:
            stats.skipped_groups += 1
            continue
        share = max(1, int(round(total * members.size / labels.size)))
        lists.extend(_group_lists(labels, members, list_size, share, margin, rng))
    kept = []
    for lst in lists:
        if len(lst) < 2:
            stats.dropped_short += 1
        elif np.ptp(labels[lst]) == 0:
            stats.dropped_tied += 1
        else:
            kept.append(lst)
    out = np.full((len(kept), list_size), LIST_PAD, dtype=np.int64)
    for row, lst in enumerate(kept):
        out[row, :len(lst)] = lst
    stats.lists = len(kept)
    stats.items = int((out != LIST_PAD).sum())
    stats.short_lists = int(((out != LIST_PAD).sum(axis=1) < list_size).sum())
    return out, stats


def gather_lists(features: np.ndarray, labels: np.ndarray, lists: np.ndarray,
                 padding_value: float) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[m, N, d]`` and labels ``[m, N]`` for list indices (padding -> zeros /
    ``padding_value``)."""
    pad = lists == LIST_PAD
    safe = np.where(pad, 0, lists)
    x = features[safe]
    x[pad] = 0.0
    y = np.where(pad, padding_value, labels[safe])
    return x, y

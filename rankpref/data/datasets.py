"""Named datasets and the cached *prepared* form every model trains from.

``prepare(cfg)`` reads the raw files through :mod:`rankpref.data.readers`, preprocesses them
(de-duplication, k-core, ids, chronological order) and stores the result in a cache folder
keyed by the data settings and the source files' sizes and modification times:

    interactions.parquet   user_idx, item_idx, timestamp, rating, review (sorted)
    items.parquet          item_idx + the item table (when the source has one)
    vocab.json             index -> source id for users and items (item 0 = padding)
    stats.json             counts and what preprocessing removed

The folder is written to a temporary name and renamed, so an interrupted prepare leaves nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from typing import Literal

from pydantic import Field, field_validator

from rankpref.config import Strict
from rankpref.data.preprocess import Vocabulary, add_source_row, preprocess
from rankpref.errors import DataError
from rankpref.io import atomic_dir
from rankpref.settings import DATA_DIR_ENV, data_dir, shipped


class DatasetConfig(Strict):
    """Which interaction data to read and how to preprocess it (what ``prepare`` caches)."""

    name: str | None = Field("demo", description="built-in dataset (demo, beauty, ml-100k, "
                             "sports, toys) or null to read `path` with `format`")
    format: Literal["recbole", "amazon2018", "amazon2023", "s3rec", "table"] | None = None
    path: str | None = None
    items_path: str | None = None
    columns: dict[str, str] | None = None
    min_user_interactions: int | None = Field(None, ge=0, description="k-core; null = dataset default")
    min_item_interactions: int | None = Field(None, ge=0)
    dedupe: Literal["user_item", "exact", "none"] = "user_item"
    cache_dir: str = ".cache/rankpref"

    @field_validator("columns")
    @classmethod
    def _columns_are_schema_names(cls, columns):
        from rankpref.data.schema import INTERACTION_SCHEMA, ITEM_SCHEMA

        known = list(INTERACTION_SCHEMA) + [c for c in ITEM_SCHEMA if c not in INTERACTION_SCHEMA]
        unknown = sorted(set(columns or {}) - set(known))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a schema column (map schema names to "
                             f"the file's: {{rating: stars}}; schema names: {', '.join(known)})")
        return columns



@dataclass(frozen=True)
class DatasetSpec:
    format: str
    path: str
    items_path: str | None
    min_user: int
    min_item: int
    shared: bool  # lives under RANKPREF_DATA_DIR (research-use data, never shipped)
    note: str = ""


def builtin_datasets() -> dict[str, DatasetSpec]:
    shared = data_dir()
    demo = shipped("synthetic_amazon")
    return {
        "demo": DatasetSpec("amazon2018", str(demo / "reviews.json.gz"),
                            str(demo / "meta.json.gz"), 5, 5, False,
                            "synthetic Amazon-style data shipped in datasets/"),
        "beauty": DatasetSpec("s3rec", str(shared / "amazon_beauty" / "sequences.tsv"),
                              str(shared / "amazon_beauty" / "items.jsonl"), 0, 0, True,
                              "the standard S3-Rec 5-core split, used as is"),
        "ml-100k": DatasetSpec("recbole", str(shared / "ml-100k" / "ml-100k.inter"),
                               str(shared / "ml-100k" / "ml-100k.item"), 5, 5, True),
        "sports": DatasetSpec("s3rec", str(shared / "amazon_sports_toys_s3rec" /
                                           "Sports_and_Outdoors.txt"), None, 0, 0, True),
        "toys": DatasetSpec("s3rec", str(shared / "amazon_sports_toys_s3rec" /
                                         "Toys_and_Games.txt"), None, 0, 0, True),
    }


def resolve_spec(cfg: DatasetConfig) -> DatasetSpec:
    if cfg.name is not None:
        specs = builtin_datasets()
        if cfg.name not in specs:
            raise DataError(f"unknown dataset {cfg.name!r}; built-in: {', '.join(specs)} "
                            "(or set data.name=null with data.format and data.path)",
                            field="data.name")
        spec = specs[cfg.name]
        if not Path(spec.path).exists():
            hint = (f" (set {DATA_DIR_ENV} to the folder of shared data sets; now {data_dir()})"
                    if spec.shared else "")
            raise DataError(f"dataset {cfg.name!r} not found{hint}", path=spec.path)
    else:
        if cfg.format is None or cfg.path is None:
            raise DataError("set data.name, or data.format and data.path", field="data")
        spec = DatasetSpec(cfg.format, cfg.path, cfg.items_path, 5, 5, False)
    min_user = spec.min_user if cfg.min_user_interactions is None else cfg.min_user_interactions
    min_item = spec.min_item if cfg.min_item_interactions is None else cfg.min_item_interactions
    return DatasetSpec(spec.format, spec.path, spec.items_path, min_user, min_item, spec.shared,
                       spec.note)


@dataclass
class PreparedDataset:
    path: Path
    interactions: pl.DataFrame
    vocab: Vocabulary
    items: pl.DataFrame | None
    stats: dict

    @property
    def num_items(self) -> int:
        return self.vocab.num_items


def _fingerprint(cfg: DatasetConfig, spec: DatasetSpec) -> str:
    parts = {"spec": [spec.format, str(Path(spec.path).resolve()),
                      str(Path(spec.items_path).resolve()) if spec.items_path else None,
                      spec.min_user, spec.min_item],
             "dedupe": cfg.dedupe, "columns": cfg.columns, "version": 1}
    for p in (spec.path, spec.items_path):
        if p and Path(p).exists():
            st = Path(p).stat()
            parts[p] = [st.st_size, st.st_mtime_ns]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def _read_sources(spec: DatasetSpec, cfg: DatasetConfig):
    from rankpref.data import readers

    from rankpref.data.schema import INTERACTION_SCHEMA, ITEM_SCHEMA

    def mapping(schema):
        if spec.format != "table" or not cfg.columns:
            return {}
        return {"columns": {k: v for k, v in cfg.columns.items() if k in schema}}

    inter = readers.read_interactions(spec.path, spec.format, **mapping(INTERACTION_SCHEMA))
    items = None
    if spec.items_path:
        items = readers.collect(readers.read_items(spec.items_path, spec.format,
                                                   **mapping(ITEM_SCHEMA)), spec.items_path)
    return inter, items


def _preprocess_streamed(inter: pl.LazyFrame, spec: DatasetSpec, cfg: DatasetConfig,
                         folder: Path):
    """De-duplicate, k-core and encode without holding the review texts through it.

    The source streams (polars' streaming engine) into a parquet file beside the cache; the
    pipeline then reads only the narrow columns (ids, timestamp, rating) and the reviews of
    the rows it keeps are gathered by source row at the end, so the sorts and filters never
    copy the texts, which are most of an Amazon file."""
    from rankpref.data import readers

    staging = folder.parent / f".{folder.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        source = staging / "source.parquet"
        readers.sink_parquet(add_source_row(inter), source, spec.path)
        narrow = readers.collect(pl.scan_parquet(source).drop("review"), spec.path)
        try:
            frame, vocab, report = preprocess(narrow, dedupe=cfg.dedupe, min_user=spec.min_user,
                                              min_item=spec.min_item, source=spec.path)
        except DataError:
            readers.locate(spec.path)  # a value missing past the checked head: name its line
            raise
        del narrow
        reviews = pl.read_parquet(source, columns=["review"])["review"]
        frame = frame.with_columns(reviews.gather(frame["source_row"]).alias("review"))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return frame, vocab, report


def prepare(cfg: DatasetConfig, *, force: bool = False, cache_dir: str | Path | None = None,
            quiet: bool = False) -> PreparedDataset:
    """Read, preprocess and cache a dataset; reuse the cache when nothing changed."""
    spec = resolve_spec(cfg)
    name = cfg.name or Path(spec.path).stem
    folder = Path(cache_dir or cfg.cache_dir) / f"{name}-{_fingerprint(cfg, spec)}"
    if folder.exists() and not force:
        return load_prepared(folder)
    from rankpref.data import readers

    inter, items = _read_sources(spec, cfg)
    frame, vocab, report = _preprocess_streamed(inter, spec, cfg, folder)
    item_table = None
    if items is not None:
        index = pl.DataFrame({"item_id": vocab.items[1:],
                              "item_idx": pl.arange(1, len(vocab.items), eager=True,
                                                    dtype=pl.Int32)})
        item_table = index.join(items.unique(subset="item_id", keep="first"), on="item_id",
                                how="left").sort("item_idx")
    stats = {
        "dataset": name, "format": spec.format, "source": spec.path,
        "items_source": spec.items_path, "users": len(vocab.users), "items": vocab.num_items,
        "interactions": frame.height, "rows_read": report.rows_read,
        "duplicates_dropped": report.duplicates_dropped, "dedupe": cfg.dedupe,
        "k_core": [spec.min_user, spec.min_item], "kcore_rounds": report.kcore_rounds,
        "kcore_rows_dropped": report.kcore_rows_dropped,
        "tie_break": "timestamp, then position in the source file",
    }
    keep = ["user_idx", "item_idx", "timestamp", "rating", "review"]
    with atomic_dir(folder) as tmp:
        frame.select(keep).write_parquet(tmp / "interactions.parquet")
        if item_table is not None:
            item_table.write_parquet(tmp / "items.parquet")
        (tmp / "vocab.json").write_text(json.dumps(vocab.to_json()), encoding="utf-8")
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    if not quiet:
        print(f"prepared {name}: {stats['users']:,} users, {stats['items']:,} items, "
              f"{stats['interactions']:,} interactions -> {folder}")
    return load_prepared(folder)


def load_prepared(folder: str | Path) -> PreparedDataset:
    folder = Path(folder)
    try:
        frame = pl.read_parquet(folder / "interactions.parquet")
        vocab = Vocabulary.from_json(json.loads((folder / "vocab.json").read_text("utf-8")))
        stats = json.loads((folder / "stats.json").read_text("utf-8"))
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"prepared dataset is unreadable ({exc}); delete it and run prepare "
                        "again", path=folder) from None
    items_file = folder / "items.parquet"
    items = pl.read_parquet(items_file) if items_file.exists() else None
    return PreparedDataset(folder, frame, vocab, items, stats)

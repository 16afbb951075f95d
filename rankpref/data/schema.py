"""The two tables every reader produces.

Interactions (one row per user-item event):

=========== ============ =====================================================
column      polars type  meaning
=========== ============ =====================================================
user_id     String       the source's user id
item_id     String       the source's item id
timestamp   Int64        seconds since the epoch; for order-only sources (the
                         S3-Rec sequence format) the position in the sequence
rating      Float64      explicit rating where the source has one, else null
review      String       review text (summary and body joined) or null
=========== ============ =====================================================

Items (one row per item):

=========== ============== ===================================================
item_id     String         the source's item id
title       String         title or name (null where unknown)
brand       String         brand (null where unknown)
categories  List(String)   category path or tags (empty list where unknown)
description String         free text description (null where unknown)
=========== ============== ===================================================
"""

from __future__ import annotations

import polars as pl

from rankpref.errors import DataError

INTERACTION_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String,
    "item_id": pl.String,
    "timestamp": pl.Int64,
    "rating": pl.Float64,
    "review": pl.String,
}

ITEM_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.String,
    "title": pl.String,
    "brand": pl.String,
    "categories": pl.List(pl.String),
    "description": pl.String,
}

REQUIRED_INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")


def conform(frame: pl.LazyFrame, schema: dict[str, pl.DataType]) -> pl.LazyFrame:
    """Add missing optional columns as nulls and order/cast columns to ``schema``."""
    names = frame.collect_schema().names()
    exprs = []
    for name, dtype in schema.items():
        if name in names:
            exprs.append(pl.col(name).cast(dtype, strict=False).alias(name))
        elif dtype == pl.List(pl.String):
            exprs.append(pl.lit([], dtype=dtype).alias(name))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return frame.select(exprs)


def validate_interactions(frame: pl.DataFrame, source: str = "interactions") -> pl.DataFrame:
    """Check a materialised interaction table: columns present, no nulls in required ones."""
    if frame.height == 0:
        raise DataError("no interactions (the file is empty or every row was filtered out)",
                        path=source)
    for name in REQUIRED_INTERACTION_COLUMNS:
        if name not in frame.columns:
            raise DataError("missing column", path=source, field=name)
        nulls = frame.get_column(name).null_count()
        if nulls:
            raise DataError(f"{nulls} rows have no value", path=source, field=name)
    return frame

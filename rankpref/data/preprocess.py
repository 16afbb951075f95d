"""Preprocessing of an interaction table: de-duplication, k-core, chronological order, ids.

Ordering rule (documented, deterministic): interactions are sorted by user, then timestamp,
then their position in the source (``source_row``). Equal timestamps therefore keep the order
in which the source file lists them, whatever the platform or thread count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from rankpref.errors import DataError


@dataclass
class PreprocessReport:
    """What preprocessing removed, for the prepared dataset's stats file."""

    rows_read: int = 0
    duplicates_dropped: int = 0
    kcore_rounds: int = 0
    kcore_rows_dropped: int = 0
    notes: list[str] = field(default_factory=list)


def add_source_row(frame: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Number the rows in source order (used to break timestamp ties)."""
    return frame.lazy().with_row_index("source_row")


def deduplicate(frame: pl.DataFrame, mode: str = "user_item") -> tuple[pl.DataFrame, int]:
    """Drop duplicate interactions, keeping the earliest (then first in the source).

    ``mode``: ``"user_item"`` keeps one interaction per (user, item) pair (the usual choice
    for Amazon/S3-Rec style data), ``"exact"`` drops only rows identical in user, item and
    timestamp, ``"none"`` keeps everything.
    """
    if mode == "none":
        return frame, 0
    keys = {"user_item": ["user_id", "item_id"],
            "exact": ["user_id", "item_id", "timestamp"]}.get(mode)
    if keys is None:
        raise DataError(f"unknown dedupe mode {mode!r}; use user_item, exact or none",
                        field="data.dedupe")
    ordered = frame.sort(["user_id", "timestamp", "source_row"])
    kept = ordered.unique(subset=keys, keep="first", maintain_order=True)
    return kept, frame.height - kept.height


def k_core(frame: pl.DataFrame, min_user: int, min_item: int,
           max_rounds: int = 100) -> tuple[pl.DataFrame, int]:
    """Iteratively drop users with < ``min_user`` and items with < ``min_item`` interactions.

    Repeats until nothing changes (a true k-core, unlike a single counting pass).
    Returns the filtered frame and the number of rounds run.
    """
    rounds = 0
    while rounds < max_rounds:
        before = frame.height
        if min_item > 1:
            frame = frame.filter(pl.len().over("item_id") >= min_item)
        if min_user > 1:
            frame = frame.filter(pl.len().over("user_id") >= min_user)
        rounds += 1
        if frame.height == before:
            break
    return frame, rounds


def _id_order(values: pl.Series) -> list[str]:
    """Sorted unique ids; numerically when every id is an integer string."""
    unique = values.unique().to_list()
    try:
        return sorted(unique, key=lambda s: (int(s), s))  # ids keep their exact spelling
    except ValueError:
        return sorted(unique)


@dataclass
class Vocabulary:
    """Maps source ids to contiguous indices. Item index 0 is reserved for padding."""

    users: list[str]
    items: list[str]  # items[0] is the padding token

    PAD = "<pad>"

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> "Vocabulary":
        return cls(users=_id_order(frame["user_id"]),
                   items=[cls.PAD] + _id_order(frame["item_id"]))

    @property
    def num_items(self) -> int:
        """Number of real items (padding excluded)."""
        return len(self.items) - 1

    def item_index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.items) if i > 0}

    def user_index(self) -> dict[str, int]:
        return {user: i for i, user in enumerate(self.users)}

    def to_json(self) -> dict:
        return {"users": self.users, "items": self.items}

    @classmethod
    def from_json(cls, obj: dict) -> "Vocabulary":
        if not isinstance(obj, dict) or "users" not in obj or "items" not in obj:
            raise DataError("vocabulary must have 'users' and 'items' lists")
        if not obj["items"] or obj["items"][0] != cls.PAD:
            raise DataError("vocabulary 'items' must start with the padding token '<pad>'")
        return cls(users=[str(u) for u in obj["users"]], items=[str(i) for i in obj["items"]])


def encode(frame: pl.DataFrame, vocab: Vocabulary) -> pl.DataFrame:
    """Add ``user_idx``/``item_idx`` columns and sort chronologically (see module doc)."""
    users = pl.DataFrame({"user_id": vocab.users,
                          "user_idx": pl.arange(0, len(vocab.users), eager=True, dtype=pl.Int32)})
    items = pl.DataFrame({"item_id": vocab.items[1:],
                          "item_idx": pl.arange(1, len(vocab.items), eager=True, dtype=pl.Int32)})
    out = frame.join(users, on="user_id", how="inner").join(items, on="item_id", how="inner")
    return out.sort(["user_idx", "timestamp", "source_row"])


def preprocess(frame: pl.LazyFrame | pl.DataFrame, *, dedupe: str = "user_item",
               min_user: int = 5, min_item: int = 5,
               source: str = "interactions") -> tuple[pl.DataFrame, Vocabulary, PreprocessReport]:
    """Full pipeline: number rows, de-duplicate, k-core, build the vocabulary, encode, sort."""
    from rankpref.data.schema import validate_interactions

    report = PreprocessReport()
    lazy = frame.lazy()
    if "source_row" not in lazy.collect_schema().names():
        lazy = add_source_row(lazy)
    table = lazy.collect()
    validate_interactions(table, source)
    report.rows_read = table.height
    table, report.duplicates_dropped = deduplicate(table, dedupe)
    before = table.height
    table, report.kcore_rounds = k_core(table, min_user, min_item)
    report.kcore_rows_dropped = before - table.height
    if table.height == 0:
        raise DataError(f"no interactions left after the {min_user}/{min_item}-core filter",
                        path=source, field="data.min_user_interactions")
    vocab = Vocabulary.from_frame(table)
    return encode(table, vocab), vocab, report

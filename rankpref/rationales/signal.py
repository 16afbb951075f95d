"""Rationales as a training signal: one rationale per training user, matched to the user's
last training item (the choice it explains).

Sources: ``template`` (written here from item metadata, every user), a ``.parquet`` file
(``rankpref rationales export``) or a ``.sqlite`` generation cache. A file is checked against
the data: rationales of another dataset or model are refused; a rationale whose chosen item is
not the user's current last training item (another split, another filter) is not used and
counted; users without a rationale train on the next-item loss only, and are counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from rankpref.data.datasets import PreparedDataset
from rankpref.data.splits import Split
from rankpref.errors import DataError, RankprefError
from rankpref.rationales.backends import template_rationale
from rankpref.rationales.generate import ItemInfo, training_examples

REQUIRED = ("user_id", "chosen_item", "rationale")


@dataclass
class RationaleSignal:
    texts: list[str]                # unique rationale texts
    owner_text: np.ndarray          # [len(split.train_users)] index into texts, or -1
    table: pl.DataFrame             # user_id, chosen_item, rationale of the rows in use
    counts: dict = field(default_factory=dict)


def read_rationale_file(path: str | Path, dataset_name: str, model: str | None = None
                        ) -> pl.DataFrame:
    """Rows of a rationale file for ``dataset_name`` (and ``model``), checked."""
    path = Path(path)
    if not path.exists():
        raise DataError("rationale file not found", path=path)
    if path.suffix == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # polars raises several error types for bad files
            raise DataError(f"not a readable parquet file ({exc})", path=path) from None
    elif path.suffix in (".sqlite", ".db"):
        from rankpref.rationales.cache import RationaleStore

        store = RationaleStore(path)
        try:
            frame = store.frame()
        finally:
            store.close()
    else:
        raise DataError("a rationale file must be .parquet (rankpref rationales export) or "
                        ".sqlite (the generation cache)", path=path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}", path=path)
    if "dataset" in frame.columns:
        found = sorted(set(frame["dataset"].drop_nulls().to_list()))
        frame = frame.filter(pl.col("dataset") == dataset_name)
        if frame.height == 0:
            raise DataError(f"holds rationales for dataset(s) {found}, not {dataset_name!r}",
                            path=path)
    if model is not None:
        if "model" not in frame.columns:
            raise DataError("has no 'model' column, so pulse.rationale_model cannot be checked",
                            path=path)
        found = sorted(set(frame["model"].drop_nulls().to_list()))
        frame = frame.filter(pl.col("model") == model)
        if frame.height == 0:
            raise DataError(f"has no rationales written by {model!r} (it has {found})",
                            path=path)
    frame = frame.with_columns(pl.col("user_id").cast(pl.String),
                               pl.col("chosen_item").cast(pl.String))
    # one rationale per (user, chosen item): the best scored (ToT), else the first
    if "score" in frame.columns:
        frame = frame.with_columns(pl.col("score").cast(pl.Float64))
        frame = frame.sort("score", descending=True, nulls_last=True, maintain_order=True)
    return frame.unique(subset=["user_id", "chosen_item"], keep="first", maintain_order=True)


def template_table(dataset: PreparedDataset, split: Split) -> pl.DataFrame:
    """Deterministic rationales from item metadata for every training user."""
    info = ItemInfo(dataset)
    examples, _ = training_examples(split, dataset.vocab)
    rows = []
    for ex in examples:
        history = [info.item(ex.user_idx, i) for i in ex.history]
        rows.append({"user_id": ex.user_id, "chosen_item": dataset.vocab.items[ex.chosen],
                     "rationale": template_rationale(history, info.item(ex.user_idx, ex.chosen))})
    return pl.DataFrame(rows, schema={c: pl.String for c in REQUIRED})


def rationale_signal(source: str, dataset_name: str, dataset: PreparedDataset, split: Split,
                     model: str | None = None) -> RationaleSignal | None:
    """Match rationales to the training users of ``split``; None for source ``none``."""
    if source == "none":
        return None
    if source == "template":
        frame = template_table(dataset, split)
    else:
        frame = read_rationale_file(source, dataset_name, model)
    vocab = dataset.vocab
    by_user: dict[str, tuple[str, str]] = {}
    for user, chosen, text in frame.select(REQUIRED).iter_rows():
        if text and text.strip():
            by_user.setdefault(user, (chosen, text.strip()))
    owner_text = np.full(len(split.train_users), -1, dtype=np.int64)
    text_index: dict[str, int] = {}
    used, stale, short = [], 0, 0
    for pos, (user, seq) in enumerate(zip(split.train_users, split.train_sequences)):
        user_id = vocab.users[int(user)]
        if user_id not in by_user:
            continue
        if len(seq) < 2:
            short += 1
            continue
        chosen, text = by_user[user_id]
        if chosen != vocab.items[int(seq[-1])]:
            stale += 1
            continue
        owner_text[pos] = text_index.setdefault(text, len(text_index))
        used.append((user_id, chosen, text))
    known_users = set(vocab.users)
    counts = {
        "source": source,
        "training_users": len(split.train_users),
        "users_with_rationale": len(used),
        "users_without_rationale": len(split.train_users) - len(used),
        "rationales_in_source": frame.height,
        "stale_chosen_item": stale,
        "unknown_user": sum(1 for u in by_user if u not in known_users),
        "no_training_target": short,
        "unique_texts": len(text_index),
    }
    if not used:
        raise RankprefError(f"{source}: none of its {frame.height:,} rationales matches a training "
                            f"user's last training item of {dataset_name!r} ({counts}); were they "
                            "written for another dataset or split?")
    table = pl.DataFrame(used, schema={c: pl.String for c in REQUIRED}, orient="row")
    return RationaleSignal(list(text_index), owner_text, table, counts)

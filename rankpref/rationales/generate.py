"""Generate one rationale per user and store it in the cache.

For every user, the *chosen* item is their last training item and the history is everything
before it; valid and test targets are never shown (the rationale is a hindsight training
signal). Users whose training history is too short are skipped and counted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from rankpref.data.datasets import PreparedDataset
from rankpref.data.splits import Split
from rankpref.rationales.backends import Backend
from rankpref.rationales.cache import RationaleStore, history_hash, record_key
from rankpref.rationales.prompts import PROMPT_VERSION, HistoryItem, build_messages, parse_rationale

log = logging.getLogger(__name__)


@dataclass
class UserExample:
    user_idx: int
    user_id: str
    history: list[int]  # item indices, oldest first
    chosen: int


@dataclass
class GenerationReport:
    users_considered: int = 0
    already_cached: int = 0
    generated: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    seconds: float = 0.0

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out["tokens_per_second"] = round(self.tokens / self.seconds, 2) if self.seconds else None
        out["users_per_minute"] = round(60 * self.generated / self.seconds, 2) if self.seconds else None
        return out


def training_examples(split: Split, vocab) -> tuple[list[UserExample], int]:
    """(one example per user with >= 2 training items, number of users without one)."""
    examples, short = [], 0
    for user, seq in zip(split.train_users, split.train_sequences):
        if len(seq) < 2:
            short += 1
            continue
        examples.append(UserExample(int(user), vocab.users[int(user)],
                                    [int(i) for i in seq[:-1]], int(seq[-1])))
    return examples, short


class ItemInfo:
    """Titles, brands, categories per item index, and (user, item) -> rating/review."""

    def __init__(self, dataset: PreparedDataset):
        n = dataset.num_items + 1
        self.title = [None] * n
        self.brand = [None] * n
        self.categories = [[] for _ in range(n)]
        if dataset.items is not None:
            items = dataset.items
            for col, target in (("title", self.title), ("brand", self.brand)):
                if col in items.columns:
                    for idx, value in zip(items["item_idx"].to_list(), items[col].to_list()):
                        target[idx] = value
            if "categories" in items.columns:
                for idx, value in zip(items["item_idx"].to_list(), items["categories"].to_list()):
                    self.categories[idx] = value or []
        for idx in range(1, n):
            if not self.title[idx]:
                self.title[idx] = f"item {dataset.vocab.items[idx]}"
        inter = dataset.interactions
        self.feedback = {}
        if inter["rating"].null_count() < inter.height or inter["review"].null_count() < inter.height:
            for u, i, r, t in inter.select("user_idx", "item_idx", "rating", "review").iter_rows():
                self.feedback[(u, i)] = (r, t)

    def item(self, user: int, idx: int, with_feedback: bool = True) -> HistoryItem:
        rating, review = self.feedback.get((user, idx), (None, None)) if with_feedback else (None, None)
        return HistoryItem(self.title[idx], rating, review, self.brand[idx], self.categories[idx])


def select_users(examples: list[UserExample], *, sample: int | None = None,
                 limit: int | None = None, seed: int = 0,
                 shard: tuple[int, int] = (0, 1)) -> list[UserExample]:
    """Seeded sample, then the ``shard=(k, n)`` part (every n-th user from k), then a limit."""
    if sample is not None and sample < len(examples):
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(examples), size=sample, replace=False))
        examples = [examples[i] for i in chosen]
    k, n = shard
    if not 0 <= k < n:
        raise ValueError(f"shard must be k/n with 0 <= k < n, got {k}/{n}")
    examples = examples[k::n]
    if limit is not None:
        examples = examples[:limit]
    return examples


def generate_rationales(dataset_name: str, dataset: PreparedDataset, split: Split,
                        backend: Backend, store: RationaleStore, *, sample: int | None = None,
                        limit: int | None = None, seed: int = 0, batch_size: int = 8,
                        retries: int = 2, progress: bool = True,
                        shard: tuple[int, int] = (0, 1)) -> GenerationReport:
    report = GenerationReport()
    examples, short = training_examples(split, dataset.vocab)
    if short:
        report.skip("no training history", short)
        log.info("%d users have fewer than 2 training interactions: skipped", short)
    examples = select_users(examples, sample=sample, limit=limit, seed=seed, shard=shard)
    report.users_considered = len(examples)
    info = ItemInfo(dataset)
    vocab = dataset.vocab
    keyed = []
    for ex in examples:
        h = history_hash([vocab.items[i] for i in ex.history], vocab.items[ex.chosen])
        keyed.append((record_key(dataset_name, ex.user_id, h, backend.model_id, PROMPT_VERSION),
                      h, ex))
    done = store.existing([k for k, _, _ in keyed])
    todo = [t for t in keyed if t[0] not in done]
    report.already_cached = len(keyed) - len(todo)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(todo), desc=f"rationales ({backend.name})", unit="user")
    started = time.perf_counter()
    tokens_before = getattr(backend, "tokens_generated", 0)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        metas = [([info.item(ex.user_idx, i) for i in ex.history],
                  info.item(ex.user_idx, ex.chosen, with_feedback=False)) for _, _, ex in chunk]
        messages = [build_messages(h, c) for h, c in metas]
        results: dict[int, tuple[str, str, int]] = {}
        pending = list(range(len(chunk)))
        for attempt in range(1, retries + 2):
            if not pending:
                break
            raws = backend.generate([messages[i] for i in pending],
                                    metas=[metas[i] for i in pending])
            still = []
            for i, raw in zip(pending, raws):
                text = parse_rationale(raw, prompt=messages[i][-1]["content"])
                if text is None:
                    still.append(i)
                else:
                    results[i] = (text, raw, attempt)
            pending = still
        rows, skips = [], []
        for i, (key, h, ex) in enumerate(chunk):
            if i in results:
                text, raw, attempts = results[i]
                rows.append({"key": key, "dataset": dataset_name, "user_id": ex.user_id,
                             "history_hash": h, "model": backend.model_id,
                             "backend": backend.name, "prompt_version": PROMPT_VERSION,
                             "chosen_item": vocab.items[ex.chosen], "rationale": text,
                             "raw": raw, "attempts": attempts})
            else:
                skips.append({"key": key, "dataset": dataset_name, "user_id": ex.user_id,
                              "reason": "empty or garbage output"})
                log.warning("user %s: no usable rationale after %d attempts", ex.user_id,
                            retries + 1)
        report.generated += store.add(rows, skips)
        if skips:
            report.skip("empty or garbage output", len(skips))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    report.seconds = time.perf_counter() - started
    report.tokens = getattr(backend, "tokens_generated", 0) - tokens_before
    return report


def rationale_table(store: RationaleStore, dataset: str) -> pl.DataFrame:
    return store.frame(dataset).select("dataset", "user_id", "chosen_item", "rationale",
                                       "model", "backend", "prompt_version", "history_hash",
                                       "attempts", "score", "method")

"""A freshly written rationale for a recommendation (history + recommended item)."""

from __future__ import annotations

from rankpref.rationales.backends import backend_options, make_backend
from rankpref.rationales.prompts import HistoryItem, build_messages, parse_rationale


def _items(rec) -> dict[int, HistoryItem]:
    out = {}
    if rec.items is None:
        return out
    cols = rec.items.columns
    for row in rec.items.iter_rows(named=True):
        out[row["item_idx"]] = HistoryItem(
            row.get("title") or f"item {rec.vocab.items[row['item_idx']]}", None, None,
            row.get("brand") if "brand" in cols else None,
            list(row.get("categories") or []) if "categories" in cols else [])
    return out


def fresh_rationales(rec, history: list[int], recommended: list[int], backend: str, *,
                     model: str | None = None, base_url: str | None = None) -> list[str | None]:
    """One rationale per recommended item (None where the model's answer was unusable)."""
    items = _items(rec)

    def item(i: int) -> HistoryItem:
        return items.get(i) or HistoryItem(f"item {rec.vocab.items[i]}")

    past = [item(i) for i in history]
    slm = make_backend(backend, model, **backend_options(backend, base_url=base_url))
    messages = [build_messages(past, item(i)) for i in recommended]
    raw = slm.generate(messages, [(past, item(i)) for i in recommended])
    return [parse_rationale(text) for text in raw]

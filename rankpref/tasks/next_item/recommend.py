"""Top-k recommendation from a trained artifact, for a known user or a list of item ids."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from rankpref.errors import RankprefError, UnknownIdError
from rankpref.registry import ARTIFACTS
from rankpref.tasks.next_item.artifact import load_artifact
from rankpref.tasks.next_item.config import NextItemConfig
from rankpref.tasks.next_item.explain import Explainer, require_pulse
from rankpref.tasks.next_item.models import model_from_saved
from rankpref.tasks.next_item.pulse import text_encoder


@dataclass
class Recommender:
    model: torch.nn.Module
    cfg: NextItemConfig
    vocab: object
    items: pl.DataFrame | None
    metrics: dict
    explainer: Explainer | None = None  # PULSE artifacts trained with rationales

    @classmethod
    def load(cls, path, command: str | None = None) -> "Recommender":
        art = load_artifact(path, command)
        model = model_from_saved(art.cfg, art.vocab.num_items, art.state, art.model_config)
        try:
            model.load_state_dict(art.state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise RankprefError(f"{path}: weights do not match the config ({first})") from None
        model.eval()
        explainer = Explainer.load(art.folder) if hasattr(model, "why_head") else None
        return cls(model, art.cfg, art.vocab, art.items, art.metrics, explainer)

    def _batch(self, histories: list[list[int]]) -> torch.Tensor:
        if any(not h for h in histories):
            raise RankprefError("a history is empty: give at least one item id")
        cut = [h[-self.cfg.data.max_len:] for h in histories]
        width = max(len(h) for h in cut)
        batch = torch.zeros(len(cut), width, dtype=torch.long)
        for row, h in enumerate(cut):
            batch[row, width - len(h):] = torch.tensor(h)
        return batch

    @torch.no_grad()
    def explain(self, history: list[int], item_idx: int, k: int = 3) -> list[dict]:
        """The ``k`` training rationales nearest (in the why space) to this user's reason
        vector, preferring those written for the recommended item (PULSE artifacts only)."""
        model = require_pulse(self.model)
        if self.explainer is None:
            raise RankprefError("this PULSE artifact was trained without rationales "
                                "(pulse.rationales=none), so it has none to explain with")
        reason = model.why_head(model.user_state(self._batch([history])))[0]
        return self.explainer.nearest(reason, self.vocab.items[item_idx], k)

    @torch.no_grad()
    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Free-text queries -> vectors in the item space (PULSE artifacts: its text tower)."""
        model = require_pulse(self.model, "free-text queries")
        if not model.cfg.use_text:
            raise RankprefError("this PULSE artifact has no text tower (model.use_text=false)")
        vectors = text_encoder(self.cfg, progress=False).encode(texts)
        return model.text_query(torch.from_numpy(vectors)).numpy()

    @functools.cached_property
    def _item_index(self) -> dict[str, int]:
        return self.vocab.item_index()  # built once: ~2 ms on Beauty

    def item_indices(self, item_ids: list[str]) -> list[int]:
        index = self._item_index
        unknown = [i for i in item_ids if i not in index]
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:10])
            more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
            raise UnknownIdError(f"unknown item id(s): {shown}{more}; the model knows "
                                 f"{self.vocab.num_items:,} items")
        return [index[i] for i in item_ids]

    @property
    def item_ids(self) -> list[str]:
        """External item ids, in the row order of :meth:`item_vectors`."""
        return list(self.vocab.items[1:])

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        """[num_items, dim] float32 item vectors (padding row dropped); score = user . item."""
        return self.model.item_weights()[1:].detach().float().cpu().numpy().copy()

    @torch.no_grad()
    def user_vectors(self, histories: list[list[int]]) -> np.ndarray:
        """[len(histories), dim] float32 user states after each history of item indices."""
        return self.model.user_state(self._batch(histories)).float().cpu().numpy()

    @torch.no_grad()
    def recommend(self, history: list[int], k: int = 10, exclude_seen: bool = True):
        """Top-k (item_idx, score) after a history of item indices (chronological)."""
        if k < 1:
            raise RankprefError(f"k must be >= 1, got {k}")
        if not history:
            raise RankprefError("the history is empty: give at least one item id")
        inputs = torch.tensor([history[-self.cfg.data.max_len:]], dtype=torch.long)
        scores = self.model.score_all(inputs)[0]
        scores[0] = float("-inf")
        if exclude_seen:
            scores[torch.tensor(sorted(set(history)))] = float("-inf")
        k = min(k, int(torch.isfinite(scores).sum()))
        top = scores.topk(k)
        return list(zip(top.indices.tolist(), top.values.tolist()))

    def describe(self, ranked) -> list[dict]:
        titles = {}
        if self.items is not None and "title" in self.items.columns:
            idx = [i for i, _ in ranked]
            sub = self.items.filter(pl.col("item_idx").is_in(idx))
            titles = dict(zip(sub["item_idx"].to_list(), sub["title"].to_list()))
        return [{"rank": r + 1, "item_id": self.vocab.items[i], "score": round(float(s), 4),
                 "title": titles.get(i)} for r, (i, s) in enumerate(ranked)]


def user_history(dataset, user_id: str) -> list[int]:
    """A known user's full chronological history (all splits) in the prepared dataset."""
    index = dataset.vocab.user_index()
    if user_id not in index:
        raise UnknownIdError(f"unknown user id {user_id!r}; the dataset has "
                             f"{len(dataset.vocab.users):,} users")
    frame = dataset.interactions.filter(pl.col("user_idx") == index[user_id])
    return np.asarray(frame["item_idx"]).tolist()


ARTIFACTS.register("next_item", Recommender.load)

"""Explanations of PULSE recommendations: the training rationales nearest, in the why space,
to a user's reason vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from rankpref.errors import RankprefError
from rankpref.models.pulse import Pulse


class Explainer:
    """Nearest training rationales, in the why space, of a user's reason vector."""

    def __init__(self, table: pl.DataFrame, vectors: torch.Tensor):
        self.table = table
        self.vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
        rows = np.array(table["vector_row"].to_numpy(), dtype=np.int64)
        self.row_vectors = self.vectors[torch.from_numpy(rows)]
        self.by_item: dict[str, np.ndarray] = {}
        for i, item in enumerate(table["chosen_item"].to_list()):
            self.by_item.setdefault(item, []).append(i)
        self.by_item = {k: np.asarray(v) for k, v in self.by_item.items()}

    @classmethod
    def load(cls, folder: Path) -> Explainer | None:
        from safetensors.torch import load_file

        table, tensors = folder / "rationales.parquet", folder / "rationale_vectors.safetensors"
        if not (table.exists() and tensors.exists()):
            return None
        return cls(pl.read_parquet(table), load_file(str(tensors))["vectors"])

    def nearest(self, reason: torch.Tensor, item_id: str, k: int = 3) -> list[dict]:
        """Up to ``k`` rationales: first those written for ``item_id`` (same choice), most
        similar first; then, if fewer, the most similar of all (``same_item`` False)."""
        sims = self.row_vectors @ torch.nn.functional.normalize(reason.float(), dim=-1)
        picked: list[tuple[int, bool]] = []
        same = self.by_item.get(item_id)
        if same is not None:
            order = same[np.argsort(-sims[same].numpy(), kind="stable")]
            picked = [(int(i), True) for i in order[:k]]
        if len(picked) < k:
            taken = {i for i, _ in picked}
            for i in torch.argsort(sims, descending=True, stable=True).tolist():
                if len(picked) >= k:
                    break
                if i not in taken:
                    picked.append((i, False))
        rows = self.table
        return [{"user_id": rows["user_id"][i], "chosen_item": rows["chosen_item"][i],
                 "rationale": rows["rationale"][i], "similarity": round(float(sims[i]), 4),
                 "same_item": same_item} for i, same_item in picked]


def require_pulse(model, feature: str = "explanations") -> Pulse:
    if not isinstance(model, Pulse):
        raise RankprefError(f"{feature} need a PULSE artifact (model.name=pulse); this one "
                            f"is {type(model).__name__}")
    return model

"""Contrastive losses for aligning two views (behaviour and rationale) in one space."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rankpref.registry import LOSSES


@LOSSES.register("info_nce", group="contrastive")
def info_nce(queries: torch.Tensor, keys: torch.Tensor, *, temperature: float = 0.1,
             key_ids: torch.Tensor | None = None,
             negatives: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE over cosine similarity: row ``i`` of ``queries`` [B, d] should pick ``keys[i]``
    among all keys of the batch (in-batch negatives) and its own ``negatives`` [B, N, d].

    ``key_ids`` [B]: keys with the same id are the same text; such a key is not used as a
    negative for another row (it would be a false negative). Returns the mean loss.
    """
    if queries.shape != keys.shape:
        raise ValueError(f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)} differ")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    q = F.normalize(queries, dim=-1)
    k = F.normalize(keys, dim=-1)
    logits = q @ k.T / temperature
    if key_ids is not None:
        same = key_ids.view(-1, 1) == key_ids.view(1, -1)
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    if negatives is not None:
        extra = torch.einsum("bd,bnd->bn", q, F.normalize(negatives, dim=-1)) / temperature
        logits = torch.cat([logits, extra], dim=1)
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))

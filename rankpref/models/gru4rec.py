"""GRU4Rec (Hidasi et al., ICLR 2016) as RecBole runs it for next-item prediction: item
embeddings, embedding dropout, a GRU, a dense layer back to the embedding size, and scores
tied to the input item table (``h_t . E_j``).

Inputs are left-padded item indices (0 = padding), as for every next-item backbone here. The
GRU has no bias terms (as RecBole's) and padding embeds to zeros, so from its zero start state
it stays exactly at zero through the padding: a history encodes the same whatever its batch,
with no packing needed (tested; a GRU with biases would drift and fail that test).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rankpref.registry import MODELS


@dataclass
class GRU4RecConfig:
    num_items: int           # real items; the embedding table has num_items + 1 rows
    max_len: int = 50
    hidden: int = 64         # item embedding size
    gru_hidden: int = 128    # GRU state size (RecBole's default)
    layers: int = 1
    dropout: float = 0.3     # on the item embeddings (RecBole's dropout_prob)

    def __post_init__(self):
        for name in ("num_items", "max_len", "hidden", "gru_hidden", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@MODELS.register("gru4rec", group="next_item", config=GRU4RecConfig,
                 fixed=("num_items", "max_len"))
class GRU4Rec(nn.Module):
    """The next-item interface (:class:`rankpref.models.sasrec.SASRec`'s): ``forward(inputs,
    table)`` states, ``item_weights()``, ``user_state(inputs)``, ``score_all(inputs)``."""

    def __init__(self, cfg: GRU4RecConfig):
        super().__init__()
        self.cfg = cfg
        self.item_emb = nn.Embedding(cfg.num_items + 1, cfg.hidden, padding_idx=0)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        # bias-free: padding (zero inputs) then keeps the state at exactly zero
        self.gru = nn.GRU(cfg.hidden, cfg.gru_hidden, num_layers=cfg.layers, batch_first=True,
                          bias=False)
        self.dense = nn.Linear(cfg.gru_hidden, cfg.hidden)
        nn.init.xavier_normal_(self.item_emb.weight)  # RecBole's initialisation
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        for name, weight in self.gru.named_parameters():
            if "weight_hh" in name:
                nn.init.orthogonal_(weight)
            else:
                nn.init.xavier_uniform_(weight)

    def forward(self, inputs: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """[batch, T] left-padded item indices -> [batch, T, hidden] states (zeros at
        padding)."""
        if inputs.shape[1] > self.cfg.max_len:
            inputs = inputs[:, -self.cfg.max_len:]
        table = self.item_weights() if table is None else table
        keep = (inputs != 0).unsqueeze(-1)
        out, _ = self.gru(self.emb_dropout(F.embedding(inputs, table)))
        return self.dense(out) * keep  # the dense bias would make padding states non-zero

    def item_weights(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """[num_items + 1, hidden] item vectors (row 0 = padding), or those of ``rows``."""
        return self.item_emb.weight if rows is None else self.item_emb.weight[rows]

    def user_state(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.forward(inputs)[:, -1]

    def score_all(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.user_state(inputs) @ self.item_weights().T

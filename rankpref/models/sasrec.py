"""SASRec (Kang & McAuley, 2018): a causal self-attention encoder over item sequences.

Inputs are left-padded item indices (0 = padding). Positions are right-aligned (the last item
of any sequence has position ``max_len - 1``) so a sequence gets the same encoding whatever
the padding of its batch. Output item embeddings are tied to the input ones: the score of
item ``j`` after position ``t`` is ``h_t . E_j``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from rankpref.registry import MODELS


@dataclass
class SASRecConfig:
    num_items: int            # real items; the embedding table has num_items + 1 rows
    max_len: int = 50
    hidden: int = 64
    blocks: int = 2
    heads: int = 2
    dropout: float = 0.2
    ffn_multiplier: int = 4
    norm: Literal["pre", "post"] = "pre"  # "pre": LayerNorm before each sub-layer; "post":
                                          # after the residual (as the S3-Rec/BSARec code)
    scale_embeddings: bool = True   # multiply item embeddings by sqrt(hidden), as SASRec

    def __post_init__(self):
        for name in ("num_items", "max_len", "hidden", "blocks", "heads", "ffn_multiplier"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {self.norm!r}")


class _Block(nn.Module):
    """Pre-norm transformer block with causal, padding-aware attention."""

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.heads = cfg.heads
        self.norm1 = nn.LayerNorm(cfg.hidden)
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)
        self.norm2 = nn.LayerNorm(cfg.hidden)
        self.ffn = nn.Sequential(nn.Linear(cfg.hidden, cfg.ffn_multiplier * cfg.hidden), nn.GELU(),
                                 nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.ffn_multiplier * cfg.hidden, cfg.hidden))
        self.dropout = nn.Dropout(cfg.dropout)
        self.attn_dropout = cfg.dropout
        self.pre_norm = cfg.norm == "pre"

    def _attend(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0)
        return self.dropout(self.proj(attn.transpose(1, 2).reshape(b, t, d)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            x = x + self._attend(self.norm1(x), mask)
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self._attend(x, mask))
        return self.norm2(x + self.dropout(self.ffn(x)))


@MODELS.register("sasrec", group="next_item", config=SASRecConfig,
                 fixed=("num_items", "max_len"))
class SASRec(nn.Module):
    """The next-item interface every backbone gives: ``forward(inputs, table)`` states,
    ``item_weights()``, ``user_state(inputs)`` and ``score_all(inputs)``."""

    causal = True  # attention sees earlier positions only (BERT4Rec: both directions)

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        self.item_emb = nn.Embedding(cfg.num_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.blocks))
        # pre-norm: a LayerNorm closes the stack; post-norm: one opens it (after the embeddings)
        self.final_norm = nn.LayerNorm(cfg.hidden)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def forward(self, inputs: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """[batch, T] left-padded item indices -> [batch, T, hidden] states.

        ``table`` is the item table to embed the inputs with (default :meth:`item_weights`);
        a training step passes the one it also scores with, so both agree."""
        _, t = inputs.shape
        if t > self.cfg.max_len:
            inputs = inputs[:, -self.cfg.max_len:]
            t = self.cfg.max_len
        positions = torch.arange(self.cfg.max_len - t, self.cfg.max_len, device=inputs.device)
        scale = math.sqrt(self.cfg.hidden) if self.cfg.scale_embeddings else 1.0
        table = self.item_weights() if table is None else table
        x = F.embedding(inputs, table) * scale + self.pos_emb(positions)
        if self.cfg.norm == "post":
            x = self.final_norm(x)
        x = self.emb_dropout(x)
        keep = inputs != 0
        x = x * keep.unsqueeze(-1)
        eye = torch.eye(t, dtype=torch.bool, device=inputs.device)
        # a query attends to earlier real items and always to itself (so padded rows stay finite)
        mask = keep.unsqueeze(1)
        if self.causal:
            mask = mask & torch.ones(t, t, dtype=torch.bool, device=inputs.device).tril()
        mask = (mask | eye).unsqueeze(1)
        for block in self.blocks:
            # padding stays zero, so a block that mixes positions by other means than masked
            # attention (BSARec's Fourier filter) never sees what earlier blocks made of it
            x = block(x, mask) * keep.unsqueeze(-1)
        return self.final_norm(x) if self.cfg.norm == "pre" else x

    def item_weights(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """[num_items + 1, hidden] output item vectors (row 0 = padding); with ``rows``, only
        those items' vectors, in that order."""
        return self.item_emb.weight if rows is None else self.item_emb.weight[rows]

    def user_state(self, inputs: torch.Tensor) -> torch.Tensor:
        """State after the last position of each (left-padded) history: [batch, hidden]."""
        return self.forward(inputs)[:, -1]

    def score_all(self, inputs: torch.Tensor) -> torch.Tensor:
        """Scores of every item (column 0 = padding) after each history: [batch, num_items + 1]."""
        return self.user_state(inputs) @ self.item_weights().T

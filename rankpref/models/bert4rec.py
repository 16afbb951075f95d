"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional transformer trained to fill in masked
items (a cloze task), as RecBole runs it.

Training (:meth:`BERT4Rec.masked_sample`): each item of a training sequence is replaced by a
mask token with probability ``mask_ratio`` and the model predicts the original items at the
masked positions with the task's loss (full softmax by default). Every row gets at least its
last item masked when the draw masked none; and with probability ``last_item_ratio`` a whole
batch masks only each row's last item (RecBole's ``ft_ratio``), which is what inference asks.
Inference appends the mask token after the history and reads the state there: the next item.

The mask token has its own vector (``mask_emb``), outside the item table, so the scored
catalogue stays ``num_items + 1`` rows like every other backbone's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from rankpref.models.sasrec import SASRec, SASRecConfig
from rankpref.registry import MODELS


@dataclass
class BERT4RecConfig(SASRecConfig):
    dropout: float = 0.2       # RecBole's hidden and attention dropout
    norm: Literal["pre", "post"] = "post"
    scale_embeddings: bool = False
    mask_ratio: float = 0.2    # RecBole's default
    last_item_ratio: float = 0.5  # share of batches that mask only the last item (ft_ratio)

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if not 0 <= self.last_item_ratio <= 1:
            raise ValueError(f"last_item_ratio must be in [0, 1], got {self.last_item_ratio}")


def mask_items(sequences: torch.Tensor, ratio: float, mask_id: int,
               generator: torch.Generator | None = None,
               last_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded item sequences [batch, T] -> (inputs with masked items replaced by
    ``mask_id``, targets: the original item at each masked position, else 0).

    Each real item is masked with probability ``ratio``; a row where none was drawn gets its
    last item masked. ``last_only``: mask each row's last item and nothing else."""
    real = sequences != 0
    if last_only:
        masked = torch.zeros_like(real)
    else:
        draw = torch.rand(sequences.shape, generator=generator, device=sequences.device) < ratio
        masked = draw & real
    none = ~masked.any(1) & real[:, -1]
    masked[none, -1] = True
    inputs = sequences.masked_fill(masked, mask_id)
    targets = sequences.masked_fill(~masked, 0)
    return inputs, targets


@MODELS.register("bert4rec", group="next_item", config=BERT4RecConfig,
                 fixed=("num_items", "max_len"))
class BERT4Rec(SASRec):
    """The next-item interface of :class:`SASRec`, bidirectional, with masked-item training."""

    causal = False

    def __init__(self, cfg: BERT4RecConfig):
        super().__init__(cfg)
        self.mask_emb = nn.Parameter(torch.randn(cfg.hidden) * 0.02)

    @property
    def mask_id(self) -> int:
        return self.cfg.num_items + 1

    def masked_sample(self, inputs: torch.Tensor, targets: torch.Tensor,
                      generator: torch.Generator | None = None):
        """A training window (inputs ``x_1..x_T``, targets ``x_2..x_{T+1}``, left-padded; or a
        prefix whose one target is last) -> the masked sequence ``x_1..x_{T+1}`` (its last
        ``max_len`` items) and the targets at its masked positions (0 elsewhere)."""
        sequences = torch.cat([inputs, targets[:, -1:]], dim=1)[:, -self.cfg.max_len:]
        last_only = bool(torch.rand((), generator=generator) < self.cfg.last_item_ratio)
        return mask_items(sequences, self.cfg.mask_ratio, self.mask_id, generator, last_only)

    def forward(self, inputs: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        table = self.item_weights() if table is None else table
        is_mask = inputs == self.mask_id
        if is_mask.any():
            # the item table has no row for the mask token: embed it apart, as a table that
            # has one more row than the catalogue
            table = torch.cat([table, self.mask_emb.unsqueeze(0)])
        return super().forward(inputs, table)

    def user_state(self, inputs: torch.Tensor) -> torch.Tensor:
        """The state at a mask token appended after each (left-padded) history."""
        ask = torch.full((len(inputs), 1), self.mask_id, dtype=inputs.dtype,
                         device=inputs.device)
        return self.forward(torch.cat([inputs, ask], dim=1)[:, -self.cfg.max_len:])[:, -1]

"""BSARec (Shin et al., AAAI 2024, "An Attentive Inductive Bias for Sequential
Recommendation beyond the Self-Attention"): SASRec's blocks with a Fourier filter beside the
self-attention.

The filter splits a window's states along the sequence into the lowest frequencies (the
first ``c // 2 + 1`` bins of the real FFT) and the high-frequency rest, and mixes the rest back
with a learned per-dimension scale ``beta``; the block's output is ``alpha * filter +
(1 - alpha) * attention``, then the feed-forward layer. The layout follows the reference
code: post-norm blocks, embeddings not scaled, one head, dropout 0.5.

The filter mixes every position of a window with every other, earlier *and later*: trained on
all positions at once, a position would see its own target. BSARec therefore trains on
prefixes (``data.train_on=every_prefix``, the reference recipe), which its task enforces, and
it always transforms a full ``max_len`` window (left-padded), so a history encodes the same
whatever the padding of its batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from rankpref.models.sasrec import SASRec, SASRecConfig, _Block
from rankpref.registry import MODELS


@dataclass
class BSARecConfig(SASRecConfig):
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.5
    norm: Literal["pre", "post"] = "post"
    scale_embeddings: bool = False
    alpha: float = 0.7   # weight of the filter against the attention (the Beauty recipe)
    c: int = 5           # low-pass cut: the first c // 2 + 1 frequency bins are "low"

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.c < 1:
            raise ValueError(f"c must be >= 1, got {self.c}")


class FrequencyFilter(nn.Module):
    """Low frequencies kept, high ones rescaled by ``beta**2`` per dimension; residual + norm."""

    def __init__(self, hidden: int, c: int, dropout: float):
        super().__init__()
        self.low_bins = c // 2 + 1
        self.sqrt_beta = nn.Parameter(torch.randn(1, 1, hidden))
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(x, dim=1, norm="ortho")
        spectrum = torch.cat([spectrum[:, :self.low_bins],
                              torch.zeros_like(spectrum[:, self.low_bins:])], dim=1)
        low = torch.fft.irfft(spectrum, n=x.shape[1], dim=1, norm="ortho")
        mixed = low + self.sqrt_beta ** 2 * (x - low)
        return self.norm(self.dropout(mixed) + x)


class _BSABlock(_Block):
    def __init__(self, cfg: BSARecConfig):
        super().__init__(cfg)
        self.alpha = cfg.alpha
        self.filter = FrequencyFilter(cfg.hidden, cfg.c, cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attended = self.norm1(x + self._attend(x, mask))
        h = self.alpha * self.filter(x) + (1 - self.alpha) * attended
        return self.norm2(h + self.dropout(self.ffn(h)))


@MODELS.register("bsarec", group="next_item", config=BSARecConfig,
                 fixed=("num_items", "max_len"))
class BSARec(SASRec):
    """The next-item interface of :class:`SASRec`; not causal (see the module's text)."""

    needs_prefix_training = True

    def __init__(self, cfg: BSARecConfig):
        if cfg.norm != "post":
            raise ValueError("BSARec's blocks are post-norm (norm='post')")
        super().__init__(cfg)
        self.blocks = nn.ModuleList(_BSABlock(cfg) for _ in range(cfg.blocks))
        for block in self.blocks:
            block.apply(self._init)

    def forward(self, inputs: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        t = min(inputs.shape[1], self.cfg.max_len)
        inputs = inputs[:, -self.cfg.max_len:]
        if t < self.cfg.max_len:  # the filter's frequencies are those of a full window
            inputs = F.pad(inputs, (self.cfg.max_len - t, 0))
        return super().forward(inputs, table)[:, -t:]

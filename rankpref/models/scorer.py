"""An MLP that scores items from their feature vectors (for listwise ranking)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from rankpref.registry import MODELS

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


@dataclass
class ScorerConfig:
    input_dim: int
    hidden: list[int] = field(default_factory=lambda: [256])
    dropout: float = 0.1
    activation: Literal["relu", "gelu", "tanh"] = "gelu"

    def __post_init__(self):
        if self.input_dim < 1:
            raise ValueError(f"input_dim must be >= 1, got {self.input_dim}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {self.hidden}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}")


@MODELS.register("mlp", group="rank", config=ScorerConfig, fixed=("input_dim",))
class MLPScorer(nn.Module):
    """``[..., input_dim] -> [...]``: one real score per item (no hidden layer = linear)."""

    def __init__(self, cfg: ScorerConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        width = cfg.input_dim
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), _ACTIVATIONS[cfg.activation](), nn.Dropout(cfg.dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


@dataclass
class LinearConfig:
    input_dim: int
    dropout: float = 0.0  # on the inputs, a regulariser beside weight decay

    def __post_init__(self):
        if self.input_dim < 1:
            raise ValueError(f"input_dim must be >= 1, got {self.input_dim}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@MODELS.register("linear", group="rank", config=LinearConfig, fixed=("input_dim",))
class LinearScorer(nn.Module):
    """``[..., input_dim] -> [...]``: ``w . x + b``, the scorer small pools need (its weight
    decay plays ridge's alpha)."""

    def __init__(self, cfg: LinearConfig):
        super().__init__()
        self.cfg = cfg
        self.dropout = nn.Dropout(cfg.dropout)
        self.linear = nn.Linear(cfg.input_dim, 1)
        # start from zero: ranking needs only the weights' direction, and a random start is a
        # random direction that a few hundred small steps on a small pool barely turn
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(x)).squeeze(-1)

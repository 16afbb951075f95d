"""The PULSE thought space: a behaviour tower and a rationale tower aligned by InfoNCE.

The behaviour text of a user is ``"[CONTEXT] History: <titles> [CHOSEN_ITEM] <title>"``; the
rationale text is the rationale written for that choice. Each tower is a sentence-transformers
backbone followed by its own projection head into one ``dim``-dimensional space; towers match
when the cosine of their outputs is high. The backbone is frozen by default (its embeddings are
computed once and cached, so training runs on a CPU in seconds); with ``finetune_backbone`` it
is trained too (one backbone shared by both towers, separate heads).

Used to score (Tree-of-Thought refinement), select and retrieve rationales, and as the target
space of PULSE's why loss (``pulse.thought_space``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rankpref.registry import MODELS


@dataclass
class ThoughtSpaceConfig:
    input_dim: int = 384            # backbone embedding size
    dim: int = 128                  # thought-space size
    hidden: int = 512               # width of each projection head
    dropout: float = 0.1
    temperature: float = 0.05       # InfoNCE temperature (the authors' code used 1.0)
    negatives: int = 10             # sampled negatives (other users' rationales) per example
    finetune_backbone: bool = False
    backbone: str | None = None     # sentence-transformers model; None = bundled MiniLM


class _Head(nn.Module):
    """``skip(x) + mlp(x)``: a linear map plus a residual MLP whose last layer starts at zero."""

    def __init__(self, cfg: ThoughtSpaceConfig):
        super().__init__()
        self.skip = nn.Linear(cfg.input_dim, cfg.dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(cfg.input_dim, cfg.hidden), nn.GELU(),
                                 nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, cfg.dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.mlp(x)


@MODELS.register("thought_space", group="thought_space", config=ThoughtSpaceConfig,
                 fixed=("input_dim",))
class ThoughtSpace(nn.Module):
    """Two projection heads over backbone embeddings; outputs are unit vectors.

    Both heads start from the same random orthogonal projection of the backbone space (and a
    zero residual), so an untrained thought space keeps the backbone's cosine geometry and
    training only has to improve on it."""

    def __init__(self, cfg: ThoughtSpaceConfig):
        super().__init__()
        self.cfg = cfg
        self.behaviour_head = _Head(cfg)
        self.rationale_head = _Head(cfg)
        projection = torch.empty(cfg.dim, cfg.input_dim)
        nn.init.orthogonal_(projection)
        with torch.no_grad():
            self.behaviour_head.skip.weight.copy_(projection)
            self.rationale_head.skip.weight.copy_(projection)

    def behaviour(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.behaviour_head(embeddings), dim=-1)

    def rationale(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.rationale_head(embeddings), dim=-1)

    def score(self, behaviour_emb: torch.Tensor, rationale_emb: torch.Tensor) -> torch.Tensor:
        """Cosine of matching rows: [n]."""
        return (self.behaviour(behaviour_emb) * self.rationale(rationale_emb)).sum(-1)

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

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rankpref.errors import RankprefError


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


WEIGHTS = "thought_space.safetensors"
CONFIG = "thought_space.json"
BACKBONE = "backbone"


def save_thought_space(space: ThoughtSpace, folder: str | Path, metrics: dict,
                       backbone=None) -> Path:
    """Folder: heads as safetensors, config + metrics as JSON, a fine-tuned backbone as a
    sentence-transformers folder (safetensors). Written atomically."""
    from safetensors.torch import save_file

    from rankpref.io import atomic_dir

    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in space.state_dict().items()},
                  str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps({"config": asdict(space.cfg), "metrics": metrics},
                                             indent=2), encoding="utf-8")
        if backbone is not None:
            backbone.save(str(tmp / BACKBONE), safe_serialization=True)
    return folder


def load_thought_space(folder: str | Path) -> ThoughtSpace:
    """Load heads (and note a fine-tuned backbone's folder in ``cfg.backbone``)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / WEIGHTS).exists() or not (folder / CONFIG).exists():
        raise RankprefError(f"{folder}: not a thought space (needs {WEIGHTS} and {CONFIG}); "
                            "train one with `rankpref rationales thought-space`")
    try:
        meta = json.loads((folder / CONFIG).read_text("utf-8"))
        cfg = ThoughtSpaceConfig(**meta["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RankprefError(f"{folder / CONFIG}: corrupt thought-space config ({exc})") from None
    if (folder / BACKBONE).exists():
        cfg.backbone = str(folder / BACKBONE)
    space = ThoughtSpace(cfg)
    try:
        space.load_state_dict(load_file(str(folder / WEIGHTS)))
    except RuntimeError as exc:
        raise RankprefError(f"{folder / WEIGHTS}: weights do not match the config ({exc})") from None
    space.eval()
    return space

"""PULSE recommender: a SASRec encoder over items that are an ID *and* a text, trained to
predict the next item (what) and to align its user state with the rationale of that choice
(why).

Item ``j`` is represented by ``known_j * E_j + P(t_j)``: ``E`` an ID embedding, ``t_j`` the
frozen sentence embedding of the item's text (title, brand, categories), ``P`` a learned
projection, ``known_j`` 0 for items held out of training (cold-start items, represented by their
text alone). The same table embeds the inputs and scores the outputs (tied, as SASRec). During
training, each item's ID part is hidden with probability ``id_dropout`` so the model also
learns to score items from text alone.

The "why" head maps the user state that predicts a user's chosen item to the space of that
choice's rationale embedding; :func:`rankpref.losses.contrastive.info_nce` aligns them. At
inference only the history is needed; the why head then gives a "reason vector" for a user,
used to retrieve the training rationales nearest to it (explanations).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rankpref.models.sasrec import SASRec, SASRecConfig
from rankpref.registry import MODELS


@dataclass
class PulseConfig(SASRecConfig):
    text_dim: int = 384        # dimension of the frozen item/rationale text embeddings
    why_dim: int = 384         # dimension of the rationale vectors the why head aligns with
    use_ids: bool = True       # ID embeddings (off: a text-only item table)
    use_text: bool = True      # text embeddings (off: SASRec with a why head)
    id_dropout: float = 0.1    # chance per item and step that its ID part is hidden in training

    def __post_init__(self):
        super().__post_init__()
        if not (self.use_ids or self.use_text):
            raise ValueError("PULSE needs ID embeddings, text embeddings or both (use_ids, "
                             "use_text)")
        if not 0 <= self.id_dropout < 1:
            raise ValueError(f"id_dropout must be in [0, 1), got {self.id_dropout}")


@MODELS.register("pulse", group="next_item", config=PulseConfig,
                 fixed=("num_items", "max_len", "text_dim", "why_dim"))
class Pulse(SASRec):
    def __init__(self, cfg: PulseConfig):
        super().__init__(cfg)
        n = cfg.num_items + 1
        # frozen inputs, saved with the weights so an artifact is self-contained
        self.register_buffer("item_text", torch.zeros(n, cfg.text_dim))
        known = torch.ones(n)
        known[0] = 0.0
        self.register_buffer("id_known", known)
        self.text_proj = nn.Linear(cfg.text_dim, cfg.hidden)
        self.why_head = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(),
                                      nn.Linear(cfg.hidden, cfg.why_dim))
        for module in (self.text_proj, *self.why_head):
            if isinstance(module, nn.Linear):
                self._init(module)

    def set_item_text(self, vectors: torch.Tensor) -> None:
        """[num_items + 1, text_dim] frozen item text embeddings (row 0 = padding, ignored)."""
        if tuple(vectors.shape) != tuple(self.item_text.shape):
            raise ValueError(f"item text vectors have shape {tuple(vectors.shape)}, expected "
                             f"{tuple(self.item_text.shape)}")
        with torch.no_grad():
            self.item_text.copy_(vectors)
            self.item_text[0].zero_()

    def set_unknown_items(self, items: torch.Tensor) -> None:
        """Mark items as never seen in training: their ID part is dropped (text only)."""
        with torch.no_grad():
            self.id_known[items] = 0.0

    def item_weights(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """ID part + projected text of every item (row 0 = padding = zeros); with ``rows``,
        only those items', so a step with sampled negatives projects the texts it needs
        rather than the whole catalogue's."""
        cfg = self.cfg
        if rows is None:
            rows = torch.arange(cfg.num_items + 1, device=self.item_emb.weight.device)
            ids, texts = self.item_emb.weight, self.item_text
        else:
            ids, texts = self.item_emb.weight[rows], self.item_text[rows]
        table = torch.zeros_like(ids)
        if cfg.use_ids:
            keep = self.id_known[rows]
            if self.training and cfg.id_dropout > 0:
                keep = keep * (torch.rand_like(keep) >= cfg.id_dropout)
            table = table + ids * keep.unsqueeze(1)
        if cfg.use_text:
            table = table + self.text_proj(texts) * (rows > 0).unsqueeze(1)
        return table

    def why(self, states: torch.Tensor) -> torch.Tensor:
        """User states [..., hidden] -> unit reason vectors [..., why_dim]."""
        return F.normalize(self.why_head(states), dim=-1)

    def text_query(self, text_vectors: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings of free-text queries -> vectors in the item space."""
        return self.text_proj(text_vectors)

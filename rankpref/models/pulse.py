"""PULSE recommender: a SASRec encoder over items that are an ID *and* a text, trained to
predict the next item (what) and to align its user state with the rationale of that choice
(why).

Item ``j`` is represented by ``known_j * E_j + P(t_j)``: ``E`` an ID embedding, ``t_j`` the
frozen sentence embedding of the item's text (title, brand, categories), ``P`` a learned
projection, ``known_j`` 0 for items held out of training (cold-start items, represented by their
text alone). The same table embeds the inputs and scores the outputs (tied, as SASRec). During
training, each item's ID part is hidden with probability ``id_dropout`` so the model also
learns to score items from text alone.

``item_repr="capped_delta"`` is the recipe of "Let It Go? Not Quite" (Pembek et al., RecSys
2025): item ``j`` is a *frozen* content vector ``c_j`` (its text embedding, standardised and
reduced by PCA to ``hidden`` dimensions) plus a trainable delta whose norm is capped at
``delta_cap``, so no item drifts far from what its text says and a cold item (delta zero) is
where trained items of similar text are. ``id_init="text_pca"`` starts the ID embeddings of
the default representation from the same PCA vectors instead of noise.

The "why" head maps the user state that predicts a user's chosen item to the space of that
choice's rationale embedding; :func:`rankpref.losses.contrastive.info_nce` aligns them. At
inference only the history is needed; the why head then gives a "reason vector" for a user,
used to retrieve the training rationales nearest to it (explanations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    item_repr: Literal["sum", "capped_delta"] = "sum"  # ID + projected text, or frozen text
                                                       # PCA + capped trainable delta
    delta_cap: float = 0.5     # capped_delta: largest norm of an item's delta
    id_init: Literal["normal", "text_pca"] = "normal"  # sum: ID embeddings from noise or PCA

    def __post_init__(self):
        super().__post_init__()
        if not (self.use_ids or self.use_text):
            raise ValueError("PULSE needs ID embeddings, text embeddings or both (use_ids, "
                             "use_text)")
        if not 0 <= self.id_dropout < 1:
            raise ValueError(f"id_dropout must be in [0, 1), got {self.id_dropout}")
        if self.item_repr not in ("sum", "capped_delta"):
            raise ValueError(f"item_repr must be 'sum' or 'capped_delta', got {self.item_repr!r}")
        if self.id_init not in ("normal", "text_pca"):
            raise ValueError(f"id_init must be 'normal' or 'text_pca', got {self.id_init!r}")
        if self.item_repr == "capped_delta" and not self.use_text:
            raise ValueError("item_repr='capped_delta' is built on the item texts "
                             "(use_text=true)")
        if self.delta_cap <= 0:
            raise ValueError(f"delta_cap must be > 0, got {self.delta_cap}")


def text_pca(vectors: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The standardise-then-PCA map of rows with text (all-zero rows have none): ``(center,
    scale, basis)`` such that ``((t - center) / scale) @ basis`` has ``dim`` columns and rows
    of mean norm 1 over the items."""
    rows = vectors[vectors.abs().sum(1) > 0].double()
    if len(rows) < 2:
        raise ValueError("text PCA needs the texts of at least two items")
    center = rows.mean(0)
    scale = rows.std(0).clamp_min(1e-8)
    z = (rows - center) / scale
    _, _, vh = torch.linalg.svd(z, full_matrices=False)
    basis = vh[:dim].T
    if basis.shape[1] < dim:  # fewer items than dimensions: the rest stay zero
        basis = torch.cat([basis, basis.new_zeros(basis.shape[0], dim - basis.shape[1])], 1)
    basis = basis / (z @ basis).norm(dim=1).mean().clamp_min(1e-8)
    return center.float(), scale.float(), basis.float()


@MODELS.register("pulse", group="next_item", config=PulseConfig,
                 fixed=("num_items", "max_len", "text_dim", "why_dim"))
class Pulse(SASRec):
    def __init__(self, cfg: PulseConfig):
        if cfg.item_repr == "capped_delta" and cfg.hidden > cfg.text_dim:
            # checked here, not in the config: the text size is known once the encoder is
            raise ValueError(f"item_repr='capped_delta' reduces {cfg.text_dim}-d texts by PCA: "
                             f"hidden ({cfg.hidden}) must be <= text_dim")
        super().__init__(cfg)
        n = cfg.num_items + 1
        # frozen inputs, saved with the weights so an artifact is self-contained
        self.register_buffer("item_text", torch.zeros(n, cfg.text_dim))
        known = torch.ones(n)
        known[0] = 0.0
        self.register_buffer("id_known", known)
        self.text_proj = nn.Linear(cfg.text_dim, cfg.hidden)
        # capped_delta's frozen text map (set with the texts; saved with the weights)
        self.register_buffer("text_center", torch.zeros(cfg.text_dim))
        self.register_buffer("text_scale", torch.ones(cfg.text_dim))
        self.register_buffer("text_basis", torch.zeros(cfg.text_dim, cfg.hidden))
        self.why_head = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(),
                                      nn.Linear(cfg.hidden, cfg.why_dim))
        for module in (self.text_proj, *self.why_head):
            if isinstance(module, nn.Linear):
                self._init(module)
        if cfg.item_repr == "capped_delta":
            with torch.no_grad():  # every item starts at its content vector
                self.item_emb.weight.zero_()

    def set_item_text(self, vectors: torch.Tensor) -> None:
        """[num_items + 1, text_dim] frozen item text embeddings (row 0 = padding, ignored)."""
        if tuple(vectors.shape) != tuple(self.item_text.shape):
            raise ValueError(f"item text vectors have shape {tuple(vectors.shape)}, expected "
                             f"{tuple(self.item_text.shape)}")
        with torch.no_grad():
            self.item_text.copy_(vectors)
            self.item_text[0].zero_()
            if self.cfg.item_repr == "capped_delta" or self.cfg.id_init == "text_pca":
                center, scale, basis = text_pca(self.item_text, self.cfg.hidden)
                self.text_center.copy_(center)
                self.text_scale.copy_(scale)
                self.text_basis.copy_(basis)
            if self.cfg.item_repr == "sum" and self.cfg.id_init == "text_pca":
                pca = self.content(self.item_text)
                # the scale of the normal initialisation (std 0.02), the directions of the text
                self.item_emb.weight.copy_(pca * (0.02 / pca[1:].std().clamp_min(1e-8)))

    def content(self, texts: torch.Tensor) -> torch.Tensor:
        """capped_delta's frozen content vectors of text embeddings [..., text_dim] ->
        [..., hidden]; zero for an all-zero (missing) text."""
        has_text = (texts.abs().sum(-1, keepdim=True) > 0).to(texts.dtype)
        return ((texts - self.text_center) / self.text_scale) @ self.text_basis * has_text

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
        if cfg.item_repr == "capped_delta":
            table = self.content(texts)
            if cfg.use_ids:
                norm = ids.norm(dim=1, keepdim=True)
                delta = ids * (cfg.delta_cap / norm.clamp_min(1e-12)).clamp(max=1.0)
                keep = self.id_known[rows]
                if self.training and cfg.id_dropout > 0:
                    keep = keep * (torch.rand_like(keep) >= cfg.id_dropout)
                table = table + delta * keep.unsqueeze(1)
            return table * (rows > 0).unsqueeze(1)
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
        if self.cfg.item_repr == "capped_delta":
            return self.content(text_vectors)
        return self.text_proj(text_vectors)

"""SESA: texts embedded into explicit concept dimensions (Bogdanova & Yazdani, 2017).

``e(x) = relu(W h(x) + b)`` has one non-negative dimension per concept of a vocabulary;
``h`` is a text encoder: a bidirectional GRU over word embeddings (as in the paper) or an MLP
over frozen sentence-transformer embeddings. Two texts are compared by
``score(q, d) = sum_c w_c e_c(q) e_c(d)`` (``w_c = 1`` unless per-concept weights are learned),
so the per-concept products explain the score and sum to it exactly.

``head="latent"`` turns the same network into a dense dual encoder (a linear output of
``latent_dim`` unconstrained dimensions, no relu, no concepts): the baseline with the same
encoder and data.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rankpref.errors import DataError
from rankpref.registry import MODELS

PAD, UNK = 0, 1
_TOKEN = re.compile(r"[a-z0-9]+(?:[+#.][a-z0-9+#]+)*|[+#]+")


@dataclass
class SESAConfig:
    encoder: Literal["gru", "features"] = "features"
    head: Literal["concepts", "latent"] = "concepts"
    num_concepts: int = 0            # concepts head: one output per concept
    latent_dim: int = 256            # latent head
    input_dim: int = 384             # features encoder: width of the frozen embeddings
    vocab_size: int = 0              # gru encoder: word vocabulary (incl. pad, unk)
    embed_dim: int = 128             # gru encoder: word embedding width
    hidden: int = 512                # encoder output width (GRU: 2 x hidden/2 directions)
    dropout: float = 0.1
    top_k: int | None = None         # keep the k largest activations per text (None = all)
    concept_weights: bool = False    # learn w_c >= 0 (softplus); else w_c = 1

    def __post_init__(self):
        if self.head == "concepts" and self.num_concepts < 1:
            raise ValueError("a concepts head needs num_concepts >= 1")
        if self.encoder == "gru" and self.vocab_size < 3:
            raise ValueError("a GRU encoder needs a word vocabulary (vocab_size >= 3)")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("top_k must be >= 1 or None")


def tokenize(text: str) -> list[str]:
    """Lower-cased words; keeps tech names such as ``c++``, ``c#``, ``node.js`` whole."""
    return _TOKEN.findall(text.lower())


def build_word_vocab(texts: Sequence[str], min_count: int = 2, max_size: int = 50000) -> list[str]:
    """Words of the training texts seen at least ``min_count`` times; index 0 pad, 1 unknown."""
    counts = Counter(w for t in texts for w in tokenize(t))
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return ["<pad>", "<unk>"] + words[: max_size - 2]


def encode_words(texts: Sequence[str], words: Sequence[str], max_tokens: int,
                 on_long: Literal["truncate", "error"] = "truncate",
                 where: str = "texts") -> tuple[torch.Tensor, int]:
    """[n, max_len] word ids (0-padded) and how many texts were cut at ``max_tokens``.

    With ``on_long="error"`` a text longer than ``max_tokens`` words is refused, naming it.
    Empty texts get one unknown token so that every row has a length >= 1.
    """
    index = {w: i for i, w in enumerate(words)}
    rows, cut = [], 0
    for n, text in enumerate(texts):
        ids = [index.get(w, UNK) for w in tokenize(text)] or [UNK]
        if len(ids) > max_tokens:
            if on_long == "error":
                raise DataError(f"{len(ids)} words, the encoder reads at most {max_tokens} "
                                f"(text {text[:60]!r})", path=where, line=n + 1, field="text")
            ids, cut = ids[:max_tokens], cut + 1
        rows.append(torch.tensor(ids, dtype=torch.long))
    if not rows:
        return torch.zeros((0, 1), dtype=torch.long), 0
    return nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=PAD), cut


class GRUEncoder(nn.Module):
    """Word embeddings -> bidirectional GRU -> [final forward ; final backward] states."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.gru = nn.GRU(embed_dim, hidden // 2, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.out_dim = 2 * (hidden // 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = (ids != PAD).sum(dim=1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.drop(self.embed(ids)), lengths,
                                                   batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)  # [2, batch, hidden/2]
        return self.drop(torch.cat([last[0], last[1]], dim=-1))


class FeatureEncoder(nn.Module):
    """A trainable MLP over frozen sentence embeddings (the backbone is not fine-tuned)."""

    def __init__(self, input_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.proj = nn.Linear(input_dim, hidden)
        self.drop = nn.Dropout(dropout)
        self.out_dim = hidden + input_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.drop(F.gelu(self.proj(self.drop(x)))), x], dim=-1)


@MODELS.register("sesa", group="sesa", config=SESAConfig,
                 fixed=("num_concepts", "input_dim", "vocab_size"))
class SESA(nn.Module):
    def __init__(self, cfg: SESAConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.encoder == "gru":
            self.encoder = GRUEncoder(cfg.vocab_size, cfg.embed_dim, cfg.hidden, cfg.dropout)
        elif cfg.encoder == "features":
            self.encoder = FeatureEncoder(cfg.input_dim, cfg.hidden, cfg.dropout)
        else:
            raise ValueError(f"unknown encoder {cfg.encoder!r}")
        out = cfg.num_concepts if cfg.head == "concepts" else cfg.latent_dim
        self.out = nn.Linear(self.encoder.out_dim, out)
        self.raw_weight = nn.Parameter(torch.zeros(out)) if cfg.concept_weights else None

    @property
    def explicit(self) -> bool:
        return self.cfg.head == "concepts"

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activation ``W h(x) + b`` [batch, dims]; for concepts also the BCE logits."""
        return self.out(self.encoder(x))

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Explicit activations (relu, optional top-k) or, for the latent head, the logits."""
        if not self.explicit:
            return logits
        e = F.relu(logits)
        k = self.cfg.top_k
        if k is not None and k < e.shape[-1]:
            kth = e.topk(k, dim=-1).values[..., -1:]
            e = e * (e >= kth)  # ties at the k-th value may keep a few more
        return e

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.logits(x))

    def weights(self) -> torch.Tensor | None:
        """Per-dimension weights ``w_c > 0``, or None when every weight is 1."""
        return None if self.raw_weight is None else F.softplus(self.raw_weight) / 0.6931471805599453

    def score(self, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """[n_q, n_d] scores between embedded queries and items."""
        w = self.weights()
        return (q if w is None else q * w) @ d.T


def contributions(q: torch.Tensor, d: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Per-dimension products ``w_c q_c d_c`` [dims] of one query and one item; they sum to the score."""
    prod = q * d
    return prod if weights is None else prod * weights


def top_share(q: torch.Tensor, d: torch.Tensor, weights: torch.Tensor | None, k: int = 5) -> torch.Tensor:
    """Share of each score carried by its ``k`` largest contributions, for rows of pairs.

    ``q``, ``d``: [n, dims] (pair i is ``q[i]``, ``d[i]``). Pairs with a score <= 0 are NaN
    (no share to speak of); with non-negative activations every contribution is >= 0.
    """
    prod = q * d if weights is None else q * d * weights
    total = prod.sum(dim=-1)
    top = prod.topk(min(k, prod.shape[-1]), dim=-1).values.sum(dim=-1)
    return torch.where(total > 0, top / total.clamp_min(1e-12), torch.full_like(total, float("nan")))

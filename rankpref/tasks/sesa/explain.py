"""Using a SESA artifact: encode texts, search the catalogue, explain a score by its concepts,
put the catalogue into a FAISS index."""

from __future__ import annotations

import numpy as np
import torch

from rankpref.errors import DataError, RankprefError
from rankpref.models.sesa import contributions, encode_words
from rankpref.tasks.sesa.artifact import SESAArtifact
from rankpref.tasks.sesa.data import text_encoder
from rankpref.tasks.sesa.evaluate import embed


def check_query(query: str) -> None:
    if not query.strip():
        raise DataError("the query is empty", path="query", field="text")


def encode_texts(art: SESAArtifact, texts: list[str], *, queries: bool, encoder=None) -> torch.Tensor:
    """Encoder inputs for raw texts; a query longer than the encoder's limit is an error."""
    m = art.cfg.model
    if m.encoder == "gru":
        ids, _ = encode_words(texts, art.words, m.max_query_tokens if queries else m.max_doc_tokens,
                              on_long="error" if queries else "truncate",
                              where="query" if queries else "items")
        return ids
    encoder = encoder or text_encoder(art.cfg)
    if queries:
        tok = encoder.model.tokenizer
        limit = int(encoder.model.max_seq_length)
        for n, text in enumerate(texts):
            length = len(tok(text, add_special_tokens=True)["input_ids"])
            if length > limit:
                raise DataError(f"{length} tokens, the text encoder reads at most {limit} "
                                f"(query {text[:60]!r})", path="query", line=n + 1, field="text")
    return torch.from_numpy(np.asarray(encoder.encode(texts)))


def item_vectors(art: SESAArtifact, encoder=None) -> torch.Tensor:
    """[n_items, dims] embeddings of the artifact's catalogue (concept activations for SESA)."""
    return embed(art.model, encode_texts(art, art.item_texts, queries=False, encoder=encoder))


@torch.no_grad()
def explain(art: SESAArtifact, query: str, item_id: str, top: int = 10, encoder=None) -> dict:
    """The score of ``item_id`` for ``query`` and the concepts behind it.

    Contributions ``w_c e_c(q) e_c(d)`` sum exactly (to float tolerance) to ``score``.
    """
    if not art.model.explicit:
        raise RankprefError(f"{art.folder}: a latent dual encoder has no concepts to explain")
    check_query(query)
    i = art.item_index(item_id)
    q = embed(art.model, encode_texts(art, [query], queries=True, encoder=encoder))[0]
    d = embed(art.model, encode_texts(art, [art.item_texts[i]], queries=False, encoder=encoder))[0]
    w = art.model.weights()
    contrib = contributions(q, d, w)
    score = float(art.model.score(q[None], d[None])[0, 0])
    order = torch.argsort(contrib, descending=True)
    total = float(contrib.sum())
    rows = []
    for c in order[:top].tolist():
        if contrib[c] <= 0:
            break
        rows.append({"concept": art.concepts.names[c], "contribution": float(contrib[c]),
                     "share": float(contrib[c]) / total if total > 0 else 0.0,
                     "query": float(q[c]), "item": float(d[c]),
                     "weight": 1.0 if w is None else float(w[c])})
    return {"query": query, "item": item_id, "title": art.item_titles[i], "score": score,
            "sum_of_contributions": total, "active_query_concepts": int((q > 0).sum()),
            "active_shared_concepts": int((contrib > 0).sum()), "top": rows}


def query_vectors(art: SESAArtifact, texts: list[str], encoder=None) -> torch.Tensor:
    """[n, dims] query embeddings, weighted by the per-concept weights when the model has them,
    so that an inner-product index over :func:`item_vectors` returns the model's own scores."""
    q = embed(art.model, encode_texts(art, texts, queries=True, encoder=encoder))
    w = art.model.weights()
    return q if w is None else q * w.detach()


def index_inputs(art: SESAArtifact, encoder=None) -> tuple[list[str], np.ndarray, dict]:
    """What an inner-product item index needs: item ids, their vectors (concept activations
    for SESA) and metadata saying how queries must be encoded (:func:`query_vectors`)."""
    vectors = item_vectors(art, encoder).numpy().astype(np.float32)
    meta = {"model": art.metrics.get("model", "sesa"), "artifact": str(art.folder),
            "space": "concepts" if art.model.explicit else "latent",
            "query_side": "rankpref.tasks.sesa.query_vectors (weights applied to queries)"}
    if art.model.explicit:
        meta["concepts"] = len(art.concepts)
    return list(art.item_ids), vectors, meta


@torch.no_grad()
def search(art: SESAArtifact, query: str, k: int = 10, encoder=None) -> list[dict]:
    """The top ``k`` items for a query text, with scores."""
    check_query(query)
    if k < 1:
        raise RankprefError(f"k must be >= 1, got {k}")
    q = embed(art.model, encode_texts(art, [query], queries=True, encoder=encoder))
    scores = art.model.score(q, item_vectors(art, encoder))[0]
    top = scores.topk(min(k, len(scores)))
    return [{"item": art.item_ids[i], "title": art.item_titles[i], "score": float(s)}
            for s, i in zip(top.values.tolist(), top.indices.tolist())]

"""What a server holds: one loaded model, its item index, and which features it has.

A served model is any object with ``item_ids``, ``item_indices(ids)`` and ``item_vectors()``
(score = query . item). Optional hooks, each probed once at start-up (a missing hook, or one
that refuses with a RankprefError, makes its feature answer 501 with the reason):

* ``user_vectors(histories)``: recommendations after a history (next-item models);
* ``explain(history, item_idx, k) -> list[dict]``: why an item follows a history (PULSE);
* ``encode_queries(texts) -> ndarray``: free-text search (PULSE with text, SESA);
* ``explain_query(query, item_id, k) -> list[dict]``: why an item answers a query (SESA);
* ``user_history(user_id) -> list[str]``: a known user's item ids (next-item models whose
  data can be prepared again).

Next-item artifacts are served as :class:`~rankpref.tasks.next_item.Recommender` s, SESA
artifacts through :class:`SesaServed`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rankpref.artifact import read_manifest
from rankpref.errors import RankprefError, UnknownIdError
from rankpref.serving.index import ItemIndex, model_name, vectors_checksum


@dataclass
class Service:
    """A loaded model and its item index; requests hold ``lock`` while they use them."""

    rec: object
    index: ItemIndex
    model_name: str
    item_info: dict[str, dict]
    item_idx: dict[str, int] = field(default_factory=dict)  # id -> the model's item index
    missing: dict[str, str] = field(default_factory=dict)  # feature -> why it is unavailable
    lock: threading.Lock = field(default_factory=threading.Lock)

    FEATURES = ("recommend", "explain", "text_search", "query_explain", "users")

    def can(self, feature: str) -> bool:
        return feature not in self.missing

    def info(self, item_id: str) -> dict:
        return self.item_info.get(item_id, {})

    def indices(self, item_ids: list[str]) -> list[int]:
        """The model's item indices (looked up in a map built once at start-up)."""
        try:
            return [self.item_idx[i] for i in item_ids]
        except KeyError:
            unknown = list(dict.fromkeys(i for i in item_ids if i not in self.item_idx))
            shown = ", ".join(repr(u) for u in unknown[:10])
            more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
            raise UnknownIdError(f"unknown item id(s): {shown}{more}; the model knows "
                                 f"{len(self.item_idx):,} items") from None


def _item_info(rec) -> dict[str, dict]:
    items = getattr(rec, "items", None)
    if items is None or "item_id" not in getattr(items, "columns", []):
        return {}
    cols = [c for c in ("title", "brand", "categories") if c in items.columns]
    out = {}
    for row in items.select(["item_id", *cols]).iter_rows(named=True):
        out[str(row.pop("item_id"))] = row
    return out


def make_service(rec, index: ItemIndex | None = None) -> Service:
    """Pair a served model with an index (an exact one from its item vectors when None)."""
    if index is None:
        index = ItemIndex.from_recommender(rec)
    else:
        if index.ids != list(rec.item_ids):
            raise RankprefError(f"the index holds {len(index):,} items that are not the model's "
                                f"{len(rec.item_ids):,} items in the same order; rebuild it "
                                "with `rankpref index build --artifact ...`")
        vectors = rec.item_vectors()
        if vectors.shape[1] != index.dim:
            raise RankprefError(f"the index has dimension {index.dim}, the model {vectors.shape[1]}")
        want = index.metadata.get("source_checksum")
        if want is not None and want != vectors_checksum(vectors):
            raise RankprefError("the index was built from other item vectors than this model's "
                                "(source checksum differs); rebuild it from this artifact")
    name = getattr(rec, "served_name", None) or model_name(rec)
    ids = list(rec.item_ids)
    return Service(rec=rec, index=index, model_name=name, item_info=_item_info(rec),
                   item_idx=dict(zip(ids, rec.item_indices(ids))), missing=_probe_hooks(rec, name))


def _probe_hooks(rec, name: str) -> dict[str, str]:
    """Call each optional hook once: a missing hook, or one that refuses with a RankprefError
    (e.g. explain on a SASRec artifact), marks its feature unavailable, with the reason."""
    first_id = rec.item_ids[0]
    first = rec.item_indices([first_id])[0]
    probes = {  # feature: (hook, probe call, said when it is absent, said when it refuses)
        "recommend": ("user_vectors", lambda f: f([[first]]),
                      "ranks items for a text query; it has no histories to recommend from",
                      "cannot recommend after a history"),
        "explain": ("explain", lambda f: f([first], first, 1),
                    "cannot explain its recommendations (no explain hook)",
                    "cannot explain its recommendations"),
        "text_search": ("encode_queries", lambda f: f(["probe"]),
                        "has no text tower; free-text search needs a model with "
                        "encode_queries (e.g. PULSE, SESA)", "cannot encode free-text queries"),
        "query_explain": ("explain_query", lambda f: f("probe", first_id, 1),
                          "cannot explain why an item answers a query (SESA can)",
                          "cannot explain its search results"),
        "users": ("user_history", None, "has no user table to look users up in", ""),
    }
    missing = {}
    for feature, (hook, probe, absent, refused) in probes.items():
        fn = getattr(rec, hook, None)
        if not callable(fn):
            missing[feature] = f"model {name!r} {absent}"
            continue
        if probe is None:
            continue
        try:
            probe(fn)
        except UnknownIdError:
            raise
        except RankprefError as exc:
            missing[feature] = f"model {name!r} {refused}: {exc}"
    if "recommend" in missing:  # no user vectors: nothing to look a user's history up for
        missing.setdefault("users", missing["recommend"])
        missing.setdefault("explain", missing["recommend"])
    return missing


class ServedRecommender:
    """A next-item Recommender plus a known user's history, read from the artifact's data
    the first time it is asked for (``prepare`` is cached, but may take a while on big data)."""

    def __init__(self, rec):
        self._rec = rec
        self._dataset = None
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._rec, name)

    def user_history(self, user_id: str) -> list[str]:
        from rankpref.data.datasets import prepare
        from rankpref.tasks.next_item import user_history

        with self._lock:
            if self._dataset is None:
                self._dataset = prepare(self._rec.cfg.data, quiet=True)
        history = user_history(self._dataset, user_id)
        return [self._rec.vocab.items[i] for i in history]


class SesaServed:
    """A SESA artifact through the server's hooks: its catalogue as the items, concept
    activations as item vectors, weighted query activations as queries (so inner product is
    the model's score) and concept contributions as the reasons."""

    def __init__(self, art):
        import polars as pl

        from rankpref.tasks import sesa

        self.art = art
        self.served_name = art.metrics.get("model", "sesa")
        self._encoder = None if art.cfg.model.encoder == "gru" else sesa.text_encoder(art.cfg)
        self._ids = {item: i for i, item in enumerate(art.item_ids)}
        self._vectors = sesa.item_vectors(art, self._encoder).numpy().astype(np.float32)
        self.items = pl.DataFrame({"item_id": list(art.item_ids), "title": list(art.item_titles)})

    @property
    def item_ids(self) -> list[str]:
        return list(self.art.item_ids)

    def item_indices(self, item_ids: list[str]) -> list[int]:
        unknown = [i for i in item_ids if i not in self._ids]
        if unknown:
            raise UnknownIdError(f"unknown item id(s): {', '.join(map(repr, unknown[:10]))}")
        return [self._ids[i] for i in item_ids]

    def item_vectors(self) -> np.ndarray:
        return self._vectors.copy()

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        from rankpref.tasks import sesa

        return sesa.query_vectors(self.art, texts, self._encoder).numpy().astype(np.float32)

    def explain_query(self, query: str, item_id: str, k: int = 5) -> list[dict]:
        from rankpref.tasks import sesa

        return sesa.explain(self.art, query, item_id, top=k, encoder=self._encoder)["top"]


def served_model(artifact: str | Path, command: str = "rankpref serve"):
    """The served form of a next-item or SESA artifact; any other kind is refused by name."""
    folder, manifest = read_manifest(artifact)
    if manifest.kind == "sesa":
        from rankpref.tasks import sesa

        return SesaServed(sesa.load_artifact(folder, command))
    from rankpref.tasks.next_item import Recommender

    return ServedRecommender(Recommender.load(artifact, command=command))


def load_service(artifact: str | Path, index_dir: str | Path | None = None) -> Service:
    """Load a trained artifact (and a saved index folder, checked against the model)."""
    rec = served_model(artifact)
    index = ItemIndex.load(index_dir) if index_dir is not None else None
    return make_service(rec, index)

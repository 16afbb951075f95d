"""Item-index benchmark: build time, memory, QPS and recall@10 against exact search.

Two catalogues, both with inner-product scores (the recommenders' ``user . item``):

* **beauty**: the item vectors of a trained SASRec artifact (default ``runs/bench/beauty/model``)
  queried with real user vectors (Beauty users' histories minus their last item), each query
  excluding the user's own history, as the server does.
* **synthetic_1m**: 1,000,000 x 64 vectors from a seeded Gaussian mixture (4,096 centres),
  queried with fresh draws from the same mixture.

For each catalogue: exact ``Flat``, ``HNSW32`` (FAISS's default efConstruction, 40) at several
efSearch values,
``IVF<n>,Flat``, ``IVF<n>,PQ16`` and ``IVF<n>,PQ16,RFlat`` (PQ re-ranked with the exact vectors)
at several nprobe values, and torch matmul+topk as the
brute-force reference. Queries are split into a valid set (used to pick the smallest setting
with recall@10 >= 0.95) and a test set (everything reported). One torch thread and one FAISS
(OpenMP) thread throughout.

    python benchmarks/index.py                       # both parts -> benchmarks/results/index.json
    python benchmarks/index.py --skip-synthetic      # Beauty only
    python benchmarks/index.py --artifact runs/x/model --n-synthetic 100000
    python benchmarks/index.py --artifact runs/ml-100k/model --n-synthetic 20000 \
        --valid-queries 100 --test-queries 200 --single 20 --out /tmp/smoke/index.json  # smoke

Result files written before the rename of "dev" to "valid" hold ``recall@10_dev``,
``dev_queries`` and ``selected_on_dev`` where this script now writes ``recall@10_valid``,
``valid_queries`` and ``selected_on_valid``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rankpref.serving.index import ItemIndex  # noqa: E402
from rankpref.io import write_json  # noqa: E402

K = 10
TARGET_RECALL = 0.95


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def recall_at_k(got: list[list[str]], want: list[list[str]]) -> float:
    return float(np.mean([len(set(g) & set(w)) / max(1, len(w)) for g, w in zip(got, want)]))


def time_batched(fn, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls (seconds)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(index: ItemIndex, queries: dict, exact: dict, single: int) -> dict:
    """Recall on valid and test, batched and single-query QPS on test (best of 3 passes)."""
    out = {}
    for split in ("valid", "test"):
        q, excl = queries[split]
        got, _ = index.search(q, K, exclude=excl)
        out[f"recall@{K}_{split}"] = round(recall_at_k(got, exact[split]), 4)
    q, excl = queries["test"]
    seconds = time_batched(lambda: index.search(q, K, exclude=excl))
    out["qps_batched"] = round(len(q) / seconds, 1)
    raw = index._index  # the bare FAISS search, no exclusion or id mapping, for reference
    seconds = time_batched(lambda: raw.search(index._prepared(q, index.metric), K))
    out["faiss_qps_batched_no_exclude"] = round(len(q) / seconds, 1)
    n = min(single, len(q))

    def one_by_one():
        for i in range(n):
            index.search(q[i:i + 1], K, exclude=None if excl is None else excl[i:i + 1])

    out["qps_single"] = round(n / time_batched(one_by_one), 1)
    out["single_queries_timed"] = n
    return out


def run_family(ids, vectors, queries, exact, factory, params: list[str], single: int) -> list[dict]:
    """Build one index, then measure it at each search-time setting."""
    import faiss

    gc.collect()
    before = rss_mib()
    start = time.perf_counter()
    index = ItemIndex.build(ids, vectors, factory=factory)
    build = time.perf_counter() - start
    rss_delta = rss_mib() - before
    index_bytes = faiss.serialize_index(index._index).nbytes
    rows = []
    for p in params:
        if p:
            index.set_search_params(p)
        row = {"index": factory, "search_params": p, "build_seconds": round(build, 2),
               "index_mib": round(index_bytes / 2**20, 1),
               "vectors_mib": round(vectors.nbytes / 2**20, 1),
               "rss_delta_mib": round(rss_delta, 1)}
        hnsw = getattr(index._index, "hnsw", None)
        if hnsw is not None:
            row["ef_construction"] = int(hnsw.efConstruction)
        row.update(measure(index, queries, exact, single))
        print(f"  {factory:<14} {p:<12} build {build:7.1f}s  recall valid "
              f"{row[f'recall@{K}_valid']:.4f} test {row[f'recall@{K}_test']:.4f}  "
              f"qps batched {row['qps_batched']:>9.1f} single {row['qps_single']:>8.1f}", flush=True)
        rows.append(row)
    del index
    gc.collect()
    return rows


def torch_reference(ids, vectors, queries, exact, batch: int = 100) -> dict:
    """Brute force with torch: matmul + topk, queries in batches of ``batch``."""
    import torch

    base = torch.from_numpy(vectors)

    def search(q: np.ndarray):
        out = []
        for start in range(0, len(q), batch):
            scores = torch.from_numpy(q[start:start + batch]) @ base.T
            out.append(scores.topk(K, dim=1).indices)
        return torch.cat(out).numpy()

    row = {"index": "torch matmul+topk", "search_params": f"query batch {batch}",
           "build_seconds": 0.0, "index_mib": round(vectors.nbytes / 2**20, 1)}
    for split in ("valid", "test"):
        q, excl = queries[split]
        if excl is None:
            top = search(q)
            got = [[ids[i] for i in r] for r in top]
            row[f"recall@{K}_{split}"] = round(recall_at_k(got, exact[f"{split}_rows"]), 4)
    q, _ = queries["test"]
    row["qps_batched"] = round(len(q) / time_batched(lambda: search(q)), 1)
    n = min(200, len(q))

    def one_by_one():
        for i in range(n):
            (torch.from_numpy(q[i:i + 1]) @ base.T).topk(K, dim=1)

    row["qps_single"] = round(n / time_batched(one_by_one), 1)
    row["single_queries_timed"] = n
    row["note"] = "no exclusion of seen items (raw top-k)"
    print(f"  torch matmul+topk            qps batched {row['qps_batched']:>9.1f} "
          f"single {row['qps_single']:>8.1f}", flush=True)
    return row


def exact_answers(ids, vectors, queries) -> dict:
    flat = ItemIndex.build(ids, vectors)
    exact = {}
    for split in ("valid", "test"):
        q, excl = queries[split]
        exact[split], _ = flat.search(q, K, exclude=excl)
        if excl is None:
            exact[f"{split}_rows"] = exact[split]
        else:  # the plain top-k, for the torch reference (which does not exclude)
            rows, _ = flat.exact_search(q, K)
            exact[f"{split}_rows"] = [[ids[r] for r in row] for row in rows]
    return exact


def select(rows: list[dict]) -> list[dict]:
    """Per index family: the fastest (batched) setting whose valid recall@10 >= the target."""
    chosen = []
    for family in dict.fromkeys(r["index"] for r in rows):
        ok = [r for r in rows
              if r["index"] == family and r.get(f"recall@{K}_valid", 0) >= TARGET_RECALL]
        if ok:
            best = max(ok, key=lambda r: r["qps_batched"])
            chosen.append({"index": family, "search_params": best["search_params"],
                           f"recall@{K}_test": best[f"recall@{K}_test"],
                           "qps_batched": best["qps_batched"], "qps_single": best["qps_single"],
                           "build_seconds": best["build_seconds"]})
        else:
            chosen.append({"index": family, "search_params": None,
                           "note": f"no setting reached valid recall@{K} >= {TARGET_RECALL}"})
    return chosen


# ---------------------------------------------------------------------- Beauty


def beauty_queries(rec, n_valid: int, n_test: int, seed: int):
    """User vectors of sampled Beauty users: history = all but their last item."""
    import polars as pl

    from rankpref.data.datasets import prepare

    ds = prepare(rec.cfg.data, quiet=True)
    seqs = (ds.interactions.group_by("user_idx", maintain_order=True)
            .agg(pl.col("item_idx")).filter(pl.col("item_idx").list.len() >= 2))
    rng = np.random.default_rng(seed)
    pick = rng.choice(seqs.height, size=min(n_valid + n_test, seqs.height), replace=False)
    histories = [h[:-1] for h in seqs["item_idx"].gather(pick).to_list()]
    vectors = np.concatenate([rec.user_vectors(histories[i:i + 512])
                              for i in range(0, len(histories), 512)])
    seen = [[rec.vocab.items[i] for i in h] for h in histories]
    return ({"valid": (vectors[:n_valid], seen[:n_valid]),
             "test": (vectors[n_valid:], seen[n_valid:])},
            float(np.mean([len(h) for h in histories])))


def run_beauty(artifact: Path, args) -> dict:
    from rankpref.tasks.next_item import Recommender

    if not (artifact / "model.safetensors").exists():
        msg = (f"{artifact}: no trained artifact; produce it with `rankpref fit --config "
               "benchmarks/configs/sasrec_beauty.yaml --out runs/bench/beauty` and rerun")
        print(f"skipping Beauty: {msg}")
        return {"dataset": "beauty", "skipped": msg}
    rec = Recommender.load(artifact)
    ids, vectors = rec.item_ids, rec.item_vectors()
    queries, mean_history = beauty_queries(rec, args.valid_queries, args.test_queries, args.seed)
    print(f"{rec.metrics.get('dataset') or 'beauty'}: {len(ids):,} items x {vectors.shape[1]}, "
          f"{len(queries['test'][0])} test queries", flush=True)
    exact = exact_answers(ids, vectors, queries)
    nlist = 128
    rows = []
    rows += run_family(ids, vectors, queries, exact, "Flat", [""], args.single)
    rows += run_family(ids, vectors, queries, exact, "HNSW32",
                       [f"efSearch={e}" for e in (16, 32, 64, 128)], args.single)
    rows += run_family(ids, vectors, queries, exact, f"IVF{nlist},Flat",
                       [f"nprobe={p}" for p in (4, 8, 16, 32)], args.single)
    rows += run_family(ids, vectors, queries, exact, f"IVF{nlist},PQ16",
                       [f"nprobe={p}" for p in (8, 16, 32)], args.single)
    rows += run_family(ids, vectors, queries, exact, f"IVF{nlist},PQ16,RFlat",
                       [f"nprobe={p},k_factor_rf=4" for p in (16, 32)], args.single)
    queries_raw = {s: (q, None) for s, (q, _) in queries.items()}
    rows.append(torch_reference(ids, vectors, queries_raw, exact))
    return {"dataset": rec.metrics.get("dataset") or "beauty", "model": rec.cfg.model.name,
            "loss": rec.cfg.loss.name,
            "artifact": str(artifact), "items": len(ids), "dimension": int(vectors.shape[1]),
            "metric": "ip", "queries": "user vectors of sampled Beauty users (history = all but "
            "the last item), each excluding its own history",
            "mean_history_length": round(mean_history, 2),
            "valid_queries": len(queries["valid"][0]), "test_queries": len(queries["test"][0]),
            "results": rows, "selected_on_valid": select(rows)}


# ---------------------------------------------------------------------- synthetic


def mixture(n: int, dim: int, centres: np.ndarray, rng) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        out[start:start + m] = centres[rng.integers(0, len(centres), m)] + \
            0.5 * rng.standard_normal((m, dim), dtype=np.float32)
    return out


def run_synthetic(args) -> dict:
    dim, n = 64, args.n_synthetic
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((4096, dim), dtype=np.float32)
    vectors = mixture(n, dim, centres, rng)
    ids = [str(i) for i in range(n)]
    q = mixture(args.valid_queries + args.test_queries, dim, centres, rng)
    queries = {"valid": (q[:args.valid_queries], None), "test": (q[args.valid_queries:], None)}
    print(f"synthetic: {n:,} x {dim}", flush=True)
    start = time.perf_counter()
    exact = exact_answers(ids, vectors, queries)
    print(f"  exact answers in {time.perf_counter() - start:.1f}s", flush=True)
    nlist = 1024
    rows = []
    rows += run_family(ids, vectors, queries, exact, "Flat", [""], args.single_synthetic)
    rows += run_family(ids, vectors, queries, exact, f"IVF{nlist},Flat",
                       [f"nprobe={p}" for p in (8, 16, 32, 64)], args.single)
    rows += run_family(ids, vectors, queries, exact, f"IVF{nlist},PQ16",
                       [f"nprobe={p}" for p in (16, 32, 64)], args.single)
    rows += run_family(ids, vectors, queries, exact, f"IVF{nlist},PQ16,RFlat",
                       [f"nprobe={p},k_factor_rf=4" for p in (16, 32)], args.single)
    if not args.skip_hnsw_1m:
        rows += run_family(ids, vectors, queries, exact, "HNSW32",
                           [f"efSearch={e}" for e in (16, 32, 64, 128)], args.single)
    rows.append(torch_reference(ids, vectors, queries, exact))
    return {"dataset": "synthetic_1m" if n == 1_000_000 else f"synthetic_{n}", "items": n,
            "dimension": dim, "metric": "ip",
            "generator": f"Gaussian mixture: 4096 centres ~ N(0, I), point = centre + "
            f"0.5 * N(0, I), seed {args.seed}",
            "queries": "fresh draws from the same mixture, no exclusion",
            "valid_queries": args.valid_queries, "test_queries": args.test_queries,
            "results": rows, "selected_on_valid": select(rows)}


def main() -> None:
    import faiss
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, default=ROOT / "runs/bench/beauty/model")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/index.json")
    parser.add_argument("--n-synthetic", type=int, default=1_000_000)
    parser.add_argument("--valid-queries", "--dev-queries", dest="valid_queries", type=int,
                        default=500, help="queries that select each family's setting")
    parser.add_argument("--test-queries", type=int, default=1000)
    parser.add_argument("--single", type=int, default=300, help="queries timed one at a time")
    parser.add_argument("--single-synthetic", type=int, default=50,
                        help="single queries timed for the 1M exact index")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-hnsw-1m", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    started = time.perf_counter()
    result = {
        "benchmark": "item index", "k": K, "target_recall": TARGET_RECALL,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_cores": os.cpu_count(), "platform": platform.platform(),
                    "note": "2 cores shared with other jobs; timings are indicative"},
        "threads": {"torch": torch.get_num_threads(), "faiss_omp": 1},
        "versions": {"faiss": faiss.__version__, "torch": torch.__version__,
                     "numpy": np.__version__},
        "selection": f"per index family, the fastest setting with valid recall@{K} >= "
                     f"{TARGET_RECALL}; reported numbers are on the test queries",
        "beauty": run_beauty(args.artifact, args),
    }
    write_json(args.out, result)
    if not args.skip_synthetic:
        result["synthetic"] = run_synthetic(args)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

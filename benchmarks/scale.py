"""Scaling benchmark: what each stage costs from 10^5 to 10^7 interactions, and where one
machine (here: 2 cores, 24 GiB) stops.

For each size, a seeded generator writes Amazon-Reviews-2023-style JSON lines (reviews with
text; item metadata with title, store, categories, description), users = items = size / 10,
item popularity long-tailed (p ~ (rank + 10)^-1), users with at least 5 interactions kept
(the 5-core on users that Amazon benchmarks use). Then every stage runs in a fresh process,
so each has its own peak RSS, and a stage that crashes or runs out of time does not take the
others with it:

* ``prepare``: ``rankpref prepare`` of the JSON lines (read, dedupe, 5-core, parquet cache),
  which streams the source to parquet and runs the pipeline on the narrow columns; and
  ``prepare_in_memory``, the same pipeline on the whole table collected at once (what
  ``prepare`` did before), for its memory;
* ``sasrec`` / ``pulse``: training steps of SASRec and of PULSE with item text (the library's
  Lightning module, batch 128, max length 50; the loss is what ``choose_loss`` picks: full
  softmax where it fits, else sampled softmax over 256 negatives);
* ``pulse_whole_table``: PULSE's steps computing every item's vector (text projection
  included) each step, as before a sampled step computed only the items it sees;
* ``sasrec_gpu``: the same SASRec steps on a CUDA device when one is visible (else the row
  says it was skipped);
* ``evaluate``: full-ranking evaluation of the test users (chunked, the default), and at the
  largest size once more unchunked (the score matrix of a whole 1,024-user batch), for memory;
* ``encode``: item texts through the default text model (all-MiniLM-L6-v2);
* ``index``: Flat, HNSW32 and IVF-PQ over the SASRec item vectors: build time, bytes, QPS
  (batched, 2 threads; one query at a time, 1 thread) and recall@10 against Flat, with
  the user vectors of 1,000 test users as queries;
* ``serve``: ``benchmarks/serve.py`` against a real ``rankpref serve`` at a fixed rate, with
  the exact index the server builds at start-up and with a saved HNSW32 index.

A stage whose full run would take longer than ``--budget`` seconds is timed on part of its
work (whole batches or texts) and projected linearly to the whole; its record says so
(``"measured": "projected"``, with the part it ran). PULSE's item text vectors are random unit
vectors of the text model's dimension when the catalogue was not encoded in full (the cost
of a step does not depend on their values). Growth exponents are slopes of log(seconds) on
log(interactions) between consecutive sizes.

    python benchmarks/scale.py                                   # 10^5, 10^6, 10^7
    python benchmarks/scale.py --sizes 100000 --budget 20 --out /tmp/scale.json   # a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGES = ("generate", "prepare", "prepare_in_memory", "sasrec", "sasrec_gpu", "pulse",
          "pulse_whole_table", "evaluate", "evaluate_unchunked", "encode",
          "index", "serve")
BATCH, MAX_LEN = 128, 50
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "scale.json"


# ---------------------------------------------------------------------- the data


def generate(n: int, folder: Path, seed: int = 0) -> dict:
    """Seeded Amazon-2023-style reviews.jsonl and meta.jsonl with about ``n`` interactions."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    users, items = max(n // 10, 100), max(n // 10, 100)
    folder.mkdir(parents=True, exist_ok=True)
    brands = [f"{a}{b}" for a in ("Clover", "Oak", "Lumen", "Opal", "Marl", "Ash", "Wren",
                                    "Fern", "Birch", "Sage") for b in ("leigh", "mere", "ra",
                                                                         "ine", "owe", "ford",
                                                                         "wick", "dale")]
    lines = ["Daily", "Reserve", "Ritual", "Bare", "Citrus", "Cloud", "Velvet", "Luxe", "Pure",
             "Glow", "Calm", "Bloom"]
    kinds = ["Face Serum", "Lip Balm", "Moisturizer", "Cleanser", "Sunscreen SPF 30",
             "Eyeliner", "Concealer", "Face Mask", "Toner", "Shampoo", "Conditioner",
             "Body Lotion", "Hand Cream", "Nail Polish", "Perfume", "Primer"]
    cats = ["Skin Care", "Makeup", "Hair Care", "Fragrance", "Bath & Body", "Nails"]
    adjectives = ["hydrating", "soothing", "brightening", "firming", "clarifying", "gentle",
                  "long-wear", "weightless", "nourishing", "refreshing"]
    # items: ids, titles, metadata
    b = rng.integers(0, len(brands), items)
    ln = rng.integers(0, len(lines), items)
    k = rng.integers(0, len(kinds), items)
    a = rng.integers(0, len(adjectives), items)
    size = rng.integers(1, 17, items)
    ids = _prefixed("I", np.arange(items))
    pick = lambda words, idx: pl.Series(words)[idx]  # noqa: E731
    meta = pl.DataFrame({
        "parent_asin": ids,
        "title": pick(brands, b) + " " + pick(lines, ln) + " " + pick(kinds, k) + ", "
        + pl.Series(size.astype(str)) + " oz",
        "store": pick(brands, b),
        "category": pick(cats, k % len(cats)),
        "description": "A " + pick(adjectives, a) + " " + pick(kinds, k).str.to_lowercase()
        + " from " + pick(brands, b) + "'s " + pick(lines, ln) + " collection.",
    }).select("parent_asin", "title", "store",
              categories=pl.concat_list(pl.col("category"), pl.lit("Beauty")),
              description=pl.concat_list("description"))
    meta.write_ndjson(folder / "meta.jsonl")
    # users: lengths 5 + geometric (mean ~10), items drawn by long-tailed popularity
    lengths = 5 + rng.geometric(1 / 6, users) - 1
    lengths = (lengths * (n / lengths.sum())).round().astype(np.int64).clip(1)
    popularity = 1.0 / (np.arange(items) + 10.0)
    popularity /= popularity.sum()
    perm = rng.permutation(items)  # popular items are not the first ids
    total = int(lengths.sum())
    owner = np.repeat(np.arange(users), lengths)
    item = perm[rng.choice(items, size=total, p=popularity)]
    start = rng.integers(1_550_000_000, 1_700_000_000, users)[owner] * 1000
    step = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    stamp = start + step * rng.integers(3_600_000, 30 * 86_400_000, total)
    words = ["Love", "Nice", "Works", "Great", "Okay", "Smells lovely", "Too greasy",
             "Gentle", "Lasts all day", "Would buy again"]
    body = ["it feels light on my skin and absorbs quickly", "the scent is subtle and pleasant",
            "a little goes a long way, good value", "it broke me out after a week",
            "my daughter uses it every morning", "the packaging leaked in transit",
            "better than the brand I used before", "does exactly what it says"]
    chunk = 2_000_000
    with open(folder / "reviews.jsonl", "wb") as out:
        for lo in range(0, total, chunk):
            hi = min(lo + chunk, total)
            m = hi - lo
            frame = pl.DataFrame({
                "user_id": _prefixed("U", owner[lo:hi]),
                "parent_asin": ids[item[lo:hi]],
                "rating": rng.integers(1, 6, m).astype(np.float64),
                "timestamp": stamp[lo:hi],
                "title": pl.Series(words)[rng.integers(0, len(words), m)],
                "text": pl.Series(body)[rng.integers(0, len(body), m)] + ". "
                + pl.Series(body)[rng.integers(0, len(body), m)] + ".",
            })
            frame.write_ndjson(out)
    return {"users_generated": users, "items_generated": items, "interactions_generated": total,
            "bytes": sum(f.stat().st_size for f in folder.glob("*.jsonl"))}


def _prefixed(prefix: str, numbers) -> "pl.Series":
    """``prefix`` + the numbers zero-padded to 8 digits, as strings (vectorised)."""
    import polars as pl

    return pl.select(pl.concat_str(pl.lit(prefix), pl.Series(numbers).cast(pl.String)
                                   .str.zfill(8))).to_series()


def dataset_config(folder: Path):
    from rankpref.data.datasets import DatasetConfig

    return DatasetConfig(name=None, format="amazon2023", path=str(folder / "reviews.jsonl"),
                         items_path=str(folder / "meta.jsonl"), min_user_interactions=5,
                         min_item_interactions=0, cache_dir=str(folder / "cache"))


def run_config(folder: Path, model: str):
    from rankpref.tasks.next_item.config import validate

    data = dataset_config(folder).model_dump(mode="json")
    tree = {"data": {**data, "max_len": MAX_LEN}, "model": {"name": model},
            "train": {"batch_size": BATCH, "threads": 2, "progress": False, "resume": False},
            "output_dir": str(folder / f"run-{model}")}
    return validate(tree, "scale")


# ---------------------------------------------------------------------- stages (one process each)


class Budgeted:
    """Iterate ``items`` until ``budget`` seconds have passed after the first ``warmup`` of
    them; afterwards ``done`` (items yielded), ``seconds`` and ``timed`` (the timed part)."""

    def __init__(self, items, budget: float, warmup: int = 2):
        self.items, self.budget, self.warmup = items, budget, warmup
        self.done, self.seconds, self.timed = 0, 0.0, 0

    def __iter__(self):
        started = None
        for x in self.items:
            yield x
            self.done += 1
            if self.done == self.warmup:
                started = time.perf_counter()
            elif self.done > self.warmup:
                self.timed += 1
                self.seconds = time.perf_counter() - started
                if self.seconds > self.budget:
                    break
        if started is not None:
            self.seconds = time.perf_counter() - started

    def per_item(self) -> float:
        return self.seconds / max(self.timed, 1)


def stage_prepare(folder: Path, args) -> dict:
    from rankpref.data.datasets import prepare

    started = time.perf_counter()
    ds = prepare(dataset_config(folder), force=True, quiet=True)
    seconds = time.perf_counter() - started
    cache = sum(f.stat().st_size for f in ds.path.glob("*"))
    return {"seconds": round(seconds, 2), "measured": "full", "users": len(ds.vocab.users),
            "items": ds.num_items, "interactions": ds.interactions.height, "cache_bytes": cache}


def stage_prepare_in_memory(folder: Path, args) -> dict:
    from rankpref.data import readers
    from rankpref.data.datasets import _read_sources, resolve_spec
    from rankpref.data.preprocess import preprocess

    cfg = dataset_config(folder)
    spec = resolve_spec(cfg)
    started = time.perf_counter()
    inter, _ = _read_sources(spec, cfg)
    frame, vocab, _ = preprocess(readers.collect(inter, spec.path), dedupe=cfg.dedupe,
                                 min_user=spec.min_user, min_item=spec.min_item)
    return {"seconds": round(time.perf_counter() - started, 2), "measured": "full",
            "users": len(vocab.users), "items": vocab.num_items, "interactions": frame.height,
            "note": "no cache written"}


def _train(folder: Path, model_name: str, args, device: str = "cpu",
           whole_table: bool = False) -> dict:
    import torch

    from rankpref.data.datasets import prepare
    from rankpref.settings import set_threads
    from rankpref.tasks.next_item.artifact import save_artifact
    from rankpref.tasks.next_item.config import choose_loss
    from rankpref.tasks.next_item.data import datamodule, training_split
    from rankpref.tasks.next_item.models import build_model
    from rankpref.tasks.next_item.module import NextItemModule

    set_threads(2)
    torch.manual_seed(0)
    cfg = run_config(folder, model_name)
    ds = prepare(cfg.data, quiet=True)
    cfg, why = choose_loss(cfg, ds.num_items)
    split, _ = training_split(ds, cfg.data)
    dm = datamodule(cfg, split, ds.num_items)
    sizes, text = {}, None
    if model_name == "pulse":
        encoded = folder / "item_text.npy"
        sizes = {"text_dim": 384, "why_dim": 384}
        if encoded.exists():
            text = torch.from_numpy(__import__("numpy").load(encoded))
        else:
            text = torch.nn.functional.normalize(torch.randn(ds.num_items + 1, 384), dim=-1)
            text[0] = 0
    model = build_model(cfg, ds.num_items, **sizes)
    if text is not None:
        model.set_item_text(text)
    module = NextItemModule(model, cfg).to(device)
    if whole_table:  # every item's vector each step, as before sampled steps used a subset
        module._rows_ok = False
    optimiser = module.configure_optimizers()
    loader = dm.train_dataloader()
    steps = len(loader)
    model.train()
    steps_run = Budgeted(loader, args.budget)
    for batch in steps_run:
        batch = {key: value.to(device) for key, value in batch.items()}
        optimiser.zero_grad(set_to_none=True)
        loss = module.training_step(batch, 0)
        loss.backward()
        optimiser.step()
        if device != "cpu":
            torch.cuda.synchronize()
    done, per_step = steps_run.done, steps_run.per_item()
    out = {"loss": cfg.loss.name, "loss_choice": why, "steps_per_epoch": steps,
           "steps_run": done, "seconds_per_step": round(per_step, 4),
           "seconds": round(per_step * steps, 1),
           "measured": "full" if done >= steps else "projected",
           "train_windows": len(dm.train_set), "text_vectors": (
               None if model_name != "pulse" else
               "encoded" if (folder / "item_text.npy").exists() else "random (same shape)")}
    out["device"] = torch.cuda.get_device_name() if device != "cpu" else "cpu, 2 threads"
    if model_name == "sasrec" and device == "cpu":  # the later stages use these weights
        model.eval()
        save_artifact(folder / "run-sasrec" / "model", model, cfg, ds.vocab,
                      {"dataset": "scale", "model": "sasrec", "note": "partly trained"},
                      ds.items)
    return out


def stage_sasrec(folder: Path, args) -> dict:
    return _train(folder, "sasrec", args)


def stage_pulse_whole_table(folder: Path, args) -> dict:
    return _train(folder, "pulse", args, whole_table=True)


def stage_sasrec_gpu(folder: Path, args) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"measured": "skipped", "reason": "no CUDA device visible"}
    return _train(folder, "sasrec", args, device="cuda")


def stage_pulse(folder: Path, args) -> dict:
    return _train(folder, "pulse", args)


def _evaluate(folder: Path, args, chunked: bool) -> dict:
    import rankpref.tasks.next_item.data as data
    from rankpref.settings import set_threads
    from rankpref.tasks.next_item import Recommender
    from rankpref.tasks.next_item.data import eval_datamodule, score_rows
    from rankpref.tasks.next_item.evaluate import evaluate

    set_threads(2)
    rec = Recommender.load(folder / "run-sasrec" / "model")
    dm = eval_datamodule(rec.cfg, rec.vocab)
    loader = dm.eval_dataloader("test")
    # the library's evaluation over the batches the budget allows (unchunked: whole batches)
    run = Budgeted(loader, args.budget, warmup=1)
    evaluate(lambda b: rec.model.score_all(b["inputs"]), run, ks=[10],
             num_items=dm.num_items if chunked else None)
    done, batches, per_batch = run.done, len(loader), run.per_item()
    rows = score_rows(dm.num_items) if chunked else rec.cfg.train.eval_batch_size
    return {"test_users": len(dm.sets["test"]), "eval_batch_size": rec.cfg.train.eval_batch_size,
            "users_scored_at_once": min(rows, rec.cfg.train.eval_batch_size),
            "score_budget": data.SCORE_BUDGET if chunked else None,
            "batches": batches, "batches_run": done, "seconds": round(per_batch * batches, 1),
            "users_per_second": round(rec.cfg.train.eval_batch_size / per_batch, 1),
            "measured": "full" if done >= batches else "projected"}


def stage_evaluate(folder: Path, args) -> dict:
    return _evaluate(folder, args, chunked=True)


def stage_evaluate_unchunked(folder: Path, args) -> dict:
    return _evaluate(folder, args, chunked=False)


def stage_encode(folder: Path, args) -> dict:
    import numpy as np

    from rankpref.data.datasets import prepare
    from rankpref.text import item_texts
    from rankpref.settings import set_threads
    from rankpref.text import TextEncoder

    set_threads(2)
    ds = prepare(dataset_config(folder), quiet=True)
    texts = item_texts(ds.items)
    encoder = TextEncoder(None, progress=False)
    chunk = 512
    parts = [texts[i:i + chunk] for i in range(0, len(texts), chunk)]
    vectors = []
    run = Budgeted(parts, args.budget, warmup=1)
    for part in run:
        vectors.append(encoder.encode(part, "item texts"))
    done = run.done
    per_text = run.seconds / max(sum(len(p) for p in parts[1:done]), 1)
    full = done >= len(parts)
    if full:  # PULSE then trains on the real text vectors
        table = np.zeros((ds.num_items + 1, encoder.dimension), dtype=np.float32)
        table[ds.items["item_idx"].to_numpy()] = np.concatenate(vectors)
        np.save(folder / "item_text.npy", table)
    return {"texts": len(texts), "texts_run": sum(len(p) for p in parts[:done]),
            "texts_per_second": round(1 / per_text, 1), "seconds": round(per_text * len(texts), 1),
            "measured": "full" if full else "projected", "model": encoder.model_id}


def stage_index(folder: Path, args) -> dict:
    import faiss
    import numpy as np

    from rankpref.serving.index import ItemIndex
    from rankpref.tasks.next_item import Recommender
    from rankpref.tasks.next_item.data import eval_datamodule

    faiss.omp_set_num_threads(2)
    rec = Recommender.load(folder / "run-sasrec" / "model")
    ids, vectors = rec.item_ids, rec.item_vectors()
    dm = eval_datamodule(rec.cfg, rec.vocab)
    test = dm.sets["test"].examples
    pick = np.random.default_rng(0).choice(len(test), size=min(1000, len(test)), replace=False)
    queries = rec.user_vectors([list(test.histories[i]) for i in pick])
    n = len(ids)
    nlist = 2 ** max(4, round(math.log2(4 * math.sqrt(n))))
    families = [("Flat", ""), ("HNSW32", "efSearch=64"), (f"IVF{nlist},PQ32", "nprobe=32")]
    out, exact = {}, None
    for factory, params in families:
        started = time.perf_counter()
        index = ItemIndex.build(ids, vectors, factory=factory, metric="ip", search_params=params)
        build = time.perf_counter() - started
        started = time.perf_counter()
        found, _ = index.search(queries, 10)
        batched = time.perf_counter() - started
        faiss.omp_set_num_threads(1)
        single = queries[:200]
        started = time.perf_counter()
        for q in single:
            index.search(q[None, :], 10)
        one = time.perf_counter() - started
        faiss.omp_set_num_threads(2)
        if exact is None:
            exact = found
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)]))
        out[factory] = {"build_seconds": round(build, 2), "search_params": params,
                        "bytes": int(faiss.serialize_index(index._index).size),
                        "qps_batched_2_threads": round(len(queries) / batched, 1),
                        "qps_single_1_thread": round(len(single) / one, 1),
                        "recall@10_vs_flat": round(recall, 4)}
    return {"items": n, "dimension": int(vectors.shape[1]), "queries": len(queries),
            "families": out, "seconds": out["HNSW32"]["build_seconds"],
            "seconds_is": "HNSW32 build", "measured": "full"}


def _serve_once(folder: Path, args, index: Path | None) -> dict:
    report = folder / "serve.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "serve.py"), "--artifact",
           str(folder / "run-sasrec" / "model"), "--requests", "1000", "--concurrency", "8",
           "--users", "500", "--rate", str(args.rate), "--duration", "20",
           "--open-loop-runs", "1", "--out", str(report)]
    if index is not None:
        cmd += ["--index", str(index)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        raise RuntimeError(f"serve.py exited {res.returncode}: {res.stderr.strip()[-500:]}")
    data = json.loads(report.read_text())
    runs = data.get("open_loop", [])
    latency = runs[0]["latency_from_schedule"] if runs else {}
    return {"p50_ms": latency.get("p50_ms"), "p99_ms": latency.get("p99_ms"),
            "errors": sum(r.get("errors", 0) for r in runs),
            "closed_loop_rps": data.get("closed_loop", {}).get("throughput_rps"),
            "server": data.get("server")}


def stage_serve(folder: Path, args) -> dict:
    """The server at a fixed rate with the exact index it builds at start-up, then with a
    saved HNSW32 index (what a catalogue whose exact search is too slow would use)."""
    from rankpref.serving.index import ItemIndex
    from rankpref.tasks.next_item import Recommender

    started = time.perf_counter()
    flat = _serve_once(folder, args, None)
    rec = Recommender.load(folder / "run-sasrec" / "model")
    hnsw = folder / "hnsw"
    ItemIndex.from_recommender(rec, factory="HNSW32", search_params="efSearch=64").save(hnsw)
    del rec
    approx = _serve_once(folder, args, hnsw)
    return {"benchmark_seconds": round(time.perf_counter() - started, 1), "measured": "full",
            "rate": args.rate, **flat, "hnsw32": approx}


def run_stage(stage: str, folder: Path, args) -> dict:
    if stage == "generate":
        started = time.perf_counter()
        out = generate(args.size, folder, seed=args.seed)
        return {"seconds": round(time.perf_counter() - started, 2), "measured": "full", **out}
    return globals()[f"stage_{stage}"](folder, args)


# ---------------------------------------------------------------------- the driver


def child(stage: str, size: int, folder: Path, args) -> dict:
    """Run one stage in a fresh process; its result, peak RSS, or why it stopped."""
    result_file = folder / f"{stage}.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--stage", stage, "--size", str(size), "--work",
           str(args.work), "--budget", str(args.budget), "--rate", str(args.rate),
           "--seed", str(args.seed)]
    log = open(folder / f"{stage}.log", "w")
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"})
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        log.close()
    wall = time.perf_counter() - started
    rc = os.waitstatus_to_exitcode(status)
    record = {"stage": stage, "interactions_target": size, "wall_seconds": round(wall, 1),
              "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "exit": rc}
    if rc == 0 and result_file.exists():
        record.update(json.loads(result_file.read_text()))
    else:
        tail = (folder / f"{stage}.log").read_text(errors="replace").strip().splitlines()[-3:]
        record["stopped"] = ("killed (signal %d%s)" % (-rc, ": out of memory?" if rc == -9 else "")
                             if rc < 0 else f"failed: {' | '.join(tail)[-400:]}")
    print(f"{size:>10,} {stage:<20} {record.get('seconds', '-')!s:>10} s "
          f"({record.get('measured', record.get('stopped'))}), peak {record['peak_rss_mib']:,.0f} MiB",
          flush=True)
    return record


def exponents(rows: list[dict]) -> dict:
    """Slope of log(seconds) on log(interactions) between consecutive sizes, per stage."""
    out = {}
    for stage in STAGES:
        pts = sorted((r["interactions"], r["seconds"]) for r in rows
                     if r["stage"] == stage and r.get("seconds") and r.get("interactions"))
        out[stage] = [round(math.log(b[1] / a[1]) / math.log(b[0] / a[0]), 2)
                      for a, b in zip(pts, pts[1:]) if b[0] > a[0] and a[1] > 0]
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for stage in STAGES:
        pts = sorted((r["interactions"], r["seconds"], r.get("measured"), r["peak_rss_mib"])
                     for r in rows if r["stage"] == stage and r.get("seconds"))
        if not pts:
            continue
        x = [p[0] for p in pts]
        line, = left.plot(x, [p[1] for p in pts], marker="o", label=stage)
        for p in pts:
            if p[2] == "projected":
                left.plot(p[0], p[1], marker="o", mfc="white", color=line.get_color())
        right.plot(x, [p[3] / 1024 for p in pts], marker="o", label=stage)
    left.set(xscale="log", yscale="log", xlabel="interactions", ylabel="seconds (hollow: projected)",
             title="time per stage")
    right.set(xscale="log", yscale="log", xlabel="interactions", ylabel="peak RSS (GiB)",
              title="memory per stage")
    right.axhline(24, color="grey", linestyle="--", linewidth=1)
    right.text(right.get_xlim()[0], 24, " 24 GiB machine", va="bottom", color="grey")
    left.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(result: dict) -> str:
    """Markdown tables of a scale.json (what docs/scaling.md quotes)."""
    rows = result["rows"]
    sizes = sorted({r["interactions_target"] for r in rows})
    get = {(r["interactions_target"], r["stage"]): r for r in rows}
    head = "| stage | " + " | ".join(f"{s:,}" for s in sizes) + " | growth exponent |"
    lines = [head, "|---" * (len(sizes) + 2) + "|"]
    for stage in STAGES:
        cells = []
        for size in sizes:
            r = get.get((size, stage))
            if r is None:
                cells.append("-")
            elif "stopped" in r:
                cells.append(f"stopped ({r['stopped'][:60]})")
            elif r.get("measured") == "skipped":
                cells.append("skipped: " + r.get("reason", ""))
            elif stage == "serve" and "p99_ms" in r:
                h = r.get("hnsw32")
                cells.append(f"Flat: p50 {r['p50_ms']:,} / p99 {r['p99_ms']:,} ms"
                             + (f"; HNSW32: {h['p50_ms']:,} / {h['p99_ms']:,} ms" if h else "")
                             + f" at {r['rate']:g}/s")
            else:
                mark = "~" if r.get("measured") == "projected" else ""
                cells.append(f"{mark}{r['seconds']:,} s, {r['peak_rss_mib'] / 1024:.1f} GiB")
        slopes = result["growth_exponents"].get(stage) or []
        lines.append(f"| {stage} | " + " | ".join(cells) + " | "
                     + (", ".join(f"{x:g}" for x in slopes) or "-") + " |")
    counts = ["| data | " + " | ".join(
        f"{get[(s, 'prepare')]['users']:,} users, {get[(s, 'prepare')]['items']:,} items, "
        f"{get[(s, 'prepare')]['interactions']:,} interactions" if (s, "prepare") in get
        and "users" in get[(s, "prepare")] else "-" for s in sizes) + " | |"]
    index = ["", "| index | interactions | build s | bytes | QPS batched (2 threads) | QPS single (1 thread) "
             "| recall@10 vs Flat |", "|---|---|---|---|---|---|---|"]
    for size in sizes:
        r = get.get((size, "index"))
        for name, f in (r or {}).get("families", {}).items():
            index.append(f"| {name} ({f['search_params'] or 'exact'}) | {size:,} | "
                         f"{f['build_seconds']} | {f['bytes']:,} | {f['qps_batched_2_threads']:,} | "
                         f"{f['qps_single_1_thread']:,} | {f['recall@10_vs_flat']} |")
    return "\n".join([*lines[:2], *counts, *lines[2:], *index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--budget", type=float, default=90.0,
                        help="seconds of timed work per stage before projecting")
    parser.add_argument("--rate", type=float, default=50.0, help="server requests per second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "scale")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--merge", action="store_true", help="replace these (size, stage) rows "
                        "in an existing --out file and keep the others")
    parser.add_argument("--report", action="store_true", help="print the tables of --out")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report:
        print(report(json.loads(args.out.read_text())))
        return
    if args.stage:  # a child: one stage, its result as JSON beside the data
        folder = args.work / str(args.size)
        result = run_stage(args.stage, folder, args)
        (folder / f"{args.stage}.json").write_text(json.dumps(result))
        return

    from rankpref.io import write_json

    sizes = [int(float(s)) for s in args.sizes.split(",")]
    stages = args.stages.split(",")
    rows, started, superseded = [], time.perf_counter(), []
    for size in sizes:
        folder = args.work / str(size)
        folder.mkdir(parents=True, exist_ok=True)
        counts = {}
        for stage in stages:
            if stage == "evaluate_unchunked" and size != max(sizes):
                continue
            record = child(stage, size, folder, args)
            if stage == "prepare" and "interactions" in record:
                counts = {k: record[k] for k in ("users", "items", "interactions")}
            record.setdefault("interactions", counts.get("interactions", size))
            rows.append(record)
            failed = "stopped" in record
            if failed and stage in ("generate", "prepare", "sasrec"):
                print(f"{size:,}: {stage} stopped; the later stages need it", flush=True)
                break
        if not args.keep:
            for f in folder.glob("*.jsonl"):
                f.unlink()
    if args.merge and args.out.exists():
        ran = {(r["interactions_target"], r["stage"]) for r in rows}
        old = json.loads(args.out.read_text())
        replaced = [r for r in old["rows"] if (r["interactions_target"], r["stage"]) in ran]
        superseded = old.get("superseded", []) + [{**r, "replaced_on": old.get("date")}
                                                  for r in replaced]
        rows = [r for r in old["rows"] if (r["interactions_target"], r["stage"]) not in ran] + rows
        rows.sort(key=lambda r: (r["interactions_target"], STAGES.index(r["stage"])))
        sizes = sorted({r["interactions_target"] for r in rows})
    import torch

    result = {
        "benchmark": "scale",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                        / 2 ** 30, 1)},
        "settings": {"sizes": sizes, "budget_seconds": args.budget, "batch_size": BATCH,
                     "max_len": MAX_LEN, "threads": 2, "seed": args.seed,
                     "server_rate": args.rate},
        "rows": rows, "growth_exponents": exponents(rows),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    if args.merge and superseded:
        result["superseded"] = superseded  # rows a later run replaced, kept for the record
    write_json(args.out, result)
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    if args.out == DEFAULT_OUT:  # the docs show the same picture
        shutil.copy(args.out.with_suffix(".png"), ROOT / "docs" / "img" / "scale.png")
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()

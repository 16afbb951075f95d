"""SESA benchmark on O*NET 29.2: job title -> occupation, occupation -> related occupations.

Models (each selected on the valid split by ndcg@10, test reported):

* ``zero-shot-minilm``: cosine of the bundled all-MiniLM-L6-v2 embeddings (no training).
* ``esa-tfidf``: unsupervised ESA: a text's vector is its TF-IDF similarity to each concept's
  description (skill category + its commonest examples); score = cosine of concept vectors.
* ``dual-minilm``: dense dual encoder, frozen MiniLM + the same trainable MLP, latent output.
* ``sesa-minilm``: SESA with the frozen MiniLM encoder.
* ``sesa-gru``: SESA with a bidirectional GRU over word embeddings (trained from scratch).

Each run merges its entries into ``benchmarks/results/sesa.json`` so tasks and models can be
run separately (each well under 15 minutes on 1 thread here)::

    python benchmarks/sesa.py --task titles --models zero-shot-minilm esa-tfidf sesa-minilm
    python benchmarks/sesa.py --task related --models all
    python benchmarks/sesa.py --task related --models sesa-minilm --extend \
        --grid "loss.l1_weight=0.003"       # train more settings, select again over all
    python benchmarks/sesa.py --table      # the README table from the JSON (or --out's)
    python benchmarks/sesa.py --task related --models zero-shot-minilm sesa-minilm \
        --grid "train.epochs=1" --out /tmp/smoke/sesa.json       # a smoke run

Entries written before the rename of "dev" to "valid" (``dev``, ``dev_ndcg@10``, settings such
as ``train.l1_weight``) are still read: by ``--extend``, and by ``--table``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rankpref.io import write_json  # noqa: E402
from rankpref.models.sesa import tokenize, top_share  # noqa: E402
from rankpref.settings import set_threads  # noqa: E402
from rankpref.tasks import sesa  # noqa: E402
from rankpref.tasks.sesa.evaluate import ranking_metrics  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "sesa.json"
MODELS = ("zero-shot-minilm", "esa-tfidf", "dual-minilm", "sesa-minilm", "sesa-gru")

# valid-selection grids: every setting is trained; SESA keeps the best valid ndcg@10 among the
# settings whose valid top-5 share is >= SHARE_FLOOR (the interpretability target), and the
# unconstrained best is recorded beside it. The dual encoder keeps the best valid ndcg@10.
SHARE_FLOOR = 0.8
COMMON = {"titles": ["train.epochs=25", "train.patience=4"],
          "related": ["train.epochs=80", "train.patience=10", "train.batch_size=32"]}
BOTH5 = ["concepts.kind=both", "concepts.min_occupations=5"]
GRIDS = {
    ("titles", "sesa-minilm"): [[], ["model.top_k=10"], BOTH5, ["loss.l1_weight=0.001"],
                                ["loss.l1_weight=0.003"], ["loss.l1_weight=0.01"],
                                ["loss.l1_weight=0.02"]],
    ("titles", "dual-minilm"): [["model.head=latent", "model.latent_dim=256"]],
    ("titles", "sesa-gru"): [["model.top_k=10"]],
    ("related", "sesa-minilm"): [[], ["model.top_k=10"], ["model.top_k=16"], BOTH5,
                                 ["loss.l1_weight=0.003"], ["loss.l1_weight=0.01"],
                                 ["loss.l1_weight=0.02"]],
    ("related", "dual-minilm"): [["model.head=latent", "model.latent_dim=128"],
                                 ["model.head=latent", "model.latent_dim=256"]],
    ("related", "sesa-gru"): [[], ["model.top_k=10"]],
}
GRU_EXTRA = {"titles": ["model.encoder=gru", "loss.negatives=in_batch", "model.hidden=128",
                        "train.epochs=8", "train.patience=2", "train.batch_size=512"],
             "related": ["model.encoder=gru", "loss.negatives=in_batch", "model.hidden=128",
                         "train.epochs=40", "train.patience=6", "train.batch_size=32"]}

# settings as older result files spell them -> today's keys (see rankpref.tasks.sesa.config)
_OLD_KEYS = {"train.rank_loss": "loss.name", "data.dev_fraction": "data.valid_fraction",
             "cache_dir": "data.cache_dir",
             **{f"train.{k}": f"loss.{k}" for k in ("temperature", "concept_weight", "negatives",
                                                   "list_size", "l1_weight")}}


def upgrade_setting(setting: list[str]) -> list[str]:
    """``["train.l1_weight=0.01"]`` (an older file's spelling) -> ``["loss.l1_weight=0.01"]``."""
    out = []
    for kv in setting:
        key, eq, value = kv.partition("=")
        out.append(f"{_OLD_KEYS.get(key, key)}{eq}{value}")
    return out


def _valid(metrics: dict) -> dict:
    """The valid-split metrics of a stored entry (``dev`` in files written before the rename)."""
    return metrics["valid"] if "valid" in metrics else metrics["dev"]


def _grid_value(row: dict, name: str):
    """``valid_<name>`` of a stored grid row (``dev_<name>`` in older files)."""
    return row[f"valid_{name}"] if f"valid_{name}" in row else row.get(f"dev_{name}")


def fixed_scores_metrics(prep: sesa.TaskInputs, q: torch.Tensor, d: torch.Tensor, split: str,
                         explicit: bool) -> dict:
    rows = prep.task.indices(split)
    qs = q[torch.from_numpy(rows)]
    scores = qs @ d.T
    relevance = torch.from_numpy(prep.task.relevance_matrix(rows))
    exclude = torch.from_numpy(prep.task.exclude_matrix(rows))
    out = {"queries": len(rows), **ranking_metrics(scores, relevance, exclude)}
    if explicit:
        top = scores.masked_fill(exclude, float("-inf")).topk(10, dim=1).indices
        qq = qs.unsqueeze(1).expand(-1, 10, -1).reshape(-1, qs.shape[1])
        share = top_share(qq, d[top.reshape(-1)], None, k=5)
        out["top5_share"] = float(share.nanmean())
    return out


def esa_vectors(texts: list[str], descriptions: list[str]) -> torch.Tensor:
    """Unit-length ESA concept vectors: TF-IDF of a text against TF-IDF concept documents."""
    vocab: dict[str, int] = {}
    docs = [tokenize(d) for d in descriptions]
    for doc in docs:
        for w in doc:
            vocab.setdefault(w, len(vocab))
    df = np.zeros(len(vocab))
    concept = np.zeros((len(docs), len(vocab)))
    for c, doc in enumerate(docs):
        for w in doc:
            concept[c, vocab[w]] += 1
        df[[vocab[w] for w in set(doc)]] += 1
    idf = np.log((1 + len(docs)) / (1 + df)) + 1
    concept = np.log1p(concept) * idf
    concept /= np.linalg.norm(concept, axis=1, keepdims=True).clip(1e-12)
    tf = np.zeros((len(texts), len(vocab)))
    for i, text in enumerate(texts):
        for w in tokenize(text):
            j = vocab.get(w)
            if j is not None:
                tf[i, j] += 1
    x = (np.log1p(tf) * idf) @ concept.T
    x /= np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    return torch.from_numpy(x.astype(np.float32))


def _summary(c: dict) -> dict:
    m = c["metrics"]
    return {"setting": c["setting"], "valid_ndcg@10": m["valid"]["ndcg@10"],
            "valid_top5_share": m["valid"].get("top5_share"), "test_ndcg@10": m["test"]["ndcg@10"]}


def _from_entry(entry: dict) -> list[dict]:
    """Candidates of an earlier run, with full metrics where the entry kept them (its selected
    and its unconstrained best setting: the only ones an enlarged grid can still select).
    Entries of older files (``dev`` keys, ``train.l1_weight`` settings) come back in today's
    names."""
    key = lambda setting: json.dumps(upgrade_setting(setting))  # noqa: E731
    full = {key(entry["selected"]): {"valid": _valid(entry), "test": entry["test"],
                                     "best_epoch": entry["best_epoch"],
                                     "epochs_run": entry["epochs_run"],
                                     "seconds_per_epoch": entry["seconds_per_epoch"],
                                     "train_seconds": entry["train_seconds"],
                                     "data": entry["data"]}}
    u = entry.get("unconstrained_best")
    if u is not None:
        stored = u.get("full")
        if stored:
            stored = {("valid" if k == "dev" else k): v for k, v in stored.items()}
        full.setdefault(key(u["setting"]), stored or {
            "valid": {"ndcg@10": _grid_value(u, "ndcg@10"),
                      "top5_share": _grid_value(u, "top5_share")},
            "test": u["test"]})
    out = []
    for g in entry["grid"]:
        m = full.get(key(g["setting"])) or {
            "valid": {"ndcg@10": _grid_value(g, "ndcg@10"),
                      "top5_share": _grid_value(g, "top5_share")},
            "test": {"ndcg@10": g["test_ndcg@10"]}, "partial": True}
        out.append({"setting": upgrade_setting(g["setting"]), "metrics": m})
    return out


def run_trained(name: str, task: str, prep: sesa.TaskInputs, prep_cfg: sesa.SESARunConfig,
                extra: list[str], settings: list[list[str]] | None = None,
                previous: dict | None = None) -> dict:
    base = [f"data.task={task}", *COMMON[task]]
    if name == "sesa-gru":
        base += GRU_EXTRA[task]
    candidates = _from_entry(previous) if previous else []
    for setting in settings if settings is not None else GRIDS[(task, name)]:
        cfg = sesa.load_config(None, base + setting + extra)
        started = time.perf_counter()
        p = None
        if cfg.model.encoder == "minilm" and cfg.concepts == prep_cfg.concepts:
            p = prep  # same concepts: reuse the prepared features
        metrics = sesa.fit(cfg, data=p, write=False).metrics
        print(f"  {name} {setting}: valid ndcg@10 {metrics['valid']['ndcg@10']:.4f} top5 share "
              f"{metrics['valid'].get('top5_share', float('nan')):.3f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        candidates.append({"setting": setting, "metrics": metrics})
    by_valid = lambda c: c["metrics"]["valid"]["ndcg@10"]  # noqa: E731
    unconstrained = max(candidates, key=by_valid)
    rule = "best valid ndcg@10"
    best = unconstrained
    if name.startswith("sesa"):
        ok = [c for c in candidates
              if (c["metrics"]["valid"].get("top5_share") or 0) >= SHARE_FLOOR]
        if ok:
            best = max(ok, key=by_valid)
            rule = f"best valid ndcg@10 with valid top5_share >= {SHARE_FLOOR}"
        else:
            rule = f"best valid ndcg@10 (no setting reached valid top5_share >= {SHARE_FLOOR})"
    m = best["metrics"]
    if m.get("partial") or "recall@10" not in unconstrained["metrics"]["test"]:
        raise SystemExit(f"{name}: selection fell on a setting without stored metrics; rerun "
                         "the whole grid")
    return {"valid": m["valid"], "test": m["test"], "selected": best["setting"], "selection": rule,
            "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
            "seconds_per_epoch": m["seconds_per_epoch"], "train_seconds": m["train_seconds"],
            "base_settings": base + extra,
            "unconstrained_best": {**_summary(unconstrained), "test": unconstrained["metrics"]["test"],
                                   "full": {k: v for k, v in unconstrained["metrics"].items()
                                            if k in ("valid", "test", "best_epoch", "epochs_run",
                                                     "seconds_per_epoch", "train_seconds", "data")}},
            "grid": [_summary(c) for c in candidates], "data": m["data"]}


def _short(setting: str) -> str:
    """A setting as the table shows it: ``model.top_k=10`` -> ``top_k=10`` (older files'
    ``train.l1_weight`` as today's ``loss.l1_weight``)."""
    return upgrade_setting([setting])[0].replace("model.", "").replace("concepts.", "")


def table(path: Path) -> str:
    """The README table (test split) from the results JSON."""
    results = json.loads(path.read_text())
    lines = ["| task | model | selected on valid | ndcg@10 | recall@10 | mrr | concept micro-F1 "
             "| top-5 share |", "|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for task in ("titles", "related"):
        for name in MODELS:
            e = results.get(task, {}).get(name)
            if e is None:
                continue
            t = e["test"]
            sel = " ".join(_short(s) for s in e.get("selected", []))
            lines.append(f"| {task} | {name} | {sel or '-'} | {fmt(t['ndcg@10'])} | "
                         f"{fmt(t['recall@10'])} | {fmt(t['mrr'])} | {fmt(t.get('concept_micro_f1'))} "
                         f"| {fmt(t.get('top5_share'))} |")
            u = e.get("unconstrained_best")
            if u and u["setting"] != e.get("selected"):
                ut = u["test"]
                sel = " ".join(_short(s) for s in u["setting"])
                lines.append(f"| {task} | {name} (best valid ndcg, no share floor) | {sel or '-'} | "
                             f"{fmt(ut['ndcg@10'])} | {fmt(ut['recall@10'])} | {fmt(ut['mrr'])} | "
                             f"{fmt(ut.get('concept_micro_f1'))} | {fmt(ut.get('top5_share'))} |")
    return "\n".join(lines)


def main() -> None:
    if "--table" in sys.argv:
        only = argparse.ArgumentParser(description="the README table from the results JSON")
        only.add_argument("--table", action="store_true")
        only.add_argument("--out", type=Path, default=RESULTS)
        print(table(only.parse_args().out))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=["titles", "related"], required=True)
    ap.add_argument("--models", nargs="+", default=["all"], choices=["all", *MODELS])
    ap.add_argument("--set", nargs="*", default=[], help="extra key=value settings for every fit")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--grid", action="append", default=None, help="train only this setting "
                    "(space-separated key=value; repeatable) instead of the built-in grid")
    ap.add_argument("--extend", action="store_true", help="add the --grid settings to the "
                    "model's earlier grid in the JSON and select again over all of them")
    args = ap.parse_args()
    set_threads(1)
    models = MODELS if "all" in args.models else args.models
    cfg = sesa.load_config(None, [f"data.task={args.task}", *args.set])
    prep = sesa.prepare_inputs(cfg)  # MiniLM features of every text (cached on disk)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.setdefault("dataset", "O*NET 29.2 (onet_29_2)")
    results.setdefault("protocol", "full ranking of all 923 occupations; the query occupation "
                       "itself is excluded in the related task; valid selection by ndcg@10")
    results["environment"] = {"python": platform.python_version(), "torch": torch.__version__,
                              "threads": 1, "machine": "CPU, 2 cores shared with other jobs"}
    block = results.setdefault(args.task, {})
    block["data"] = prep.stats
    for name in models:
        started = time.perf_counter()
        print(f"{args.task} / {name}", flush=True)
        if name == "zero-shot-minilm":
            entry = {split: fixed_scores_metrics(prep, prep.query_inputs, prep.item_inputs, split,
                                                 False) for split in ("valid", "test")}
        elif name == "esa-tfidf":
            concepts = list(prep.concepts.descriptions)
            q = esa_vectors(prep.task.query_texts, concepts)
            d = esa_vectors(prep.task.item_texts, concepts)
            entry = {split: fixed_scores_metrics(prep, q, d, split, True)
                     for split in ("valid", "test")}
        else:
            settings = [g.split() for g in args.grid] if args.grid else None
            previous = block.get(name) if args.extend else None
            if args.extend and previous is None:
                raise SystemExit(f"--extend: no earlier {args.task}/{name} entry in {args.out}")
            entry = run_trained(name, args.task, prep, cfg, args.set, settings, previous)
            if previous:
                entry["seconds"] = previous.get("seconds", 0)
        entry["model"] = name
        entry["seconds"] = round(entry.get("seconds", 0) + time.perf_counter() - started, 1)
        block[name] = entry
        print(f"  test ndcg@10 {entry['test']['ndcg@10']:.4f}  recall@10 "
              f"{entry['test']['recall@10']:.4f}  mrr {entry['test']['mrr']:.4f}", flush=True)
        # after every model, so a killed run keeps what it finished; re-read first, so runs of
        # the two tasks in parallel each keep the other's block
        latest = json.loads(args.out.read_text()) if args.out.exists() else results
        latest.update({k: v for k, v in results.items() if k not in ("titles", "related")})
        latest.setdefault(args.task, {}).update(block)
        write_json(args.out, latest)
    summary = {n: block[n]["test"]["ndcg@10"] for n in MODELS if n in block}
    print(json.dumps(summary, indent=2))
    if not all(math.isfinite(v) for v in summary.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()

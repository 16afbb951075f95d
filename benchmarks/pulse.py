"""PULSE benchmark: SASRec-CE against PULSE with item text and with rationales from different
writers, on the same split, evaluator and seed; plus cross-domain transfer and cold-start items.

Every row is one ``rankpref fit`` in a child process (full-ranking valid/test, selected on valid
ndcg@10). Results are merged into ``benchmarks/results/pulse.json`` row by row (under a file
lock), so a stopped run keeps what it finished and two invocations can run side by side.

    python benchmarks/pulse.py --datasets beauty --rows sasrec-ce pulse-text pulse-template
    python benchmarks/pulse.py --cross-domain          # beauty -> ml-100k, 10/25/100% users
    python benchmarks/pulse.py --cold-start ml-100k    # 10% of items held out of training
    python benchmarks/pulse.py --datasets ml-100k --rows pulse-template --set train.epochs=1 \
        --runs /tmp/smoke/runs --output /tmp/smoke/pulse.json     # a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sasrec import run_fit, versions  # noqa: E402

from rankpref.io import write_json  # noqa: E402

OUTPUT = ROOT / "benchmarks" / "results" / "pulse.json"
CONFIGS = {"beauty": ROOT / "benchmarks" / "configs" / "pulse_beauty.yaml",
           "ml-100k": ROOT / "benchmarks" / "configs" / "pulse_ml100k.yaml"}
RATIONALES = ROOT / "datasets" / "rationales"
# ml-100k rationales quote MovieLens titles and ratings (research use only), so they are not
# shipped: they are read from the generation cache that this command fills:
#   rankpref rationales generate --data ml-100k --backend transformers --shard 0/2 (and 1/2)
SMOLLM2 = {"beauty": RATIONALES / "beauty_smollm2.parquet",
           "ml-100k": ROOT / ".cache" / "rankpref" / "rationales.sqlite"}
TOT = {"beauty": RATIONALES / "beauty_smollm2_tot.parquet",
       "ml-100k": ROOT / ".cache" / "rankpref" / "ml-100k_smollm2_tot.parquet"}  # not shipped


def row_settings(dataset: str, row: str) -> list[str] | None:
    """``--set`` overrides of a row, or None when its rationale file does not exist."""
    if row == "sasrec-ce":
        return ["model.name=sasrec"]
    if row == "pulse-text":
        return ["model.name=pulse", "pulse.rationales=none", "pulse.why_weight=0"]
    if row == "pulse-template":
        return ["model.name=pulse", "pulse.rationales=template"]
    files = {"pulse-smollm2": SMOLLM2, "pulse-smollm2-tot": TOT}[row]
    path = files.get(dataset)
    if path is None or not path.exists():
        return None
    return ["model.name=pulse", f"pulse.rationales={path}"]


ROWS = ["sasrec-ce", "pulse-text", "pulse-template", "pulse-smollm2", "pulse-smollm2-tot"]


def summary(m: dict) -> dict:
    keys = [f"{name}@{k}" for k in (10, 20) for name in ("recall", "ndcg")]
    out = {"model": m["model"], "loss": m["loss"], "split": m["split"],
           "protocol": m["protocol"], "selected_on": m["selected_on"],
           "valid": {k: round(m["valid"][k], 5) for k in keys},
           "test": {k: round(m["test"][k], 5) for k in keys},
           "users_evaluated": m["test"]["examples"], "best_epoch": m["best_epoch"],
           "epochs_run": m["epochs_run"], "seconds_per_epoch": round(m["seconds_per_epoch"], 2),
           "train_seconds": m["train_seconds"], "peak_rss_mib": m["peak_rss_mib"],
           "train_users": m["split_stats"]["train_users"]}
    pulse = m.get("pulse", {})
    rationales = pulse.get("rationales", {})
    out["users_with_rationale"] = rationales.get("users_with_rationale", 0)
    if rationales:
        out["rationales"] = rationales
    if "init_from" in pulse:
        out["init_from"] = pulse["init_from"]
    if "cold_start" in m:
        cold = m["cold_start"]
        out["cold_start"] = {"items_held_out": cold["items_held_out"],
                             "test_events": cold["test_events"],
                             "test": {k: round(v, 5) for k, v in cold.get("test", {}).items()
                                      if k in keys}}
    return out


EXTRA: list[str] = []
"""``--set`` overrides added to every row (e.g. ``train.epochs=1`` for a smoke run)."""


def record(path: tuple[str, ...], value: dict, output: Path | None = None) -> None:
    """Merge one result into the JSON under an exclusive lock (side-by-side runs)."""
    output = output or OUTPUT
    output.parent.mkdir(parents=True, exist_ok=True)
    lock = output.with_suffix(".lock")
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        data = json.loads(output.read_text()) if output.exists() else {}
        data.setdefault("benchmark", "PULSE vs SASRec-CE, next-item, full ranking")
        data["updated"] = dt.date.today().isoformat()
        data["machine"] = "2 shared CPU cores, x86_64, no GPU (1 torch thread per run)"
        data["versions"] = versions()
        node = data
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        write_json(output, data)


def fit_row(dataset: str, name: str, settings: list[str], runs: Path) -> dict:
    out = runs / f"{dataset}-{name}"
    settings = [*settings, *EXTRA]
    metrics = run_fit(CONFIGS[dataset], out, settings, runs / f"{dataset}-{name}.log")
    result = summary(metrics)
    result["config"] = str(CONFIGS[dataset].relative_to(ROOT))
    result["overrides"] = settings
    print(f"{dataset} {name}: test ndcg@10 {result['test']['ndcg@10']:.4f} "
          f"recall@10 {result['test']['recall@10']:.4f} (valid ndcg@10 "
          f"{result['valid']['ndcg@10']:.4f}, {result['train_seconds']:.0f} s)", flush=True)
    return result


def main_rows(datasets: list[str], rows: list[str], runs: Path) -> None:
    for dataset in datasets:
        for row in rows:
            settings = row_settings(dataset, row)
            if settings is None:
                record(("main", dataset, row), {"skipped": "no rationale file for this dataset "
                                                "(see datasets/rationales/)"})
                continue
            record(("main", dataset, row), fit_row(dataset, row, settings, runs))


def cross_domain(source: str, target: str, fractions: list[float], runs: Path,
                 source_runs: Path, modes: tuple[str, ...] = ("scratch", "transfer")) -> None:
    """PULSE (template rationales) on ``target`` with a fraction of its training users, from
    scratch and continued from the ``source`` PULSE artifact (same max_len in both)."""
    src = source_runs / f"{source}-pulse-template"  # the main row's artifact, if it exists
    if "transfer" in modes and not (src / "model" / "model.safetensors").exists():
        src = runs / f"{source}-xd-source"
        if not (src / "model" / "model.safetensors").exists():
            fit_row(source, "xd-source", row_settings(source, "pulse-template"), runs)
    base = row_settings(target, "pulse-template")
    for fraction in fractions:
        part = [f"data.train_user_fraction={fraction}"]
        for mode, extra in (("scratch", []), ("transfer", [f"pulse.init_from={src}/model"])):
            if mode not in modes:
                continue
            name = f"xd-{mode}-{int(fraction * 100)}"
            result = fit_row(target, name, base + part + extra, runs)
            record(("cross_domain", f"{source}->{target}", f"{int(fraction * 100)}%", mode),
                   result)


COLD_ROWS = ["sasrec-ce", "pulse-text", "pulse-template"]


def cold_start(dataset: str, runs: Path, rows: list[str] = COLD_ROWS,
               fraction: float = 0.1) -> None:
    for row in rows:
        settings = row_settings(dataset, row) + [f"data.cold_items={fraction}"]
        record(("cold_start", dataset, row), fit_row(dataset, f"cold-{row}", settings, runs))


def tot_report(dataset: str, space_dir: Path, cache: Path) -> None:
    """Thought-space score of each refined user's plain SmolLM2 rationale against its ToT
    chain (same space, same behaviour text), and the ToT rationale file for the ToT row."""
    import polars as pl
    import torch

    from rankpref.data.datasets import prepare
    from rankpref.rationales.cache import RationaleStore
    from rankpref.rationales.generate import rationale_table
    from rankpref.tasks.next_item import (load_config, load_thought_space, training_split,
                                          user_behaviour_texts)
    from rankpref.text import TextEncoder

    store = RationaleStore(cache)
    table = rationale_table(store, dataset)
    tot = table.filter(pl.col("method") == "tot")
    plain = table.filter(pl.col("method") != "tot")
    if SMOLLM2[dataset].suffix == ".parquet":
        plain = pl.read_parquet(SMOLLM2[dataset])
    merged = tot.join(plain.select("user_id", pl.col("rationale").alias("plain")), on="user_id")
    cfg = load_config(None, [f"data.name={dataset}"])
    ds = prepare(cfg.data, quiet=True)
    split, _ = training_split(ds, cfg.data)
    behaviours = user_behaviour_texts(ds, split)
    space = load_thought_space(space_dir)
    encoder = TextEncoder(space.cfg.backbone, progress=False)
    users = merged["user_id"].to_list()
    with torch.no_grad():
        b = space.behaviour(torch.from_numpy(encoder.encode([behaviours[u] for u in users])))
        plain_r = space.rationale(torch.from_numpy(encoder.encode(merged["plain"].to_list())))
        tot_r = space.rationale(torch.from_numpy(encoder.encode(merged["rationale"].to_list())))
    plain_s, tot_s = (b * plain_r).sum(-1), (b * tot_r).sum(-1)
    path = TOT[dataset]
    pl.concat([plain.select(tot.columns), tot], how="vertical_relaxed").write_parquet(path)
    record(("tree_of_thought", dataset), {
        "users_refined": len(users), "thought_space": str(space_dir),
        "settings": sorted(set(tot["prompt_version"].to_list())),
        "mean_score_plain_smollm2": round(float(plain_s.mean()), 4),
        "mean_score_tot": round(float(tot_s.mean()), 4),
        "users_where_tot_scores_higher": int((tot_s > plain_s).sum()),
        "rationale_file": str(path.relative_to(ROOT)),
        # examples only where the rationales themselves are shipped (not MovieLens text)
        "examples": [{"user_id": u, "plain": p_, "tot": t_} for u, p_, t_ in
                     zip(users[:3], merged["plain"].to_list()[:3],
                         merged["rationale"].to_list()[:3])] if path.is_relative_to(RATIONALES)
        else []})
    print(f"ToT {dataset}: {len(users)} users, mean thought-space score plain "
          f"{float(plain_s.mean()):.3f} -> ToT {float(tot_s.mean()):.3f}; wrote {path}")


def variant(dataset: str, spec: str, runs: Path) -> None:
    """``name=base_row:key=value,key=value``: a base row with extra settings, recorded under
    ``variants`` (compare on valid; the main rows keep the shared settings)."""
    name, rest = spec.split("=", 1)
    base, _, extra = rest.partition(":")
    settings = row_settings(dataset, base) + [kv for kv in extra.split(",") if kv]
    record(("variants", dataset, name), fit_row(dataset, name, settings, runs))


def main() -> None:
    global OUTPUT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=[], choices=sorted(CONFIGS))
    parser.add_argument("--rows", nargs="*", default=ROWS, choices=ROWS)
    parser.add_argument("--cross-domain", action="store_true",
                        help="beauty -> ml-100k with 10/25/100%% of the target's users")
    parser.add_argument("--fractions", type=float, nargs="*", default=[0.1, 0.25, 1.0])
    parser.add_argument("--xd-modes", nargs="*", default=["scratch", "transfer"],
                        choices=["scratch", "transfer"])
    parser.add_argument("--cold-start", nargs="*", default=[], choices=sorted(CONFIGS))
    parser.add_argument("--cold-rows", nargs="*", default=COLD_ROWS, choices=COLD_ROWS)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "bench-pulse"))
    parser.add_argument("--source-runs", default=None, help="folder holding the source "
                        "domain's <dataset>-pulse-template run (default: --runs)")
    parser.add_argument("--tot-report", default=None, choices=sorted(TOT),
                        help="compare ToT-refined and plain rationales in the thought space "
                        "and write the ToT rationale file")
    parser.add_argument("--thought-space", default=str(ROOT / "runs" / "thought-space" /
                                                       "beauty-smollm2"))
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "rankpref" /
                                               "rationales.sqlite"))
    parser.add_argument("--variant", nargs="*", default=[],
                        help="name=base_row:key=value,... on each of --datasets")
    parser.add_argument("--output", type=Path, default=OUTPUT,
                        help="results JSON that rows are merged into")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="extra config override for every row "
                        "(repeatable; recorded in each row's overrides)")
    args = parser.parse_args()
    OUTPUT = args.output
    EXTRA[:] = args.overrides
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    for spec in args.variant:
        for dataset in args.datasets:
            variant(dataset, spec, runs)
    if args.variant:
        return
    if args.tot_report:
        tot_report(args.tot_report, Path(args.thought_space), Path(args.cache))
    main_rows(args.datasets, args.rows, runs)
    if args.cross_domain:
        cross_domain("beauty", "ml-100k", args.fractions, runs,
                     Path(args.source_runs) if args.source_runs else runs, tuple(args.xd_modes))
    for dataset in args.cold_start:
        cold_start(dataset, runs, args.cold_rows)


if __name__ == "__main__":
    main()

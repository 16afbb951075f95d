"""SASRec benchmark: accuracy, epoch time, evaluation time, memory on real data.

Runs ``rankpref fit`` in a subprocess per dataset (so peak RSS is per run), then a short
1-thread vs 2-thread timing on MovieLens-100k, and writes ``benchmarks/results/sasrec.json``.

    python benchmarks/sasrec.py                       # beauty and ml-100k
    python benchmarks/sasrec.py --datasets ml-100k    # one dataset
    python benchmarks/sasrec.py --datasets ml-100k --skip-threads --set train.epochs=1 \
        --runs /tmp/smoke/runs --output /tmp/smoke/sasrec.json     # a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rankpref.io import write_json  # noqa: E402

CONFIGS = {"beauty": ROOT / "benchmarks" / "configs" / "sasrec_beauty.yaml",
           "ml-100k": ROOT / "benchmarks" / "configs" / "sasrec_ml100k.yaml"}


def run_fit(config: Path, out: Path, extra: list[str], log: Path) -> dict:
    """Run one fit in a child process; return its metrics plus wall time and peak RSS."""
    cmd = [sys.executable, "-m", "rankpref.cli", "fit", "--config", str(config), "--out", str(out),
           "--set", "train.progress=false", "--set", "train.resume=false"]
    for kv in extra:
        cmd += ["--set", kv]
    started = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"fit failed ({' '.join(cmd)}); see {log}")
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    metrics["wall_seconds"] = round(wall, 1)
    metrics["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)
    return metrics


def time_evaluation(artifact: Path, repeats: int = 3) -> dict:
    """Full-ranking test evaluation of every user, timed ``repeats`` times in this process."""
    from rankpref.settings import set_threads
    from rankpref.tasks.next_item import Recommender
    from rankpref.tasks.next_item.data import eval_datamodule
    from rankpref.tasks.next_item.evaluate import evaluate_model

    rec = Recommender.load(artifact)
    cfg = rec.cfg
    set_threads(cfg.train.threads)
    dm = eval_datamodule(cfg, rec.vocab)
    seconds, metrics = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        metrics = evaluate_model(rec.model, dm, cfg, "test")
        seconds.append(time.perf_counter() - started)
    return {"users": metrics["examples"], "items": dm.num_items, "threads": cfg.train.threads,
            "seconds_min": round(min(seconds), 3), "seconds_all": [round(x, 3) for x in seconds],
            "test_ndcg@10": metrics["ndcg@10"]}


def run_seeds(seeds: list[int], runs: Path, result: dict, extra: list[str] = ()) -> dict:
    """The beauty config with other seeds, two processes side by side (1 thread each)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(seed):
        m = run_fit(CONFIGS["beauty"], runs / f"beauty-seed{seed}",
                    [f"train.seed={seed}", *extra], runs / f"beauty-seed{seed}.log")
        return seed, m

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(one, seeds))
    rows = {}
    if "beauty" in result.get("results", {}):
        base = result["results"]["beauty"]
        rows["42"] = {"valid_ndcg@10": base["valid"]["ndcg@10"],
                      "test_ndcg@10": base["test"]["ndcg@10"],
                      "test_recall@10": base["test"]["recall@10"]}
    for seed, m in done:
        rows[str(seed)] = {"valid_ndcg@10": m["valid"]["ndcg@10"],
                           "test_ndcg@10": m["test"]["ndcg@10"],
                           "test_recall@10": m["test"]["recall@10"],
                           "best_epoch": m["best_epoch"]}
    tests = [r["test_ndcg@10"] for r in rows.values()]
    mean = sum(tests) / len(tests)
    spread = (sum((t - mean) ** 2 for t in tests) / max(len(tests) - 1, 1)) ** 0.5
    return {"config": str(CONFIGS["beauty"].relative_to(ROOT)), "by_seed": rows,
            "test_ndcg@10_mean": mean, "test_ndcg@10_std": spread}


def versions() -> dict:
    import lightning
    import polars
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "lightning": lightning.__version__, "polars": polars.__version__}


def summary(m: dict) -> dict:
    keys = [f"{m_}@{k}" for k in (10, 20) for m_ in ("recall", "ndcg", "mrr")]
    return {
        "model": m["model"], "loss": m["loss"], "split": m["split"], "protocol": m["protocol"],
        "mask_history": m["mask_history"], "selected_on": m["selected_on"],
        "valid": {k: m["valid"][k] for k in keys}, "test": {k: m["test"][k] for k in keys},
        "users_evaluated": m["test"]["examples"], "items": m["data"]["items"],
        "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
        "seconds_per_epoch": round(m["seconds_per_epoch"], 2),
        "eval_seconds_test_all_users": m["eval_seconds"]["test"],
        "train_seconds": m["train_seconds"], "wall_seconds": m["wall_seconds"],
        "peak_rss_mib": m["peak_rss_mib"], "threads": m["threads"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=["ml-100k", "beauty"],
                        choices=sorted(CONFIGS))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "bench"))
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "sasrec.json"))
    parser.add_argument("--skip-threads", action="store_true",
                        help="skip the 1 vs 2 thread timing on ml-100k")
    parser.add_argument("--beauty-seeds", type=int, nargs="*", default=[],
                        help="extra seeds of the beauty config, run two at a time, for the "
                             "seed spread of the test metrics")
    parser.add_argument("--eval-timing-only", action="store_true",
                        help="only time full-ranking evaluation of the trained beauty artifact")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="extra config override for every fit "
                        "(repeatable), e.g. train.epochs=1 for a smoke run")
    args = parser.parse_args()
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    output = Path(args.output)
    result = json.loads(output.read_text()) if output.exists() else {}
    result.update({"benchmark": "SASRec next-item recommendation, full ranking",
                   "date": dt.date.today().isoformat(), "machine":
                   f"{os.cpu_count()} CPU cores, {platform.machine()}, no GPU",
                   "versions": versions()})
    result.setdefault("results", {})
    if args.eval_timing_only:
        args.datasets, args.skip_threads = [], True
    for name in args.datasets:
        print(f"[sasrec] {name}: fitting with {CONFIGS[name].name}", flush=True)
        m = run_fit(CONFIGS[name], runs / name, args.overrides, runs / f"{name}.log")
        result["results"][name] = {"dataset": name, "config": str(CONFIGS[name].relative_to(ROOT)),
                                   **summary(m)}
        write_json(output, result)
        print(json.dumps(result["results"][name]["test"], indent=1), flush=True)
    if not args.skip_threads:
        timing = {}
        for threads in (1, 2):
            print(f"[sasrec] ml-100k epoch time with {threads} thread(s)", flush=True)
            m = run_fit(CONFIGS["ml-100k"], runs / f"ml-100k-threads{threads}",
                        ["train.epochs=3", f"train.threads={threads}", *args.overrides],
                        runs / f"ml-100k-threads{threads}.log")
            timing[f"threads_{threads}"] = {"seconds_per_epoch": round(m["seconds_per_epoch"], 2),
                                            "eval_seconds_test": m["eval_seconds"]["test"]}
        timing["speedup_2_over_1"] = round(timing["threads_1"]["seconds_per_epoch"] /
                                           timing["threads_2"]["seconds_per_epoch"], 2)
        timing["note"] = ("3 epochs each, same run, same machine; other processes may share "
                          "the 2 cores")
        result["threads_ml-100k"] = timing
        write_json(output, result)
    if args.beauty_seeds:
        result["beauty_seeds"] = run_seeds(args.beauty_seeds, runs, result, args.overrides)
        write_json(output, result)
    beauty = runs / "beauty" / "model"
    if (beauty / "model.safetensors").exists():
        print("[sasrec] timing full-ranking evaluation of all beauty users", flush=True)
        result["eval_timing_beauty"] = time_evaluation(beauty)
        write_json(output, result)
    print(f"[sasrec] wrote {output}")


if __name__ == "__main__":
    main()

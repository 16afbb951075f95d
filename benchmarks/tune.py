"""Tuning benchmark: a 20-trial optuna study for SASRec on MovieLens-100k.

1. trains the default config (``benchmarks/configs/sasrec_ml100k.yaml``) once;
2. runs ``rankpref tune benchmarks/configs/tune_sasrec_ml100k.yaml`` (20 trials, TPE, median
   pruning, selected on valid ndcg@10; the study is a SQLite file, so a stopped benchmark
   continues where it stopped);
3. retrains the best config with the default config's epoch budget (trials are shorter);
4. writes ``benchmarks/results/tune.json``: valid and test ndcg@10 of the default config, of
   the best trial (chosen on valid only; its test number is read afterwards) and of its
   retraining, and copies optuna's plots to ``benchmarks/results/tune_history.png`` /
   ``tune_importance.png``.

    python benchmarks/tune.py                 # everything (about 1 h on one CPU core)
    python benchmarks/tune.py --trials 4      # a shorter study
    python benchmarks/tune.py --trials 2 --set train.epochs=1 --set train.patience=1 \
        --out /tmp/smoke/runs --results /tmp/smoke/results     # a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rankpref.io import write_json  # noqa: E402

DEFAULT = ROOT / "benchmarks" / "configs" / "sasrec_ml100k.yaml"
SPEC = ROOT / "benchmarks" / "configs" / "tune_sasrec_ml100k.yaml"
RESULTS = ROOT / "benchmarks" / "results"


def _row(metrics: dict) -> dict:
    return {"valid_ndcg@10": metrics["valid"]["ndcg@10"],
            "test_ndcg@10": metrics["test"]["ndcg@10"],
            "valid_recall@10": metrics["valid"]["recall@10"],
            "test_recall@10": metrics["test"]["recall@10"], "best_epoch": metrics["best_epoch"],
            "epochs_run": metrics["epochs_run"], "train_seconds": metrics["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-tune",
                        help="folder of the runs and the study")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder that receives tune.json and the two plots")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="extra config override for the default run, "
                        "every trial and the retraining (repeatable), e.g. train.epochs=1")
    args = parser.parse_args()

    from rankpref.config import parse_override
    from rankpref.tasks.next_item import fit, load_config
    from rankpref.tuning import load_spec, tune

    # 1. the default config, same seed and evaluator as every trial
    default_dir = args.out / "default"
    cfg = load_config(DEFAULT, [f"output_dir={default_dir}", "train.progress=false",
                                *args.overrides])
    metrics_file = default_dir / "model" / "metrics.json"
    if not metrics_file.exists():
        started = time.perf_counter()
        fit(cfg)
        print(f"default config trained in {time.perf_counter() - started:.0f} s", flush=True)
    default = json.loads(metrics_file.read_text())

    # 2. the study (continues a stored one)
    spec, base = load_spec(SPEC, [f"trials={args.trials}"])
    if args.overrides:  # on top of the spec's own overrides (a new --out starts a new study)
        spec = spec.model_copy(update={"overrides": {
            **spec.overrides, **dict(parse_override(kv) for kv in args.overrides)}})
    started = time.perf_counter()
    summary = tune(spec, base, args.out / "study", study_name="sasrec-ml100k", progress=False)
    seconds = time.perf_counter() - started
    best = json.loads((Path(summary["best_artifact"]) / "metrics.json").read_text())

    # 2b. the best config again with the default config's epoch budget (trials were shorter)
    full_dir = args.out / "tuned-default-budget"
    full_file = full_dir / "model" / "metrics.json"
    if not full_file.exists():
        fit(load_config(summary["best_config"], [
            f"output_dir={full_dir}", f"train.epochs={cfg.train.epochs}",
            f"train.patience={cfg.train.patience}", *args.overrides]))
    full = json.loads(full_file.read_text())

    # 3. results
    plots = {}
    args.results.mkdir(parents=True, exist_ok=True)
    for name, path in summary.get("plots", {}).items():
        target = args.results / f"tune_{name}.png"
        shutil.copyfile(path, target)
        plots[name] = str(target.relative_to(ROOT) if target.is_relative_to(ROOT) else target)
    d, b = _row(default), _row(best)
    result = {
        "benchmark": "tune", "dataset": "ml-100k", "model": "sasrec", "loss": "ce",
        "split": "leave_one_out", "protocol": "full", "metric": "ndcg@10",
        "selected_on": "valid ndcg@10", "spec": str(SPEC.relative_to(ROOT)),
        "default_config": str(DEFAULT.relative_to(ROOT)),
        "date": dt.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
        "threads": cfg.train.threads,
        "trials": summary["trials"],
        "trial_seconds_total": round(sum(t["seconds"] or 0 for t in summary["history"]), 1),
        "study_seconds_this_invocation": round(seconds, 1),
        "default": d,
        "tuned": {**b, "trial": summary["best_trial"], "params": summary["best_params"],
                  "budget": f"{spec.overrides.get('train.epochs')} epochs, patience "
                            f"{spec.overrides.get('train.patience')} (the trial itself)"},
        "tuned_default_budget": {**_row(full), "budget": f"{cfg.train.epochs} epochs, "
                                 f"patience {cfg.train.patience} (retrained best config)"},
        "valid_ndcg@10_ratio": round(b["valid_ndcg@10"] / d["valid_ndcg@10"], 4),
        "test_ndcg@10_ratio": round(b["test_ndcg@10"] / d["test_ndcg@10"], 4),
        "history": summary["history"], "plots": plots,
    }
    if args.overrides:
        result["overrides"] = args.overrides
    write_json(args.results / "tune.json", result)
    print(json.dumps({k: result[k] for k in ("trials", "default", "tuned", "tuned_default_budget",
                                             "valid_ndcg@10_ratio", "test_ndcg@10_ratio")},
                     indent=2))


if __name__ == "__main__":
    main()

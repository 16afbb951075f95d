"""Recommendation benchmark: rankpref's backbones beside RecBole 1.2.1 on one split, in one run.

Part ``ml100k`` (RecBole's own protocol on MovieLens-100k: no k-core, leave-one-out by time,
max length 50, full ranking, history *not* masked):

1. Both libraries read one file: ``ml-100k.inter`` stable-sorted by (user, timestamp), its
   timestamps then replaced by the row's rank in that order. ml-100k has many equal
   timestamps per user; rankpref keeps file order among them but RecBole's sort does not
   (with the real timestamps 5 valid and 4 test targets of 943 users differed), so the
   ranks give both one order, the file's.
2. RecBole runs in its own virtualenv (numpy<2; made here on first use) through
   ``benchmarks/recbole_runner.py``, which also exports every user's valid and test target;
   the split check compares them with rankpref's, user by user.
3. rankpref's rows are ``rankpref fit`` runs in child processes (one thread each).

Every finished run leaves its metrics in the work folder and is not run again, so a stopped
benchmark continues where it was (``--fresh`` reruns). Results go to
``benchmarks/results/recommendation.json`` (rows named by dataset, library, model, variant,
split, metric) and ``benchmarks/results/recommendation.png``.

    python benchmarks/recommendation.py --parts recbole     # RecBole's models (slow: background)
    python benchmarks/recommendation.py --parts ml100k      # rankpref's rows, split check, JSON
    python benchmarks/recommendation.py --parts beauty --models sasrec   # Beauty rows
    python benchmarks/recommendation.py --parts beauty --collect   # write what has finished
    python benchmarks/recommendation.py --parts ml100k-why         # the why rows, 5-core ml-100k
    python benchmarks/recommendation.py --parts ml100k --models sasrec --epochs 2 \\
        --work /tmp/smoke --output /tmp/smoke/rec.json     # a smoke run
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
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rankpref.io import write_json  # noqa: E402
from rankpref.settings import data_dir  # noqa: E402

PROTOCOL = ("RecBole's: no k-core, leave-one-out by time, max_len 50, full ranking, "
            "history not masked")
RECBOLE_PINS = ["recbole==1.2.1", "torch==2.13.0", "numpy<2", "pandas<2.2", "scipy", "pyyaml",
                "colorlog", "colorama", "tensorboard", "thop", "tabulate", "plotly", "texttable"]

# rankpref's rows on ml-100k: (model, variant) -> overrides of the protocol's base config
ML100K_ROWS: dict[tuple[str, str], list[str]] = {
    ("sasrec", "default"): ["model.name=sasrec"],
    ("sasrec", "recbole-layout"): [
        "model.name=sasrec", "model.norm=post", "model.scale_embeddings=false",
        "model.dropout=0.5"],
    ("sasrec", "sliding-10"): ["model.name=sasrec", "data.train_on=sliding",
                               "data.window_stride=10"],
    ("gru4rec", "default"): ["model.name=gru4rec"],
    ("gru4rec", "sliding-10"): ["model.name=gru4rec", "data.train_on=sliding",
                                "data.window_stride=10"],
    ("bert4rec", "default"): ["model.name=bert4rec"],
    ("bsarec", "every-prefix"): ["model.name=bsarec", "train.batch_size=256", "train.lr=0.0005"],
}
# Beauty (the S3-Rec split, history masked, full ranking): rows on the PULSE benchmark's base
# config (benchmarks/configs/pulse_beauty.yaml: 25 epochs at most, patience 3), so rows
# differ only in what they name. That config's dropout 0.2 and 2 heads are SASRec's; BSARec's
# row restores its own recipe (dropout 0.5, 1 head, batch 256, lr 5e-4, every prefix).
BEAUTY_CONFIG = ROOT / "benchmarks" / "configs" / "pulse_beauty.yaml"
TEXT_ONLY = ["model.name=pulse", "pulse.rationales=none", "pulse.why_weight=0"]
BEAUTY_ROWS: dict[tuple[str, str], list[str]] = {
    ("sasrec", "ce"): ["model.name=sasrec"],
    ("sasrec", "sampled_softmax_logq"): [
        "model.name=sasrec", "loss.name=sampled_softmax_logq", "loss.num_negatives=256",
        "loss.in_batch_negatives=256"],
    ("sasrec", "gbce"): ["model.name=sasrec", "loss.name=gbce", "loss.num_negatives=256"],
    ("gru4rec", "ce"): ["model.name=gru4rec"],
    ("bert4rec", "ce"): ["model.name=bert4rec"],
    # GRU4Rec was still improving at the 25-epoch cap (BERT4Rec stopped on patience before
    # it): the same with up to 100 epochs, patience 3 still (not run yet: ~1 h of CPU)
    ("gru4rec", "ce, up to 100 epochs"): ["model.name=gru4rec", "train.epochs=100"],
    ("bsarec", "every-prefix"): ["model.name=bsarec", "model.dropout=0.5", "model.heads=1",
                                 "train.batch_size=256", "train.lr=0.0005"],
    ("pulse", "text"): TEXT_ONLY,
    ("pulse", "template, infonce"): ["model.name=pulse", "pulse.rationales=template"],
    ("pulse", "template, distill"): ["model.name=pulse", "pulse.rationales=template",
                                     "pulse.why_objective=distill"],
    ("pulse", "text, cold 10%, sum"): [*TEXT_ONLY, "data.cold_items=0.1"],
    ("pulse", "text, cold 10%, capped_delta"): [
        *TEXT_ONLY, "data.cold_items=0.1", "model.item_repr=capped_delta"],
}
# paired bootstraps on Beauty: baseline -> the rows compared with it (None: every other row)
BEAUTY_PAIRS: dict[tuple[str, str], list[tuple[str, str]] | None] = {
    ("sasrec", "ce"): None,
    ("pulse", "text"): [("pulse", "template, infonce"), ("pulse", "template, distill")],
    ("pulse", "text, cold 10%, sum"): [("pulse", "text, cold 10%, capped_delta")],
}
# MovieLens-100k as the PULSE benchmark has it (5-core, history masked, item text = title +
# genres; benchmarks/configs/pulse_ml100k.yaml): the why rows, cheap enough for full budgets
ML100K_PULSE_CONFIG = ROOT / "benchmarks" / "configs" / "pulse_ml100k.yaml"
WHY_ROWS: dict[tuple[str, str], list[str]] = {
    ("pulse", "text"): TEXT_ONLY,
    ("pulse", "template, infonce"): ["model.name=pulse", "pulse.rationales=template"],
    ("pulse", "template, distill"): ["model.name=pulse", "pulse.rationales=template",
                                     "pulse.why_objective=distill"],
}
WHY_PAIRS = {("pulse", "text"): None}


class RowSet(NamedTuple):
    """One table of rankpref rows on one base config, with its paired comparisons."""
    part: str          # key in the results file
    dataset: str
    protocol: str
    config: Path
    rows: dict         # (model, variant) -> overrides
    pairs: dict        # baseline -> rows compared with it (None: every other row)
    prefix: str        # run folder prefix in the work folder


ROW_SETS = {
    "beauty": RowSet("beauty", "beauty",
                     "S3-Rec split, leave-one-out, full ranking, history masked",
                     BEAUTY_CONFIG, BEAUTY_ROWS, BEAUTY_PAIRS, "beauty"),
    "ml100k-why": RowSet("ml-100k 5-core", "ml-100k 5-core",
                         "5-core, leave-one-out, full ranking, history masked",
                         ML100K_PULSE_CONFIG, WHY_ROWS, WHY_PAIRS, "ml100k5"),
}
RECBOLE_MODELS = ["SASRec", "GRU4Rec"]
FEED = "ml100k_sorted"
RANKPREF_NAME = {"SASRec": "sasrec", "GRU4Rec": "gru4rec"}


def sorted_feed(work: Path) -> Path:
    """``work/ml100k_sorted/ml100k_sorted.inter``: the shared file stable-sorted by (user,
    timestamp), timestamps replaced by ranks (not named ml-100k: RecBole would read its own
    bundled copy)."""
    import polars as pl

    out = work / FEED / f"{FEED}.inter"
    if out.exists():
        return out
    source = data_dir() / "ml-100k" / "ml-100k.inter"
    if not source.exists():
        raise SystemExit(f"{source}: not found (set RANKPREF_DATA_DIR to the shared data)")
    frame = pl.read_csv(source, separator="\t", infer_schema=False)
    user, time_col = frame.columns[0], frame.columns[3]
    frame = frame.with_columns(pl.col(user).cast(pl.Int64).alias("_u"),
                               pl.col(time_col).cast(pl.Float64).alias("_t"))
    frame = frame.sort(["_u", "_t"], maintain_order=True).drop("_u", "_t")
    frame = frame.with_columns(pl.int_range(pl.len()).cast(pl.Utf8).alias(time_col))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    frame.write_csv(tmp, separator="\t")
    os.replace(tmp, out)
    return out


def base_overrides(feed: Path) -> list[str]:
    return ["data.name=null", "data.format=recbole", f"data.path={feed}",
            "data.min_user_interactions=0", "data.min_item_interactions=0", "data.max_len=50",
            "eval.mask_history=false", "train.epochs=200", "train.patience=10",
            "train.threads=1", "train.progress=false", "train.resume=false"]


# ------------------------------------------------------------------------------ RecBole


def recbole_python(work: Path) -> Path:
    venv = work / "recbole-venv"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *RECBOLE_PINS], check=True)
        (venv / ".installed").write_text(" ".join(RECBOLE_PINS))
    return python


def run_recbole(work: Path, models: list[str], epochs: int, fresh: bool) -> None:
    python = recbole_python(work)
    feed = sorted_feed(work)
    runner = [str(python), str(ROOT / "benchmarks" / "recbole_runner.py"), "--data-path",
              str(feed.parent.parent), "--dataset", FEED]
    split = work / "recbole" / "split.json"
    if not split.exists() or fresh:
        split.parent.mkdir(parents=True, exist_ok=True)
        with open(split.with_suffix(".log"), "w") as fh:
            subprocess.run([*runner, "--model", "SASRec", "--split-only", "--out", str(split)],
                           check=True, stdout=fh, stderr=subprocess.STDOUT, cwd=work)
    for model in models:
        out = work / "recbole" / f"{model}.json"
        if out.exists() and not fresh:
            print(f"recbole {model}: done before ({out})")
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        log = out.with_suffix(".log")
        print(f"recbole {model}: running (log {log})", flush=True)
        with open(log, "w") as fh:
            subprocess.run([*runner, "--model", model, "--epochs", str(epochs),
                            "--out", str(out)],
                           check=True, stdout=fh, stderr=subprocess.STDOUT, cwd=work)


# ------------------------------------------------------------------------------ rankpref


def run_rankpref(run_dir: Path, overrides: list[str], fresh: bool,
                 config: Path | None = None) -> dict:
    metrics_path = run_dir / "model" / "metrics.json"
    if metrics_path.exists() and not fresh:
        return json.loads(metrics_path.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "rankpref.cli", "fit", "--out", str(run_dir)]
    if config is not None:
        cmd += ["--config", str(config)]
    for kv in overrides:
        cmd += ["--set", kv]
    started = time.perf_counter()
    with open(run_dir / "fit.log", "w") as fh:
        status = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if status != 0:
        raise SystemExit(f"fit failed ({' '.join(cmd)}); see {run_dir / 'fit.log'}")
    metrics = json.loads(metrics_path.read_text())
    metrics["wall_seconds"] = round(time.perf_counter() - started, 1)
    return metrics


def rankpref_targets(feed: Path) -> dict[str, dict[str, str]]:
    """Every user's valid and test target in rankpref's split of ``feed`` (original ids)."""
    from rankpref.data.datasets import prepare
    from rankpref.tasks.next_item import load_config
    from rankpref.tasks.next_item.data import training_split

    cfg = load_config(overrides=base_overrides(feed)[:7])
    dataset = prepare(cfg.data, quiet=True)
    split, _ = training_split(dataset, cfg.data)
    users, items = dataset.vocab.users, dataset.vocab.items
    return {name: {users[u]: items[t] for u, t in zip(ex.users, ex.targets)}
            for name, ex in (("valid", split.valid), ("test", split.test))}


def split_check(feed: Path, work: Path) -> dict:
    """Compare rankpref's held-out targets with those RecBole exported, user by user."""
    ours = rankpref_targets(feed)
    out = {"users": len(ours["test"])}
    # RecBole's split is the same for every model it runs: its split-only export, else the
    # export of any finished model
    for path in [work / "recbole" / "split.json",
                 *(work / "recbole" / f"{m}.json" for m in RECBOLE_MODELS)]:
        if not path.exists():
            continue
        theirs = json.loads(path.read_text())
        out["recbole_export"] = path.name
        for name in ("valid", "test"):
            got = theirs[f"{name}_targets"]
            differ = sorted(u for u in set(ours[name]) | set(got) if ours[name].get(u) != got.get(u))
            out[name] = {"users_compared": len(set(ours[name]) | set(got)),
                         "differ": len(differ), "first_differing": differ[:5]}
        break
    compared = [v for v in out.values() if isinstance(v, dict)]
    # None: no RecBole export to compare with yet
    out["identical"] = all(v["differ"] == 0 for v in compared) if compared else None
    return out


# ------------------------------------------------------------------------------ rows


def row(library: str, model: str, variant: str, m: dict, seed, dataset: str = "ml-100k",
        protocol: str = PROTOCOL) -> dict:
    test, valid = m["test"], m["valid"]
    return {"dataset": dataset, "protocol": protocol, "library": library, "model": model,
            "variant": variant, "seed": seed, "split": "test",
            "ndcg@10": test.get("ndcg@10"), "recall@10": test.get("recall@10"),
            "valid ndcg@10": valid.get("ndcg@10"),
            "seconds_per_epoch": round(m["seconds_per_epoch"], 2),
            "best_epoch": m.get("best_epoch"), "epochs_run": m.get("epochs_run"),
            **({"train_on": m["train_on"]} if "train_on" in m else {})}


def recbole_rows(work: Path) -> list[dict]:
    rows = []
    for model in RECBOLE_MODELS:
        path = work / "recbole" / f"{model}.json"
        if path.exists():
            m = json.loads(path.read_text())
            capped = m["epochs_run"] >= m["config"]["epochs"]
            # a run stopped by its epoch cap, not by early stopping, times epochs but has
            # not converged: its accuracy is no comparison
            variant = (f"default, capped at {m['config']['epochs']} epochs (timing only)"
                       if capped else "default")
            rows.append(row("recbole 1.2.1", RANKPREF_NAME[model], variant,
                            {**m, "test": {k.lower(): v for k, v in m["test"].items()},
                             "valid": {k.lower(): v for k, v in m["valid"].items()}},
                            m["seed"]))
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """One line per (library, model, variant): mean and std over its seeds."""
    import numpy as np

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["library"], r["model"], r["variant"]), []).append(r)
    out = []
    for (library, model, variant), rs in groups.items():
        line = {"dataset": rs[0]["dataset"], "library": library, "model": model,
                "variant": variant, "split": "test", "seeds": [r["seed"] for r in rs]}
        for key in ("ndcg@10", "recall@10", "valid ndcg@10", "seconds_per_epoch"):
            values = np.array([r[key] for r in rs], dtype=float)
            line[key] = round(float(values.mean()), 5)
            line[f"{key} std"] = round(float(values.std(ddof=1)), 5) if len(rs) > 1 else None
        out.append(line)
    return out


def ratios(lines: list[dict]) -> list[dict]:
    """Each rankpref line of a model against RecBole's line of that model, this run."""
    out = []
    theirs = {r["model"]: r for r in lines if r["library"].startswith("recbole")}
    for r in lines:
        if r["library"] == "rankpref" and r["model"] in theirs:
            t = theirs[r["model"]]
            ratio = {"model": r["model"], "variant": r["variant"],
                     "recbole variant": t["variant"],
                     "seconds_per_epoch recbole / rankpref": round(
                         t["seconds_per_epoch"] / r["seconds_per_epoch"], 1)}
            if "timing only" not in t["variant"]:
                ratio["ndcg@10 rankpref / recbole"] = round(r["ndcg@10"] / t["ndcg@10"], 3)
            out.append(ratio)
    return out


def per_user_ndcg(artifact: Path, k: int = 10) -> tuple[dict[int, float], set[int]]:
    """Test ndcg@k of every user of an artifact's own split (for paired comparisons), and the
    users whose test target is an item held out of training (none without a cold split)."""
    import torch

    from rankpref.metrics.ranking import batch_ranks
    from rankpref.tasks.next_item import Recommender
    from rankpref.tasks.next_item.data import eval_datamodule, row_chunks, score_rows

    rec = Recommender.load(artifact)
    dm = eval_datamodule(rec.cfg, rec.vocab)
    model = rec.model.eval()
    known = getattr(model, "id_known", None)
    out, cold = {}, set()
    with torch.no_grad():
        for batch in dm.eval_dataloader("test"):
            for part in row_chunks(batch, score_rows(dm.num_items)):
                ranks = batch_ranks(model.score_all(part["inputs"]), part["history"],
                                    part["targets"], mask_history=rec.cfg.eval.mask_history)
                gains = torch.where(ranks < k, 1.0 / torch.log2(ranks.float() + 2), 0.0)
                users = part["users"]
                out.update(zip(users.tolist(), gains.tolist()))
                if known is not None and rec.cfg.data.cold_items:
                    cold.update(users[known[part["targets"]] == 0].tolist())
    return out, cold


def paired_bootstrap(a: dict[int, float], b: dict[int, float], samples: int = 2000,
                     seed: int = 0) -> dict:
    """Mean of b - a over the users both have, with a 95% percentile interval from
    resampling users."""
    import numpy as np

    users = sorted(set(a) & set(b))
    diff = np.array([b[u] - a[u] for u in users])
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"users": len(users), "mean_difference": round(float(diff.mean()), 5),
            "ci95": [round(float(low), 5), round(float(high), 5)]}


def paired_against(per_user: dict[tuple, dict[int, float]], baseline: tuple[str, str],
                   rows: list[tuple[str, str]] | None = None) -> list[dict]:
    """Each row's (or each of ``rows``') per-user test ndcg@10 (``per_user``: (model,
    variant, seed) -> user -> ndcg) against ``baseline``'s (model, variant) of the same seed:
    the mean difference over users and its 95% bootstrap interval. Rows with a cold/warm
    split are not compared with rows without one (their test users differ)."""
    out = []
    for (model, variant, seed), scores in per_user.items():
        base = per_user.get((*baseline, seed))
        if base is None or (model, variant) == baseline:
            continue
        if rows is not None and (model, variant) not in rows:
            continue
        if rows is None and ("cold" in variant) != ("cold" in baseline[1]):
            continue
        out.append({"baseline": f"{baseline[0]} ({baseline[1]})", "row": f"{model} ({variant})",
                    "seed": seed, "ndcg@10": paired_bootstrap(base, scores)})
    # over all seeds at once: each user's difference averaged over the seeds both rows ran
    for row_name in sorted({p["row"] for p in out}):
        seeds = sorted(p["seed"] for p in out if p["row"] == row_name)
        if len(seeds) < 2:
            continue
        key = next((m, v) for (m, v, _) in per_user if f"{m} ({v})" == row_name)
        users = set.intersection(*(set(per_user[(*key, s)]) & set(per_user[(*baseline, s)])
                                   for s in seeds))
        base = {u: sum(per_user[(*baseline, s)][u] for s in seeds) / len(seeds) for u in users}
        mean = {u: sum(per_user[(*key, s)][u] for s in seeds) / len(seeds) for u in users}
        out.append({"baseline": f"{baseline[0]} ({baseline[1]})", "row": row_name,
                    "seed": f"mean of {len(seeds)}", "ndcg@10": paired_bootstrap(base, mean)})
    return out


def model_config(work: Path, base_config: Path, model: str) -> Path:
    """``base_config`` with only the ``model:`` keys that ``model``'s own config has (GRU4Rec
    has no blocks or heads; unknown keys are errors), written into the work folder."""
    import dataclasses

    import yaml

    import rankpref.models  # noqa: F401  (registers the models)
    from rankpref.registry import MODELS

    accepted = {f.name for f in dataclasses.fields(MODELS.entry(model, "next_item").config)}
    base = yaml.safe_load(base_config.read_text())
    dropped = set(base["model"]) - accepted
    if not dropped:
        return base_config
    base["model"] = {k: v for k, v in base["model"].items() if k in accepted}
    path = work / "configs" / f"{base_config.stem}-{model}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {base_config.name} without model.{', model.'.join(sorted(dropped))}"
                    f" ({model} has no such keys)\n" + yaml.safe_dump(base, sort_keys=False))
    return path


def run_rows(rowset: RowSet, work: Path, models: list[str] | None,
             variants: list[str] | None, seeds: list[int], epochs: int | None, fresh: bool,
             collect: bool = False) -> dict:
    """Run (or, with ``collect``, only gather the finished) rows of a row set."""
    rows, artifacts = [], {}
    for (model, variant), extra in rowset.rows.items():
        if (models and model not in models) or (variants and variant not in variants):
            continue
        for seed in seeds:
            overrides = ["train.progress=false", "train.resume=false", *extra,
                         f"train.seed={seed}"]
            if epochs:
                overrides.append(f"train.epochs={epochs}")
            name = (f"{rowset.prefix}-{model}-{variant.replace(' ', '').replace(',', '-')}"
                    f"-s{seed}")
            if collect and not (work / "runs" / name / "model" / "metrics.json").exists():
                continue
            print(f"rankpref {rowset.dataset} {model} ({variant}) seed {seed}", flush=True)
            m = run_rankpref(work / "runs" / name, overrides, fresh,
                             config=model_config(work, rowset.config, model))
            r = row("rankpref", model, variant, m, seed, dataset=rowset.dataset,
                    protocol=rowset.protocol)
            if "cold_start" in m:
                cold = m["cold_start"]
                r.update({f"{part} ndcg@10": cold[part]["ndcg@10"] for part in ("cold", "warm")
                          if part in cold})
                r.update({f"{part} recall@10": cold[part]["recall@10"]
                          for part in ("cold", "warm") if part in cold})
            rows.append(r)
            artifacts[(model, variant, seed)] = work / "runs" / name / "model"
            print(f"  test ndcg@10 {m['test']['ndcg@10']:.4f}", flush=True)
    per_user, cold = {}, {}
    for (m, v, seed), path in artifacts.items():
        scores, cold_users = per_user_ndcg(path)
        per_user[(m, v, seed)] = scores
        if cold_users:  # cold-start rows again on their cold targets alone
            cold[(m, v + ", cold targets", seed)] = {u: scores[u] for u in cold_users}
    pairs = [p for baseline, compared in rowset.pairs.items()
             for p in paired_against(per_user, baseline, compared)]
    pairs += [p for (bm, bv), compared in rowset.pairs.items() if "cold" in bv
              for p in paired_against(cold, (bm, bv + ", cold targets"),
                                      [(m, v + ", cold targets") for m, v in compared or []])]
    return {"rows": rows, "paired_bootstrap": pairs}


def merge_rows(rowset: RowSet, section: dict, previous: dict | None) -> dict:
    """``section`` plus the rows and paired results of ``previous`` it does not redo (runs
    side by side, or runs whose work folder is gone), in the order of the row set."""
    rows, pairs = list(section["rows"]), list(section["paired_bootstrap"])
    order = {key: i for i, key in enumerate(rowset.rows)}
    if previous:
        ran = {(r["model"], r["variant"], r["seed"]) for r in rows}
        rows += [r for r in previous.get("rows", [])
                 if (r["model"], r["variant"], r["seed"]) not in ran]
        done = {(p["baseline"], p["row"], p["seed"]) for p in pairs}
        pairs += [p for p in previous.get("paired_bootstrap", [])
                  if (p["baseline"], p["row"], p["seed"]) not in done]
    rows.sort(key=lambda r: (order.get((r["model"], r["variant"]), len(order)), r["seed"]))
    return {"rows": rows, "summary": summary(rows), "paired_bootstrap": pairs}


def plot(rows: list[dict], out: Path,
         title: str = "ml-100k, RecBole's protocol: rankpref (blue) and RecBole (grey)") -> None:
    from rankpref.plots import new_figure, save_figure

    fig, ax = new_figure(7, 0.35 * len(rows) + 1.2)
    labels = [f"{r['library'].split()[0]} {r['model']} ({r['variant']})" for r in rows]
    values = [r["ndcg@10"] for r in rows]
    errors = [r.get("ndcg@10 std") or 0.0 for r in rows]
    colors = ["#888888" if r["library"].startswith("recbole") else "#3b6ea5" for r in rows]
    ax.barh(labels, values, xerr=errors, color=colors)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.4f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test ndcg@10 (full ranking; bars: mean, whiskers: std over seeds)")
    ax.set_title(title)
    save_figure(fig, out)


def markdown(result: dict) -> str:
    """The docs page's tables, from the results file."""
    def num(v, std=None):
        if v is None:
            return ""
        return f"{v:.4f}" + (f" ± {std:.4f}" if std else "")

    def summary_table(first: str, summary_rows: list[dict], first_of) -> list[str]:
        out = [f"| {first} | model | variant | seeds | test ndcg@10 | test recall@10 | "
               "valid ndcg@10 | s/epoch |", "|---|---|---|---|---|---|---|---|"]
        for r in summary_rows:
            out.append(f"| {first_of(r)} | {r['model']} | {r['variant']} | "
                       f"{len(r['seeds'])} | {num(r['ndcg@10'], r['ndcg@10 std'])} | "
                       f"{num(r['recall@10'], r['recall@10 std'])} | "
                       f"{num(r['valid ndcg@10'])} | {r['seconds_per_epoch']:.1f} |")
        return out + [""]

    lines = []
    ml = result.get("ml-100k")
    if ml:
        lines += summary_table("library", ml["summary"], lambda r: r["library"])
    for part in ("ml-100k", *(r.part for r in ROW_SETS.values())):
        pairs = (result.get(part) or {}).get("paired_bootstrap") or []
        if pairs:
            lines += [f"| {part}: row | against | seed | ndcg@10 difference | 95% interval |",
                      "|---|---|---|---|---|"]
            for p in pairs:
                d = p["ndcg@10"]
                lines.append(f"| {p['row']} | {p['baseline']} | {p['seed']} | "
                             f"{d['mean_difference']:+.4f} | [{d['ci95'][0]:+.4f}, "
                             f"{d['ci95'][1]:+.4f}] |")
            lines.append("")
    for rowset in ROW_SETS.values():
        section = result.get(rowset.part)
        if not section:
            continue
        if any(len(r["seeds"]) > 1 for r in section["summary"]):
            lines += summary_table("dataset", section["summary"], lambda r: rowset.part)
            continue
        lines += [f"| {rowset.part}: model | variant | test ndcg@10 | test recall@10 | "
                  "cold ndcg@10 | warm ndcg@10 | best epoch / run | s/epoch |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in section["rows"]:
            lines.append(f"| {r['model']} | {r['variant']} | {num(r['ndcg@10'])} | "
                         f"{num(r['recall@10'])} | {num(r.get('cold ndcg@10'))} | "
                         f"{num(r.get('warm ndcg@10'))} | {r['best_epoch']} / "
                         f"{r['epochs_run']} | {r['seconds_per_epoch']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def update_results(out: Path, part: str, section: dict) -> None:
    """Write one part's section into the results file, keeping the other parts' (read just
    before writing, so parts run side by side do not undo each other)."""
    result = json.loads(out.read_text()) if out.exists() else {}
    result.update({
        "benchmark": "next-item recommendation, rankpref beside RecBole, full ranking",
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, no GPU; one thread per run",
        part: section,
    })
    write_json(out, result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", default=["ml100k"],
                    choices=["recbole", "ml100k", *ROW_SETS])
    ap.add_argument("--models", nargs="*", help="rankpref rows to run (model names)")
    ap.add_argument("--variants", nargs="*", help="ml100k: only these variants' rows get "
                    "--seeds, the others keep the seeds they have run; beauty, ml100k-why: only "
                    "these rows")
    ap.add_argument("--collect", action="store_true",
                    help="beauty, ml100k-why: write the finished runs' rows, run nothing new")
    ap.add_argument("--recbole-models", nargs="*", default=RECBOLE_MODELS)
    ap.add_argument("--recbole-epochs", type=int, default=300)
    ap.add_argument("--epochs", type=int, help="cap rankpref's epochs (smoke runs)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--work", default=str(ROOT / ".cache" / "rankpref" / "bench"))
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "results" /
                                            "recommendation.json"))
    ap.add_argument("--fresh", action="store_true", help="rerun finished runs")
    ap.add_argument("--report", action="store_true",
                    help="print the results file's tables as markdown and stop")
    args = ap.parse_args()
    if args.report:
        print(markdown(json.loads(Path(args.output).read_text())))
        return
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)

    out = Path(args.output)
    if "recbole" in args.parts:
        run_recbole(work, args.recbole_models, args.recbole_epochs, args.fresh)
    for key, rowset in ROW_SETS.items():
        if key not in args.parts:
            continue
        section = run_rows(rowset, work, args.models, args.variants, args.seeds, args.epochs,
                           args.fresh, args.collect)
        previous = json.loads(out.read_text()).get(rowset.part) if out.exists() else None
        merged = merge_rows(rowset, section, previous)
        update_results(out, rowset.part, merged)
        plot(merged["summary"], out.with_name(f"{out.stem}_{key.replace('-', '_')}.png"),
             f"{rowset.dataset} ({rowset.protocol})")
        print(json.dumps(merged["paired_bootstrap"], indent=1))
    if "ml100k" not in args.parts:
        return
    feed = sorted_feed(work)
    rows, artifacts = [], {}
    for (model, variant), extra in ML100K_ROWS.items():
        if args.models and model not in args.models:
            continue
        seeds = args.seeds
        if args.variants and variant not in args.variants:
            seeds = sorted(int(p.name.rsplit("-s", 1)[1]) for p in
                           (work / "runs").glob(f"ml100k-{model}-{variant}-s*")
                           if (p / "model" / "metrics.json").exists())
        for seed in seeds:
            overrides = base_overrides(feed) + extra + [f"train.seed={seed}"]
            if args.epochs:
                overrides.append(f"train.epochs={args.epochs}")
            print(f"rankpref {model} ({variant}) seed {seed}", flush=True)
            m = run_rankpref(work / "runs" / f"ml100k-{model}-{variant}-s{seed}", overrides,
                             args.fresh)
            rows.append(row("rankpref", model, variant, m, seed))
            artifacts[(model, variant, seed)] = (
                work / "runs" / f"ml100k-{model}-{variant}-s{seed}" / "model")
            print(f"  test ndcg@10 {m['test']['ndcg@10']:.4f}, "
                  f"{m['seconds_per_epoch']:.1f} s/epoch", flush=True)
    rows += recbole_rows(work)
    section = {"protocol": PROTOCOL, "split_check": split_check(feed, work),
               "summary": summary(rows), "ratios": ratios(summary(rows)),
               "paired_bootstrap": paired_against(
                   {key: per_user_ndcg(path)[0] for key, path in artifacts.items()},
                   ("sasrec", "default")),
               "rows": rows}
    update_results(out, "ml-100k", section)
    plot(section["summary"], out.with_suffix(".png"))
    print(json.dumps(section["ratios"], indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

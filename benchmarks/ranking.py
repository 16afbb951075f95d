"""Listwise subjective ranking benchmark: every loss, two scorers and the baselines a user
tries first, on EmoBank V/A/D, wine quality and a synthesised voice-clip set.

Parts (each merges its results into ``benchmarks/results/ranking.json``):

* ``tune``    RankList settings (list size, margin W, pair set, curriculum, approximation) and
              the list size of every baseline, chosen on the EmoBank *valid* split (valence,
              two selection seeds that are not the reported seeds).
* ``main``    every loss (and the pointwise ``mse``) x scorer (``mlp``, ``linear``) x 5 seeds
              on EmoBank valence/arousal/dominance (official split, MiniLM features, cached),
              wine quality red/white (fixed 80/10/10 split) and ``clips-pitch`` /
              ``clips-pleasant`` (300 synthesised 3-second voice-like clips,
              :mod:`rankpref.data.tones`, eGeMAPS features; below 300 train items, so 5-fold
              cross-validation: one seed, std over folds), with the settings chosen by
              ``tune``; mean and std of test Kendall tau-b, ranking accuracy and NDCG@10 (valid
              too). Beside them, per dataset: ``ridge`` (closed form on the same standardised
              features, alpha by leave-one-out on train + valid) and ``selected``, the
              configuration with the best valid Kendall tau (per fold for cross-validation:
              nested), reported on test.
* ``margin``  RankList's margin W in {0, 0.1, 0.2, 0.4} on EmoBank valence (3 seeds): test
              Kendall tau over all test sentences and over the half whose reader ratings agree
              most / least (reader.csv stdV), to see where W helps.
* ``clips``   openSMILE eGeMAPS extraction speed on the 300 clips, one thread: clips/s with an
              empty cache and again from the cache.
* ``timing``  milliseconds per training step (forward, backward, optimiser step; 16 lists of
              384-d features, MLP 384-256-1) of each loss at list sizes 8, 32 and 128.
* ``plot``    ``benchmarks/results/ranking.png`` from the JSON.

    python benchmarks/ranking.py --parts tune
    python benchmarks/ranking.py --parts main --datasets emobank-V emobank-A emobank-D
    python benchmarks/ranking.py --parts main --datasets wine-red wine-white
    python benchmarks/ranking.py --parts timing plot
    python benchmarks/ranking.py --parts tune main --datasets wine-red --losses ranknet ranklist \
        --seeds 0 --selection-seeds 100 --grid-limit 1 --set train.epochs=2 \
        --output /tmp/smoke/ranking.json                  # a smoke run

Result files written before the rename of "dev" to "valid" (``dev``, ``dev_kendall_tau``) are
still read (``main`` takes their chosen settings, ``table`` prints them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rankpref.io import write_json  # noqa: E402
from rankpref.tasks.rank.module import POINTWISE  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "ranking.json"
PLOT = ROOT / "benchmarks" / "results" / "ranking.png"
LOSSES = ("ranknet", "listnet", "listmle", "approxndcg", "lambdaloss", "ranklist")
SCORERS = {"mlp": {}, "linear": {"model.name": "linear", "train.lr": 0.01},
           # fine-tunes MiniLM itself (encoder at 2e-5, head at 1e-3), on both cores: minutes
           # an epoch on EmoBank, so run on its own: --datasets emobank-V --losses ranklist
           # --scorers finetune --seeds 0 1 2
           "finetune": {"model.name": "finetune", "train.epochs": 4, "train.patience": 2,
                        "train.threads": 2}}
DEFAULT_SCORERS = ("mlp", "linear")
# a linear scorer on standardised features learns slowly at the MLP's 1e-3 (valid tau still
# rising when patience ran out on the clip folds), so it gets 1e-2
SEEDS = (0, 1, 2, 3, 4)
CLIPS = ROOT / ".cache" / "rankpref" / "bench-clips"
CLIP_COUNT = 300
SELECTION_SEEDS = (100, 101)
DATASETS = {
    "emobank-V": (["data.name=emobank", "data.target=V"], [0.0, 0.2]),
    "emobank-A": (["data.name=emobank", "data.target=A"], [0.0, 0.2]),
    "emobank-D": (["data.name=emobank", "data.target=D"], [0.0, 0.2]),
    # wine lists are few per epoch (train items / list size): valid tau was still rising at the
    # default 40-epoch cap, so wine gets a longer budget (same for every loss)
    "wine-red": (["data.name=wine-red", "train.epochs=300", "train.patience=20"], [0.0, 2.0]),
    "wine-white": (["data.name=wine-white", "train.epochs=300", "train.patience=20"],
                   [0.0, 2.0]),
    "clips-pitch": ([f"data.name={CLIPS / 'ratings.csv'}", "data.audio_column=path",
                     "data.target=pitch", "train.epochs=200", "train.patience=20"], [0.0, 0.4]),
    "clips-pleasant": ([f"data.name={CLIPS / 'ratings.csv'}", "data.audio_column=path",
                        "data.target=pleasant", "train.epochs=200", "train.patience=20"],
                       [0.0, 0.4]),
}
KFOLD_DATASETS = ("clips-pitch", "clips-pleasant")


def ensure_clips() -> Path:
    """The synthesised clip set (seeded; written once under .cache, never shipped)."""
    table = CLIPS / "ratings.csv"
    if not table.exists():
        from rankpref.data.tones import write_clips

        write_clips(CLIPS, CLIP_COUNT, seed=0)
    return table
BASELINE_LIST_SIZES = (32, 128)


def ranklist_grid() -> list[dict]:
    """RankList settings tried on EmoBank valid: list size x margin W (in the loss; for W > 0
    also in the list sampler) x pair set x curriculum x approximation."""
    grid = []
    for size, w in itertools.product((32, 128), (0.0, 0.1, 0.2)):
        for cur, approx in itertools.product((None, 2), ("exact", "lse")):
            grid.append({"lists.list_size": size, "lists.margin": 0.0, "loss.margin": w,
                         "loss.pairs": "nonlocal", "loss.curriculum_every": cur,
                         "loss.approx": approx})
        # local pairs: one per anchor, so lse == exact and a skip curriculum is moot
        grid.append({"lists.list_size": size, "lists.margin": 0.0, "loss.margin": w,
                     "loss.pairs": "local", "loss.curriculum_every": None,
                     "loss.approx": "exact"})
        if w > 0:  # lists whose neighbours all differ by >= W
            for pairs in ("nonlocal", "local"):
                grid.append({"lists.list_size": size, "lists.margin": w, "loss.margin": w,
                             "loss.pairs": pairs, "loss.curriculum_every": None,
                             "loss.approx": "exact"})
    return grid


def _yaml_value(v) -> str:
    return "null" if v is None else json.dumps(v)


def _overrides(settings: dict) -> list[str]:
    return [f"{k}={_yaml_value(v)}" for k, v in settings.items()]


class Runner:
    """Fits in this process, reusing each dataset's loaded pool (features encoded once)."""

    def __init__(self, extra: list[str] = ()):
        self.pools: dict = {}
        self.extra = list(extra)  # --set overrides for every fit (e.g. fewer epochs)

    def fit(self, base: list[str], settings: dict, seed: int, margins: list[float]) -> dict:
        from rankpref.tasks.rank import fit, load_config, load_data
        from rankpref.tasks.rank.data import text_encoder

        cfg = load_config(None, base + _overrides(settings) + [
            f"train.seed={seed}", f"eval.margins={json.dumps(margins)}"] + self.extra)
        encoder = text_encoder(cfg)  # token ids for a fine-tuning scorer
        key = json.dumps([cfg.data.model_dump(), encoder is not None], sort_keys=True)
        if key not in self.pools:
            self.pools[key] = load_data(cfg.data, encoder=encoder)
        metrics = fit(cfg, data=self.pools[key], write=False).metrics
        metrics.pop("history", None)
        return metrics


def _mean_std(values) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "n": int(a.size)}


def tune(runner: Runner, log, losses=LOSSES, seeds=SELECTION_SEEDS,
         grid_limit: int | None = None) -> dict:
    base, margins = DATASETS["emobank-V"]
    trials = []

    def trial(loss: str, settings: dict):
        runs = [runner.fit(base, {"loss.name": loss, **settings}, s, margins) for s in seeds]
        row = {"loss": loss, "settings": settings,
               "valid_kendall_tau": float(np.mean([r["valid"]["kendall_tau"] for r in runs]))}
        trials.append(row)
        log(json.dumps(row))
        return row

    chosen = {}
    for loss in (name for name in losses if name != "ranklist"):
        rows = [trial(loss, {"lists.list_size": n}) for n in BASELINE_LIST_SIZES]
        chosen[loss] = max(rows, key=lambda r: r["valid_kendall_tau"])["settings"]
    if "ranklist" in losses:
        rows = [trial("ranklist", settings) for settings in ranklist_grid()[:grid_limit]]
        chosen["ranklist"] = max(rows, key=lambda r: r["valid_kendall_tau"])["settings"]
    return {"selected_on": "emobank valence valid kendall_tau, mean of seeds "
            f"{list(seeds)}", "chosen": chosen, "trials": trials}


def _summary(runs: list[dict], name: str, loss: str, scorer: str, settings: dict,
             seeds) -> dict:
    summary = {"dataset": name, "loss": loss, "model": scorer, "settings": settings,
               "split": runs[0]["split"], "protocol": runs[0].get("protocol", "split"),
               "source": runs[0]["source"], "target": runs[0]["target"], "seeds": list(seeds)}
    kfold = runs[0].get("protocol") == "kfold"
    for split in ("valid", "test"):
        keys = [k for k, v in runs[0][split].items() if isinstance(v, float)]
        if kfold:  # one seed: mean and std over the folds
            summary[split] = {k: {"mean": runs[0][split][k], "std": runs[0][f"{split}_std"][k],
                                  "n": runs[0]["folds"]} for k in keys}
        else:
            summary[split] = {k: _mean_std([r[split][k] for r in runs]) for k in keys}
        summary[split]["items"] = runs[0][split]["items"]
    summary["train_seconds"] = _mean_std([r["train_seconds"] for r in runs])
    summary["best_epoch"] = [r["best_epoch"] for r in runs]
    if kfold:
        summary["folds"] = [{"fold": f["fold"], "valid_kendall_tau": f["valid"]["kendall_tau"],
                             "test_kendall_tau": f["test"]["kendall_tau"]}
                            for f in runs[0]["fold_results"]]
        summary["ridge_folds"] = [f["ridge"]["test"]["kendall_tau"]
                                  for f in runs[0]["fold_results"] if "ridge" in f]
    summary["runs"] = [{"seed": s, "valid_kendall_tau": r["valid"]["kendall_tau"],
                        "test_kendall_tau": r["test"]["kendall_tau"]}
                       for s, r in zip(seeds, runs)]
    ridge = runs[0].get("baselines", {}).get("ridge")  # none for a token-reading scorer
    if ridge is not None:
        summary["ridge"] = ridge
    return summary


def select(rows: dict) -> dict:
    """The configuration a user gets by choosing on valid Kendall tau: over seeds' means for
    one split; per fold (nested: the test fold never chooses) for cross-validation."""
    first = next(iter(rows.values()))
    if first.get("protocol") == "kfold":
        picks = []
        for f in range(len(first["folds"])):
            key = max(rows, key=lambda k: rows[k]["folds"][f]["valid_kendall_tau"])
            picks.append({"fold": f, "chosen": key,
                          "test_kendall_tau": rows[key]["folds"][f]["test_kendall_tau"]})
        tau = _mean_std([p["test_kendall_tau"] for p in picks])
        return {"selected_on": "valid kendall_tau per fold (nested)", "per_fold": picks,
                "test": {"kendall_tau": tau}}
    key = max(rows, key=lambda k: rows[k]["valid"]["kendall_tau"]["mean"])
    return {"selected_on": "valid kendall_tau, mean over seeds", "chosen": key,
            "valid": {"kendall_tau": rows[key]["valid"]["kendall_tau"]},
            "test": rows[key]["test"]}


def ridge_row(rows: dict) -> dict:
    first = next(r for r in rows.values() if "ridge" in r)
    ridge = first["ridge"]
    if first.get("protocol") == "kfold":
        return {"model": "ridge", "alpha": ridge["alpha"], "fit_on": ridge["fit_on"],
                "test": {"kendall_tau": _mean_std(first["ridge_folds"])}}
    test = {k: {"mean": v, "std": 0.0, "n": 1} for k, v in ridge["test"].items()
            if isinstance(v, float)}
    return {"model": "ridge", "alpha": ridge["alpha"], "fit_on": ridge["fit_on"],
            "note": "closed form on a fixed split: no seed variance", "test": test}


def main_part(runner: Runner, datasets: list[str], chosen: dict, log, losses=LOSSES,
              seeds=SEEDS, scorers=DEFAULT_SCORERS) -> dict:
    out = {}
    for name in datasets:
        base, margins = DATASETS[name]
        if name in KFOLD_DATASETS:
            ensure_clips()
        use_seeds = seeds[:1] if name in KFOLD_DATASETS else seeds
        out[name] = {}
        for loss in losses:
            for scorer in scorers:
                settings = {"loss.name": loss, **chosen.get(loss, {}), **SCORERS[scorer]}
                runs = []
                for seed in use_seeds:
                    m = runner.fit(base, settings, seed, margins)
                    runs.append(m)
                    log(f"{name} {loss}/{scorer} seed {seed}: valid tau "
                        f"{m['valid']['kendall_tau']:.4f} test tau "
                        f"{m['test']['kendall_tau']:.4f} ({m['train_seconds']:.1f} s)")
                key = loss if scorer == "mlp" else f"{loss}/{scorer}"
                out[name][key] = _summary(runs, name, loss, scorer, settings, use_seeds)
    return out


def summarise(rows: dict, log=print) -> None:
    """(Re)compute a dataset's ridge and selected rows from all its model rows."""
    models = {k: v for k, v in rows.items() if k not in ("ridge", "selected")}
    rows["ridge"] = ridge_row(models)
    rows["selected"] = select(models)
    log(f"{next(iter(models.values()))['dataset']}: selected "
        f"{rows['selected'].get('chosen', 'per fold')} test tau "
        f"{rows['selected']['test']['kendall_tau']['mean']:.4f}; ridge "
        f"{rows['ridge']['test']['kendall_tau']['mean']:.4f}")


def margin_part(runner: Runner, chosen: dict, log, seeds=(0, 1, 2)) -> dict:
    """RankList's W on EmoBank valence, overall and by how much the readers agreed."""
    import polars as pl

    from rankpref.data import rated
    from rankpref.metrics.correlation import kendall_tau_b
    from rankpref.settings import data_dir
    from rankpref.tasks.rank import fit, load_config, load_data
    from rankpref.tasks.rank.evaluate import scores

    base, margins = DATASETS["emobank-V"]
    reader = pl.read_csv(data_dir() / "emobank" / "reader.csv", infer_schema_length=None)
    std_by_id = dict(zip(reader["id"].to_list(), reader["stdV"].cast(pl.Float64).to_list()))
    out = {}
    for w in (0.0, 0.1, 0.2, 0.4):
        settings = {**chosen.get("ranklist", {}), "loss.name": "ranklist", "loss.margin": w}
        rows = []
        for seed in seeds:
            cfg = load_config(None, base + _overrides(settings) + [f"train.seed={seed}"] +
                              runner.extra)
            key = json.dumps([cfg.data.model_dump(), False], sort_keys=True)
            if key not in runner.pools:
                runner.pools[key] = load_data(cfg.data)
            pool = runner.pools[key]
            result = fit(cfg, data=pool, write=False)
            test = pool.part("test")
            stats = rated.feature_stats(pool.part("train").features)
            pred = scores(result.model, rated.standardize(test.features, stats))
            std = np.array([std_by_id.get(i, np.nan) for i in test.ids])
            cut = np.nanmedian(std)
            agree, disagree = std <= cut, std > cut
            rows.append({"seed": seed, "all": kendall_tau_b(pred, test.labels),
                         "readers_agree": kendall_tau_b(pred[agree], test.labels[agree]),
                         "readers_disagree": kendall_tau_b(pred[disagree],
                                                           test.labels[disagree]),
                         "valid": result.metrics["valid"]["kendall_tau"]})
            log(f"margin W={w:g} seed {seed}: {rows[-1]}")
        out[f"W={w:g}"] = {k: _mean_std([r[k] for r in rows])
                           for k in ("all", "readers_agree", "readers_disagree", "valid")}
        out[f"W={w:g}"]["runs"] = rows
    return {"dataset": "emobank-V", "split": "official test", "std_source": "reader.csv stdV "
            "(split at its median over the test sentences)", "seeds": list(seeds),
            "results": out}


def clips_part(log) -> dict:
    """eGeMAPS extraction speed, one thread, cold cache then warm."""
    import shutil
    import tempfile

    import polars as pl

    from rankpref.data.clips import MediaFeatures

    table = ensure_clips()
    paths = [CLIPS / p for p in pl.read_csv(table)["path"].to_list()]
    cache = Path(tempfile.mkdtemp(prefix="clip-cache-"))
    try:
        out = {}
        for run in ("cold", "cached"):
            media = MediaFeatures("eGeMAPSv02", cache_dir=cache, progress=False)
            start = time.perf_counter()
            matrix, names, report = media.features(paths)
            seconds = time.perf_counter() - start
            out[run] = {"clips": len(paths), "seconds": round(seconds, 3),
                        "clips_per_second": round(len(paths) / seconds, 1),
                        "computed": report.computed, "from_cache": report.cached}
            log(f"clips {run}: {out[run]}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"extractor": "opensmile eGeMAPSv02 functionals (88)", "clip_seconds": 3.0,
            "sample_rate": 16000, "threads": 1, **out}


def timing_part(log, repeats: int = 30, warmup: int = 5) -> dict:
    """Median milliseconds of (a) one training step: MLP forward, loss, backward, AdamW step
    and (b) the loss alone: forward and backward on a [16, N] score tensor."""
    import torch

    import rankpref.losses  # noqa: F401  (registers the built-in losses)
    from rankpref.models.scorer import MLPScorer, ScorerConfig
    from rankpref.registry import LOSSES as LOSS_REGISTRY

    variants = [(name, {}) for name in LOSSES[:-1]] + [
        ("ranklist", {"approx": "exact"}), ("ranklist", {"approx": "lse"}),
        ("ranklist", {"pairs": "local"})]
    out = {}
    for n in (8, 32, 128):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(16, n, 384, generator=gen)
        y = torch.randint(1, 6, (16, n), generator=gen).float()
        s0 = torch.randn(16, n, generator=gen)
        for name, kwargs in variants:
            torch.manual_seed(0)
            model = MLPScorer(ScorerConfig(input_dim=384, hidden=[256]))
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            fn = LOSS_REGISTRY.get(name, "listwise")
            step, alone = [], []
            for i in range(warmup + repeats):
                start = time.perf_counter()
                loss = fn(model(x), y, float("-inf"), **kwargs)
                opt.zero_grad()
                loss.backward()
                opt.step()
                mid = time.perf_counter()
                s = s0.clone().requires_grad_(True)
                fn(s, y, float("-inf"), **kwargs).backward()
                end = time.perf_counter()
                if i >= warmup:
                    step.append(mid - start)
                    alone.append(end - mid)
            label = name + "".join(f"-{v}" for v in kwargs.values())
            out.setdefault(label, {})[f"list_size={n}"] = {
                "ms_per_step_median": 1000 * float(np.median(step)),
                "ms_loss_forward_backward_median": 1000 * float(np.median(alone))}
            log(f"timing {label} n={n}: step {1000 * np.median(step):.2f} ms, loss alone "
                f"{1000 * np.median(alone):.3f} ms")
    return {"batch_lists": 16, "features": 384, "model": "mlp 384-256-1", "repeats": repeats,
            "statistic": "median", "results": out}


def _variants(rows: dict) -> list[str]:
    """Model rows of one dataset in a fixed order: each loss with the MLP, then linear."""
    out = []
    for scorer in SCORERS:
        for loss in LOSSES + POINTWISE:
            key = loss if scorer == "mlp" else f"{loss}/{scorer}"
            if key in rows:
                out.append(key)
    return out


def _tau(row: dict) -> tuple[float, float]:
    t = row["test"]["kendall_tau"]
    return t["mean"], t["std"]


def paired_difference(a: dict, b: dict) -> dict:
    """Mean test-tau difference a - b over shared seeds, with a 95% t interval."""
    from scipy import stats

    tb = {r["seed"]: r["test_kendall_tau"] for r in b["runs"]}
    d = np.array([r["test_kendall_tau"] - tb[r["seed"]] for r in a["runs"] if r["seed"] in tb])
    half = (stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
            if d.size > 1 else float("nan"))
    return {"mean": float(d.mean()), "low": float(d.mean() - half),
            "high": float(d.mean() + half), "n": int(d.size)}


def plot_part(results: dict, path: Path = PLOT) -> None:
    """Per dataset: RankList, the best other listwise loss, mse (MLP), the best linear row,
    ridge and the configuration selected on valid; test Kendall tau, mean +- std."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = results.get("main", {})
    names = [d for d in DATASETS if d in main and "selected" in main[d]]
    if not names:
        return
    labels = ["ranklist", "best other listwise", "mse", "best linear", "ridge",
              "selected on valid"]
    fig, ax = plt.subplots(figsize=(12, 4.4))
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        means, stds = [], []
        for d in names:
            rows = main[d]
            if label == "ranklist":
                m, sd = _tau(rows["ranklist"])
            elif label == "best other listwise":
                key = max((k for k in LOSSES if k != "ranklist" and k in rows),
                          key=lambda k: _tau(rows[k])[0])
                m, sd = _tau(rows[key])
            elif label == "mse":
                m, sd = _tau(rows["mse"])
            elif label == "best linear":
                key = max((k for k in rows if k.endswith("/linear")),
                          key=lambda k: _tau(rows[k])[0])
                m, sd = _tau(rows[key])
            elif label == "ridge":
                m, sd = _tau(rows["ridge"])
            else:
                m, sd = _tau(rows["selected"])
            means.append(m)
            stds.append(sd)
        ax.bar(np.arange(len(names)) + (i - (len(labels) - 1) / 2) * width, means, width,
               yerr=stds, capsize=2, label=label)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("test Kendall tau-b")
    ax.legend(ncol=6, fontsize=8, loc="upper left")
    ax.set_ylim(0, 1.0)
    ax.set_title("Listwise losses vs pointwise baselines (mean ± std over 5 seeds; clips: "
                 "5 folds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(path)


def table_part(results: dict) -> None:
    """Print the docs tables (markdown) from the JSON."""
    main = results.get("main", {})

    def fmt(m):
        return f"{m['mean']:.4f} ± {m['std']:.4f}"

    print("| dataset | protocol | selected on valid | its test tau | ridge test tau | "
          "RankList (MLP) | best other listwise (MLP) | mse (MLP) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in (d for d in DATASETS if d in main and "selected" in main[d]):
        rows = main[name]
        sel = rows["selected"]
        chosen = sel.get("chosen") or ", ".join(sorted({p["chosen"] for p in sel["per_fold"]}))
        other = max((k for k in LOSSES if k != "ranklist" and k in rows),
                    key=lambda k: _tau(rows[k])[0])
        protocol = rows["ranklist"].get("protocol", "split")
        print(f"| {name} | {protocol} | {chosen} | {fmt(sel['test']['kendall_tau'])} | "
              f"{fmt(rows['ridge']['test']['kendall_tau'])} | "
              f"{fmt(rows['ranklist']['test']['kendall_tau'])} | {other} "
              f"{fmt(rows[other]['test']['kendall_tau'])} | "
              f"{fmt(rows['mse']['test']['kendall_tau'])} |")
    print("\n| dataset | loss | scorer | test Kendall tau | test rank acc@0 | test rank acc@W | "
          "W | test NDCG@10 | valid Kendall tau |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in (d for d in DATASETS if d in main):
        w = DATASETS[name][1][1]
        rows = main[name]
        keys = _variants(rows)
        best = max(_tau(rows[k])[0] for k in keys)
        for key in keys:
            r = rows[key]
            t, d = r["test"], r["valid"] if "valid" in r else r["dev"]  # "dev": older files
            tau = fmt(t["kendall_tau"])
            if t["kendall_tau"]["mean"] == best:
                tau = f"**{tau}**"
            print(f"| {name} | {r['loss']} | {r.get('model', 'mlp')} | {tau} | "
                  f"{fmt(t['ranking_acc@0'])} | {fmt(t[f'ranking_acc@{w:g}'])} | {w:g} | "
                  f"{fmt(t['ndcg@10'])} | {fmt(d['kendall_tau'])} |")
        if "ridge" in rows:
            t = rows["ridge"]["test"]
            acc = (f"{fmt(t['ranking_acc@0'])} | {fmt(t[f'ranking_acc@{w:g}'])} | {w:g} | "
                   f"{fmt(t['ndcg@10'])}") if "ranking_acc@0" in t else "| | |"
            print(f"| {name} | ridge (alpha by LOO) | linear | {fmt(t['kendall_tau'])} | "
                  f"{acc} | in the fit |")
    for name in (d for d in DATASETS if d in main and d not in KFOLD_DATASETS):
        rows = main[name]
        if "ranklist" not in rows:
            continue
        other = max((k for k in LOSSES if k != "ranklist" and k in rows),
                    key=lambda k: _tau(rows[k])[0])
        diff = paired_difference(rows["ranklist"], rows[other])
        print(f"\n{name}: ranklist - {other} test tau, paired by seed: "
              f"{diff['mean']:+.4f}, 95% t interval [{diff['low']:+.4f}, {diff['high']:+.4f}]"
              f" (n = {diff['n']})")
    margin = results.get("margin", {}).get("results", {})
    if margin:
        print("\n| RankList W | test tau, all | readers agree (low std half) | readers "
              "disagree (high std half) | valid tau |\n|---|---|---|---|---|")
        for key, row in margin.items():
            print(f"| {key} | {fmt(row['all'])} | {fmt(row['readers_agree'])} | "
                  f"{fmt(row['readers_disagree'])} | {fmt(row['valid'])} |")
    clips = results.get("clips")
    if clips:
        print(f"\nclips: cold {clips['cold']['clips_per_second']} clips/s, cached "
              f"{clips['cached']['clips_per_second']} clips/s")
    timing = results.get("timing", {}).get("results", {})
    if timing:
        print("\n| loss | step ms, N=8 | N=32 | N=128 | loss fwd+bwd ms, N=8 | N=32 | N=128 |"
              "\n|---|---|---|---|---|---|---|")
        for label, row in timing.items():
            cells = [f"{row[f'list_size={n}'][key]:.2f}" for key in
                     ("ms_per_step_median", "ms_loss_forward_backward_median")
                     for n in (8, 32, 128)]
            print(f"| {label} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["tune", "main", "timing", "plot"],
                        choices=["tune", "main", "margin", "clips", "timing", "plot",
                                 "table"])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--log", default=None, help="also append progress lines here")
    parser.add_argument("--output", type=Path, default=RESULTS,
                        help="results JSON to merge into (the plot goes beside it, .png)")
    parser.add_argument("--losses", nargs="+", default=list(LOSSES + POINTWISE),
                        choices=list(LOSSES + POINTWISE),
                        help="losses to tune and run (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                        help="seeds of the main part")
    parser.add_argument("--scorers", nargs="+", default=list(DEFAULT_SCORERS),
                        choices=list(SCORERS))
    parser.add_argument("--selection-seeds", type=int, nargs="+", default=list(SELECTION_SEEDS),
                        help="seeds of the tune part")
    parser.add_argument("--grid-limit", type=int, default=None,
                        help="tune only the first N RankList settings (smoke runs)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="extra config override for every fit "
                        "(repeatable), e.g. train.epochs=2 for a smoke run")
    args = parser.parse_args()
    output = args.output
    plot = PLOT if output == RESULTS else output.with_suffix(".png")

    import lightning  # noqa: F401  (before torch threads are set)
    import torch

    from rankpref.settings import set_threads

    set_threads(1)
    results = json.loads(output.read_text()) if output.exists() else {}

    def log(line: str) -> None:
        print(line, flush=True)

    def save() -> None:
        results.update({
            "benchmark": "listwise subjective ranking (rankpref rank)",
            "date": dt.date.today().isoformat(),
            "machine": f"{platform.machine()}, 2 shared CPU cores, 1 torch thread, no GPU",
            "versions": {"python": platform.python_version(), "torch": torch.__version__}})
        write_json(output, results)

    runner = Runner(args.overrides)
    if "tune" in args.parts:
        results["tune"] = tune(runner, log, args.losses, args.selection_seeds, args.grid_limit)
        save()
    if "main" in args.parts:
        chosen = results.get("tune", {}).get("chosen")
        if not chosen:
            raise SystemExit("run --parts tune first (the settings are chosen on valid)")
        for name in args.datasets:  # keep the losses of an earlier run that this one skips
            rows = results.setdefault("main", {}).setdefault(name, {})
            rows.update(main_part(runner, [name], chosen, log, args.losses, args.seeds,
                                  args.scorers)[name])
            summarise(rows, log)
            save()
    if "margin" in args.parts:
        results["margin"] = margin_part(runner, results.get("tune", {}).get("chosen", {}), log)
        save()
    if "clips" in args.parts:
        results["clips"] = clips_part(log)
        save()
    if "timing" in args.parts:
        results["timing"] = timing_part(log)
        save()
    if "plot" in args.parts:
        plot_part(results, plot)
    if "table" in args.parts:
        table_part(results)


if __name__ == "__main__":
    main()

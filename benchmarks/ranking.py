"""Listwise subjective ranking benchmark: every loss on EmoBank V/A/D and wine quality.

Parts (each merges its results into ``benchmarks/results/ranking.json``):

* ``tune``    RankList settings (list size, margin W, pair set, curriculum, approximation) and
              the list size of every baseline, chosen on the EmoBank *dev* split (valence,
              two selection seeds that are not the reported seeds).
* ``main``    every loss x 5 seeds on EmoBank valence/arousal/dominance (official split,
              MiniLM features, cached) and wine quality red/white (fixed 80/10/10 split), with
              the settings chosen by ``tune``; mean and std of test Kendall tau-b, ranking
              accuracy and NDCG@10 (dev numbers too).
* ``timing``  milliseconds per training step (forward, backward, optimiser step; 16 lists of
              384-d features, MLP 384-256-1) of each loss at list sizes 8, 32 and 128.
* ``plot``    ``benchmarks/results/ranking.png`` from the JSON.

    python benchmarks/ranking.py --parts tune
    python benchmarks/ranking.py --parts main --datasets emobank-V emobank-A emobank-D
    python benchmarks/ranking.py --parts main --datasets wine-red wine-white
    python benchmarks/ranking.py --parts timing plot
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

RESULTS = ROOT / "benchmarks" / "results" / "ranking.json"
PLOT = ROOT / "benchmarks" / "results" / "ranking.png"
LOSSES = ("ranknet", "listnet", "listmle", "approxndcg", "lambdaloss", "ranklist")
SEEDS = (0, 1, 2, 3, 4)
SELECTION_SEEDS = (100, 101)
DATASETS = {
    "emobank-V": (["data.name=emobank", "data.target=V"], [0.0, 0.2]),
    "emobank-A": (["data.name=emobank", "data.target=A"], [0.0, 0.2]),
    "emobank-D": (["data.name=emobank", "data.target=D"], [0.0, 0.2]),
    # wine lists are few per epoch (train items / list size): dev tau was still rising at the
    # default 40-epoch cap, so wine gets a longer budget (same for every loss)
    "wine-red": (["data.name=wine-red", "train.epochs=300", "train.patience=20"], [0.0, 2.0]),
    "wine-white": (["data.name=wine-white", "train.epochs=300", "train.patience=20"],
                   [0.0, 2.0]),
}
BASELINE_LIST_SIZES = (32, 128)


def ranklist_grid() -> list[dict]:
    """RankList settings tried on EmoBank dev: list size x margin W (in the loss; for W > 0
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

    def __init__(self):
        self.pools: dict = {}

    def fit(self, base: list[str], settings: dict, seed: int, margins: list[float]) -> dict:
        from rankpref.ranking import fit, load_data, load_rank_config

        cfg = load_rank_config(None, base + _overrides(settings) + [
            f"train.seed={seed}", f"eval.margins={json.dumps(margins)}"])
        key = json.dumps(cfg.data.model_dump(), sort_keys=True)
        if key not in self.pools:
            self.pools[key] = load_data(cfg.data)
        _, metrics = fit(cfg, pool=self.pools[key], write=False)
        metrics.pop("history", None)
        return metrics


def _mean_std(values) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "n": int(a.size)}


def tune(runner: Runner, log) -> dict:
    base, margins = DATASETS["emobank-V"]
    trials = []

    def trial(loss: str, settings: dict):
        runs = [runner.fit(base, {"loss.name": loss, **settings}, s, margins)
                for s in SELECTION_SEEDS]
        row = {"loss": loss, "settings": settings,
               "dev_kendall_tau": float(np.mean([r["dev"]["kendall_tau"] for r in runs]))}
        trials.append(row)
        log(json.dumps(row))
        return row

    chosen = {}
    for loss in LOSSES[:-1]:
        rows = [trial(loss, {"lists.list_size": n}) for n in BASELINE_LIST_SIZES]
        chosen[loss] = max(rows, key=lambda r: r["dev_kendall_tau"])["settings"]
    rows = [trial("ranklist", settings) for settings in ranklist_grid()]
    chosen["ranklist"] = max(rows, key=lambda r: r["dev_kendall_tau"])["settings"]
    return {"selected_on": "emobank valence dev kendall_tau, mean of seeds "
            f"{list(SELECTION_SEEDS)}", "chosen": chosen, "trials": trials}


def main_part(runner: Runner, datasets: list[str], chosen: dict, log) -> dict:
    out = {}
    for name in datasets:
        base, margins = DATASETS[name]
        out[name] = {}
        for loss in LOSSES:
            settings = {"loss.name": loss, **chosen.get(loss, {})}
            runs = []
            for seed in SEEDS:
                m = runner.fit(base, settings, seed, margins)
                runs.append(m)
                log(f"{name} {loss} seed {seed}: dev tau {m['dev']['kendall_tau']:.4f} "
                    f"test tau {m['test']['kendall_tau']:.4f} ({m['train_seconds']:.1f} s)")
            summary = {"dataset": name, "loss": loss, "model": "mlp", "settings": settings,
                       "split": runs[0]["split"], "source": runs[0]["source"],
                       "target": runs[0]["target"], "seeds": list(SEEDS)}
            for split in ("dev", "test"):
                keys = [k for k, v in runs[0][split].items() if isinstance(v, float)]
                summary[split] = {k: _mean_std([r[split][k] for r in runs]) for k in keys}
                summary[split]["items"] = runs[0][split]["items"]
            summary["train_seconds"] = _mean_std([r["train_seconds"] for r in runs])
            summary["best_epoch"] = [r["best_epoch"] for r in runs]
            summary["runs"] = [{"seed": s, "dev_kendall_tau": r["dev"]["kendall_tau"],
                                "test_kendall_tau": r["test"]["kendall_tau"]}
                               for s, r in zip(SEEDS, runs)]
            out[name][loss] = summary
    return out


def timing_part(log, repeats: int = 30, warmup: int = 5) -> dict:
    """Median milliseconds of (a) one training step: MLP forward, loss, backward, AdamW step
    and (b) the loss alone: forward and backward on a [16, N] score tensor."""
    import torch

    from rankpref.losses.listwise import get_loss
    from rankpref.models.scorer import MLPScorer, ScorerConfig

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
            fn = get_loss(name)
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


def plot_part(results: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = results.get("main", {})
    names = [d for d in DATASETS if d in main]
    if not names:
        return
    fig, ax = plt.subplots(figsize=(11, 4.2))
    width = 0.8 / len(LOSSES)
    for i, loss in enumerate(LOSSES):
        means = [main[d][loss]["test"]["kendall_tau"]["mean"] for d in names]
        stds = [main[d][loss]["test"]["kendall_tau"]["std"] for d in names]
        ax.bar(np.arange(len(names)) + (i - (len(LOSSES) - 1) / 2) * width, means, width,
               yerr=stds, capsize=2, label=loss)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("test Kendall tau-b (mean +- std, 5 seeds)")
    lows = [main[d][loss]["test"]["kendall_tau"]["mean"] for d in names for loss in LOSSES]
    ax.set_ylim(max(0.0, min(lows) - 0.05), max(lows) + 0.03)
    ax.legend(ncol=6, fontsize=8, loc="upper center")
    ax.set_title("Listwise losses, MLP scorer: EmoBank (MiniLM features) and wine quality")
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    tmp = PLOT.with_name(".ranking.tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(PLOT)


def table_part(results: dict) -> None:
    """Print the README table (markdown) from the JSON."""
    main = results.get("main", {})
    print("| dataset | loss | test Kendall tau | test rank acc@0 | test rank acc@W | W | "
          "test NDCG@10 | dev Kendall tau |")
    print("|---|---|---|---|---|---|---|---|")
    for name in (d for d in DATASETS if d in main):
        w = DATASETS[name][1][1]
        best = max(main[name][loss]["test"]["kendall_tau"]["mean"] for loss in LOSSES)
        for loss in LOSSES:
            s = main[name][loss]
            t, d = s["test"], s["dev"]

            def fmt(m):
                return f"{m['mean']:.4f} ± {m['std']:.4f}"
            tau = fmt(t["kendall_tau"])
            if t["kendall_tau"]["mean"] == best:
                tau = f"**{tau}**"
            print(f"| {name} | {loss} | {tau} | {fmt(t['ranking_acc@0'])} | "
                  f"{fmt(t[f'ranking_acc@{w:g}'])} | {w:g} | {fmt(t['ndcg@10'])} | "
                  f"{fmt(d['kendall_tau'])} |")
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
                        choices=["tune", "main", "timing", "plot", "table"])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--log", default=None, help="also append progress lines here")
    args = parser.parse_args()

    import lightning  # noqa: F401  (before torch threads are set)
    import torch

    from rankpref.settings import set_threads

    set_threads(1)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}

    def log(line: str) -> None:
        print(line, flush=True)

    def save() -> None:
        results.update({
            "benchmark": "listwise subjective ranking (rankpref rank)",
            "date": dt.date.today().isoformat(),
            "machine": f"{platform.machine()}, 2 shared CPU cores, 1 torch thread, no GPU",
            "versions": {"python": platform.python_version(), "torch": torch.__version__}})
        write_json(RESULTS, results)

    runner = Runner()
    if "tune" in args.parts:
        results["tune"] = tune(runner, log)
        save()
    if "main" in args.parts:
        chosen = results.get("tune", {}).get("chosen")
        if not chosen:
            raise SystemExit("run --parts tune first (the settings are chosen on dev)")
        results.setdefault("main", {}).update(main_part(runner, args.datasets, chosen, log))
        save()
    if "timing" in args.parts:
        results["timing"] = timing_part(log)
        save()
    if "plot" in args.parts:
        plot_part(results)
    if "table" in args.parts:
        table_part(results)


if __name__ == "__main__":
    main()

"""Plots of runs: training curves from a run's CSV log, metric bar charts comparing runs.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``), so plotting
never changes the global backend: the CLI works headless and notebooks keep showing their own
figures inline. Every PNG is written to a temporary file and renamed, so an interrupted plot
never leaves a broken image.
"""

from __future__ import annotations

import csv
import math
import re
import sys
from pathlib import Path

from rankpref.errors import RankprefError
from rankpref.io import atomic_path


def new_figure(width: float, height: float, columns: int = 1):
    """A figure that no pyplot backend manages, and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(1, columns)


def save_figure(fig, out: str | Path) -> Path:
    """Write ``fig`` as PNG to ``out`` atomically; close it if pyplot manages it."""
    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    finally:
        if "matplotlib.pyplot" in sys.modules:  # figures made by pyplot (optuna's plots)
            sys.modules["matplotlib.pyplot"].close(fig)
    return out


def _log_files(run_dir: Path) -> list[Path]:
    """The CSV logs of a run folder, oldest launch first (a resumed run adds a version)."""
    logs = run_dir / "logs"

    def version(p: Path) -> int:
        m = re.fullmatch(r"version_(\d+)", p.parent.name)
        return int(m.group(1)) if m else -1

    files = sorted(logs.glob("version_*/metrics.csv"), key=version)
    if (logs / "metrics.csv").exists():
        files.insert(0, logs / "metrics.csv")
    return files


def run_folder(path: str | Path) -> Path:
    """A run folder, given it or its artifact (``<run>/model``)."""
    path = Path(path)
    if not (path / "logs").exists() and (path.parent / "logs").exists():
        return path.parent
    return path


def read_training_log(run_dir: str | Path) -> dict[int, dict[str, float]]:
    """Per-epoch values of a run's CSV logs: ``{epoch: {"train/loss": .., "valid/ndcg@10": ..}}``.

    Accepts a run folder or its artifact (``<run>/model``). Rows of one epoch (Lightning writes
    training and validation values on separate rows) are merged; where a resumed launch
    repeats an epoch, the later launch wins. A launch whose log starts at epoch 0 started the
    run over (``train.resume: false``), so only it and the launches after it count.
    """
    run_dir = run_folder(run_dir)
    files = _log_files(run_dir)
    if not files:
        raise RankprefError(f"{run_dir}: no training log (logs/version_*/metrics.csv); "
                            "was it trained with `rankpref fit`?")
    epochs: dict[int, dict[str, float]] = {}
    for path in files:
        seen: dict[int, dict[str, float]] = {}
        with open(path, newline="", encoding="utf-8") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    epoch = int(row.pop("epoch"))
                except (KeyError, TypeError, ValueError):
                    raise RankprefError(f"{path}, line {line}: no integer 'epoch'") from None
                row.pop("step", None)
                values = seen.setdefault(epoch, {})
                for key, text in row.items():
                    if text not in (None, ""):
                        try:
                            values[key] = float(text)
                        except ValueError:
                            raise RankprefError(f"{path}, line {line}, field '{key}': not a "
                                                f"number: {text!r}") from None
        if seen and min(seen) == 0:
            epochs = {}  # a fresh start: older launches belong to a run that was replaced
        epochs.update(seen)
    return dict(sorted(epochs.items()))


def plot_training_curves(run_dir: str | Path, out: str | Path | None = None,
                         monitor: str = "ndcg@10") -> Path:
    """Training loss(es) and the valid metric ``monitor`` (and its recall) per epoch, with the
    best valid epoch marked. Writes ``<run>/training_curves.png`` unless ``out`` is given."""
    run_dir = run_folder(run_dir)
    log = read_training_log(run_dir)
    extra = f"valid/recall@{monitor.split('@')[-1]}" if "@" in monitor else None
    try:
        return plot_curves(log, out if out is not None else run_dir / "training_curves.png",
                           f"valid/{monitor}", extra=[extra] if extra else [],
                           title=run_dir.name, panel="validation (full ranking)")
    except RankprefError as exc:
        raise RankprefError(f"{run_dir}: {exc}") from None


def plot_history(history: list[dict], out: str | Path, metric: str, *, loss: str | None = None,
                 title: str = "") -> Path:
    """Curves from a ``metrics.json`` history (``[{"epoch": e, "valid/<metric>": ..,
    "train/loss": ..}]``, epochs counted from 1), as every task's ``fit`` writes it. ``loss``
    names a training value logged without the ``train/`` prefix (older histories)."""
    log = {int(h["epoch"]) - 1: {k: float(v) for k, v in h.items()
                                 if k != "epoch" and isinstance(v, (int, float))}
           for h in history}
    if loss is not None and not loss.startswith("train/"):
        for values in log.values():
            if loss in values:
                values[f"train/{loss}"] = values.pop(loss)
    return plot_curves(log, out, metric, title=title, panel="valid")


def plot_curves(log: dict[int, dict[str, float]], out: str | Path, metric: str, *,
                extra: list[str] = (), title: str = "", panel: str = "validation") -> Path:
    """Two panels: every ``train/*`` key of ``log`` ({0-based epoch: {key: value}}) (left, if
    any), and ``metric`` (plus ``extra`` keys) with its best epoch marked."""
    keys = sorted({k for values in log.values() for k in values})
    if metric not in keys:
        raise RankprefError(f"the log has no '{metric}' (it has: {', '.join(keys) or 'nothing'})")
    losses = [k for k in keys if k.startswith("train/")]

    def series(key):
        epochs = [e for e, v in log.items() if key in v]
        return [e + 1 for e in epochs], [log[e][key] for e in epochs]

    if losses:
        fig, (left, right) = new_figure(10, 3.6, columns=2)
        for key in losses:
            left.plot(*series(key), marker=".", label=key.split("/", 1)[1])
        left.set(xlabel="epoch", ylabel="training loss", title="training loss")
        left.legend()
    else:  # no loss in the log: one panel
        fig, right = new_figure(5.5, 3.6)
    for key in [metric] + [k for k in extra if k in keys and k != metric]:
        right.plot(*series(key), marker=".", label=key.split("/", 1)[-1])
    xs, ys = series(metric)
    best = max(range(len(xs)), key=lambda i: ys[i])
    right.axvline(xs[best], color="grey", linestyle="--", linewidth=1)
    late = xs[best] > (xs[0] + xs[-1]) / 2  # label to the left of a late best epoch
    right.annotate(f"best {ys[best]:.4f} (epoch {xs[best]})", (xs[best], ys[best]),
                   textcoords="offset points", xytext=(-4 if late else 4, -12), fontsize=8,
                   ha="right" if late else "left")
    right.set(xlabel="epoch", ylabel=panel, title=panel)
    right.legend()
    fig.suptitle(title)
    return save_figure(fig, out)


def plot_metric_bars(results: dict[str, dict[str, float]], out: str | Path,
                     metrics: list[str] | None = None, title: str = "") -> Path:
    """A grouped bar chart: one group per metric, one bar per run (``{run: {metric: value}}``)."""
    if not results:
        raise RankprefError("nothing to plot: no runs")
    if metrics is None:
        metrics = [m for m in next(iter(results.values()))
                   if all(isinstance(r.get(m), (int, float)) for r in results.values())]
    missing = [(run, m) for run, r in results.items() for m in metrics
               if not isinstance(r.get(m), (int, float))]
    if missing:
        run, m = missing[0]
        raise RankprefError(f"run {run!r} has no metric {m!r}")
    if not metrics:
        raise RankprefError("nothing to plot: the runs share no metric")
    runs = list(results)
    width = 0.8 / len(runs)
    fig, ax = new_figure(max(5.0, 0.9 + len(metrics) * (0.5 + 0.35 * len(runs))), 3.8)
    for i, run in enumerate(runs):
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(metrics))]
        values = [float(results[run][m]) for m in metrics]
        bars = ax.bar(xs, values, width=width, label=run)
        for bar, v in zip(bars, values):
            if not math.isnan(v):
                ax.annotate(f"{v:.3f}", (bar.get_x() + bar.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=7, rotation=90 if len(runs) > 3 else 0)
    ax.set_xticks(range(len(metrics)), metrics, rotation=30 if len(metrics) > 3 else 0,
                  ha="right" if len(metrics) > 3 else "center")
    ax.set_ylabel("value")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside, not over
    ax.margins(y=0.12)
    return save_figure(fig, out)

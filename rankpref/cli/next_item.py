"""Next-item commands: ``prepare``, ``fit``, ``evaluate``, ``recommend``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import List, Optional

import typer

from rankpref.cli.common import (CONFIG_OPT, SET_OPT, check_output, friendly, overrides,
                                  print_metrics, splits)
from rankpref.errors import RankprefError

app = typer.Typer(add_completion=False, no_args_is_help=True)
DATA_OPT = typer.Option(None, "--data", help="dataset name: demo, beauty, ml-100k, sports, toys")


def config_from(config: Optional[Path], data: Optional[str], sets: Optional[List[str]]):
    """The next-item config: defaults < --config < --data < the other options and --set."""
    from rankpref.tasks import next_item

    return next_item.load_config(config, overrides([("data.name", data)], sets))


@app.command()
@friendly
def prepare(data: Optional[str] = DATA_OPT, config: Optional[Path] = CONFIG_OPT,
            set_: Optional[List[str]] = SET_OPT,
            force: bool = typer.Option(False, help="rebuild even if cached")):
    """Read a dataset, preprocess it (dedupe, k-core, ids, order) and cache the result."""
    from rankpref.data.datasets import prepare as run_prepare
    from rankpref.tasks import next_item

    cfg = config_from(config, data, set_)
    ds = run_prepare(cfg.data, force=force)
    split, _ = next_item.training_split(ds, cfg.data)
    typer.echo(json.dumps({"prepared": str(ds.path), **ds.stats, "split": split.stats()},
                          indent=2))


@app.command()
@friendly
def fit(data: Optional[str] = DATA_OPT, config: Optional[Path] = CONFIG_OPT,
        set_: Optional[List[str]] = SET_OPT,
        model: Optional[str] = typer.Option(None, "--model", help="sasrec (default) or pulse"),
        loss: Optional[str] = typer.Option(None, help="ce (default), bce or sampled_softmax "
                                           "(sets loss.name)"),
        out: Optional[Path] = typer.Option(None, "--out", help="run folder"),
        epochs: Optional[int] = typer.Option(None, help="maximum epochs"),
        plot: bool = typer.Option(False, "--plot", help="also write training curves (loss, "
                                  "valid metrics) to <run>/training_curves.png")):
    """Train a model; keeps the best valid epoch and writes an artifact folder."""
    from rankpref.tasks import next_item

    cfg = config_from(config, data, overrides([("model.name", model), ("loss.name", loss),
                                               ("output_dir", out), ("train.epochs", epochs)],
                                              set_))
    result = next_item.fit(cfg)
    if result.artifact is not None:
        metrics = result.metrics
        typer.echo(f"{metrics['model']} on {metrics['dataset']}: best epoch "
                   f"{metrics['best_epoch']} of {metrics['epochs_run']} ({metrics['selected_on']})")
        print_metrics(f"valid ({metrics['protocol']} ranking)", metrics["valid"], width=12)
        print_metrics(f"test ({metrics['protocol']} ranking)", metrics["test"], width=12)
        typer.echo(f"artifact: {result.artifact}")
        if plot:
            from rankpref.plots import plot_training_curves

            curves = plot_training_curves(cfg.run_dir(), monitor=cfg.eval.monitor)
            typer.echo(f"training curves: {curves}")


@app.command()
@friendly
def evaluate(artifact: List[Path] = typer.Option(..., help="artifact or run folder; repeat "
                                                 "to compare runs"),
             split: str = typer.Option("test", help="valid, test or both"),
             protocol: Optional[str] = typer.Option(None, help="full (default) or sampled_<N>"),
             mask_history: Optional[bool] = typer.Option(
                 None, "--mask-history/--no-mask-history",
                 help="exclude the user's own history from the ranking (off = RecBole's way)"),
             output: Optional[Path] = typer.Option(None, help="also write the metrics JSON here"),
             plot: bool = typer.Option(False, "--plot", help="write a bar chart of the runs' "
                                       "recall@k and ndcg@k"),
             plot_file: Optional[Path] = typer.Option(None, help="where --plot writes (default: "
                                                      "the --output path with .png, else "
                                                      "./evaluation.png)"),
             set_: Optional[List[str]] = SET_OPT):
    """Evaluate artifacts by full ranking on their dataset's valid/test split."""
    from rankpref.io import write_json
    from rankpref.tasks import next_item

    chosen = splits(split)
    check_output(output)
    results: dict[str, dict] = {}
    for path in artifact:
        name = _run_name(path, results)
        if len(artifact) > 1:
            typer.echo(f"== {name} ({path})")
        result = next_item.evaluate_artifact(path, chosen, protocol=protocol,
                                             mask_history=mask_history,
                                             overrides=list(set_ or []), progress=True)
        for s in chosen:
            print_metrics(f"{s} ({result['protocol']} ranking, mask_history="
                          f"{result['mask_history']})", result[s], width=12)
        results[name] = result
    if output:
        write_json(output, next(iter(results.values())) if len(results) == 1 else
                   {"runs": results})
    if plot:
        from rankpref.plots import plot_metric_bars

        first_name, first = next(iter(results.items()))
        for name, r in results.items():  # one chart compares runs measured the same way
            for key in ("dataset", "split", "protocol", "mask_history"):
                if r[key] != first[key]:
                    raise RankprefError(f"--plot: run {name!r} has {key} {r[key]!r} but "
                                        f"{first_name!r} has {first[key]!r}; plot runs "
                                        "measured the same way (--protocol and "
                                        "--mask-history apply to every run)")
        bars = {name: {f"{s} {m}": v for s in chosen for m, v in r[s].items()
                       if m.startswith(("recall@", "ndcg@"))} for name, r in results.items()}
        target = plot_file or (output.with_suffix(".png") if output else Path("evaluation.png"))
        title = (f"{first['dataset']}: {first['protocol']} ranking, mask_history="
                 f"{first['mask_history']}")
        typer.echo(f"plot: {plot_metric_bars(bars, target, title=title)}")


def _run_name(path: Path, taken: dict) -> str:
    """A short, unique label for a run: its run folder's name."""
    path = Path(path)
    name = path.parent.name if path.name == "model" else path.name
    label, n = name or str(path), 2
    while label in taken:
        label, n = f"{name} ({n})", n + 1
    return label


@app.command()
@friendly
def recommend(artifact: Path = typer.Option(..., help="artifact or run folder"),
              user: Optional[str] = typer.Option(None, help="a known user id"),
              items: Optional[str] = typer.Option(None, help="comma-separated item ids, oldest first"),
              k: int = typer.Option(10, min=1, max=1000),
              include_seen: bool = typer.Option(False, help="allow items already in the history"),
              explain: int = typer.Option(0, min=0, max=20, help="PULSE: show this many "
                                          "nearest training rationales per recommendation"),
              rationale_backend: Optional[str] = typer.Option(
                  None, help="PULSE: also write a fresh rationale for each recommendation "
                  "with this backend (template, transformers, llama-cpp, openai)"),
              rationale_model: Optional[str] = typer.Option(None, help="model for "
                                                            "--rationale-backend"),
              base_url: Optional[str] = typer.Option(None, help="openai backend URL"),
              as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """Top-k next items for a known user or for a given list of item ids."""
    from rankpref.data.datasets import prepare as run_prepare
    from rankpref.tasks.next_item import Recommender, user_history

    if (user is None) == (items is None):
        raise RankprefError("give exactly one of --user or --items")
    rec = Recommender.load(artifact, command="rankpref recommend")
    if user is not None:
        history = user_history(run_prepare(rec.cfg.data, quiet=True), user)
    else:
        ids = [i.strip() for i in items.split(",") if i.strip()]
        history = rec.item_indices(ids)
    ranked = rec.recommend(history, k=k, exclude_seen=not include_seen)
    rows = rec.describe(ranked)
    if explain:
        for row, (idx, _) in zip(rows, ranked):
            row["because"] = rec.explain(history, idx, explain)
    if rationale_backend:
        from rankpref.rationales.fresh import fresh_rationales

        fresh = fresh_rationales(rec, history, [idx for idx, _ in ranked], rationale_backend,
                                 model=rationale_model, base_url=base_url)
        for row, text in zip(rows, fresh):
            row["rationale"] = text
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        title = f"  {row['title']}" if row["title"] else ""
        typer.echo(f"{row['rank']:>3}. {row['item_id']:<14} {row['score']:>8.3f}{title}")
        if row.get("rationale"):
            typer.echo(f"       why (generated): {row['rationale']}")
        for near in row.get("because", []):
            tag = "same item" if near["same_item"] else "nearest"
            head = (f"because ({tag}, sim {near['similarity']:.2f}, user {near['user_id']}): "
                    f"{near['rationale']}")
            typer.echo(textwrap.fill(head, width=100, initial_indent=" " * 7,
                                     subsequent_indent=" " * 9))

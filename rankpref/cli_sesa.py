"""``rankpref sesa``: explicit-concept embeddings that rank and explain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from rankpref.cli_common import friendly

sesa_app = typer.Typer(no_args_is_help=True, help="SESA: explicit-concept embeddings.")

ARTIFACT_OPT = typer.Option(..., "--artifact", "-a", help="folder written by `rankpref sesa fit`")
SET_OPT = typer.Option(None, "--set", help="override a setting: key.path=value (repeatable)")
METRICS = ("ndcg@10", "recall@10", "mrr", "concept_micro_f1", "top5_share")


def _print_metrics(title: str, metrics: dict) -> None:
    typer.echo(f"{title} ({metrics['queries']} queries)")
    for key in METRICS:
        if key in metrics:
            typer.echo(f"  {key:<18} {metrics[key]:.4f}")


@sesa_app.command()
@friendly
def fit(data: Optional[str] = typer.Option(None, "--data", help="onet (shared O*NET 29.2) or "
                                           "onet-slice (shipped)"),
        task: Optional[str] = typer.Option(None, help="titles (job title -> occupation) or "
                                           "related (occupation -> related occupations)"),
        encoder: Optional[str] = typer.Option(None, help="minilm (frozen, default) or gru"),
        head: Optional[str] = typer.Option(None, help="concepts (SESA, default) or latent "
                                           "(dense dual encoder baseline)"),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config"),
        set_: Optional[List[str]] = SET_OPT,
        out: Optional[Path] = typer.Option(None, "--out", help="run folder"),
        epochs: Optional[int] = typer.Option(None, help="maximum epochs"),
        plot: bool = typer.Option(False, "--plot", help="also write the dev ndcg@10 curve to "
                                  "<run>/training_curves.png")):
    """Train SESA (or the latent baseline), select the epoch on dev, write an artifact."""
    from rankpref.sesa import fit as run_fit, load_config

    overrides = []
    for key, value in (("data.name", data), ("data.task", task), ("model.encoder", encoder),
                       ("model.head", head), ("output_dir", out), ("train.epochs", epochs)):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(config, overrides + list(set_ or []))
    _, metrics = run_fit(cfg)
    typer.echo(f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']} (dev ndcg@10)")
    _print_metrics("dev", metrics["dev"])
    _print_metrics("test", metrics["test"])
    typer.echo(f"artifact: {cfg.run_dir() / 'model'}")
    if plot:
        from rankpref.plots import plot_history

        path = plot_history(metrics["history"], cfg.run_dir() / "training_curves.png",
                            "dev_ndcg@10", title=cfg.run_dir().name)
        typer.echo(f"training curves: {path}")


@sesa_app.command()
@friendly
def evaluate(artifact: Path = ARTIFACT_OPT,
             split: str = typer.Option("test", help="dev, test or both"),
             as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """Rank every occupation for the split's queries and report the metrics."""
    from rankpref.errors import RankprefError
    from rankpref.sesa import evaluate as run_eval, load_artifact, prepare_for_artifact

    if split not in ("dev", "test", "both"):
        raise RankprefError(f"--split: expected dev, test or both, got {split!r}")
    art = load_artifact(artifact)
    prep = prepare_for_artifact(art)
    splits = ("dev", "test") if split == "both" else (split,)
    results = {s: run_eval(art.model, prep, s) for s in splits}
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    for s in splits:
        _print_metrics(s, results[s])


@sesa_app.command()
@friendly
def explain(artifact: Path = ARTIFACT_OPT,
            query: str = typer.Option(..., "--query", "-q", help="query text, e.g. a job title"),
            item: Optional[str] = typer.Option(None, "--item", "-i", help="item id (O*NET-SOC "
                                               "code); default: the top-ranked item"),
            top: int = typer.Option(10, help="concepts to show"),
            as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """Score one item for a query and list the concepts that carry the score."""
    from rankpref.sesa import explain as run_explain, load_artifact, search, text_encoder

    art = load_artifact(artifact)
    encoder = text_encoder(art.cfg) if art.cfg.model.encoder == "minilm" else None
    if item is None:
        item = search(art, query, 1, encoder=encoder)[0]["item"]
    result = run_explain(art, query, item, top, encoder=encoder)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"query: {result['query']}")
    typer.echo(f"item:  {result['item']} {result['title']}")
    typer.echo(f"score: {result['score']:.4f} (sum of {result['active_shared_concepts']} "
               f"concept contributions: {result['sum_of_contributions']:.4f})")
    typer.echo(f"  {'concept':<48} {'contrib':>8} {'share':>6} {'query':>7} {'item':>7}")
    for row in result["top"]:
        typer.echo(f"  {row['concept'][:48]:<48} {row['contribution']:>8.4f} "
                   f"{row['share']:>6.1%} {row['query']:>7.3f} {row['item']:>7.3f}")


@sesa_app.command()
@friendly
def search(artifact: Path = ARTIFACT_OPT,
           query: str = typer.Option(..., "--query", "-q", help="query text"),
           k: int = typer.Option(10, help="items to return"),
           as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """The top-k items for a query text."""
    from rankpref.sesa import load_artifact, search as run_search, text_encoder

    art = load_artifact(artifact)
    encoder = text_encoder(art.cfg) if art.cfg.model.encoder == "minilm" else None
    hits = run_search(art, query, k, encoder=encoder)
    if as_json:
        typer.echo(json.dumps(hits, indent=2))
        return
    for rank, hit in enumerate(hits, 1):
        typer.echo(f"{rank:>3}  {hit['score']:8.4f}  {hit['item']}  {hit['title']}")


@sesa_app.command()
@friendly
def index(artifact: Path = ARTIFACT_OPT,
          out: Path = typer.Option(..., "--out", help="index folder to write"),
          factory: str = typer.Option("Flat", help="FAISS factory string (Flat = exact)")):
    """Put the catalogue's concept vectors into a FAISS ItemIndex (inner product)."""
    from rankpref.sesa import build_index, load_artifact, text_encoder

    art = load_artifact(artifact)
    encoder = text_encoder(art.cfg) if art.cfg.model.encoder == "minilm" else None
    idx = build_index(art, factory, encoder=encoder)
    idx.save(out)
    typer.echo(f"indexed {len(idx)} items x {idx.dim} dimensions ({factory}, inner product): {out}")

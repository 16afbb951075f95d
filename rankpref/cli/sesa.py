"""``rankpref sesa``: explicit-concept embeddings that rank and explain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from rankpref.cli.common import CONFIG_OPT, SET_OPT, friendly, overrides, print_metrics, splits

sesa_app = typer.Typer(no_args_is_help=True, help="SESA: explicit-concept embeddings.")

ARTIFACT_OPT = typer.Option(..., "--artifact", "-a", help="folder written by `rankpref sesa fit`")
METRICS = ("ndcg@10", "recall@10", "mrr", "concept_micro_f1", "top5_share")


def _print_metrics(title: str, metrics: dict) -> None:
    print_metrics(f"{title} ({metrics['queries']} queries)", metrics, METRICS)


@sesa_app.command()
@friendly
def fit(data: Optional[str] = typer.Option(None, "--data", help="onet (shared O*NET 29.2) or "
                                           "onet-slice (shipped)"),
        task: Optional[str] = typer.Option(None, help="titles (job title -> occupation) or "
                                           "related (occupation -> related occupations)"),
        encoder: Optional[str] = typer.Option(None, help="minilm (frozen, default) or gru"),
        head: Optional[str] = typer.Option(None, help="concepts (SESA, default) or latent "
                                           "(dense dual encoder baseline)"),
        config: Optional[Path] = CONFIG_OPT,
        set_: Optional[List[str]] = SET_OPT,
        out: Optional[Path] = typer.Option(None, "--out", help="run folder"),
        epochs: Optional[int] = typer.Option(None, help="maximum epochs"),
        plot: bool = typer.Option(False, "--plot", help="also write the valid ndcg@10 curve "
                                  "to <run>/training_curves.png")):
    """Train SESA (or the latent baseline), select the epoch on valid, write an artifact."""
    from rankpref.tasks import sesa

    cfg = sesa.load_config(config, overrides(
        [("data.name", data), ("data.task", task), ("model.encoder", encoder),
         ("model.head", head), ("output_dir", out), ("train.epochs", epochs)], set_))
    result = sesa.fit(cfg)
    metrics = result.metrics
    typer.echo(f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']} "
               f"({metrics['selected_on']})")
    _print_metrics("valid", metrics["valid"])
    _print_metrics("test", metrics["test"])
    typer.echo(f"artifact: {result.artifact}")
    if plot:
        from rankpref.plots import plot_history

        path = plot_history(metrics["history"], cfg.run_dir() / "training_curves.png",
                            f"valid/{cfg.eval.monitor}", loss="train/loss",
                            title=cfg.run_dir().name)
        typer.echo(f"training curves: {path}")


@sesa_app.command()
@friendly
def evaluate(artifact: Path = ARTIFACT_OPT,
             split: str = typer.Option("test", help="valid, test or both"),
             as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """Rank every occupation for the split's queries and report the metrics."""
    from rankpref.tasks import sesa

    chosen = splits(split)
    results = sesa.evaluate_artifact(artifact, chosen)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    for s in chosen:
        _print_metrics(s, results[s])


@sesa_app.command()
@friendly
def explain(artifact: Path = ARTIFACT_OPT,
            query: str = typer.Option(..., "--query", "-q", help="query text, e.g. a job title"),
            item: Optional[str] = typer.Option(None, "--item", "-i", help="item id (O*NET-SOC "
                                               "code); default: the top-ranked item"),
            top: int = typer.Option(10, min=1, help="concepts to show"),
            as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """Score one item for a query and list the concepts that carry the score."""
    from rankpref.tasks import sesa

    art = sesa.load_artifact(artifact, "rankpref sesa explain")
    encoder = sesa.text_encoder(art.cfg) if art.cfg.model.encoder == "minilm" else None
    if item is None:
        item = sesa.search(art, query, 1, encoder=encoder)[0]["item"]
    result = sesa.explain(art, query, item, top, encoder=encoder)
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
           k: int = typer.Option(10, min=1, help="items to return"),
           as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """The top-k items for a query text."""
    from rankpref.tasks import sesa

    art = sesa.load_artifact(artifact, "rankpref sesa search")
    encoder = sesa.text_encoder(art.cfg) if art.cfg.model.encoder == "minilm" else None
    hits = sesa.search(art, query, k, encoder=encoder)
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
    from rankpref.serving.index import ItemIndex
    from rankpref.tasks import sesa

    art = sesa.load_artifact(artifact, "rankpref sesa index")
    encoder = sesa.text_encoder(art.cfg) if art.cfg.model.encoder == "minilm" else None
    ids, vectors, meta = sesa.index_inputs(art, encoder=encoder)
    idx = ItemIndex.build(ids, vectors, factory=factory, metric="ip", metadata=meta)
    idx.save(out)
    typer.echo(f"indexed {len(idx)} items x {idx.dim} dimensions ({factory}, inner product): {out}")

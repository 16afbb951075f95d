"""``rankpref rank``: listwise subjective ranking (RankList and the standard listwise losses)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from rankpref.errors import RankprefError
from rankpref.cli.common import (CONFIG_OPT, SET_OPT, check_output, friendly, overrides,
                                  print_metrics, splits)

rank_app = typer.Typer(no_args_is_help=True, help="Rank items by subjective ratings.")


def _print_split(name: str, metrics: dict, std: dict | None = None) -> None:
    if not std:
        print_metrics(f"{name} ({metrics.get('items', '?')} items)", metrics)
        return
    typer.echo(f"{name} ({metrics.get('items', '?')} items, mean ± std over folds)")
    for key, value in metrics.items():
        if isinstance(value, float):
            typer.echo(f"  {key:<18} {value:.4f} ± {std.get(key, float('nan')):.4f}")


@rank_app.command("fit")
@friendly
def fit(data: Optional[str] = typer.Option(None, help="emobank, wine-red, wine-white, "
                                           "*-slice, or a CSV/TSV/parquet path"),
        target: Optional[str] = typer.Option(None, help="label column (EmoBank: V, A or D)"),
        loss: Optional[str] = typer.Option(None, help="ranklist (default), ranknet, listnet, "
                                           "listmle, approxndcg, lambdaloss, mse"),
        text_column: Optional[str] = typer.Option(None, help="encode this text column"),
        feature_columns: Optional[str] = typer.Option(None, help="comma-separated numeric "
                                                      "feature columns"),
        embeddings: Optional[Path] = typer.Option(None, help=".npy/.parquet features, one "
                                                  "row per table row"),
        audio_column: Optional[str] = typer.Option(None, help="column of audio files "
                                                   "(wav/flac/mp3, relative to the table)"),
        audio_features: Optional[str] = typer.Option(None, help="eGeMAPSv02 (default), "
                                                     "ComParE_2016, or an audio model folder"),
        image_column: Optional[str] = typer.Option(None, help="column of image files"),
        image_model: Optional[str] = typer.Option(None, help="image model folder (needed "
                                                  "with --image-column)"),
        model: Optional[str] = typer.Option(None, help="scorer: mlp (default), linear, or "
                                            "finetune (trains the text encoder too)"),
        margin: Optional[float] = typer.Option(None, help="W: list sampling and RankList "
                                               "pair margin"),
        list_size: Optional[int] = typer.Option(None, help="items per training list"),
        epochs: Optional[int] = typer.Option(None, help="maximum epochs"),
        seed: Optional[int] = typer.Option(None),
        out: Optional[Path] = typer.Option(None, "--out", help="run folder (artifact in "
                                           "<out>/model)"),
        config: Optional[Path] = CONFIG_OPT,
        set_: Optional[List[str]] = SET_OPT,
        plot: bool = typer.Option(False, "--plot", help="also write training loss and valid "
                                  "Kendall tau curves to <run>/training_curves.png")):
    """Train a scorer on a rated pool, keep the best valid epoch, write an artifact."""
    from rankpref.tasks import rank

    cols = None
    if feature_columns is not None:
        cols = [c.strip() for c in feature_columns.split(",") if c.strip()]
    cfg = rank.load_config(config, overrides(
        [("data.name", data), ("data.target", target), ("loss.name", loss),
         ("data.text_column", text_column), ("data.embeddings", embeddings),
         ("data.feature_columns", cols), ("lists.list_size", list_size),
         ("data.audio_column", audio_column), ("data.audio_features", audio_features),
         ("data.image_column", image_column), ("data.image_model", image_model),
         ("model.name", model),
         ("train.epochs", epochs), ("train.seed", seed), ("output_dir", out),
         ("lists.margin", margin), ("loss.margin", margin)], set_))
    result = rank.fit(cfg)
    metrics = result.metrics
    typer.echo(f"{metrics['dataset']} ({metrics['source']}), target {metrics['target']}, "
               f"loss {metrics['loss']}: best epoch {metrics['best_epoch']} of "
               f"{metrics['epochs_run']} ({metrics['selected_on']}), "
               f"{metrics['train_seconds']:.1f} s")
    typer.echo(f"protocol: {metrics['split']}")
    _print_split("valid", metrics["valid"], metrics.get("valid_std"))
    _print_split("test", metrics["test"], metrics.get("test_std"))
    ridge = metrics.get("baselines", {}).get("ridge")
    if ridge:
        tau, std = ridge["test"]["kendall_tau"], ridge.get("test_std", {}).get("kendall_tau")
        typer.echo(f"baseline: ridge on the same features (fit on {ridge['fit_on']}), test "
                   f"kendall_tau {tau:.4f}" + (f" ± {std:.4f}" if std is not None else ""))
    typer.echo(f"artifact: {result.artifact}")
    if plot:
        from rankpref.plots import plot_history

        path = plot_history(metrics["history"], cfg.run_dir() / "training_curves.png",
                            f"valid/{cfg.eval.monitor}", loss="train/loss",
                            title=cfg.run_dir().name)
        typer.echo(f"training curves: {path}")


@rank_app.command("evaluate")
@friendly
def evaluate(artifact: Path = typer.Option(..., help="artifact or run folder"),
             split: str = typer.Option("test", help="valid, test or both"),
             margin: Optional[List[float]] = typer.Option(None, help="ranking accuracy at this "
                                                          "label margin (repeatable)"),
             output: Optional[Path] = typer.Option(None, help="also write the JSON here")):
    """Score a split of the artifact's data: Kendall tau-b, Spearman, accuracy@W, NDCG@k."""
    from rankpref.io import write_json
    from rankpref.tasks import rank

    chosen = splits(split)
    check_output(output)
    result = rank.evaluate_artifact(artifact, chosen, margins=list(margin) if margin else None)
    for name in chosen:
        _print_split(name, result[name])
    if output:
        write_json(output, result)


@rank_app.command("predict")
@friendly
def predict(artifact: Path = typer.Option(..., help="artifact or run folder"),
            items: Path = typer.Option(..., help="CSV/TSV/parquet of items (the text or "
                                       "feature columns the model was trained on)"),
            embeddings: Optional[Path] = typer.Option(None, help="features for models trained "
                                                      "on embeddings"),
            output: Optional[Path] = typer.Option(None, help="write all rows (.csv or .json)"),
            top: int = typer.Option(10, min=0, help="print this many best items")):
    """Score a file of items and order them, best first."""
    from rankpref.io import atomic_path, write_json
    from rankpref.tasks import rank

    check_output(output, (".csv", ".json"))
    table = rank.predict_table(artifact, items, embeddings)
    if output is not None:
        if output.suffix == ".json":
            write_json(output, table.to_dicts())
        elif output.suffix == ".csv":
            with atomic_path(output) as tmp:
                table.write_csv(tmp)
        else:
            raise RankprefError(f"{output}: --output must end in .csv or .json")
    for row in table.head(top).iter_rows(named=True):
        typer.echo(f"{row['rank']:>4}. {row['id']:<24} {row['score']:>9.4f}")
    if output is not None:
        typer.echo(f"wrote {table.height} scored items to {output}")


@rank_app.command("make-clips")
@friendly
def make_clips(out: Path = typer.Option(..., "--out", help="folder for clips/ and "
                                        "ratings.csv"),
               count: int = typer.Option(60, min=10, help="number of clips"),
               seconds: float = typer.Option(3.0, min=0.5, help="length of each clip"),
               seed: int = typer.Option(0)):
    """Write synthesised voice-like clips with known perceived traits (pitch, pleasant) and
    their ratings table, to try the clip workflow without recordings."""
    from rankpref.data.tones import write_clips

    table = write_clips(out, count, seconds=seconds, seed=seed)
    typer.echo(f"wrote {table.height} clips under {out / 'clips'} and {out / 'ratings.csv'} "
               "(targets: pitch, pleasant)")

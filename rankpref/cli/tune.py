"""``rankpref tune``: optuna hyper-parameter search over any model's config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from rankpref.cli.common import friendly


@friendly
def tune(spec: Path = typer.Argument(..., help="search spec YAML (task, base config, space)"),
         out: Optional[Path] = typer.Option(None, "--out", help="study folder (default "
                                            "runs/<spec name>, prefixed tune-)"),
         storage: Optional[str] = typer.Option(None, help="optuna storage URL, e.g. "
                                               "sqlite:///study.db (default: <out>/study.db); "
                                               "running again continues the study"),
         study_name: Optional[str] = typer.Option(None, help="default: the --out folder name"),
         trials: Optional[int] = typer.Option(None, min=1, help="finished trials wanted "
                                              "(overrides the spec)"),
         timeout: Optional[float] = typer.Option(None, min=1, help="stop starting trials "
                                                 "after this many seconds"),
         plot: bool = typer.Option(True, "--plot/--no-plot", help="write optuna's history and "
                                   "parameter-importance plots (PNG)"),
         progress: bool = typer.Option(True, "--progress/--no-progress", help="a progress "
                                       "bar of finished trials"),
         set_: Optional[List[str]] = typer.Option(None, "--set", help="edit the spec: "
                                                  "key.path=value (repeatable)")):
    """Search a model's settings with optuna, selecting on the valid split; write the best
    config as a YAML that the model's fit command accepts."""
    from rankpref.tuning import load_spec, tune as run_tune

    edits = list(set_ or [])
    if trials is not None:
        edits.append(f"trials={trials}")
    if timeout is not None:
        edits.append(f"timeout={timeout}")
    parsed, base = load_spec(spec, edits)
    out = out or Path("runs") / (spec.stem if spec.stem.startswith("tune") else
                                 f"tune-{spec.stem}")
    summary = run_tune(parsed, base, out, storage=storage, study_name=study_name, plot=plot,
                       echo=typer.echo, progress=progress, source=str(spec))
    typer.echo(json.dumps({k: summary[k] for k in ("study", "trials", "selected_on",
                                                   "best_trial", "best_value", "best_params")},
                          indent=2))
    typer.echo(f"best config: {summary['best_config']}")
    for name, path in summary.get("plots", {}).items():
        typer.echo(f"{name} plot: {path}")

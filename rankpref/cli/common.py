"""What every command group shares: one-line errors, the config options, metric printing."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Iterable

import typer

from rankpref.errors import RankprefError, RunInterrupted
from rankpref.io import io_failure

CONFIG_OPT = typer.Option(None, "--config", "-c", help="YAML config (validated; unknown keys "
                          "are errors)")
SET_OPT = typer.Option(None, "--set", help="override a setting: key.path=value (repeatable)")


def friendly(fn):
    """Turn rankpref's own errors into one line on stderr and exit status 2 (no traceback);
    an interrupted run exits with 128 + the signal number, as a shell would report it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RunInterrupted as exc:
            typer.echo(f"interrupted: {exc}", err=True)
            raise typer.Exit(128 + exc.signum)
        except RankprefError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        except OSError as exc:  # a write the atomic writers did not cover (logs, exports)
            if io_failure(exc) is None:
                raise
            typer.echo(f"error: {exc.filename or 'a file'}: {exc.strerror}", err=True)
            raise typer.Exit(2)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)

    return wrapper


def check_output(output: Path | None, suffixes: tuple[str, ...] | None = None) -> None:
    """Refuse an --output that cannot be written (a folder, another suffix than
    ``suffixes``) before any work is done."""
    if output is None:
        return
    kinds = " or ".join(suffixes or (".json",))
    if output.is_dir():
        raise RankprefError(f"--output {output}: is a folder; give a file path ({kinds})")
    if suffixes is not None and output.suffix not in suffixes:
        raise RankprefError(f"--output {output}: must end in {kinds}")


def overrides(pairs: Iterable[tuple[str, object]], sets: list[str] | None) -> list[str]:
    """``--set`` arguments for the options a user gave (None = not given), then their own
    ``--set`` values, which win."""
    out = []
    for key, value in pairs:
        if value is None:
            continue
        if isinstance(value, (str, Path)):
            value = json.dumps(str(value))
        elif isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, (list, tuple)):
            value = json.dumps(list(value))
        out.append(f"{key}={value}")
    return out + list(sets or [])


def splits(split: str) -> tuple[str, ...]:
    """``--split`` (valid, test or both) as split names."""
    if split not in ("valid", "test", "both"):
        raise RankprefError(f"--split must be valid, test or both, got {split!r}")
    return ("valid", "test") if split == "both" else (split,)


def print_metrics(title: str, metrics: dict, keys: Iterable[str] | None = None,
                  width: int = 18) -> None:
    typer.echo(title)
    for key in keys or metrics:
        value = metrics.get(key)
        if isinstance(value, float):
            typer.echo(f"  {key:<{width}} {value:.4f}")

"""Helpers shared by the command-line modules."""

from __future__ import annotations

import functools

import typer

from rankpref.errors import RankprefError


def friendly(fn):
    """Turn rankpref's own errors into one line on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RankprefError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)

    return wrapper

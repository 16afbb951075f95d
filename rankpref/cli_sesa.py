"""``rankpref sesa``: explicit-concept embeddings that rank and explain."""

from __future__ import annotations

import typer

sesa_app = typer.Typer(no_args_is_help=True, help="SESA: explicit-concept embeddings.")

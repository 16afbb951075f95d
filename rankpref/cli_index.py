"""``rankpref index`` (FAISS item index) and ``rankpref serve`` (HTTP server)."""

from __future__ import annotations

import typer

from rankpref.cli_common import friendly

index_app = typer.Typer(no_args_is_help=True, help="Build, search and check FAISS item indexes.")


@friendly
def serve():
    """Serve nearest-item lookups and recommendations over HTTP."""
    raise typer.BadParameter("not built yet")

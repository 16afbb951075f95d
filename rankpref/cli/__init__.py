"""The ``rankpref`` command line: one module per command group, each over a task's public API.

    rankpref prepare | fit | evaluate | recommend      next-item (cli/next_item.py)
    rankpref rationales ...                             rationales + thought space
    rankpref rank ...                                   listwise subjective ranking
    rankpref sesa ...                                   explicit-concept embeddings
    rankpref index ... | serve                          FAISS index and HTTP server
    rankpref tune SPEC.yaml                             optuna search over any task
"""

from __future__ import annotations

from typing import Optional

import typer

from rankpref.cli.index import index_app, serve
from rankpref.cli.next_item import app
from rankpref.cli.rank import rank_app
from rankpref.cli.rationales import rationales_app
from rankpref.cli.sesa import sesa_app
from rankpref.cli.tune import tune

app.info.help = "rankpref: learn why people prefer things, and rank with it."
app.info.no_args_is_help = True


def _version(value: bool) -> None:
    if value:
        from rankpref import __version__

        typer.echo(f"rankpref {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Optional[bool] = typer.Option(None, "--version", callback=_version,
                                                  is_eager=True, help="print the version")):
    """rankpref: learn why people prefer things, and rank with it."""


app.add_typer(rationales_app, name="rationales")
app.add_typer(rank_app, name="rank")
app.add_typer(sesa_app, name="sesa")
app.add_typer(index_app, name="index")
app.command("serve")(serve)
app.command("tune")(tune)


def main() -> None:
    app(prog_name="rankpref")


if __name__ == "__main__":
    main()

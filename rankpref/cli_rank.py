"""``rankpref rank``: listwise subjective ranking (RankList and the standard listwise losses)."""

from __future__ import annotations

import typer

rank_app = typer.Typer(no_args_is_help=True, help="Rank items by subjective ratings.")

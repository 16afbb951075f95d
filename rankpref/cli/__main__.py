"""``python -m rankpref.cli``: the rankpref command line."""

from rankpref.cli import main

main()

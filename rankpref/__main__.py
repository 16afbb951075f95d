"""``python -m rankpref``: the rankpref command line."""

from rankpref.cli import main

main()

"""Process-wide settings read from the environment: where data lives, how many threads."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "RANKPREF_DATA_DIR"


def data_dir() -> Path:
    """The folder of shared real data sets.

    Set by ``RANKPREF_DATA_DIR``; defaults to ``../shared/data`` relative to the working
    directory (the layout of a rankpref checkout next to its shared data).
    """
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value) if value else Path("..") / "shared" / "data"


SHIPPED = "_data"
"""Where an installed wheel keeps the shipped data sets (``rankpref/_data``, copied from the
repository's ``datasets/`` by ``setup.py``)."""


def shipped(*parts: str) -> Path:
    """A file or folder of the data shipped with rankpref (the demo data, the EmoBank, wine and
    O*NET slices): ``datasets/...`` in a checkout, ``rankpref/_data/...`` in an installed
    wheel, so ``pip install`` outside the checkout can still run the demo."""
    package = Path(__file__).resolve().parent
    for base in (package / SHIPPED, package.parent / "datasets"):
        if base.joinpath(*parts).exists():
            return base.joinpath(*parts)
    return package.parent.joinpath("datasets", *parts)  # named in the not-found error


def set_threads(threads: int) -> None:
    """Set torch's intra-op threads (and OpenMP's) for this process."""
    import torch

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)

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


def project_root() -> Path:
    """The folder that holds the rankpref package (the repository root in a checkout)."""
    return Path(__file__).resolve().parent.parent


def set_threads(threads: int) -> None:
    """Set torch's intra-op threads (and OpenMP's) for this process."""
    import torch

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)

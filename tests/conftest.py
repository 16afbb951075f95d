"""Shared test fixtures. Keep this small: test modules own their own helpers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from rankpref import settings


def pytest_configure(config):
    # `make test` runs two workers on two cores: one thread each, or they fight for the cores
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import torch

        torch.set_num_threads(1)


def require_shared(*parts: str) -> Path:
    """Path of a file/folder under the shared data folder; skips the test when it is absent."""
    path = settings.data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path}; set {settings.DATA_DIR_ENV}")
    return path


@pytest.fixture
def data_dir() -> Path:
    """The shared data folder (``RANKPREF_DATA_DIR`` or ``../shared/data``)."""
    return settings.data_dir()


@pytest.fixture(scope="session")
def shared_data() -> Callable[..., Path]:
    """``shared_data("amazon_beauty", "sequences.tsv")``: the path, or skip when absent."""
    return require_shared

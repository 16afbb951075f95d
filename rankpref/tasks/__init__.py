"""Tasks: the kinds of run rankpref trains, each a package with the same shape.

``next_item`` (SASRec, PULSE and its thought space), ``rank`` (listwise ranking by subjective
ratings) and ``sesa`` (explicit-concept embeddings) each have a config, a data module, a
Lightning module, ``fit(cfg) -> RunResult``, evaluation and prediction. A task never imports
another task; what they share lives beside them (``rankpref.config``, ``rankpref.lightning``,
``rankpref.artifact``, ``rankpref.data``, ``rankpref.models``, ``rankpref.losses``,
``rankpref.metrics``). Each task registers a :class:`Task` in
:data:`rankpref.registry.TASKS`, which ``rankpref tune`` searches over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass
class RunResult:
    """What every ``fit`` returns.

    ``artifact`` is the folder written (``<run_dir>/model``), None when nothing was written
    (``write=False``, or a process other than rank 0 under DDP). ``metrics`` is what
    ``metrics.json`` holds: ``valid`` and ``test`` metrics, ``selected_on``, ``best_epoch``,
    ``epochs_run``, ``history`` and timings. ``model`` is the trained network, with the
    weights of the selected epoch."""

    task: str
    run_dir: Path | None
    artifact: Path | None
    metrics: dict
    model: Any = None

    def value(self, metric: str) -> float:
        """A valid-split metric, e.g. ``result.value("ndcg@10")``."""
        return float(self.metrics["valid"][metric])


@dataclass(frozen=True)
class Task:
    """How one kind of run is configured, fitted and monitored (for the CLI and tuning)."""

    name: str
    load_config: Callable[[Path | None, list[str]], Any]  # (yaml or None, overrides) -> config
    fit: Callable[..., RunResult]  # fit(cfg, data=None, callbacks=None, write=True)
    load_data: Callable[[Any], Any]  # cfg -> the data ``fit`` takes (reused across trials)
    data_key: Callable[[Any], str]  # cfg -> what decides that data (trials sharing it reuse it)
    monitor: Callable[[Any], str]  # cfg -> the logged per-epoch value selection uses
    fit_command: str
    check: Callable[[Any], None] = lambda cfg: None  # rules beyond the schema (ConfigError)
    # settings that decide what a trial is measured on (data, split, metric): searching them
    # would compare trials on different yardsticks, so they may be set but not searched
    fixed: tuple[str, ...] = ()
    searchable: tuple[str, ...] = ()  # exceptions to ``fixed``
    trial_overrides: dict = field(default_factory=lambda: {"train.resume": False})

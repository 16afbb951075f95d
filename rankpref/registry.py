"""Name -> object tables for models, losses and tasks.

Entries register themselves when their module is imported (``rankpref.models``,
``rankpref.losses``, each task package); this module imports nothing of rankpref's, so it
sits below everything that registers. A plugin adds a model with one decorator::

    from rankpref.registry import MODELS

    @MODELS.register("mymodel", task="next_item", config=MyModelConfig)
    class MyModel(nn.Module): ...

Each entry carries free-form metadata (``task``, ``config``, ...) that its users read.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from rankpref.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    meta: dict = field(default_factory=dict)

    def __getattr__(self, key: str):
        try:
            return self.meta[key]
        except KeyError:
            raise AttributeError(key) from None


class Registry:
    def __init__(self, what: str):
        self.what = what
        self._entries: dict[tuple[str | None, str], Entry] = {}

    def register(self, name: str, obj: Any = None, *, group: str | None = None, **meta):
        """Register ``obj`` as ``name`` (in ``group``, e.g. a task's losses); without ``obj``,
        a decorator. Registering a taken name is an error: the second would hide the first."""

        def add(target):
            key = (group, name)
            if key in self._entries and self._entries[key].obj is not target:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._entries[key] = Entry(name, target, {"group": group, **meta})
            return target

        return add if obj is None else add(obj)

    def entry(self, name: str, group: str | None = None) -> Entry:
        try:
            return self._entries[(group, name)]
        except KeyError:
            where = f" for {group}" if group else ""
            raise ConfigError(f"unknown {self.what} {name!r}{where}; choose one of "
                              f"{', '.join(self.names(group)) or '(none)'}") from None

    def get(self, name: str, group: str | None = None) -> Any:
        return self.entry(name, group).obj

    def names(self, group: str | None = None) -> list[str]:
        return [name for (g, name) in self._entries if g == group]

    def entries(self, group: str | None = None) -> Iterator[Entry]:
        return (e for (g, _), e in self._entries.items() if g == group)

    def __contains__(self, key) -> bool:
        name, group = (key, None) if isinstance(key, str) else key
        return (group, name) in self._entries

    @contextmanager
    def scratch(self):
        """Registrations made inside the block are forgotten when it ends (tests and docs
        register example models and losses without leaking them into what follows)."""
        saved = dict(self._entries)
        try:
            yield self
        finally:
            self._entries = saved


MODELS = Registry("model")
"""``nn.Module`` classes, grouped by task; meta ``config``: their dataclass config, ``fixed``:
config fields the task fills in (sizes), never the user."""

LOSSES = Registry("loss")
"""Pure loss functions, grouped by what they rank: ``next_item``, ``listwise``, ``contrastive``,
``concepts``."""

TASKS = Registry("task")
""":class:`rankpref.tasks.Task` descriptors: how a kind of run is configured, fitted and
monitored (what ``rankpref tune`` and the CLI use)."""

ARTIFACTS = Registry("artifact kind")
"""Artifact kind -> loader (folder -> object), for :func:`rankpref.load.open_artifact`."""


def choices(registry: Registry, group: str | None = None) -> Callable[[str], str]:
    """A pydantic validator: the value must be a registered name."""

    def check(value: str) -> str:
        if value not in registry.names(group):
            raise ValueError(f"unknown {registry.what} {value!r}; choose one of "
                             f"{', '.join(registry.names(group))}")
        return value

    return check

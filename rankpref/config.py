"""Configuration shared by every task: a strict pydantic base, one loader, one dump.

A run's config is the task's defaults, then an optional YAML file, then ``--set a.b=value``
overrides (values parsed as YAML), in that order, validated at once: an unknown key or a bad
value is one :class:`ConfigError` naming every bad key and where it came from. The sections
every task has (``train`` with its ``trainer``) live here too, so a setting means the same in
each task.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from rankpref.errors import ConfigError

C = TypeVar("C", bound=BaseModel)

MAX_YAML_ALIASES = 100
"""Aliases a config file may use; more is refused before anything expands (a YAML bomb)."""

MAX_YAML_BYTES = 1 << 20
"""Largest YAML text read (a config is a few KiB; a bigger file is not one)."""


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainerConfig(Strict):
    """Where and how Lightning runs (:func:`rankpref.lightning.make_trainer`), for every task."""

    accelerator: str = Field("auto", description="cpu, gpu, auto (a GPU when present), ...")
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    precision: str = "32-true"


class TrainConfig(Strict):
    """Optimisation and run control; each task's ``train`` section extends it with its own
    defaults."""

    epochs: int = Field(200, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0, description="decoupled (AdamW) weight decay")
    patience: int = Field(10, ge=1, description="epochs without a better valid value of "
                          "eval.monitor before training stops")
    seed: int = 42
    threads: int = Field(1, ge=1, description="torch intra-op threads")
    num_workers: int = Field(0, ge=0, description="data loader worker processes")
    resume: bool = Field(True, description="continue from <run>/checkpoints/last.ckpt when "
                         "the run folder holds one of the same settings")
    progress: bool = True
    trainer: TrainerConfig = TrainerConfig()


# ------------------------------------------------------------------ model sections

class FieldProblems(ValueError):
    """Problems with keys inside one config field (a model's params): ``[(key, message)]``,
    reported as ``<field>.<key>: <message>``."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{k}: {m}" if k else m for k, m in problems))


def model_params(cls: type, fixed: tuple[str, ...], name: str) -> type[BaseModel]:
    """A strict pydantic model of the fields of a model's dataclass config, less ``fixed``
    (sizes the task fills in), with the dataclass's defaults: the settings a user may give."""
    hints = typing.get_type_hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        if f.name in fixed or not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=f.default_factory)
        else:
            default = ...
        fields[f.name] = (hints[f.name], default)
    return create_model(f"{name}Params", __config__=ConfigDict(extra="forbid"), **fields)


def check_model_params(registry, group: str, tree: Any, fill: dict | None = None) -> Any:
    """Validate a ``model:`` section ``{name, **params}`` against the registered model's own
    dataclass config: unknown params are errors, missing ones take the dataclass defaults, and
    the dataclass's own checks (``__post_init__``) run with ``fill`` for the fixed sizes.
    Returns the section with every param filled in (so a dump is complete)."""
    if not isinstance(tree, dict):
        return tree
    name = tree.get("name")
    if name is None or not isinstance(name, str):
        return tree
    try:
        entry = registry.entry(name, group)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    cls, fixed = entry.config, tuple(entry.meta.get("fixed", ()))
    params = {k: v for k, v in tree.items() if k != "name"}
    try:
        checked = model_params(cls, fixed, name).model_validate(params)
    except ValidationError as exc:
        raise FieldProblems([(".".join(str(p) for p in err["loc"]),
                              f"{_message(err)} for model {name!r}")
                             for err in exc.errors()]) from None
    values = checked.model_dump()
    try:
        cls(**{**(fill or {}), **{k: 1 for k in fixed if k not in (fill or {})}}, **values)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        key, _, rest = text.partition(" ")
        if key in values and rest:  # "dropout must be ..." -> model.dropout: must be ...
            raise FieldProblems([(key, rest)]) from None
        raise FieldProblems([("", text)]) from None
    return {"name": name, **values}


# ------------------------------------------------------------------ reading

class _CountingLoader(yaml.SafeLoader):
    """The safe loader, refusing files with more than :data:`MAX_YAML_ALIASES` aliases."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} aliases (&/*): refused")
        return super().compose_node(parent, index)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` that refuses alias bombs and texts over :data:`MAX_YAML_BYTES` (no
    code runs, memory stays bounded)."""
    if len(text) > MAX_YAML_BYTES:
        raise yaml.YAMLError(f"{len(text):,} characters, more than {MAX_YAML_BYTES:,}: refused")
    return yaml.load(text, Loader=_CountingLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path``; every failure is one ConfigError naming the file."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes, more than "
                              f"{MAX_YAML_BYTES:,}: not a config file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        tree = safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return tree


def merge(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``, section by section (a nested mapping updates, never replaces)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=value"`` -> ``("a.b", value parsed as YAML)``."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value is not valid YAML: {exc}") from None
    return key, value


def _message(err: dict) -> str:
    msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
    return msg[len("Value error, "):] if msg.startswith("Value error, ") else msg


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        problem = (err.get("ctx") or {}).get("error")
        if isinstance(problem, FieldProblems):
            lines.extend(f"{'.'.join(filter(None, (loc, k)))}: {m}" for k, m in problem.problems)
        else:
            lines.append(f"{loc}: {_message(err)}" if loc else _message(err))
    return "; ".join(lines)


def validate_as(model: type[C], tree: dict, source: str = "config", what: str = "config") -> C:
    """``model.model_validate(tree)``; errors become one ConfigError naming every bad key."""
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid {what}: {_describe(exc)}") from None


def load(model: type[C], path: str | Path | None = None, overrides: list[str] | None = None,
         *, defaults: dict | None = None, what: str = "config") -> C:
    """Defaults < YAML file < ``key.path=value`` overrides, validated. An error names the file
    when there is one, else the overrides (never the defaults, which the user did not write)."""
    tree = dict(defaults or {})
    if path is not None:
        tree = merge(tree, read_yaml(path))
    for text in overrides or []:
        key, value = parse_override(text)
        set_dotted(tree, key, value)
    source = str(path) if path is not None else ("--set" if overrides else "defaults")
    return validate_as(model, tree, source, what)


def apply_overrides(cfg: C, overrides: list[str], source: str = "--set") -> C:
    """A copy of ``cfg`` with ``key.path=value`` overrides applied and validated."""
    tree = cfg.model_dump(mode="json")
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(tree, key, value)
    return validate_as(type(cfg), tree, source)


def to_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def dump_tree(cfg: BaseModel) -> dict:
    return cfg.model_dump(mode="json")

"""The search spec of ``rankpref tune``: which task, which base config, what to search.

A search is declared in a YAML *spec*::

    task: next_item            # next_item (SASRec/PULSE), rank (RankList & co.) or sesa
    base_config: sasrec.yaml   # optional; relative to the spec file
    overrides:                 # optional; dotted keys applied to the base config
      data.name: ml-100k
      train.epochs: 40
    trials: 20
    sampler: {name: tpe, seed: 0}
    pruner: {name: median, startup_trials: 5, warmup_epochs: 5}
    space:
      model.hidden: {type: categorical, choices: [32, 64, 128]}
      model.blocks: {type: int, low: 1, high: 3}
      train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}

How a study runs it: :mod:`rankpref.tuning.study`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rankpref.config import parse_override, read_yaml, set_dotted, validate_as
from rankpref.errors import ConfigError
from rankpref.registry import TASKS


# ------------------------------------------------------------------ the spec

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamSpec(_Strict):
    """One searched setting: a float or int range (optionally log-scaled or stepped), or a
    list of choices."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.log or self.step:
                raise ValueError("categorical takes only 'choices'")
            bad = [c for c in self.choices if not isinstance(c, (str, int, float, bool))
                   and c is not None]
            if bad:  # optuna stores choices as scalars
                raise ValueError(f"choices must be numbers, strings, booleans or null; got "
                                 f"{bad[0]!r}")
            if len({json.dumps(c) for c in self.choices}) < len(self.choices):
                raise ValueError("choices repeat a value")
            return self
        if self.choices is not None:
            raise ValueError(f"{self.type} takes low/high, not 'choices'")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs 'low' and 'high'")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log scale needs low > 0")
        if self.log and self.step:
            raise ValueError("'log' and 'step' cannot be combined")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)
                                   or (self.step is not None and self.step != int(self.step))):
            raise ValueError("int ranges need whole-number low/high/step")
        if self.step is not None and self.step > self.high - self.low:
            raise ValueError(f"step ({self.step}) is larger than the range")
        return self

    def values_to_check(self) -> list:
        """Values that must each give a valid config (checked before any trial runs): every
        choice, or both ends and a point inside the range (a float range on an int setting
        fails there)."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return sorted({int(self.low), (int(self.low) + int(self.high)) // 2, int(self.high)})
        if self.log:
            inside = self.low * (self.high / self.low) ** 0.37
        else:
            inside = self.low + 0.37 * (self.high - self.low)
        return [float(self.low), inside, float(self.high)]

    def suggest(self, trial, name: str):
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


class SamplerSpec(_Strict):
    name: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    startup_trials: int = Field(5, ge=0, description="tpe: random trials before modelling")


class PrunerSpec(_Strict):
    name: Literal["median", "none"] = "median"
    startup_trials: int = Field(5, ge=0, description="trials that are never pruned")
    warmup_epochs: int = Field(3, ge=0, description="epochs of a trial that are never pruned")


class TuneSpec(_Strict):
    task: str = Field("next_item", description="a registered task: next_item (SASRec/PULSE), "
                      "rank (RankList & co.) or sesa")
    base_config: str | None = Field(None, description="the task's config YAML (relative "
                                    "paths are relative to the spec file)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted keys -> "
                                      "values applied to the base config")
    space: dict[str, ParamSpec] = Field(min_length=1)
    trials: int = Field(20, ge=1)
    timeout: float | None = Field(None, gt=0, description="seconds for this invocation")
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in TASKS.names():
            raise ValueError(f"unknown task {value!r}; choose one of {', '.join(TASKS.names())}")
        return value

    @field_validator("overrides", mode="before")
    @classmethod
    def _flatten(cls, value):
        """``{train: {epochs: 5}}`` means ``{train.epochs: 5}``: set that one key, never replace
        the base config's whole ``train`` section."""
        if not isinstance(value, dict):
            return value
        flat: dict[str, Any] = {}

        def walk(prefix: str, node: dict):
            for key, item in node.items():
                dotted = f"{prefix}{key}"
                if isinstance(item, dict) and not item:
                    raise ValueError(f"{dotted}: an empty mapping would replace that whole "
                                     "section of the base config; remove it")
                if isinstance(item, dict):
                    walk(f"{dotted}.", item)
                else:
                    flat[dotted] = item

        walk("", value)
        return flat

    def fingerprint(self, base: Path | None = None) -> str:
        """What must not change when a stored study is continued (trials/timeout may): the
        spec and the text of its base config."""
        keep = self.model_dump(mode="json", exclude={"trials", "timeout"})
        keep["base_text"] = base.read_text("utf-8") if base is not None else None
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def load_spec(path: str | Path, overrides: list[str] | None = None) -> tuple[TuneSpec, Path]:
    """Read and validate a spec; ``overrides`` (``key=value``) edit the spec itself. Returns the
    spec and its base-config path resolved against the spec's folder."""
    path = Path(path)
    tree = read_yaml(path)
    for text in overrides or []:
        key, value = parse_override(text)
        set_dotted(tree, key, value)
    spec = validate_as(TuneSpec, tree, str(path), "tuning spec")
    base = None
    if spec.base_config is not None:
        base = Path(spec.base_config)
        if not base.is_absolute():
            base = path.parent / base
        if not base.exists():
            raise ConfigError(f"{path}: base_config {spec.base_config!r} not found ({base})")
    return spec, base

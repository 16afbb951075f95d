"""Hyper-parameter search with optuna over any model's config (``rankpref tune``).

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

Every trial is a normal training run in ``<out>/trials/<number>`` whose config is the base
with the trial's values; it is selected on the **valid** (dev) split only — the value the run
itself selected its best epoch on — and a Lightning callback reports that value after each
epoch so optuna's pruner can stop bad trials early. The study lives in an optuna storage
(SQLite by default, ``<out>/study.db``): running the same command again continues it until
``trials`` trials have finished. The best config is written as a YAML that the task's own
``fit`` command accepts, next to optuna's plots.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rankpref.errors import ConfigError, RankprefError
from rankpref.io import write_json, write_text


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
    task: Literal["next_item", "rank", "sesa"] = "next_item"
    base_config: str | None = Field(None, description="the task's config YAML (relative "
                                    "paths are relative to the spec file)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted keys -> "
                                      "values applied to the base config")
    space: dict[str, ParamSpec] = Field(min_length=1)
    trials: int = Field(20, ge=1)
    timeout: float | None = Field(None, gt=0, description="seconds for this invocation")
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()

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
    from rankpref.config import _read_yaml, _set_dotted, parse_override, validate_as

    path = Path(path)
    tree = _read_yaml(path)
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    spec = validate_as(TuneSpec, tree, str(path), "tuning spec")
    base = None
    if spec.base_config is not None:
        base = Path(spec.base_config)
        if not base.is_absolute():
            base = path.parent / base
        if not base.exists():
            raise ConfigError(f"{path}: base_config {spec.base_config!r} not found ({base})")
    return spec, base


# ------------------------------------------------------------------ tasks

@dataclass
class TrialResult:
    value: float
    artifact: Path | None
    metrics: dict


@dataclass
class Task:
    """How one kind of model is configured, trained and monitored."""

    name: str
    load: Callable[[Path | None, list[str]], Any]  # (base yaml, overrides) -> validated config
    to_yaml: Callable[[Any], str]
    fit: Callable[[Any, list], TrialResult]  # (config, extra callbacks) -> result
    monitor: Callable[[Any], str]  # the per-epoch value logged for pruning
    fit_command: str
    check: Callable[[Any], None] = lambda cfg: None  # rules beyond the schema (ConfigError)
    # settings that decide what a trial is measured on (data, split, metric): searching them
    # would compare trials on different yardsticks, so they may be set but not searched
    fixed: tuple[str, ...] = ()
    searchable: tuple[str, ...] = ()  # exceptions to ``fixed``
    trial_overrides: dict = field(default_factory=dict)  # every trial starts afresh


def _override_args(values: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def _keep_last(make: Callable[[Any], Any]) -> Callable[[str, Any], Any]:
    """``get(key, cfg)``: ``make(cfg)``, reused while consecutive trials share ``key`` (their
    data settings), so a study loads and encodes its data once."""
    memo: dict[str, Any] = {}

    def get(key: str, cfg):
        if key not in memo:
            memo.clear()
            memo[key] = make(cfg)
        return memo[key]

    return get


def _next_item_task() -> Task:
    from rankpref.config import load_config, to_yaml

    from rankpref.data.datasets import prepare

    dataset = _keep_last(lambda cfg: prepare(cfg.data, quiet=True))

    def fit(cfg, callbacks):
        from rankpref.training import fit as run_fit

        artifact = run_fit(cfg, dataset(cfg.data.model_dump_json(), cfg), callbacks=callbacks)
        metrics = json.loads((artifact / "metrics.json").read_text("utf-8"))
        return TrialResult(float(metrics["valid"][cfg.eval.monitor]), artifact, metrics)

    def check(cfg):
        if cfg.model.hidden % cfg.model.heads:
            raise ConfigError(f"model.hidden ({cfg.model.hidden}) must be divisible by "
                              f"model.heads ({cfg.model.heads})")
        name, _, k = cfg.eval.monitor.partition("@")
        if name not in ("recall", "ndcg", "mrr") or not k.isdigit() or int(k) not in cfg.eval.ks:
            raise ConfigError(f"eval.monitor {cfg.eval.monitor!r} is not computed: use "
                              f"recall/ndcg/mrr@k with k in eval.ks {cfg.eval.ks}")

    return Task("next_item", lambda base, o: load_config(base, o), to_yaml, fit,
                lambda cfg: f"valid/{cfg.eval.monitor}", "rankpref fit --config", check,
                fixed=("data.", "eval."), searchable=("data.max_len",),
                trial_overrides={"train.resume": False})


def _rank_task() -> Task:
    from rankpref.ranking import check_loss_config, load_data, load_rank_config, rank_config_yaml
    from rankpref.ranking import fit as run_fit

    pool = _keep_last(lambda cfg: load_data(cfg.data))

    def fit(cfg, callbacks):
        artifact, metrics = run_fit(cfg, pool(cfg.data.model_dump_json(), cfg),
                                    callbacks=callbacks)
        return TrialResult(float(metrics["dev"]["kendall_tau"]), artifact, metrics)

    return Task("rank", lambda base, o: load_rank_config(base, o), rank_config_yaml, fit,
                lambda cfg: "dev_kendall_tau", "rankpref rank fit --config",
                lambda cfg: check_loss_config(cfg.loss),
                fixed=("eval.", "data.name", "data.target", "data.split", "data.dev_fraction",
                       "data.test_fraction", "data.id_column", "data.rater_column",
                       "data.std_column"))


def _sesa_task() -> Task:
    from rankpref import sesa

    prepared = _keep_last(sesa.prepare)

    def fit(cfg, callbacks):
        key = json.dumps([cfg.data.model_dump(mode="json"), cfg.concepts.model_dump(mode="json"),
                          cfg.model.model_dump(mode="json"), cfg.cache_dir], sort_keys=True)
        _, metrics = sesa.fit(cfg, prepared(key, cfg), callbacks=callbacks)
        return TrialResult(float(metrics["dev"]["ndcg@10"]), cfg.run_dir() / "model", metrics)

    def to_yaml(cfg):
        return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)

    return Task("sesa", lambda base, o: sesa.load_config(base, o), to_yaml, fit,
                lambda cfg: "dev/ndcg@10", "rankpref sesa fit --config",
                fixed=("data.",), searchable=("data.max_tasks",))


TASKS = {"next_item": _next_item_task, "rank": _rank_task, "sesa": _sesa_task}


def check_space(spec: TuneSpec, task: Task, base: Path | None, source: str = "spec") -> Any:
    """Validate the base config and every searched value (each with the others at the base)
    against the task's config schema and rules before anything trains: an unknown key or an
    impossible value is an error naming it. Combinations are only known when a trial samples
    them; an impossible one fails that trial. Returns the validated base config."""
    base_args = _override_args(spec.overrides)
    try:
        cfg = task.load(base, base_args)
        task.check(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{source}: base_config and overrides do not give a valid "
                          f"{task.name} config: {exc}") from None
    for key in spec.space:
        if key.startswith(task.fixed) and not key.startswith(task.searchable):
            raise ConfigError(f"{source}: space.{key}: this setting decides what trials are "
                              "measured on (data, split or metric); set it in overrides, "
                              "do not search it")
    for key, param in spec.space.items():
        for value in param.values_to_check():
            try:
                task.check(task.load(base, base_args + _override_args({key: value})))
            except ConfigError as exc:
                raise ConfigError(f"{source}: space.{key} = {value!r} does not give a valid "
                                  f"{task.name} config: {exc}") from None
    return cfg


# ------------------------------------------------------------------ pruning

def pruning_callback(trial, monitor: str):
    """A Lightning callback that reports ``monitor`` after every training epoch to ``trial``
    and raises ``optuna.TrialPruned`` when the study's pruner says the trial is bad.

    It runs at ``on_train_epoch_end``: by then the epoch's validation has run (Lightning 2
    validates before that hook) and epoch-end values logged by earlier callbacks are in
    ``trainer.callback_metrics``.
    """
    import optuna
    from lightning.pytorch.callbacks import Callback

    class OptunaPruning(Callback):
        def __init__(self):
            self.reported: list[tuple[int, float]] = []

        def on_train_epoch_end(self, trainer, pl_module):
            value = trainer.callback_metrics.get(monitor)
            epoch = trainer.current_epoch
            if value is None or (self.reported and self.reported[-1][0] == epoch):
                return
            value = float(value)
            self.reported.append((epoch, value))
            trial.report(value, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: {monitor} "
                                         f"{value:.4f}")

    return OptunaPruning()


# ------------------------------------------------------------------ the study

def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial gets our own line
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _sampler(spec: SamplerSpec, trials_so_far: int = 0):
    """The sampler; a continued study seeds it past the trials it already has, so it does not
    replay the first run's draws."""
    import optuna

    seed = spec.seed + trials_so_far
    if spec.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup_trials)


def _pruner(spec: PrunerSpec):
    import optuna

    if spec.name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials,
                                       n_warmup_steps=spec.warmup_epochs)


def _storage(url: str):
    """An optuna RDB storage (SQLite, PostgreSQL, MySQL) whose heartbeat marks the running
    trial of a killed process as failed after a grace period and runs its values again."""
    import optuna

    if not url.startswith(("sqlite:///", "postgresql", "mysql")):
        raise ConfigError(f"--storage {url!r}: give a database URL, e.g. sqlite:///study.db, "
                          "postgresql://... or mysql://...")
    try:
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=15, grace_period=45,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=1))
    except Exception as exc:  # sqlalchemy's errors, a folder that cannot be made, ...
        raise ConfigError(f"--storage {url!r}: cannot open it ({type(exc).__name__}: "
                          f"{exc})") from None


def _count(study, *states) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def finished(study) -> int:
    """Trials that count towards the wanted number: completed or pruned."""
    from optuna.trial import TrialState

    return _count(study, TrialState.COMPLETE, TrialState.PRUNED)


def tune(spec: TuneSpec, base: Path | None, out: str | Path, *, storage: str | None = None,
         study_name: str | None = None, plot: bool = True, echo: Callable[[str], None] = print,
         progress: bool = True, source: str = "spec") -> dict:
    """Run (or continue) the study until ``spec.trials`` trials have finished; write
    ``best_config.yaml``, ``study.json`` and (``plot``) optuna's history and parameter
    importance plots into ``out``. Returns the summary that ``study.json`` holds. One line per
    trial goes to ``echo``; ``progress`` adds a bar of finished trials (stderr)."""
    import optuna
    from optuna.trial import TrialState
    from tqdm.auto import tqdm

    _quiet_optuna()
    task = TASKS[spec.task]()
    base_cfg = check_space(spec, task, base, source)
    out = Path(out)
    storage = storage or f"sqlite:///{(out / 'study.db').as_posix()}"
    study_name = study_name or out.name
    rdb = _storage(storage)  # a bad URL is refused before the folder is claimed
    _claim_folder(out, study_name, storage)
    so_far = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(
        rdb, include_best_trial=False)}.get(study_name, 0)
    study = optuna.create_study(study_name=study_name, storage=rdb, load_if_exists=True,
                                direction="maximize", sampler=_sampler(spec.sampler, so_far),
                                pruner=_pruner(spec.pruner))
    stored, current = study.user_attrs.get("spec_fingerprint"), spec.fingerprint(base)
    if stored is None:
        study.set_user_attr("spec_fingerprint", current)
        study.set_user_attr("task", spec.task)
    elif stored != current:
        raise ConfigError(f"study {study_name!r} in {storage} was started with another spec "
                          "(task, base config or its text, overrides, space, sampler or "
                          "pruner differ); use another --out")
    base_args = _override_args(spec.overrides)
    trial_args = base_args + _override_args(task.trial_overrides)
    trials_dir = out / "trials"

    def objective(trial):
        run_dir = trials_dir / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        try:
            values = {key: param.suggest(trial, key) for key, param in spec.space.items()}
            cfg = task.load(base, trial_args + _override_args(values)
                            + _override_args({"output_dir": str(run_dir)}))
            task.check(cfg)
            shutil.rmtree(run_dir, ignore_errors=True)  # left by a study whose storage is gone
            result = task.fit(cfg, [pruning_callback(trial, task.monitor(cfg))])
        except (RankprefError, ValueError, AssertionError) as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise
        except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit
            trial.set_user_attr("error", "interrupted")
            raise KeyboardInterrupt from None  # optuna marks the trial failed, then stops
        finally:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # resume state only
        trial.set_user_attr("best_epoch", result.metrics.get("best_epoch"))
        trial.set_user_attr("epochs_run", result.metrics.get("epochs_run"))
        trial.set_user_attr("train_seconds", result.metrics.get("train_seconds"))
        if result.artifact is not None:
            trial.set_user_attr("artifact", str(result.artifact))
        return result.value

    def report(study, trial):
        shown = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        if trial.state == TrialState.COMPLETE:
            what = f"{trial.value:.4f}"
        elif trial.state == TrialState.PRUNED:
            steps = trial.intermediate_values
            what = f"pruned after epoch {max(steps) + 1 if steps else 0}"
        else:
            what = f"{trial.state.name.lower()}: {trial.user_attrs.get('error', '?')}"[:300]
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
            if trial.datetime_complete and trial.datetime_start else float("nan")
        best = f"; best {study.best_value:.4f} (#{study.best_trial.number})" \
            if _any_complete(study) else ""
        bar.clear()
        echo(f"trial {trial.number}: {what} in {seconds:.0f} s [{shown}]{best}")
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            bar.update(1)
        bar.refresh()

    remaining = spec.trials - finished(study)
    if remaining > 0:
        echo(f"study {study_name!r} ({storage}): {finished(study)} of {spec.trials} trials "
             f"finished; running up to {remaining} more, selecting on {task.monitor(base_cfg)}")
        started = time.perf_counter()
        failed_before = _count(study, TrialState.FAIL)
        bar = tqdm(total=spec.trials, initial=finished(study), desc="trials", unit="trial",
                   disable=not progress, leave=False)
        while remaining > 0:  # failed trials (e.g. impossible combinations) do not count
            left = None if spec.timeout is None else spec.timeout - (time.perf_counter() - started)
            if left is not None and left <= 0:
                break
            study.optimize(objective, n_trials=remaining, timeout=left, catch=(
                RankprefError, ValueError, AssertionError),
                callbacks=[optuna.study.MaxTrialsCallback(
                    spec.trials, states=(TrialState.COMPLETE, TrialState.PRUNED)), report],
                show_progress_bar=False, gc_after_trial=True)
            failures = _count(study, TrialState.FAIL) - failed_before
            if failures > spec.trials:
                echo(f"stopping: {failures} trials failed (more than the {spec.trials} wanted)")
                break
            remaining = spec.trials - finished(study)
        bar.close()
        echo(f"ran for {time.perf_counter() - started:.0f} s")
    else:
        echo(f"study {study_name!r}: all {spec.trials} trials already finished")
    if not _any_complete(study):
        raise RankprefError(f"study {study_name!r}: no trial completed (see the failures "
                            "above); nothing to write")
    for leftover in trials_dir.glob("*/checkpoints"):  # of trials killed mid-way
        shutil.rmtree(leftover, ignore_errors=True)
    summary = summarise(study, spec, task, base, base_args, out, storage)
    if plot:
        summary["plots"] = write_study_plots(study, out, task.monitor(base_cfg), echo)
    write_json(out / "study.json", summary)
    return summary


def _claim_folder(out: Path, study_name: str, storage: str) -> None:
    """One study per folder: its trials, best config and plots live there. A folder that holds
    another study (name or storage) is refused."""
    marker = out / "study.json"
    if marker.exists():
        try:
            held = json.loads(marker.read_text("utf-8"))
            held = (held["study"], held["storage"])
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{marker}: not a study summary; choose another --out") from None
        if held != (study_name, storage):
            raise ConfigError(f"{out} holds study {held[0]!r} ({held[1]}); choose another "
                              f"--out for study {study_name!r} ({storage})")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"study": study_name, "storage": storage, "trials": {}})


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _any_complete(study) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def summarise(study, spec: TuneSpec, task: Task, base: Path | None, base_args: list[str],
              out: Path, storage: str) -> dict:
    """Write the best config YAML (accepted by the task's fit command) and return the summary."""
    best = study.best_trial
    cfg = task.load(base, base_args + _override_args(best.params)
                    + _override_args({"output_dir": None}))
    header = (f"# best config of study {study.study_name!r} (trial {best.number}): "
              f"{task.monitor(cfg)} {best.value:.4f}, selected on the valid split\n"
              f"# train it: {task.fit_command} {out / 'best_config.yaml'}\n")
    write_text(out / "best_config.yaml", header + task.to_yaml(cfg))
    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    return {
        "study": study.study_name, "storage": storage, "task": spec.task,
        "selected_on": task.monitor(cfg), "direction": "maximize",
        "trials": states, "best_trial": best.number, "best_value": best.value,
        "best_params": best.params, "best_artifact": best.user_attrs.get("artifact"),
        "best_config": str(out / "best_config.yaml"),
        "history": [{"number": t.number, "state": t.state.name.lower(), "value": t.value,
                     "params": t.params, "epochs_reported": len(t.intermediate_values),
                     "error": t.user_attrs.get("error"),
                     "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
                     if t.datetime_complete and t.datetime_start else None}
                    for t in study.get_trials(deepcopy=False)],
    }


def write_study_plots(study, out: Path, metric: str, echo: Callable[[str], None]) -> dict:
    """optuna's optimisation history and parameter importances as PNG files."""
    import matplotlib
    from optuna.visualization import matplotlib as ovm

    from rankpref.plots import save_figure

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # optuna draws with pyplot; headless unless a backend is chosen
    written = {}
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    for name, draw in (("history", ovm.plot_optimization_history),
                       ("importance", ovm.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw(study, target_name=metric)
        except Exception as exc:  # e.g. importances need 2+ complete trials; never fatal
            echo(f"no {name} plot: {type(exc).__name__}: {exc}")
            continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        written[name] = str(save_figure(fig, out / f"{name}.png"))
    return written

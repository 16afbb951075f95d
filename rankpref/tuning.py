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
from dataclasses import dataclass
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
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("int ranges need whole-number low/high")
        return self

    def values_to_check(self) -> list:
        """Values that must each give a valid config (checked before any trial runs)."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]

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
                if isinstance(item, dict) and item:
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

    return Task("next_item", lambda base, o: load_config(base, o), to_yaml, fit,
                lambda cfg: f"valid/{cfg.eval.monitor}", "rankpref fit --config", check)


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
                lambda cfg: check_loss_config(cfg.loss))


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
                lambda cfg: "dev/ndcg@10", "rankpref sesa fit --config")


TASKS = {"next_item": _next_item_task, "rank": _rank_task, "sesa": _sesa_task}


def check_space(spec: TuneSpec, task: Task, base: Path | None) -> Any:
    """Validate the base config and every searched value (each with the others at the base)
    against the task's config schema and rules before anything trains: an unknown key or an
    impossible value is an error naming it. Combinations are only known when a trial samples
    them; an impossible one fails that trial. Returns the validated base config."""
    base_args = _override_args(spec.overrides)
    cfg = task.load(base, base_args)
    task.check(cfg)
    for key, param in spec.space.items():
        for value in param.values_to_check():
            try:
                task.check(task.load(base, base_args + _override_args({key: value})))
            except ConfigError as exc:
                raise ConfigError(f"space.{key} = {value!r} does not give a valid "
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


def _sampler(spec: SamplerSpec):
    import optuna

    if spec.name == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    return optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=spec.startup_trials)


def _pruner(spec: PrunerSpec):
    import optuna

    if spec.name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials,
                                       n_warmup_steps=spec.warmup_epochs)


def _storage(url: str):
    import optuna

    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith(("sqlite:", "postgresql", "mysql")):
        # a heartbeat marks trials of a killed process as failed; they are then retried once
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=15, grace_period=45,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=1))
    return url  # journal files and the like: optuna parses the URL


def _count(study, *states) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def finished(study) -> int:
    """Trials that count towards the wanted number: completed or pruned."""
    from optuna.trial import TrialState

    return _count(study, TrialState.COMPLETE, TrialState.PRUNED)


def tune(spec: TuneSpec, base: Path | None, out: str | Path, *, storage: str | None = None,
         study_name: str | None = None, plot: bool = True, echo: Callable[[str], None] = print,
         progress: bool = True) -> dict:
    """Run (or continue) the study until ``spec.trials`` trials have finished; write
    ``best_config.yaml``, ``study.json`` and (``plot``) optuna's history and parameter
    importance plots into ``out``. Returns the summary that ``study.json`` holds. One line per
    trial goes to ``echo``; ``progress`` adds a bar of finished trials (stderr)."""
    import optuna
    from optuna.trial import TrialState
    from tqdm.auto import tqdm

    _quiet_optuna()
    task = TASKS[spec.task]()
    base_cfg = check_space(spec, task, base)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').as_posix()}"
    study_name = study_name or out.name
    try:
        study = optuna.create_study(study_name=study_name, storage=_storage(storage),
                                    load_if_exists=True, direction="maximize",
                                    sampler=_sampler(spec.sampler), pruner=_pruner(spec.pruner))
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"--storage {storage!r}: {exc}") from None
    stored, current = study.user_attrs.get("spec_fingerprint"), spec.fingerprint(base)
    if stored is None:
        study.set_user_attr("spec_fingerprint", current)
        study.set_user_attr("task", spec.task)
    elif stored != current:
        raise ConfigError(f"study {study_name!r} in {storage} was started with another spec "
                          "(task, base config or its text, overrides, space, sampler or "
                          "pruner differ); use another --study-name or --out")
    base_args = _override_args(spec.overrides)
    trials_dir = out / "trials"

    def objective(trial):
        values = {key: param.suggest(trial, key) for key, param in spec.space.items()}
        run_dir = trials_dir / f"{trial.number:04d}"
        cfg = task.load(base, base_args + _override_args(values)
                        + _override_args({"output_dir": str(run_dir)}))
        trial.set_user_attr("run_dir", str(run_dir))
        try:
            result = task.fit(cfg, [pruning_callback(trial, task.monitor(cfg))])
        except (RankprefError, ValueError, AssertionError) as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise
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
    summary = summarise(study, spec, task, base, base_args, out, storage)
    if plot:
        summary["plots"] = write_study_plots(study, out, task.monitor(base_cfg), echo)
    write_json(out / "study.json", summary)
    return summary


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
        except (ValueError, RuntimeError) as exc:  # e.g. importances need 2+ complete trials
            echo(f"no {name} plot: {exc}")
            continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        written[name] = str(save_figure(fig, out / f"{name}.png"))
    return written

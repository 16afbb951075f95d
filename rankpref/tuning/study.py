"""Running an optuna study over any registered task (``rankpref tune``): see
:mod:`rankpref.tuning.spec` for the spec.

Every trial is a normal training run in ``<out>/trials/<number>`` whose config is the base
with the trial's values; it is selected on the **valid** split only (the value the run itself
selected its best epoch on), and a Lightning callback reports that value after each epoch so
optuna's pruner can stop bad trials early. The study lives in an optuna storage (SQLite by
default, ``<out>/study.db``): running the same command again continues it until ``trials``
trials have finished.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from rankpref.config import to_yaml
from rankpref.errors import ConfigError, RankprefError
from rankpref.io import write_json, write_text
import rankpref.tasks.next_item  # noqa: F401  (the built-in tasks register themselves)
import rankpref.tasks.rank  # noqa: F401
import rankpref.tasks.sesa  # noqa: F401
from rankpref.registry import TASKS
from rankpref.tasks import Task
from rankpref.tuning.spec import PrunerSpec, SamplerSpec, TuneSpec


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


def check_space(spec: TuneSpec, task: Task, base: Path | None, source: str = "spec") -> Any:
    """Validate the base config and every searched value (each with the others at the base)
    against the task's config schema and rules before anything trains: an unknown key or an
    impossible value is an error naming it. Combinations are only known when a trial samples
    them; an impossible one fails that trial. Returns the validated base config."""
    base_args = _override_args(spec.overrides)
    try:
        cfg = task.load_config(base, base_args)
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
                task.check(task.load_config(base, base_args + _override_args({key: value})))
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
    engine = {}
    if url.startswith("sqlite:///"):
        # workers sharing one SQLite file wait for each other's writes instead of failing
        engine = {"connect_args": {"timeout": 60}}
    for attempt in range(6):
        try:
            if url.startswith("sqlite:///"):
                Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=15, grace_period=45,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=1))
        except Exception as exc:  # sqlalchemy's errors, a folder that cannot be made, ...
            # two workers creating the schema at once: one sees the other's half-made tables
            if attempt < 5 and type(exc).__name__ in ("OperationalError", "IntegrityError"):
                time.sleep(0.5 * (attempt + 1))
                continue
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
    task = TASKS.get(spec.task)
    data = _keep_last(task.load_data)
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
            # suggest in name order: a seeded sampler draws the same trials however the
            # spec's YAML happened to order its keys (a dumper that keeps insertion order and
            # one that sorts gave different studies)
            values = {key: spec.space[key].suggest(trial, key) for key in sorted(spec.space)}
            cfg = task.load_config(base, trial_args + _override_args(values)
                            + _override_args({"output_dir": str(run_dir)}))
            task.check(cfg)
            shutil.rmtree(run_dir, ignore_errors=True)  # left by a study whose storage is gone
            result = task.fit(cfg, data(task.data_key(cfg), cfg),
                              callbacks=[pruning_callback(trial, task.monitor(cfg))])
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
        return result.value(task.monitor(cfg).split("/", 1)[1])

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
    cfg = task.load_config(base, base_args + _override_args(best.params)
                    + _override_args({"output_dir": None}))
    header = (f"# best config of study {study.study_name!r} (trial {best.number}): "
              f"{task.monitor(cfg)} {best.value:.4f}, selected on the valid split\n"
              f"# train it: {task.fit_command} {out / 'best_config.yaml'}\n")
    write_text(out / "best_config.yaml", header + to_yaml(cfg))
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

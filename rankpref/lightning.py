"""The Lightning machinery every task trains with: one trainer factory, one best-epoch rule,
per-epoch checkpoints and resume, clean stops (what a run prints is in ``run_logs``).

* :func:`make_trainer` builds the ``lightning.Trainer`` from a task's ``train.trainer`` section
  (accelerator, devices, strategy, nodes, precision), so every task can use a GPU or DDP.
* :class:`BestKeeper` is the one selection rule: after each validation the monitored value
  counts as better only when it is strictly above the best so far (NaN never is); the best
  weights of ``pl_module.model`` are kept (a safetensors file in the run folder, or memory),
  and after ``patience`` validations without a better value training stops.
* :class:`LastCheckpoint` writes ``<run>/checkpoints/last.ckpt`` after every epoch, to a
  temporary file that is fsynced and renamed, so a killed run resumes from its last finished
  epoch and a crash mid-write never leaves a truncated checkpoint under the final name.
* :func:`prepare_run` decides whether a run folder resumes: same settings and a readable
  checkpoint resume; ``resume=False`` clears the old run state first.
* :func:`training_run` wires these for a task config (``train``, ``eval.monitor``,
  ``run_dir()``, ``identity()``): one place where every task's run folder, selection,
  checkpoints and trainer are set up.
* :func:`run_fit` is ``trainer.fit`` under :class:`StopOnSignal`: SIGINT (Ctrl-C) or SIGTERM
  stops training at the end of the current batch and raises ``RunInterrupted``. Checkpoints
  are written only at epoch ends, so the rerun resumes from the last finished epoch and
  trains the interrupted one again (exactly as a run never stopped would have). A second
  signal stops at once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint

from rankpref.config import TrainerConfig
from rankpref.errors import ConfigError, RunInterrupted
from rankpref.io import atomic_path, write_error
from rankpref.run_logs import EpochLine, EpochTimer, as_float, quiet_lightning

__all__ = ["BestKeeper", "EpochTimer", "LastCheckpoint", "make_trainer", "prepare_run",
           "quiet_lightning", "run_fit", "training_run"]

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
BEST = "best.safetensors"
RUN_SETTINGS = "run_config.json"


def make_trainer(trainer: TrainerConfig, *, max_epochs: int, callbacks: list,
                 run_dir: Path | None = None, progress: bool = False, **options) -> L.Trainer:
    """A ``lightning.Trainer`` for any task. With ``run_dir``, CSV logs go to
    ``<run_dir>/logs/version_N`` (one per launch); without, nothing is written."""
    from lightning.pytorch.loggers import CSVLogger

    quiet_lightning()
    monitor = next((c.monitor for c in callbacks if isinstance(c, BestKeeper)), None)
    settings = dict(max_epochs=max_epochs, accelerator=trainer.accelerator,
                    devices=trainer.devices, strategy=trainer.strategy,
                    num_nodes=trainer.num_nodes, precision=trainer.precision,
                    callbacks=[StopOnSignal(), *([] if progress else [EpochLine(monitor)]),
                               *callbacks],
                    enable_progress_bar=progress,
                    enable_model_summary=False, num_sanity_val_steps=0,
                    # our Checkpoint callbacks need it on; without them Lightning would add its own
                    enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
                    log_every_n_steps=50,
                    logger=CSVLogger(run_dir, name="logs") if run_dir is not None else False,
                    default_root_dir=run_dir)
    settings.update(options)
    try:
        return L.Trainer(**settings)
    except Exception as exc:  # MisconfigurationException and friends: a setting is impossible
        if type(exc).__name__ in ("MisconfigurationException", "ValueError", "RuntimeError"):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"train.trainer: {first}") from None
        raise


class BestKeeper(Checkpoint):
    """Best-epoch selection and early stopping (see the module docstring): one rule for every
    task. ``history`` holds one row per epoch (1-based epoch, every logged metric).

    It acts at the end of each training epoch, after that epoch's validation and after every
    non-checkpoint callback (Lightning runs ``Checkpoint`` subclasses last), when the epoch's
    training losses are reduced too."""

    def __init__(self, monitor: str, patience: int, path: str | Path | None = None):
        self.monitor = monitor
        self.patience = patience
        self.path = None if path is None else Path(path)
        self.best = float("-inf")
        self.best_epoch = -1  # 0-based
        self.wait = 0
        self.history: list[dict] = []
        self.state: dict | None = None  # in-memory best weights when there is no path

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = {k: as_float(v) for k, v in trainer.callback_metrics.items()}
        value = metrics.get(self.monitor, float("nan"))
        epoch = trainer.current_epoch
        row = {"epoch": epoch + 1, **{k: v for k, v in sorted(metrics.items())
                                      if not math.isnan(v)}}
        self.history = [h for h in self.history if h["epoch"] < epoch + 1] + [row]
        if not math.isnan(value) and value > self.best:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self._keep(trainer, pl_module)
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.should_stop = True

    def _keep(self, trainer, pl_module) -> None:
        state = {k: v.detach().cpu().clone().contiguous()
                 for k, v in pl_module.model.state_dict().items()}
        if self.path is None:
            self.state = state
        elif trainer.is_global_zero:
            from safetensors.torch import save_file

            with atomic_path(self.path) as tmp:
                save_file(state, str(tmp))

    def best_state(self) -> dict | None:
        """The kept weights (None when no epoch was ever better than -inf)."""
        if self.path is None:
            return self.state
        if not self.path.exists():
            return None
        from safetensors.torch import load_file

        return load_file(str(self.path))

    def restore(self, model: torch.nn.Module) -> None:
        state = self.best_state()
        if state is not None:
            model.load_state_dict(state)

    def summary(self) -> dict:
        return {"selected_on": f"valid {self.monitor.split('/', 1)[-1]}",
                "best_epoch": self.best_epoch + 1, "epochs_run": len(self.history),
                "history": self.history}

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "history": self.history}

    def load_state_dict(self, state):
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.wait = state.get("wait", 0)
        self.history = state.get("history", [])


def _rng_state() -> dict:
    """Python's, numpy's and torch's random states as tensors and numbers (a checkpoint read
    with ``weights_only=True`` can hold them)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, _ = random.getstate()
    state = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
             "numpy": [pos, has_gauss, gauss], "python_version": version,
             "python": torch.tensor(internal, dtype=torch.int64)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(pos),
                         int(has_gauss), float(gauss)))
    random.setstate((state["python_version"], tuple(state["python"].tolist()), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class LastCheckpoint(Checkpoint):
    """``last.ckpt`` after every training epoch (validation and selection included), written
    atomically: a temporary file, fsync, rename. Put it after :class:`BestKeeper` so the
    checkpoint holds the keeper's state of the same epoch. It also holds the random states at
    the end of the epoch, so a resumed run draws the same dropout masks and negatives as one
    that was never stopped, and ends with the same weights."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def state_dict(self):
        return {"rng": _rng_state()}

    def load_state_dict(self, state):
        if "rng" in state:
            _set_rng_state(state["rng"])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        tmp = self.folder / f".{LAST}.tmp"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(str(tmp), weights_only=False)  # every rank calls it
            if trainer.is_global_zero:  # rank 0 writes
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, self.folder / LAST)
        except Exception as exc:
            error = write_error(self.folder / LAST, exc)
            if error is None:
                raise
            tmp.unlink(missing_ok=True)
            raise error from None


def readable_checkpoint(path: Path) -> bool:
    """A checkpoint that torch can open without running code (a zip of tensors), so a
    truncated file from a full disk or a planted pickle is never resumed from."""
    if not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            if zf.testzip() is not None:
                return False
        torch.load(path, map_location="cpu", weights_only=True)
        return True
    except Exception:  # zipfile.BadZipFile, pickle refusals, EOF: all mean "do not resume"
        return False


def prepare_run(run_dir: Path, settings: dict, resume: bool) -> Path | None:
    """Get ``run_dir`` ready for training; return the checkpoint to resume from, or None.

    ``settings`` are what must not change between a run and its resumption (data, model,
    loss). ``resume=False``, or settings that differ while ``resume`` is on (an error), or no
    checkpoint: start afresh, removing the old checkpoints, best weights and logs so nothing
    stale is restored later. An unreadable ``last.ckpt`` is moved aside (``<run>/last.ckpt.bad``)
    with a warning, and the run starts afresh."""
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / RUN_SETTINGS
    current = json.loads(json.dumps(settings, default=str))
    last = run_dir / CHECKPOINTS / LAST
    for stale in (run_dir / CHECKPOINTS).glob(f".{LAST}.tmp"):
        stale.unlink()  # left by a kill mid-write
    if resume and saved.exists():
        try:
            previous = json.loads(saved.read_text("utf-8"))
        except ValueError:
            previous = None
        if previous != current:
            raise ConfigError(f"{run_dir}: holds a run with other settings (data, model or "
                              "loss); choose another output_dir or set train.resume=false to "
                              "start it afresh")
        if last.exists():
            if readable_checkpoint(last):
                return last
            aside = run_dir / (LAST + ".bad")  # outside checkpoints/, which is cleared below
            os.replace(last, aside)
            log.warning("%s is unreadable (truncated or not a checkpoint); moved it to %s "
                        "and starting afresh", last, aside)
    for name in (CHECKPOINTS, "logs"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    (run_dir / BEST).unlink(missing_ok=True)
    with atomic_path(saved) as tmp:
        tmp.write_text(json.dumps(current), encoding="utf-8")
    return None


class StopOnSignal(Callback):
    """Turns SIGINT and SIGTERM during :func:`run_fit` into a stop at the end of the current
    batch (training or validation), raising ``RunInterrupted``. :func:`make_trainer` adds one
    to every trainer."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # asked twice: stop now
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s: stopping at the end of this batch (again to stop now)",
                    signal.Signals(signum).name)

    def install(self) -> None:
        self.signum = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _check(self, trainer) -> None:
        if self.signum is not None:
            raise interrupted(trainer, self.signum)

    def on_train_batch_end(self, trainer, *args) -> None:
        self._check(trainer)

    def on_validation_batch_end(self, trainer, *args) -> None:
        self._check(trainer)


def interrupted(trainer: L.Trainer, signum: int) -> RunInterrupted:
    """The error for a run stopped during ``trainer.current_epoch``, naming its checkpoint."""
    checkpoint = next((c.folder / LAST for c in trainer.callbacks
                       if isinstance(c, LastCheckpoint)), None)
    if checkpoint is not None and not checkpoint.exists():
        checkpoint = None
    return RunInterrupted(signum, trainer.current_epoch, checkpoint)


def run_fit(trainer: L.Trainer, module: L.LightningModule, **fit_args) -> None:
    """``trainer.fit(module, **fit_args)``, stopped cleanly by SIGINT/SIGTERM (see
    :class:`StopOnSignal`)."""
    stop = next(c for c in trainer.callbacks if isinstance(c, StopOnSignal))
    stop.install()
    try:
        trainer.fit(module, **fit_args)
    except (KeyboardInterrupt, SystemExit) as exc:
        # Lightning turns a KeyboardInterrupt into sys.exit(1) and its own SIGTERM handler
        # (which calls ours too) into SIGTERMException, a SystemExit
        sigterm = type(exc).__name__ == "SIGTERMException"
        if stop.signum is None and not sigterm and not isinstance(exc, KeyboardInterrupt):
            raise
        signum = stop.signum or (signal.SIGTERM if sigterm else signal.SIGINT)
        raise interrupted(trainer, signum) from None
    finally:
        stop.uninstall()


@dataclass
class TrainingRun:
    """What :func:`training_run` set up: call :meth:`fit`, then read the keeper and timer."""

    trainer: L.Trainer
    keeper: BestKeeper
    timer: EpochTimer
    run_dir: Path | None
    resume_from: Path | None

    def fit(self, module: L.LightningModule, **fit_args) -> float:
        """Train (resuming when the run folder holds a checkpoint); the seconds it took."""
        started = time.perf_counter()
        run_fit(self.trainer, module, weights_only=True,
                ckpt_path=None if self.resume_from is None else str(self.resume_from),
                **fit_args)
        return time.perf_counter() - started


def training_run(cfg, *, write: bool = True, callbacks: list | None = None,
                 **trainer_options) -> TrainingRun:
    """The run folder (resumed or started afresh), best-epoch keeper on ``valid/<monitor>``,
    epoch timer, per-epoch checkpoint and trainer of a task config. ``write=False`` writes
    nothing: the best weights are kept in memory and nothing is checkpointed."""
    run_dir = cfg.run_dir() if write else None
    resume_from = prepare_run(run_dir, cfg.identity(), cfg.train.resume) if write else None
    keeper = BestKeeper(f"valid/{cfg.eval.monitor}", cfg.train.patience,
                        run_dir / BEST if write else None)
    timer = EpochTimer()
    every = [timer, *(callbacks or []), keeper]
    if write:
        every.append(LastCheckpoint(run_dir / CHECKPOINTS))
    trainer = make_trainer(cfg.train.trainer, max_epochs=cfg.train.epochs, callbacks=every,
                           run_dir=run_dir, progress=cfg.train.progress, **trainer_options)
    return TrainingRun(trainer, keeper, timer, run_dir, resume_from)

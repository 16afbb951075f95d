"""What a training run prints: Lightning's logs without its banner (following the current
stderr), one line per epoch when the progress bars are off, and epoch timing."""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings

from lightning.pytorch.callbacks import Callback

_NOISE = ("💡 Tip:", "GPU available:", "TPU available:", "HPU available:", "LOCAL_RANK:")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_NOISE)


class _CurrentStderr:
    """A stream that is whatever ``sys.stderr`` is now. Lightning and transformers bind their
    log handlers to the ``sys.stderr`` of the moment they are imported; inside a CLI test
    runner that stream is closed soon after, and every later message is a logging error."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR = _CurrentStderr()
_LIBRARY_LOGGERS = ("lightning", "lightning.fabric", "lightning.pytorch", "transformers",
                    "huggingface_hub")


def quiet_lightning() -> None:
    """Hide Lightning's hardware banner and tips (resume and DDP messages stay visible);
    library log handlers write to the current stderr."""
    for name in _LIBRARY_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler and handler.stream is not _STDERR:
                handler.setStream(_STDERR)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def as_float(value) -> float:
    """``float(value)``, or NaN for what is not a number (a metric Lightning logged)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


class EpochTimer(Callback):
    """Wall-clock seconds of each training epoch (validation excluded)."""

    def __init__(self):
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking and self._start:
            self.seconds.append(time.perf_counter() - self._start)
            self._start = 0.0

    def on_train_epoch_end(self, trainer, pl_module):
        if self._start:  # no validation this epoch
            self.seconds.append(time.perf_counter() - self._start)
            self._start = 0.0

    def mean(self) -> float | None:
        return sum(self.seconds) / len(self.seconds) if self.seconds else None


class EpochLine(Callback):
    """With the progress bars off, one line per epoch on stderr, so a long quiet run still
    shows it is alive: ``epoch 3/10: train/loss 6.1234, valid/ndcg@10 0.1021 (41.2 s)`` (the
    training losses and the metric that selects the epoch)."""

    def __init__(self, monitor: str | None = None):
        self.monitor = monitor
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        values = {k: as_float(v) for k, v in trainer.callback_metrics.items()
                  if k.startswith("train/") or k == self.monitor}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(values.items()) if not math.isnan(v))
        seconds = time.perf_counter() - self._start
        sys.stderr.write(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: "
                         f"{shown or 'no metrics'} ({seconds:.1f} s)\n")
        sys.stderr.flush()

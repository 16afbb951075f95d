"""``fit`` for next-item runs: train, keep the best valid epoch, evaluate, write the artifact."""

from __future__ import annotations

import logging
import time

import lightning as L
import torch

from rankpref.data.datasets import PreparedDataset, prepare
from rankpref.errors import ConfigError
from rankpref.lightning import training_run
from rankpref.registry import LOSSES
from rankpref.settings import set_threads
from rankpref.tasks import RunResult
from rankpref.tasks.next_item.artifact import save_artifact
from rankpref.tasks.next_item.config import NextItemConfig, choose_loss
from rankpref.tasks.next_item.data import datamodule, training_split
from rankpref.tasks.next_item.evaluate import cold_start_metrics, evaluate_model
from rankpref.tasks.next_item.models import plain_setup
from rankpref.tasks.next_item.module import NextItemModule
from rankpref.tasks.next_item.pulse import setup_pulse

log = logging.getLogger(__name__)

SETUPS = {"pulse": setup_pulse}
"""Models that need more than item ids: name -> setup(cfg, dataset, split, cold) -> Setup.
Every other registered model uses :func:`rankpref.tasks.next_item.models.plain_setup`."""


def check(cfg: NextItemConfig) -> None:
    """Rules across sections (each section validated on its own already)."""
    if cfg.data.cold_items > 0 and LOSSES.entry(cfg.loss.name, "next_item").negatives:
        raise ConfigError("data.cold_items needs a loss without sampled negatives (loss.name=ce):"
                          " sampled negatives would include the held-out items")


def fit(cfg: NextItemConfig, data: PreparedDataset | None = None, callbacks: list | None = None,
        write: bool = True) -> RunResult:
    """Train, keep the best valid epoch, evaluate valid and test, write the artifact.

    ``data``: the prepared dataset (default: prepare ``cfg.data``). ``callbacks``: extra
    Lightning callbacks (e.g. tuning's pruning). ``write=False`` writes nothing at all (no
    checkpoints, logs or artifact). In a multi-process run only global rank 0 evaluates and
    writes; the others return a result without metrics.
    """
    check(cfg)
    set_threads(cfg.train.threads)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    dataset = data if data is not None else prepare(cfg.data)
    cfg, why = choose_loss(cfg, dataset.num_items)
    if why:
        log.warning(why)
    split, cold = training_split(dataset, cfg.data)
    dm = datamodule(cfg, split, dataset.num_items)
    setup = SETUPS.get(cfg.model.name, plain_setup)(cfg, dataset, split, cold)
    model = setup.model
    module = NextItemModule(model, cfg, cold_items=torch.as_tensor(cold), **setup.module_inputs)
    run = training_run(cfg, write=write, callbacks=callbacks, use_distributed_sampler=False)
    train_seconds = run.fit(module, datamodule=dm)
    run_dir, keeper, timer = run.run_dir, run.keeper, run.timer
    if not run.trainer.is_global_zero:
        return RunResult("next_item", run_dir, None, {}, model)
    keeper.restore(model)
    model.cpu()
    eval_started = time.perf_counter()
    valid = evaluate_model(model, dm, cfg, "valid")
    test_started = time.perf_counter()
    test = evaluate_model(model, dm, cfg, "test")
    test_seconds = time.perf_counter() - test_started
    metrics = {
        "task": "next_item", "dataset": dataset.stats.get("dataset"), "model": cfg.model.name,
        "loss": cfg.loss.name, "split": cfg.data.split, "protocol": cfg.eval.protocol,
        "mask_history": cfg.eval.mask_history, "ks": list(cfg.eval.ks),
        **keeper.summary(),
        "seconds_per_epoch": timer.mean(), "train_seconds": round(train_seconds, 2),
        "eval_seconds": {"valid": round(test_started - eval_started, 3),
                         "test": round(test_seconds, 3)},
        "threads": cfg.train.threads,
        "valid": valid, "test": test, "data": dataset.stats, "split_stats": split.stats(),
    }
    if len(cold):
        metrics["cold_start"] = cold_start_metrics(model, dm, cfg, cold)
    if setup.info:
        metrics[cfg.model.name] = setup.info
    artifact = None
    if write:
        artifact = save_artifact(run_dir / "model", model, cfg, dataset.vocab, metrics,
                                 dataset.items, **setup.extras)
    return RunResult("next_item", run_dir, artifact, metrics, model)

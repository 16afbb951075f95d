"""``fit`` for next-item runs: train, keep the best valid epoch, evaluate, write the artifact."""

from __future__ import annotations

import logging
import time

import lightning as L
import numpy as np
import torch

from rankpref.data.datasets import PreparedDataset, prepare
from rankpref.errors import ConfigError
from rankpref.lightning import training_run
from rankpref.registry import LOSSES, MODELS
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


def check(cfg: NextItemConfig) -> NextItemConfig:
    """Rules across sections (each section validated on its own already); returns ``cfg``
    with the training recipe a model needs when the user left it unset."""
    if cfg.data.cold_items > 0 and LOSSES.entry(cfg.loss.name, "next_item").negatives:
        raise ConfigError("data.cold_items needs a loss without sampled negatives (loss.name=ce):"
                          " sampled negatives would include the held-out items")
    model = MODELS.entry(cfg.model.name, "next_item").obj
    if getattr(model, "needs_prefix_training", False) and cfg.data.train_on != "every_prefix":
        if "train_on" in cfg.data.model_fields_set:
            raise ConfigError(f"model {cfg.model.name!r} is not causal (it mixes every position"
                              " of a window), so trained on every position it would see its "
                              "targets: use data.train_on=every_prefix")
        data = cfg.data.model_copy(update={"train_on": "every_prefix"})
        cfg = cfg.model_copy(update={"data": data})
    return cfg


def target_popularity(split, num_items: int) -> torch.Tensor:
    """[num_items + 1] each item's share of the training targets (every item after a user's
    first), the distribution that in-batch negatives are drawn from."""
    counts = np.zeros(num_items + 1, dtype=np.float64)
    for seq in split.train_sequences:
        np.add.at(counts, seq[1:], 1.0)
    return torch.from_numpy(counts / max(counts.sum(), 1.0)).float()


def fit(cfg: NextItemConfig, data: PreparedDataset | None = None, callbacks: list | None = None,
        write: bool = True) -> RunResult:
    """Train, keep the best valid epoch, evaluate valid and test, write the artifact.

    ``data``: the prepared dataset (default: prepare ``cfg.data``). ``callbacks``: extra
    Lightning callbacks (e.g. tuning's pruning). ``write=False`` writes nothing at all (no
    checkpoints, logs or artifact). In a multi-process run only global rank 0 evaluates and
    writes; the others return a result without metrics.
    """
    cfg = check(cfg)
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
    module = NextItemModule(model, cfg, cold_items=torch.as_tensor(cold),
                            popularity=target_popularity(split, dataset.num_items),
                            **setup.module_inputs)
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
        "loss": cfg.loss.name, "split": cfg.data.split, "train_on": cfg.data.train_on,
        "protocol": cfg.eval.protocol,
        "mask_history": cfg.eval.mask_history, "ks": list(cfg.eval.ks),
        **keeper.summary(),
        "seconds_per_epoch": timer.mean(), "train_seconds": round(train_seconds, 2),
        "eval_seconds": {"valid": round(test_started - eval_started, 3),
                         "test": round(test_seconds, 3)},
        "threads": cfg.train.threads,
        "valid": valid, "test": test, "data": dataset.stats, "split_stats": split.stats(),
    }
    if len(cold):
        metrics["cold_start"] = cold_start_metrics(model, dm, cfg, cold, total=test)
    if setup.info:
        metrics[cfg.model.name] = setup.info
    artifact = None
    if write:
        artifact = save_artifact(run_dir / "model", model, cfg, dataset.vocab, metrics,
                                 dataset.items, **setup.extras)
    return RunResult("next_item", run_dir, artifact, metrics, model)

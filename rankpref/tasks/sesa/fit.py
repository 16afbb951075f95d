"""``fit`` for SESA runs: train the network (or the latent dual-encoder baseline) with a
ranking loss plus a concept BCE, keep the epoch with the best valid ``eval.monitor``
(NDCG@10 by default), evaluate valid and test, write the artifact."""

from __future__ import annotations

import lightning as L

from rankpref.errors import ConfigError, DataError
from rankpref.lightning import training_run
from rankpref.models.sesa import SESA, SESAConfig
from rankpref.settings import set_threads
from rankpref.tasks import RunResult
from rankpref.tasks.sesa.artifact import save_artifact
from rankpref.tasks.sesa.config import SESARunConfig
from rankpref.tasks.sesa.data import QueryDataModule, TaskInputs, prepare_inputs
from rankpref.tasks.sesa.evaluate import evaluate
from rankpref.tasks.sesa.module import SESAModule


def check(cfg: SESARunConfig) -> None:
    if cfg.model.top_k is not None and cfg.model.head == "latent":
        raise ConfigError("model.top_k applies to the concepts head only")


def build_network(cfg: SESARunConfig, prep: TaskInputs) -> SESA:
    m = cfg.model
    net_cfg = SESAConfig(encoder="features" if m.encoder == "minilm" else "gru", head=m.head,
                         num_concepts=len(prep.concepts), latent_dim=m.latent_dim,
                         input_dim=int(prep.item_inputs.shape[1]) if m.encoder == "minilm" else 384,
                         vocab_size=len(prep.words) if prep.words else 0, embed_dim=m.embed_dim,
                         hidden=m.hidden, dropout=m.dropout, top_k=m.top_k,
                         concept_weights=m.concept_weights)
    return SESA(net_cfg)


def fit(cfg: SESARunConfig, data: TaskInputs | None = None, callbacks: list | None = None,
        write: bool = True) -> RunResult:
    """Train with valid selection; evaluate valid/test; write the artifact to
    ``<run_dir>/model`` (``write=False``: write nothing). ``data``: prepared task inputs
    (default: built from ``cfg``); ``callbacks``: extra Lightning callbacks."""
    check(cfg)
    set_threads(cfg.train.threads)
    L.seed_everything(cfg.train.seed, verbose=False)
    prep = data if data is not None else prepare_inputs(cfg)
    if len(prep.task.indices("valid")) == 0 or len(prep.task.indices("train")) == 0:
        raise DataError("the train and valid splits both need queries; change "
                        "data.valid_fraction or data.seed", field="data.valid_fraction")
    model = build_network(cfg, prep)
    module = SESAModule(model, prep, cfg)
    dm = QueryDataModule(cfg, prep)
    run = training_run(cfg, write=write, callbacks=callbacks)
    train_seconds = run.fit(module, datamodule=dm)
    run_dir, keeper, timer = run.run_dir, run.keeper, run.timer
    if not run.trainer.is_global_zero:
        return RunResult("sesa", run_dir, None, {}, model)
    keeper.restore(model)
    model.cpu().eval()
    seconds = timer.mean()
    metrics = {
        "task": "sesa", "dataset": f"onet/{cfg.data.name or cfg.data.path}",
        "onet_task": cfg.data.task,
        "model": f"sesa-{cfg.model.encoder}" if model.explicit else f"dual-{cfg.model.encoder}",
        "head": cfg.model.head, "loss": cfg.loss.name, **keeper.summary(),
        "seconds_per_epoch": None if seconds is None else round(seconds, 2),
        "train_seconds": round(train_seconds, 1), "threads": cfg.train.threads,
        "valid": evaluate(model, prep, "valid"), "test": evaluate(model, prep, "test"),
        "data": prep.stats,
    }
    artifact = save_artifact(run_dir / "model", model, cfg, prep, metrics) if write else None
    return RunResult("sesa", run_dir, artifact, metrics, model)

"""``fit`` for ranking runs: standardise features with train statistics, sample fresh lists
every epoch, train a registered scorer with a registered listwise loss, keep the epoch with the
best valid ``eval.monitor`` (Kendall tau by default), evaluate valid and test, write the
artifact."""

from __future__ import annotations

import lightning as L
import torch

from rankpref.data import rated
from rankpref.lightning import training_run
from rankpref.settings import set_threads
from rankpref.tasks import RunResult
from rankpref.tasks.rank.artifact import build_scorer, save_artifact
from rankpref.tasks.rank.config import RankConfig
from rankpref.tasks.rank.data import ListDataModule, load_data, source_spec
from rankpref.tasks.rank.evaluate import SPLIT_SEEDS, scores, split_metrics
from rankpref.tasks.rank.module import RankModule


def _split_name(cfg: RankConfig, spec) -> str:
    if spec.split_column:
        return "official"
    d = cfg.data
    return (f"fixed {1 - d.valid_fraction - d.test_fraction:.0%}/{d.valid_fraction:.0%}/"
            f"{d.test_fraction:.0%} seed {d.split_seed}")


def fit(cfg: RankConfig, data: rated.RatedPool | None = None, callbacks: list | None = None,
        write: bool = True) -> RunResult:
    """Train, select on valid, evaluate valid/test, write the artifact (``write=False``: write
    nothing). ``data``: a loaded pool (default: load ``cfg.data``); ``callbacks``: extra
    Lightning callbacks (e.g. tuning's pruning)."""
    set_threads(cfg.train.threads)
    pool = data if data is not None else load_data(cfg.data)
    train = pool.part("train")
    rated.check_margin(train.labels, cfg.lists.margin, pool.source)
    rated.check_margin(train.labels, cfg.loss.margin, pool.source)
    stats = rated.feature_stats(train.features) if cfg.data.standardize else None
    xs = {name: rated.standardize(pool.part(name).features, stats) for name in rated.SPLITS}
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    torch.manual_seed(cfg.train.seed)
    model = build_scorer(cfg, xs["train"].shape[1])
    module = RankModule(model, cfg)
    dm = ListDataModule(cfg, xs, pool)
    run = training_run(cfg, write=write, callbacks=callbacks,
                       reload_dataloaders_every_n_epochs=1)
    seconds = run.fit(module, datamodule=dm)
    run_dir, keeper, timer = run.run_dir, run.keeper, run.timer
    if not run.trainer.is_global_zero:
        return RunResult("rank", run_dir, None, {}, model)
    keeper.restore(model)
    model.cpu()
    spec = source_spec(cfg.data)
    metrics = {
        "task": "rank", "dataset": cfg.data.name, "source": pool.source, "target": spec.target,
        "loss": cfg.loss.name, "model": cfg.model.name, "split": _split_name(cfg, spec),
        **keeper.summary(), "seconds_per_epoch": timer.mean(),
        "train_seconds": round(seconds, 2), "threads": cfg.train.threads,
        "train_lists": dm.stats[-1] if dm.stats else None,
        **{name: split_metrics(scores(model, xs[name]), pool.part(name).labels, cfg.eval,
                               seed=seed) for name, seed in SPLIT_SEEDS.items()},
    }
    artifact = None
    if write:
        features = {"source": "text" if spec.text_column and not cfg.data.embeddings else
                    ("embeddings" if cfg.data.embeddings else "columns"),
                    "text_column": spec.text_column, "feature_columns":
                    list(spec.feature_columns) if spec.feature_columns else None,
                    "feature_names": pool.feature_names, "input_dim": int(xs["train"].shape[1]),
                    "standardize": stats}
        artifact = save_artifact(run_dir / "model", model, cfg, features, metrics)
    return RunResult("rank", run_dir, artifact, metrics, model)

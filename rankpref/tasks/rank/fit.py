"""``fit`` for ranking runs: standardise features with train statistics, sample fresh lists
every epoch, train a registered scorer with a registered listwise loss, keep the epoch with the
best valid ``eval.monitor`` (Kendall tau by default), evaluate valid and test, fit the ridge
baseline on the same features, write the artifact.

Protocols (``eval.protocol``): one train/valid/test split, or, for small pools, k-fold
cross-validation over every item: fold ``f`` is the test set, fold ``f + 1`` selects the
epoch, the rest trains (nested: nothing of the test fold is seen while choosing), and the test
numbers are the mean and std over the ``k`` folds. The artifact's model is then trained on all
folds but one, which selects its epoch.
"""

from __future__ import annotations

import dataclasses
import sys

import lightning as L
import numpy as np
import torch

from rankpref.data import rated
from rankpref.errors import DataError
from rankpref.lightning import training_run
from rankpref.settings import set_threads
from rankpref.tasks import RunResult
from rankpref.tasks.rank.artifact import build_scorer, save_artifact
from rankpref.tasks.rank.baselines import ridge_loo, ridge_predict
from rankpref.tasks.rank.config import RankConfig
from rankpref.tasks.rank.data import (ListDataModule, load_data, source_spec,
                                      takes_tokens, text_encoder)
from rankpref.tasks.rank.evaluate import SPLIT_SEEDS, scores, split_metrics
from rankpref.tasks.rank.module import RankModule


def _split_name(cfg: RankConfig, spec) -> str:
    if spec.split_column:
        return "official"
    d = cfg.data
    return (f"fixed {1 - d.valid_fraction - d.test_fraction:.0%}/{d.valid_fraction:.0%}/"
            f"{d.test_fraction:.0%} seed {d.split_seed}")


def feature_source(cfg: RankConfig, spec) -> str:
    if cfg.data.embeddings:
        return "embeddings"
    if spec.media_column:
        return "audio" if spec.audio_column else "image"
    if spec.text_column:
        return "tokens" if takes_tokens(cfg) else "text"
    return "columns"


def resolve_protocol(cfg: RankConfig, pool: rated.RatedPool, spec) -> str:
    """``split`` or ``kfold`` (``auto``: kfold below ``eval.kfold_below`` train items, unless
    the table brings its own split)."""
    if cfg.eval.protocol != "auto":
        return cfg.eval.protocol
    train_items = int((pool.split == "train").sum())
    return "kfold" if train_items < cfg.eval.kfold_below and not spec.split_column else "split"


def kfold_assignments(n: int, folds: int, seed: int) -> np.ndarray:
    """A seeded fold id per item, folds as equal as can be."""
    if n < 2 * folds:
        raise DataError(f"{n} items are too few for {folds}-fold cross-validation "
                        f"(need {2 * folds}); lower eval.folds")
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    return fold


def fold_split(fold: np.ndarray, test_fold: int | None, valid_fold: int) -> np.ndarray:
    split = np.full(fold.shape, "train", dtype=object)
    split[fold == valid_fold] = "valid"
    if test_fold is not None:
        split[fold == test_fold] = "test"
    return split.astype(str)


def wants_baseline(cfg: RankConfig) -> bool:
    """Ridge needs feature vectors: none for a scorer that reads token ids."""
    return cfg.eval.baseline and not takes_tokens(cfg)


def ridge_baseline(xs: dict, pool: rated.RatedPool, cfg: RankConfig, test: bool = True) -> dict:
    """Ridge on train + valid (alpha by leave-one-out), scored on test."""
    x = np.concatenate([xs["train"], xs["valid"]])
    y = np.concatenate([pool.part("train").labels, pool.part("valid").labels])
    fitted = ridge_loo(x, y)
    out = {"model": "ridge", "fit_on": "train+valid", "alpha": fitted["alpha"],
           "alpha_by": "leave-one-out mse"}
    if test:
        out["test"] = split_metrics(ridge_predict(fitted, xs["test"]), pool.part("test").labels,
                                    cfg.eval, seed=SPLIT_SEEDS["test"])
    return out


@dataclasses.dataclass
class _Trained:
    model: torch.nn.Module
    xs: dict
    stats: dict | None
    summary: dict
    metrics: dict
    run: object
    seconds: float
    lists: dict | None


def _train(cfg: RankConfig, pool: rated.RatedPool, callbacks, write: bool,
           splits=("valid", "test")) -> _Trained | None:
    """Train on ``pool``'s train split, select on its valid split, score ``splits``. None on
    a DDP process other than rank 0."""
    train = pool.part("train")
    rated.check_margin(train.labels, cfg.lists.margin, pool.source)
    rated.check_margin(train.labels, cfg.loss.margin, pool.source)
    standardize = cfg.data.standardize and not takes_tokens(cfg)  # token ids stay ids
    stats = rated.feature_stats(train.features) if standardize else None
    xs = {name: rated.standardize(pool.part(name).features, stats) for name in rated.SPLITS}
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    torch.manual_seed(cfg.train.seed)
    model = build_scorer(cfg, xs["train"].shape[1])
    module = RankModule(model, cfg, (float(train.labels.mean()),
                                     float(train.labels.std()) or 1.0))
    dm = ListDataModule(cfg, xs, pool)
    run = training_run(cfg, write=write, callbacks=callbacks,
                       reload_dataloaders_every_n_epochs=1)
    seconds = run.fit(module, datamodule=dm)
    if not run.trainer.is_global_zero:
        return None
    run.keeper.restore(model)
    model.cpu()
    metrics = {name: split_metrics(scores(model, xs[name]), pool.part(name).labels, cfg.eval,
                                   seed=SPLIT_SEEDS[name]) for name in splits}
    return _Trained(model, xs, stats, run.keeper.summary(), metrics, run, seconds,
                    dm.stats[-1] if dm.stats else None)


def _mean_std(rows: list[dict]) -> tuple[dict, dict]:
    keys = [k for k, v in rows[0].items() if isinstance(v, float)]
    mean = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    std = {k: float(np.nanstd([r[k] for r in rows], ddof=1)) for k in keys}
    return mean, std


def _kfold(cfg: RankConfig, pool: rated.RatedPool, write: bool) -> tuple[_Trained, dict]:
    k, seed = cfg.eval.folds, cfg.data.split_seed
    fold = kfold_assignments(len(pool), k, seed)
    rows = []
    for f in range(k):
        sub = dataclasses.replace(pool, split=fold_split(fold, f, (f + 1) % k))
        if cfg.train.progress:
            sys.stderr.write(f"fold {f + 1}/{k}\n")
        trained = _train(cfg, sub, None, write=False)
        if trained is None:  # a DDP process other than rank 0
            return None, {}
        row = {"fold": f, "best_epoch": trained.summary["best_epoch"], **trained.metrics}
        if wants_baseline(cfg):
            row["ridge"] = ridge_baseline(trained.xs, sub, cfg)
        rows.append(row)
    # the artifact's model: every fold but the last trains, the last selects the epoch
    final_pool = dataclasses.replace(pool, split=fold_split(fold, None, k - 1))
    final = _train(cfg, final_pool, None, write=write, splits=("valid",))
    if final is None:
        return None, {}
    test_mean, test_std = _mean_std([r["test"] for r in rows])
    valid_mean, valid_std = _mean_std([r["valid"] for r in rows])
    cv = {"protocol": "kfold", "folds": k, "fold_seed": seed,
          "split": f"{k}-fold cross-validation over {len(pool)} items, seed {seed} "
                   "(test fold f, valid fold f+1)",
          "valid": {**valid_mean, "items": int(len(pool))},
          "valid_std": valid_std,
          "test": {**test_mean, "items": int(len(pool))}, "test_std": test_std,
          "fold_results": rows,
          "artifact_model": f"trained on folds 0..{k - 2}, epoch chosen on fold {k - 1}",
          "artifact_valid": final.metrics["valid"]}
    if wants_baseline(cfg):
        ridge = [r["ridge"]["test"] for r in rows]
        r_mean, r_std = _mean_std(ridge)
        cv["baselines"] = {"ridge": {"model": "ridge", "fit_on": "train+valid of each fold",
                                     "alpha_by": "leave-one-out mse",
                                     "alpha": [r["ridge"]["alpha"] for r in rows],
                                     "test": {**r_mean, "items": int(len(pool))},
                                     "test_std": r_std}}
    return final, cv


def fit(cfg: RankConfig, data: rated.RatedPool | None = None, callbacks: list | None = None,
        write: bool = True) -> RunResult:
    """Train, select on valid, evaluate valid/test, write the artifact (``write=False``: write
    nothing). ``data``: a loaded pool (default: load ``cfg.data``); ``callbacks``: extra
    Lightning callbacks (e.g. tuning's pruning; not used by k-fold runs)."""
    set_threads(cfg.train.threads)
    pool = data if data is not None else load_data(cfg.data, encoder=text_encoder(cfg))
    spec = source_spec(cfg.data)
    protocol = resolve_protocol(cfg, pool, spec)
    if protocol == "kfold":
        trained, evaluation = _kfold(cfg, pool, write)
    else:
        trained = _train(cfg, pool, callbacks, write)
        evaluation = {}
    if trained is None:
        return RunResult("rank", None, None, {}, None)
    if protocol == "split":
        evaluation = {"protocol": "split", "split": _split_name(cfg, spec), **trained.metrics}
        if wants_baseline(cfg):
            evaluation["baselines"] = {"ridge": ridge_baseline(trained.xs, pool, cfg)}
    model, run = trained.model, trained.run
    metrics = {
        "task": "rank", "dataset": cfg.data.name, "source": pool.source, "target": spec.target,
        "loss": cfg.loss.name, "model": cfg.model.name,
        **trained.summary, "seconds_per_epoch": run.timer.mean(),
        "train_seconds": round(trained.seconds, 2), "threads": cfg.train.threads,
        "train_lists": trained.lists,
        **({"media": pool.media} if pool.media is not None else {}),
        **evaluation,
    }
    artifact = None
    if write:
        features = {"source": feature_source(cfg, spec),
                    "text_column": spec.text_column, "media_column": spec.media_column,
                    "extractor": (cfg.data.image_model if spec.image_column else
                                  cfg.data.audio_features) if spec.media_column else None,
                    "feature_columns":
                    list(spec.feature_columns) if spec.feature_columns else None,
                    "feature_names": pool.feature_names,
                    "input_dim": int(trained.xs["train"].shape[1]),
                    "standardize": trained.stats}
        artifact = save_artifact(run.run_dir / "model", model, cfg, features, metrics)
    return RunResult("rank", run.run_dir, artifact, metrics, model)

"""Listwise subjective ranking: config, Lightning training, evaluation and prediction.

``fit`` reads a rated pool (:mod:`rankpref.data.rated`), standardises features with train
statistics, samples fresh training lists every epoch, trains an :class:`MLPScorer` with any
listwise loss by name (:mod:`rankpref.losses.listwise`), keeps the epoch with the best dev
Kendall tau (early stopping) and writes an artifact folder:

    model.safetensors   scorer weights
    config.yaml         the resolved RankConfig
    features.json       feature source, names and standardisation statistics
    metrics.json        dev/test Kendall tau, Spearman, ranking accuracy at margins, NDCG@k

Loading reads only safetensors, YAML (safe loader) and JSON.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from rankpref.data import rated
from rankpref.errors import ConfigError, DataError, RankprefError
from rankpref.io import atomic_dir

LABEL_PAD = float("-inf")
"""Padding label of training/evaluation lists (never a real rating)."""

LOSS_NAMES = ("ranknet", "listnet", "listmle", "approxndcg", "lambdaloss", "ranklist")


# ------------------------------------------------------------------ config

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RankDataConfig(_Strict):
    name: str = Field("emobank", description="emobank, wine-red, wine-white (full shared data "
                      "when present, else the shipped slice), *-slice, or a table path")
    target: str | None = Field(None, description="label column (built-ins: V / quality)")
    text_column: str | None = None
    feature_columns: list[str] | None = None
    embeddings: str | None = Field(None, description=".npy/.parquet, one row per table row")
    split_column: str | None = None
    id_column: str | None = None
    rater_column: str | None = None
    std_column: str | None = None
    split_seed: int = 0
    dev_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.1, gt=0, lt=1)
    text_model: str | None = Field(None, description="sentence-transformers model; default "
                                   "the bundled all-MiniLM-L6-v2")
    cache_dir: str = ".cache/rankpref"
    standardize: bool = True


class RankModelConfig(_Strict):
    hidden: list[int] = [256]
    dropout: float = Field(0.1, ge=0, lt=1)
    activation: Literal["relu", "gelu", "tanh"] = "gelu"


class RankLossConfig(_Strict):
    name: Literal["ranknet", "listnet", "listmle", "approxndcg", "lambdaloss",
                  "ranklist"] = "ranklist"
    # RankList options (ignored by the other losses)
    pairs: Literal["local", "nonlocal", "skip"] = "nonlocal"
    skips: list[int] | None = None
    margin: float = Field(0.0, ge=0, description="W: minimum label gap for a pair to count")
    approx: Literal["exact", "lse"] = "exact"
    normalize: bool = True
    curriculum_every: int | None = Field(None, ge=1, description="one more skip distance "
                                         "every N epochs; null = all distances from the start")
    curriculum_start: int = Field(1, ge=1)


class RankListsConfig(_Strict):
    list_size: int = Field(32, ge=2)
    margin: float = Field(0.0, ge=0, description="sample only lists whose neighbours differ "
                          "by at least this")
    lists_per_epoch: int | None = Field(None, ge=1, description="default: train items / "
                                        "list size")
    per_rater: bool = Field(True, description="lists within one rater when rater ids exist")


class RankTrainConfig(_Strict):
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(16, ge=1, description="lists per step")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(8, ge=1, description="epochs without a better dev Kendall tau")
    seed: int = 0
    threads: int = Field(1, ge=1)
    progress: bool = False


class RankEvalConfig(_Strict):
    margins: list[float] = Field([0.0], description="ranking accuracy at these label margins")
    ndcg_k: list[int] = [10]
    list_size: int = Field(32, ge=2, description="size of the seeded test lists for NDCG@k")


class RankConfig(_Strict):
    data: RankDataConfig = RankDataConfig()
    model: RankModelConfig = RankModelConfig()
    loss: RankLossConfig = RankLossConfig()
    lists: RankListsConfig = RankListsConfig()
    train: RankTrainConfig = RankTrainConfig()
    eval: RankEvalConfig = RankEvalConfig()
    output_dir: str | None = None

    def run_dir(self) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        data = Path(self.data.name).stem
        target = self.data.target or "default"
        return Path("runs") / f"rank-{data}-{target}-{self.loss.name}"


def validate_rank_config(tree: dict, source: str = "config") -> RankConfig:
    from rankpref.config import validate_as

    return validate_as(RankConfig, tree, source)


def load_rank_config(path: str | Path | None = None,
                     overrides: list[str] | None = None) -> RankConfig:
    """Defaults < YAML file < ``key.path=value`` overrides; unknown keys are errors."""
    from rankpref.config import _read_yaml, _set_dotted, parse_override

    tree: dict = _read_yaml(Path(path)) if path is not None else {}
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    return validate_rank_config(tree, str(path) if path else "--set")


def rank_config_yaml(cfg: RankConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


# ------------------------------------------------------------------ data

def make_encoder(cfg: RankDataConfig, progress: bool = False):
    from rankpref.text import TextEncoder

    return TextEncoder(cfg.text_model, cache_dir=Path(cfg.cache_dir) / "embeddings",
                       progress=progress)


def source_spec(cfg: RankDataConfig) -> rated.SourceSpec:
    return rated.resolve_source(cfg.name, target=cfg.target, text_column=cfg.text_column,
                                feature_columns=cfg.feature_columns,
                                split_column=cfg.split_column, id_column=cfg.id_column)


def load_data(cfg: RankDataConfig, encoder=None) -> rated.RatedPool:
    spec = source_spec(cfg)
    if spec.text_column and cfg.embeddings is None and encoder is None:
        encoder = make_encoder(cfg)
    pool = rated.load_pool(spec, embeddings=cfg.embeddings, encoder=encoder,
                           rater_column=cfg.rater_column, std_column=cfg.std_column,
                           split_seed=cfg.split_seed,
                           fractions=(cfg.dev_fraction, cfg.test_fraction))
    for name in rated.SPLITS:
        count = int((pool.split == name).sum())
        if count < 2:
            raise DataError(f"split '{name}' has {count} item(s); need at least 2",
                            path=spec.path)
    if np.ptp(pool.part("train").labels) == 0:
        raise DataError("all train labels are equal: nothing to rank", path=spec.path,
                        field=spec.target)
    return pool


# ------------------------------------------------------------------ loss

def loss_kwargs(cfg: RankLossConfig, epoch: int, list_size: int) -> dict:
    """Keyword arguments for the named loss at ``epoch`` (RankList's curriculum lives here)."""
    if cfg.name != "ranklist":
        return {}
    from rankpref.losses.listwise import curriculum_max_skip

    return {"pairs": cfg.pairs, "skips": cfg.skips, "margin": cfg.margin, "approx": cfg.approx,
            "normalize": cfg.normalize,
            "max_skip": curriculum_max_skip(epoch, list_size, cfg.curriculum_every,
                                            cfg.curriculum_start)}


def check_loss_config(cfg: RankLossConfig) -> None:
    if cfg.name == "ranklist" and cfg.pairs == "skip" and not cfg.skips:
        raise ConfigError("loss.pairs=skip needs loss.skips, e.g. [1, 2, 4]")


# ------------------------------------------------------------------ Lightning

def _lightning():
    import lightning as L

    from rankpref.training import quiet_lightning  # hide the hardware banner and tips

    quiet_lightning()
    return L


def build_module(cfg: RankConfig, input_dim: int, dev_x, dev_y):
    import torch

    from rankpref.losses.listwise import get_loss
    from rankpref.models.scorer import MLPScorer, ScorerConfig
    from rankpref.subjective_metrics import kendall_tau_b

    L = _lightning()
    scorer = MLPScorer(ScorerConfig(input_dim=input_dim, hidden=list(cfg.model.hidden),
                                    dropout=cfg.model.dropout,
                                    activation=cfg.model.activation))
    loss_fn = get_loss(cfg.loss.name)

    class RankModule(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.scorer = scorer
            self.dev_x = torch.as_tensor(dev_x)
            self.dev_y = np.asarray(dev_y)
            self.best_tau = -np.inf
            self.best_epoch = -1
            self.best_state = None
            self.history: list[dict] = []

        def training_step(self, batch, batch_idx):
            x, y = batch
            scores = self.scorer(x)
            loss = loss_fn(scores, y, LABEL_PAD,
                           **loss_kwargs(cfg.loss, self.current_epoch, x.shape[1]))
            self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                     batch_size=x.shape[0])
            return loss

        def evaluate_dev(self):
            """Dev Kendall tau of this epoch; keeps the best weights (run by DevEvaluation)."""
            self.scorer.eval()
            with torch.no_grad():
                pred = self.scorer(self.dev_x).numpy()
            self.scorer.train()
            tau = kendall_tau_b(pred, self.dev_y)
            tau = -1.0 if np.isnan(tau) else tau
            self.log("dev_kendall_tau", tau, prog_bar=True)
            loss = self.trainer.callback_metrics.get("train_loss")
            self.history.append({"epoch": self.current_epoch + 1, "dev_kendall_tau": tau,
                                 "train_loss": None if loss is None else float(loss)})
            if tau > self.best_tau:
                self.best_tau, self.best_epoch = tau, self.current_epoch
                self.best_state = copy.deepcopy(self.scorer.state_dict())

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=cfg.train.lr,
                                     weight_decay=cfg.train.weight_decay)

    return RankModule()


def dev_evaluation():
    """A callback that evaluates dev after each epoch, before any later callback (early
    stopping, tuning's pruning) reads ``dev_kendall_tau``."""
    L = _lightning()

    class DevEvaluation(L.pytorch.callbacks.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            pl_module.evaluate_dev()

    return DevEvaluation()


def build_datamodule(cfg: RankConfig, x: np.ndarray, y: np.ndarray,
                     groups: np.ndarray | None):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    L = _lightning()

    class ListData(L.LightningDataModule):
        def __init__(self):
            super().__init__()
            self.stats: list[dict] = []

        def train_dataloader(self):
            epoch = self.trainer.current_epoch if self.trainer is not None else 0
            lists, stats = rated.sample_lists(
                y, cfg.lists.list_size, margin=cfg.lists.margin,
                num_lists=cfg.lists.lists_per_epoch, seed=cfg.train.seed * 100003 + epoch,
                groups=groups if cfg.lists.per_rater else None)
            if stats.lists == 0:
                raise DataError(f"no usable training list (margin {cfg.lists.margin:g}, "
                                f"list size {cfg.lists.list_size}): {stats.as_dict()}")
            self.stats.append(stats.as_dict())
            bx, by = rated.gather_lists(x, y, lists, LABEL_PAD)
            ds = TensorDataset(torch.from_numpy(bx), torch.from_numpy(by.astype(np.float32)))
            gen = torch.Generator().manual_seed(cfg.train.seed * 7919 + epoch)
            return DataLoader(ds, batch_size=cfg.train.batch_size, shuffle=True,
                              generator=gen)

    return ListData()


# ------------------------------------------------------------------ metrics

def split_metrics(pred: np.ndarray, labels: np.ndarray, cfg: RankEvalConfig,
                  seed: int = 0) -> dict:
    """Kendall tau-b, Spearman and ranking accuracy over the whole split; NDCG@k over seeded
    lists of ``cfg.list_size`` drawn from it (every item about once)."""
    from rankpref.subjective_metrics import ndcg_at_k, ranking_report

    out = ranking_report(pred, labels, margins=cfg.margins)
    lists, _ = rated.sample_lists(labels, min(cfg.list_size, labels.size), seed=seed)
    if lists.shape[0]:
        scores, ys = rated.gather_lists(pred[:, None], labels, lists, LABEL_PAD)
        for k in cfg.ndcg_k:
            out[f"ndcg@{k}"] = ndcg_at_k(scores[..., 0], ys, k, padding_value=LABEL_PAD)
    out["items"] = int(labels.size)
    return out


# ------------------------------------------------------------------ fit / load / predict

def _scores(scorer, x: np.ndarray) -> np.ndarray:
    import torch

    scorer.eval()
    with torch.no_grad():
        return scorer(torch.as_tensor(x, dtype=torch.float32)).double().numpy()


def fit(cfg: RankConfig, pool: rated.RatedPool | None = None,
        write: bool = True, callbacks: list | None = None) -> tuple[Path | None, dict]:
    """Train, pick the best dev epoch, evaluate dev/test, write the artifact. Returns (artifact
    folder or None when ``write`` is false, metrics). ``callbacks``: extra Lightning callbacks,
    run after each epoch's dev evaluation."""
    import torch

    from rankpref.settings import set_threads

    check_loss_config(cfg.loss)
    set_threads(cfg.train.threads)
    pool = pool if pool is not None else load_data(cfg.data)
    train, dev, test = (pool.part(s) for s in rated.SPLITS)
    rated.check_margin(train.labels, cfg.lists.margin, pool.source)
    rated.check_margin(train.labels, cfg.loss.margin, pool.source)
    stats = rated.feature_stats(train.features) if cfg.data.standardize else None
    xs = {name: rated.standardize(p.features, stats) for name, p in
          (("train", train), ("dev", dev), ("test", test))}
    L = _lightning()
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    torch.manual_seed(cfg.train.seed)
    module = build_module(cfg, xs["train"].shape[1], xs["dev"], dev.labels)
    data = build_datamodule(cfg, xs["train"], train.labels, train.raters)
    early = L.pytorch.callbacks.EarlyStopping(monitor="dev_kendall_tau", mode="max",
                                              patience=cfg.train.patience,
                                              check_on_train_epoch_end=True)
    trainer = L.Trainer(max_epochs=cfg.train.epochs, accelerator="cpu", devices=1,
                        logger=False, enable_checkpointing=False,
                        enable_progress_bar=cfg.train.progress, enable_model_summary=False,
                        reload_dataloaders_every_n_epochs=1,
                        callbacks=[dev_evaluation(), early, *(callbacks or [])],
                        num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - start
    if module.best_state is not None:
        module.scorer.load_state_dict(module.best_state)
    scorer = module.scorer
    spec = source_spec(cfg.data)
    metrics = {
        "dataset": cfg.data.name, "source": pool.source, "target": spec.target,
        "loss": cfg.loss.name, "model": "mlp", "split": "official" if spec.split_column
        else f"fixed {1 - cfg.data.dev_fraction - cfg.data.test_fraction:.0%}/"
        f"{cfg.data.dev_fraction:.0%}/{cfg.data.test_fraction:.0%} seed {cfg.data.split_seed}",
        "best_epoch": module.best_epoch + 1, "epochs_run": len(module.history),
        "train_seconds": round(seconds, 2), "history": module.history,
        "train_lists": data.stats[-1] if data.stats else None,
        "dev": split_metrics(_scores(scorer, xs["dev"]), dev.labels, cfg.eval, seed=1),
        "test": split_metrics(_scores(scorer, xs["test"]), test.labels, cfg.eval, seed=2),
    }
    if not write:
        return None, metrics
    features = {"source": "text" if spec.text_column and not cfg.data.embeddings else
                ("embeddings" if cfg.data.embeddings else "columns"),
                "text_column": spec.text_column, "feature_columns":
                list(spec.feature_columns) if spec.feature_columns else None,
                "feature_names": pool.feature_names, "input_dim": int(xs["train"].shape[1]),
                "standardize": stats}
    folder = save_rank_artifact(cfg.run_dir() / "model", scorer, cfg, features, metrics)
    return folder, metrics


def save_rank_artifact(folder: Path, scorer, cfg: RankConfig, features: dict,
                       metrics: dict) -> Path:
    from safetensors.torch import save_file

    with atomic_dir(folder) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in scorer.state_dict().items()},
                  str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.yaml").write_text(rank_config_yaml(cfg), encoding="utf-8")
        (tmp / "features.json").write_text(json.dumps(features) + "\n", encoding="utf-8")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n",
                                          encoding="utf-8")
    return folder


RANK_ARTIFACT_FILES = ("model.safetensors", "config.yaml", "features.json", "metrics.json")


def load_rank_artifact(path: str | Path):
    """Return (scorer, RankConfig, features dict, metrics dict); reads no pickle."""
    from safetensors.torch import load_file

    from rankpref.models.scorer import MLPScorer, ScorerConfig

    folder = Path(path)
    if not (folder / "model.safetensors").exists() and (folder / "model" /
                                                         "model.safetensors").exists():
        folder = folder / "model"
    missing = [f for f in RANK_ARTIFACT_FILES if not (folder / f).exists()]
    if missing:
        raise RankprefError(f"{folder}: not a complete rank artifact (missing "
                            f"{', '.join(missing)}); pass the folder `rankpref rank fit` wrote")
    try:
        tree = yaml.safe_load((folder / "config.yaml").read_text("utf-8"))
        features = json.loads((folder / "features.json").read_text("utf-8"))
        metrics = json.loads((folder / "metrics.json").read_text("utf-8"))
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RankprefError(f"{folder}: corrupt artifact metadata ({exc})") from None
    cfg = validate_rank_config(tree or {}, str(folder / "config.yaml"))
    scorer = MLPScorer(ScorerConfig(input_dim=int(features["input_dim"]),
                                    hidden=list(cfg.model.hidden), dropout=cfg.model.dropout,
                                    activation=cfg.model.activation))
    try:
        scorer.load_state_dict(load_file(str(folder / "model.safetensors")))
    except Exception as exc:  # safetensors / shape errors
        raise RankprefError(f"{folder / 'model.safetensors'}: unusable weights ({exc})") from None
    scorer.eval()
    return scorer, cfg, features, metrics


def evaluate_artifact(path: str | Path, splits=("test",),
                      margins: list[float] | None = None) -> dict:
    """Re-read the artifact's data and score the given splits."""
    from rankpref.settings import set_threads

    scorer, cfg, features, metrics = load_rank_artifact(path)
    set_threads(cfg.train.threads)
    eval_cfg = cfg.eval if margins is None else cfg.eval.model_copy(update={"margins": margins})
    pool = load_data(cfg.data)
    result = {"dataset": cfg.data.name, "source": pool.source, "loss": cfg.loss.name,
              "target": metrics.get("target")}
    for i, name in enumerate(splits):
        part = pool.part(name)
        x = rated.standardize(part.features, features.get("standardize"))
        result[name] = split_metrics(_scores(scorer, x), part.labels, eval_cfg,
                                     seed={"dev": 1, "test": 2}.get(name, 3 + i))
    return result


def predict_table(path: str | Path, items: str | Path, embeddings: str | Path | None = None):
    """Scores and ranks (1 = best) for every row of a table of items, as a polars frame."""
    import polars as pl

    scorer, cfg, features, _ = load_rank_artifact(path)
    df = rated.read_table(items)
    source = features["source"]
    if source == "embeddings":
        if embeddings is None:
            raise DataError("this model was trained on precomputed embeddings: pass "
                            "--embeddings with one row per item", path=items)
        x, _ = rated.table_features(df, items, embeddings=embeddings)
    elif source == "text":
        x, _ = rated.table_features(df, items, text_column=features["text_column"],
                                    encoder=make_encoder(cfg.data))
    else:
        x, _ = rated.table_features(df, items, feature_columns=features["feature_columns"])
    if x.shape[1] != features["input_dim"]:
        raise DataError(f"{x.shape[1]} features per item, the model expects "
                        f"{features['input_dim']}", path=items)
    scores = _scores(scorer, rated.standardize(x, features.get("standardize")))
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(scores), dtype=np.int64)
    rank[order] = np.arange(1, len(scores) + 1)
    id_col = cfg.data.id_column or ("id" if "id" in df.columns else None)
    ids = df[id_col].cast(pl.String) if id_col and id_col in df.columns else \
        pl.Series(np.arange(df.height).astype(str))
    return pl.DataFrame({"row": np.arange(df.height), "id": ids.to_list(), "score": scores,
                         "rank": rank}).sort("rank")

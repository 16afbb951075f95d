"""Evaluation and prediction of ranking artifacts: split metrics, re-scoring a split, scoring a
table of new items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from rankpref.data import rated
from rankpref.errors import DataError, RankprefError
from rankpref.metrics.correlation import list_ndcg_at_k, ranking_report
from rankpref.settings import set_threads
from rankpref.tasks.rank.artifact import load_artifact
from rankpref.tasks.rank.config import RankEvalConfig
from rankpref.tasks.rank.data import LABEL_PAD, load_data, make_encoder, text_encoder

SPLIT_SEEDS = {"valid": 1, "test": 2}
"""Seeds of the lists NDCG@k is measured on, per split (the same in fit and evaluate)."""


def split_metrics(pred: np.ndarray, labels: np.ndarray, cfg: RankEvalConfig,
                  seed: int = 0) -> dict:
    """Kendall tau-b, Spearman and ranking accuracy over the whole split; NDCG@k over seeded
    lists of ``cfg.list_size`` drawn from it (every item about once). A scale that goes below
    0 (valence -3..3) is shifted to start at 0 for NDCG's gains, which must not be negative."""
    out = ranking_report(pred, labels, margins=cfg.margins)
    lists, _ = rated.sample_lists(labels, min(cfg.list_size, labels.size), seed=seed)
    if lists.shape[0]:
        relevance = labels - min(0.0, float(labels.min()))
        scores, ys = rated.gather_lists(pred[:, None], relevance, lists, LABEL_PAD)
        for k in cfg.ndcg_k:
            out[f"ndcg@{k}"] = list_ndcg_at_k(scores[..., 0], ys, k, padding_value=LABEL_PAD)
    out["items"] = int(labels.size)
    return out


def scores(model, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float32)).double().cpu().numpy()


def evaluate_artifact(path: str | Path, splits=("test",),
                      margins: list[float] | None = None) -> dict:
    """Re-read the artifact's data and score the given splits (valid, test)."""
    art = load_artifact(path, "rankpref rank evaluate")
    cfg = art.cfg
    if art.metrics.get("protocol") == "kfold":
        raise RankprefError(f"{art.folder}: this model was trained by k-fold cross-validation "
                            "over every item, so no held-out split is left to evaluate; its "
                            "estimate is in metrics.json (test, test_std), and `rankpref rank "
                            "predict` scores new items")
    set_threads(cfg.train.threads)
    eval_cfg = cfg.eval if margins is None else cfg.eval.model_copy(update={"margins": margins})
    pool = load_data(cfg.data, encoder=text_encoder(cfg))
    result = {"dataset": cfg.data.name, "source": pool.source, "loss": cfg.loss.name,
              "target": art.metrics.get("target")}
    for name in splits:
        if name not in SPLIT_SEEDS:
            raise RankprefError(f"split must be valid or test, got {name!r}")
        part = pool.part(name)
        x = rated.standardize(part.features, art.features.get("standardize"))
        result[name] = split_metrics(scores(art.model, x), part.labels, eval_cfg,
                                     seed=SPLIT_SEEDS[name])
    return result


def predict_table(path: str | Path, items: str | Path,
                  embeddings: str | Path | None = None) -> pl.DataFrame:
    """Scores and ranks (1 = best) for every row of a table of items, as a polars frame."""
    art = load_artifact(path, "rankpref rank predict")
    cfg, features = art.cfg, art.features
    df = rated.read_frame(items)
    source = features["source"]
    if source == "embeddings":
        if embeddings is None:
            raise DataError("this model was trained on precomputed embeddings: pass "
                            "--embeddings with one row per item", path=items)
        x, _ = rated.table_features(df, items, embeddings=embeddings)
    elif source in ("audio", "image"):
        from rankpref.tasks.rank.data import make_media

        column = features["media_column"]
        x, _, _ = rated.media_features(df, items, column, make_media(cfg.data),
                                       allow_outside=cfg.data.allow_outside_paths)
    elif source in ("text", "tokens"):
        x, _ = rated.table_features(df, items, text_column=features["text_column"],
                                    encoder=text_encoder(cfg) or make_encoder(cfg.data))
    else:
        x, _ = rated.table_features(df, items, feature_columns=features["feature_columns"])
    if x.shape[1] != features["input_dim"]:
        raise DataError(f"{x.shape[1]} features per item, the model expects "
                        f"{features['input_dim']}", path=items)
    rows = np.arange(df.height)
    if source in ("audio", "image"):  # refused files were named; score the rest
        keep = ~np.isnan(x).any(axis=1)
        x, rows, df = x[keep], rows[keep], df.filter(pl.Series(keep))
    predicted = scores(art.model, rated.standardize(x, features.get("standardize")))
    order = np.argsort(-predicted, kind="stable")
    rank = np.empty(len(predicted), dtype=np.int64)
    rank[order] = np.arange(1, len(predicted) + 1)
    id_col = cfg.data.id_column or ("id" if "id" in df.columns else None)
    ids = df[id_col].cast(pl.String) if id_col and id_col in df.columns else \
        pl.Series(rows.astype(str))
    return pl.DataFrame({"row": rows, "id": ids.to_list(), "score": predicted,
                         "rank": rank}).sort("rank")

"""Ranking artifacts (kind ``rank``), written by ``rankpref rank fit``::

    manifest.json       kind, format version, model, what each file holds
    model.safetensors   scorer weights
    config.yaml         the resolved RankConfig
    features.json       feature source, names and standardisation statistics
    metrics.json        valid/test Kendall tau, Spearman, ranking accuracy at margins, NDCG@k

Loading reads only safetensors, YAML (safe loader) and JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from rankpref import artifact
from rankpref.config import safe_load, to_yaml
from rankpref.errors import RankprefError
from rankpref.registry import ARTIFACTS, MODELS
from rankpref.tasks.rank.config import RankConfig, upgrade_legacy, validate

KIND = "rank"
REQUIRED = ("model.safetensors", "config.yaml", "features.json", "metrics.json")


@dataclass
class RankArtifact:
    folder: Path
    model: torch.nn.Module
    cfg: RankConfig
    features: dict
    metrics: dict


def build_scorer(cfg: RankConfig, input_dim: int) -> torch.nn.Module:
    entry = MODELS.entry(cfg.model.name, "rank")
    return entry.obj(entry.config(input_dim=input_dim, **cfg.model.params()))


def save_artifact(folder: Path, model, cfg: RankConfig, features: dict, metrics: dict) -> Path:
    with artifact.writer(folder, KIND, cfg.model.name) as w:
        w.weights("model.safetensors", model.state_dict(), "scorer weights")
        w.text("config.yaml", to_yaml(cfg), "the resolved rank config")
        w.json("features.json", features, "feature source, names and standardisation")
        w.json("metrics.json", metrics, "valid/test metrics, selection, timings")
    return folder


def load_artifact(path: str | Path, command: str | None = None) -> RankArtifact:
    """The scorer, config, features and metrics of a rank artifact; reads no pickle."""
    from safetensors.torch import load_file

    folder, manifest = artifact.expect(path, KIND, command)
    missing = [f for f in REQUIRED if not (folder / f).exists()]
    if missing:
        raise RankprefError(f"{folder}: not a complete rank artifact (missing "
                            f"{', '.join(missing)}); pass the folder `rankpref rank fit` wrote")
    try:
        tree = safe_load((folder / "config.yaml").read_text("utf-8")) or {}
        features = json.loads((folder / "features.json").read_text("utf-8"))
        metrics = json.loads((folder / "metrics.json").read_text("utf-8"))
        input_dim = int(features["input_dim"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise RankprefError(f"{folder}: corrupt artifact metadata ({exc})") from None
    if manifest.inferred:
        tree = upgrade_legacy(tree if isinstance(tree, dict) else {})
    cfg = validate(tree, str(folder / "config.yaml"))
    model = build_scorer(cfg, input_dim)
    try:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
    except Exception as exc:  # safetensors / shape errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RankprefError(f"{folder / 'model.safetensors'}: unusable weights ({first})") from None
    model.eval()
    return RankArtifact(folder, model, cfg, features, metrics)


ARTIFACTS.register(KIND, load_artifact)

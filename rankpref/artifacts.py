"""Artifacts: a folder with safetensors weights, the resolved config, the vocabulary, metrics.

    model.safetensors   weights (no pickle anywhere)
    config.yaml         the resolved RunConfig that trained it
    vocab.json          index -> source id for users and items
    metrics.json        valid/test metrics with protocol, split and k
    items.parquet       the item table (titles etc.) when the dataset has one
    rationales.parquet, rationale_vectors.safetensors
                        PULSE only: the training rationales and their thought-space vectors

Loading reads only safetensors, YAML (safe loader), JSON and parquet: it never runs code.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import yaml
from safetensors.torch import load_file, save_file

from rankpref.config import RunConfig, to_yaml, validate
from rankpref.data.preprocess import Vocabulary
from rankpref.errors import RankprefError
from rankpref.io import atomic_dir

ARTIFACT_FILES = ("model.safetensors", "config.yaml", "vocab.json", "metrics.json")


def save_artifact(folder: str | Path, state_dict: dict, cfg: RunConfig, vocab: Vocabulary,
                  metrics: dict, items: pl.DataFrame | None = None, *,
                  tables: dict[str, pl.DataFrame] | None = None,
                  tensors: dict[str, dict] | None = None) -> Path:
    """Write the artifact folder atomically. ``tables`` (name -> frame) become
    ``<name>.parquet`` and ``tensors`` (name -> {key: tensor}) ``<name>.safetensors``."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()},
                  str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
        (tmp / "vocab.json").write_text(json.dumps(vocab.to_json()), encoding="utf-8")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        if items is not None:
            items.write_parquet(tmp / "items.parquet")
        for name, frame in (tables or {}).items():
            frame.write_parquet(tmp / f"{name}.parquet")
        for name, group in (tensors or {}).items():
            save_file({k: v.detach().cpu().contiguous() for k, v in group.items()},
                      str(tmp / f"{name}.safetensors"))
    return folder


def resolve_artifact_dir(path: str | Path) -> Path:
    """Accept the artifact folder itself or the run folder that holds it (``<run>/model``)."""
    path = Path(path)
    if (path / "model.safetensors").exists():
        return path
    if (path / "model" / "model.safetensors").exists():
        return path / "model"
    raise RankprefError(f"{path}: not a rankpref artifact (no model.safetensors); "
                        "pass the folder that `rankpref fit` wrote")


def load_artifact(path: str | Path):
    """Return (state_dict, RunConfig, Vocabulary, metrics, items or None)."""
    folder = resolve_artifact_dir(path)
    missing = [f for f in ARTIFACT_FILES if not (folder / f).exists()]
    if missing:
        raise RankprefError(f"{folder}: incomplete artifact, missing {', '.join(missing)}")
    try:
        state = load_file(str(folder / "model.safetensors"))
    except Exception as exc:  # safetensors raises its own error types
        raise RankprefError(f"{folder / 'model.safetensors'}: unreadable weights ({exc})") from None
    try:
        tree = yaml.safe_load((folder / "config.yaml").read_text("utf-8"))
        vocab = Vocabulary.from_json(json.loads((folder / "vocab.json").read_text("utf-8")))
        metrics = json.loads((folder / "metrics.json").read_text("utf-8"))
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RankprefError(f"{folder}: corrupt artifact metadata ({exc})") from None
    cfg = validate(tree, str(folder / "config.yaml"))
    items = pl.read_parquet(folder / "items.parquet") if (folder / "items.parquet").exists() else None
    return state, cfg, vocab, metrics, items

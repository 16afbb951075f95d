"""Next-item artifacts (kind ``next_item``), written by ``rankpref fit``::

    manifest.json       kind, format version, model, what each file holds
    model.safetensors   weights (no pickle anywhere)
    model.json          the model's dataclass config, sizes included
    config.yaml         the resolved run config that trained it
    vocab.json          index -> source id for users and items
    metrics.json        valid/test metrics with protocol, split and k
    items.parquet       the item table (titles etc.) when the dataset has one
    rationales.parquet, rationale_vectors.safetensors
                        PULSE with rationales: the training rationales and their vectors

Loading reads only safetensors, YAML (safe loader), JSON and parquet: it never runs code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from rankpref import artifact
from rankpref.config import safe_load, to_yaml
from rankpref.data.preprocess import Vocabulary
from rankpref.errors import RankprefError
from rankpref.tasks.next_item.config import NextItemConfig, upgrade_legacy, validate
from rankpref.tasks.next_item.models import model_config_json

KIND = "next_item"
REQUIRED = ("model.safetensors", "config.yaml", "vocab.json", "metrics.json")


@dataclass
class NextItemArtifact:
    folder: Path
    state: dict
    cfg: NextItemConfig
    vocab: Vocabulary
    metrics: dict
    items: pl.DataFrame | None
    model_config: dict | None  # None: written before model.json existed


def save_artifact(folder: str | Path, model, cfg: NextItemConfig, vocab: Vocabulary,
                  metrics: dict, items: pl.DataFrame | None = None, *,
                  tables: dict[str, pl.DataFrame] | None = None,
                  tensors: dict[str, dict] | None = None) -> Path:
    """Write the artifact folder atomically. ``tables`` (name -> frame) become
    ``<name>.parquet`` and ``tensors`` (name -> {key: tensor}) ``<name>.safetensors``."""
    folder = Path(folder)
    with artifact.writer(folder, KIND, cfg.model.name) as w:
        w.weights("model.safetensors", model.state_dict())
        w.json("model.json", model_config_json(model), "the model's dataclass config")
        w.text("config.yaml", to_yaml(cfg), "the resolved run config")
        w.json("vocab.json", vocab.to_json(), "index -> source id of users and items")
        w.json("metrics.json", metrics, "valid/test metrics, selection, timings")
        if items is not None:
            w.parquet("items.parquet", items, "the item table")
        for name, frame in (tables or {}).items():
            w.parquet(f"{name}.parquet", frame, f"{name} table")
        for name, group in (tensors or {}).items():
            w.weights(f"{name}.safetensors", group, f"{name} tensors")
    return folder


def load_artifact(path: str | Path, command: str | None = None) -> NextItemArtifact:
    from safetensors.torch import load_file

    folder, manifest = artifact.expect(path, KIND, command)
    missing = [f for f in REQUIRED if not (folder / f).exists()]
    if missing:
        raise RankprefError(f"{folder}: incomplete artifact, missing {', '.join(missing)}")
    try:
        state = load_file(str(folder / "model.safetensors"))
    except Exception as exc:  # safetensors raises its own error types
        raise RankprefError(f"{folder / 'model.safetensors'}: unreadable weights ({exc})") from None
    try:
        tree = safe_load((folder / "config.yaml").read_text("utf-8")) or {}
        vocab = Vocabulary.from_json(json.loads((folder / "vocab.json").read_text("utf-8")))
        metrics = json.loads((folder / "metrics.json").read_text("utf-8"))
        model_json = folder / "model.json"
        saved = json.loads(model_json.read_text("utf-8")) if model_json.exists() else None
    except (ValueError, TypeError, UnicodeDecodeError, OSError) as exc:
        raise RankprefError(f"{folder}: corrupt artifact metadata ({exc})") from None
    if manifest.inferred:
        tree = upgrade_legacy(tree if isinstance(tree, dict) else {})
    cfg = validate(tree, str(folder / "config.yaml"))
    items = None
    if (folder / "items.parquet").exists():
        try:
            items = pl.read_parquet(folder / "items.parquet")
        except Exception as exc:  # polars' errors for a damaged file
            raise RankprefError(f"{folder / 'items.parquet'}: unreadable item table "
                                f"({type(exc).__name__})") from None
    return NextItemArtifact(folder, state, cfg, vocab, metrics, items, saved)

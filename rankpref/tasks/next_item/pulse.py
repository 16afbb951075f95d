"""PULSE's setup: the inputs a PULSE run needs (item text vectors, rationale vectors,
weights transferred from another domain's artifact)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
import torch

from rankpref.data.datasets import PreparedDataset
from rankpref.data.splits import Split
from rankpref.errors import ConfigError, DataError
from rankpref.models.pulse import Pulse
from rankpref.rationales.signal import rationale_signal
from rankpref.tasks.next_item.artifact import load_artifact
from rankpref.tasks.next_item.config import NextItemConfig
from rankpref.tasks.next_item.models import Setup, build_model
from rankpref.tasks.next_item.thought_space import load_thought_space
from rankpref.text import TextEncoder, item_texts

log = logging.getLogger(__name__)

# weights that belong to one catalogue and never transfer to another
ITEM_WEIGHTS = ("item_emb.weight", "item_text", "id_known", "text_center", "text_scale",
                "text_basis")


def text_encoder(cfg: NextItemConfig, progress: bool = True) -> TextEncoder:
    return TextEncoder(cfg.pulse.text_model, cache_dir=Path(cfg.data.cache_dir) / "embeddings",
                       progress=progress)


def item_text_vectors(dataset: PreparedDataset, encoder: TextEncoder) -> tuple[np.ndarray, int]:
    """[num_items + 1, d] unit text vectors (row 0 and items without text: zeros), and how many
    items had no text."""
    texts = [""] * (dataset.num_items + 1)
    if dataset.items is not None:
        for idx, text in zip(dataset.items["item_idx"].to_list(), item_texts(dataset.items)):
            texts[idx] = text
    present = [i for i in range(1, len(texts)) if texts[i].strip()]
    vectors = np.zeros((len(texts), encoder.dimension), dtype=np.float32)
    if present:
        vectors[present] = encoder.encode([texts[i] for i in present], "item texts")
    return vectors, dataset.num_items - len(present)


def transfer_weights(model: Pulse, artifact: str | Path) -> list[str]:
    """Copy every weight of ``artifact`` whose name and shape match, except the item IDs and
    item texts (another catalogue). Returns the names copied."""
    state = load_artifact(artifact).state
    own = model.state_dict()
    copied, mismatched = [], []
    for name, value in state.items():
        if name in ITEM_WEIGHTS or name not in own:
            continue
        if own[name].shape != value.shape:
            mismatched.append(f"{name} {tuple(value.shape)} vs {tuple(own[name].shape)}")
            continue
        own[name] = value
        copied.append(name)
    if mismatched:
        raise ConfigError(f"pulse.init_from={artifact}: weights of other shapes ("
                          f"{'; '.join(mismatched[:3])}); use the same model settings")
    if not copied:
        raise ConfigError(f"pulse.init_from={artifact}: no weight to transfer")
    model.load_state_dict(own)
    return copied


def setup_pulse(cfg: NextItemConfig, dataset: PreparedDataset, split: Split,
                cold: np.ndarray) -> Setup:
    """PULSE with its item text vectors set, cold items marked, weights transferred; the
    rationale vectors its why loss aligns with."""
    p, m = cfg.pulse, cfg.model.params()
    encoder = text_encoder(cfg, progress=cfg.train.progress)
    info: dict = {"text_model": encoder.model_id, "use_ids": m["use_ids"],
                  "use_text": m["use_text"], "id_dropout": m["id_dropout"],
                  "item_repr": m["item_repr"], "id_init": m["id_init"],
                  "why_objective": p.why_objective, "why_weight": p.why_weight,
                  "temperature": p.temperature}
    vectors, no_text = item_text_vectors(dataset, encoder)
    info["items_without_text"] = no_text
    if m["use_text"] and no_text == dataset.num_items:
        raise DataError(f"no item of {dataset.stats.get('dataset')!r} has text (title, brand, "
                        "categories or description); set model.use_text=false or give an "
                        "item table (data.items_path)")
    if no_text:
        log.warning("%d of %d items have no text; they are represented by their ID alone",
                    no_text, dataset.num_items)
    if len(cold):
        info["cold_items_without_text"] = int(sum(not vectors[i].any() for i in cold))

    signal = rationale_signal(p.rationales, dataset.stats.get("dataset") or "data", dataset,
                              split, model=p.rationale_model)
    why_vectors, why_dim = None, encoder.dimension
    space = None
    if p.thought_space:
        space = load_thought_space(p.thought_space)
        why_dim = space.cfg.dim
    if signal is not None:
        if space is not None:  # the thought space's own backbone (it may be fine-tuned)
            r_encoder = TextEncoder(space.cfg.backbone, progress=cfg.train.progress,
                                    cache_dir=Path(cfg.data.cache_dir) / "embeddings")
            with torch.no_grad():
                why_vectors = space.rationale(
                    torch.from_numpy(r_encoder.encode(signal.texts, "rationales")))
        else:
            why_vectors = torch.from_numpy(encoder.encode(signal.texts, "rationales"))
        info["rationales"] = signal.counts
    elif p.why_weight > 0:
        info["rationales"] = {"source": "none"}

    model = build_model(cfg, dataset.num_items, text_dim=encoder.dimension, why_dim=why_dim)
    model.set_item_text(torch.from_numpy(vectors))
    if len(cold):
        model.set_unknown_items(torch.as_tensor(cold))
    if p.init_from:
        info["init_from"] = {"artifact": str(p.init_from),
                             "weights_copied": len(transfer_weights(model, p.init_from))}
    module_inputs, extras = {}, {}
    if signal is not None:
        module_inputs = {"rationale_vectors": why_vectors.float(),
                         "owner_rationale": torch.from_numpy(signal.owner_text)}
        text_row = {t: i for i, t in enumerate(signal.texts)}
        table = signal.table.with_columns(
            pl.Series("vector_row", [text_row[t] for t in signal.table["rationale"]]))
        extras = {"tables": {"rationales": table},
                  "tensors": {"rationale_vectors": {"vectors": why_vectors.float()}}}
    return Setup(model, module_inputs, extras, info)

"""Building next-item models from the registry, for training and from saved artifacts.

A plain backbone needs nothing but item ids (:func:`plain_setup`). A model that needs more
inputs (PULSE: item texts and rationales) has a setup function of its own, listed in
:data:`rankpref.tasks.next_item.fit.SETUPS`, which computes them and returns a :class:`Setup`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from rankpref.errors import RankprefError
from rankpref.registry import MODELS
from rankpref.tasks.next_item.config import NextItemConfig


@dataclass
class Setup:
    """A model ready to train, plus what the training step and the artifact need."""

    model: torch.nn.Module
    module_inputs: dict = field(default_factory=dict)  # NextItemModule keyword arguments
    extras: dict = field(default_factory=dict)  # artifact tables/tensors
    info: dict = field(default_factory=dict)  # goes to metrics.json under the model's name


def build_model(cfg: NextItemConfig, num_items: int, **sizes) -> torch.nn.Module:
    """The registered model ``cfg.model.name`` with its settings; ``sizes`` fills the fields
    the task decides (``text_dim``, ...)."""
    entry = MODELS.entry(cfg.model.name, "next_item")
    model_cfg = entry.config(num_items=num_items, max_len=cfg.data.max_len, **sizes,
                             **cfg.model.params())
    return entry.obj(model_cfg)


def plain_setup(cfg: NextItemConfig, dataset, split, cold: np.ndarray) -> Setup:
    """The setup of a backbone that needs nothing but item ids."""
    return Setup(build_model(cfg, dataset.num_items))


def model_config_json(model: torch.nn.Module) -> dict:
    """The model's dataclass config (every size included), saved beside its weights."""
    return dataclasses.asdict(model.cfg)


def model_from_saved(cfg: NextItemConfig, num_items: int, state: dict,
                     saved: dict | None) -> torch.nn.Module:
    """The model of an artifact: from its saved dataclass config, or, for an artifact from
    before those were saved, with the sizes read off the weights."""
    entry = MODELS.entry(cfg.model.name, "next_item")
    if saved is not None:
        try:
            model_cfg = entry.config(**saved)
        except (TypeError, ValueError) as exc:
            raise RankprefError(f"the saved model config does not fit {cfg.model.name!r} "
                                f"({exc})") from None
        return entry.obj(model_cfg)
    sizes = {}
    if cfg.model.name == "pulse":
        if "item_text" not in state or "why_head.2.weight" not in state:
            raise RankprefError("the weights are not a PULSE model's (no item_text/why_head)")
        sizes = {"text_dim": state["item_text"].shape[1],
                 "why_dim": state["why_head.2.weight"].shape[0]}
    return build_model(cfg, num_items, **sizes)

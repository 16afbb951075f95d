"""The registry: names resolve to the registered objects, clashes and unknown names are
errors naming the choices, and a plugin model is usable by config alone."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from rankpref.errors import ConfigError
from rankpref.models.sasrec import SASRec, SASRecConfig
from rankpref.registry import LOSSES, MODELS, TASKS, Registry
from rankpref.tasks.next_item import load_config
from rankpref.tasks.next_item.models import build_model


def test_built_ins_are_registered_by_group():
    import rankpref.tuning  # noqa: F401  (imports the built-in tasks)

    assert MODELS.get("sasrec", "next_item") is SASRec
    assert set(MODELS.names("next_item")) >= {"sasrec", "pulse"}
    assert MODELS.names("rank") == ["mlp", "linear", "finetune"]
    assert set(LOSSES.names("listwise")) == {"ranknet", "listnet", "listmle", "approxndcg",
                                              "lambdaloss", "ranklist", "mse"}
    assert set(TASKS.names()) == {"next_item", "rank", "sesa"}


def test_unknown_and_twice_registered_names():
    reg = Registry("widget")
    reg.register("a", 1, group="g")
    with pytest.raises(ConfigError, match="unknown widget 'b' for g; choose one of a"):
        reg.get("b", "g")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a", 2, group="g")
    reg.register("a", 1, group="g")  # the same object again (a module re-imported) is fine
    assert reg.get("a", "g") == 1 and ("a", "g") in reg


@dataclass
class TinyConfig(SASRecConfig):
    gate: float = 0.5


class TinyBackbone(SASRec):
    """A SASRec whose states are scaled by a gate: a new backbone in a few lines."""

    def forward(self, inputs, table=None):
        return super().forward(inputs, table) * self.cfg.gate


def test_a_registered_backbone_is_built_from_config_alone():
    MODELS.register("tiny-test", TinyBackbone, group="next_item", config=TinyConfig,
                    fixed=("num_items", "max_len"))
    cfg = load_config(None, ["model.name=tiny-test", "model.gate=0.25", "model.hidden=8",
                             "model.heads=1"])
    model = build_model(cfg, 7)
    assert isinstance(model, TinyBackbone) and model.cfg.gate == 0.25
    assert model.score_all(torch.tensor([[1, 2, 3]])).shape == (1, 8)
    with pytest.raises(ConfigError, match="model.gates: unknown key for model 'tiny-test'"):
        load_config(None, ["model.name=tiny-test", "model.gates=1"])


def test_scratch_forgets_what_was_registered_inside_it():
    table = Registry("thing")
    table.register("kept", object())
    with table.scratch():
        table.register("example", object())
        assert "example" in table
    assert "example" not in table and "kept" in table

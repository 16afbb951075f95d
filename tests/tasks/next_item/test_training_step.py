"""The training step's sampled losses: computing only the batch's item vectors (the subset
path) gives the same loss as the whole table, for every sampled loss, with in-batch negatives
and popularity remapped; and the new losses train end to end."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from rankpref.cli import app
from rankpref.models.sasrec import SASRec, SASRecConfig
from rankpref.tasks.next_item import load_config
from rankpref.tasks.next_item.module import NextItemModule


@pytest.mark.parametrize("loss", ["sampled_softmax", "gbce", "sampled_softmax_logq", "bce"])
def test_subset_of_item_vectors_gives_the_same_loss(loss):
    num_items = 400
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(num_items=num_items, max_len=6, hidden=8, dropout=0.0)).eval()
    cfg = load_config(overrides=[f"loss.name={loss}", "loss.num_negatives=5",
                                 "loss.in_batch_negatives=7"])
    popularity = torch.rand(num_items + 1)
    popularity[0] = 0
    popularity /= popularity.sum()
    module = NextItemModule(model, cfg, popularity=popularity)
    module.log = lambda *a, **k: None
    batch = {"inputs": torch.tensor([[0, 0, 3, 9, 27], [1, 2, 3, 4, 5]]),
             "targets": torch.tensor([[0, 0, 9, 27, 81], [2, 3, 4, 5, 6]])}
    losses = []
    for subset in (True, False):
        module._rows_ok = subset
        torch.manual_seed(1)  # the same negatives both times
        losses.append(float(module.training_step(batch, 0)))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


@pytest.mark.parametrize("loss", ["gbce", "sampled_softmax_logq"])
def test_the_new_losses_train_on_the_demo_data(tmp_path, loss):
    out = tmp_path / loss
    res = CliRunner().invoke(app, ["fit", "--data", "demo", "--epochs", "2", "--set",
                                   f"loss.name={loss}", "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "model" / "metrics.json").read_text())
    assert m["loss"] == loss
    assert m["test"]["recall@10"] > 2 * 10 / m["data"]["items"]  # random: 0.0067

"""Profile distillation (pulse.why_objective=distill): the loss is the MSE between each
rationale owner's mean-pooled window states and a trainable projection of the rationale,
only in the first pulse.distill_epochs epochs, and a run trains end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankpref.models.sasrec import SASRec, SASRecConfig
from rankpref.plots import read_training_log
from rankpref.tasks.next_item import fit, load_config
from rankpref.tasks.next_item.module import NextItemModule


@pytest.mark.parametrize("standardize", [False, True])
def test_distill_loss_matches_numpy(standardize):
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(num_items=20, max_len=4, hidden=6))
    vectors = torch.randn(3, 5)
    owner_rationale = torch.tensor([2, -1, 0])     # training user -> rationale row
    cfg = load_config(overrides=["pulse.why_objective=distill",
                                 f"pulse.distill_standardize={str(standardize).lower()}"])
    module = NextItemModule(model, cfg, rationale_vectors=vectors,
                            owner_rationale=owner_rationale)
    states = torch.randn(4, 4, 6)
    real = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]]).bool()
    owners = torch.tensor([0, 1, 2, -1])           # user 1 has no rationale
    got = float(module._distill_loss(states, real, owners))
    w = module.profile_proj.weight.detach().numpy()
    b = module.profile_proj.bias.detach().numpy()
    s, r = states.numpy().astype(np.float64), real.numpy()
    pooled, target = [], []
    for row, user in ((0, 0), (2, 2)):
        pooled.append(s[row][r[row]].mean(0))
        target.append(vectors[owner_rationale[user]].numpy() @ w.T + b)
    pooled, target = np.array(pooled), np.array(target)
    if standardize:
        pooled = (pooled - pooled.mean(0)) / pooled.std(0)
        target = (target - target.mean(0)) / target.std(0)
    assert got == pytest.approx(float(np.mean((pooled - target) ** 2)), rel=1e-5)
    assert module.why_weight == 0.0  # distillation replaces InfoNCE, it does not add to it
    assert any(p is module.profile_proj.weight
               for g in module.configure_optimizers().param_groups for p in g["params"])


def test_distillation_runs_only_in_the_first_stage(tmp_path):
    cfg = load_config(None, ["data.name=demo", "model.name=pulse", "pulse.rationales=template",
                             "pulse.why_objective=distill", "pulse.distill_epochs=1",
                             "model.hidden=32", "data.max_len=20", "train.epochs=2",
                             "train.patience=2", "train.progress=false", "train.resume=false",
                             "train.batch_size=256", f"output_dir={tmp_path / 'run'}"])
    result = fit(cfg)
    log = read_training_log(result.run_dir)
    assert "train/distill_loss" in log[0] and "train/distill_loss" not in log[1]
    assert result.metrics["pulse"]["why_objective"] == "distill"
    assert result.metrics["test"]["recall@10"] > 2 * 10 / result.metrics["data"]["items"]


def test_standardised_distillation_gives_a_constant_state_no_reward():
    """The raw MSE is met by one state for every user (and a projection that outputs it);
    standardised, that state scores 2, and only states that follow the profiles score 0."""
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(num_items=20, max_len=3, hidden=4))
    vectors = torch.randn(6, 4)
    losses = {}
    for standardize in (False, True):
        cfg = load_config(overrides=["pulse.why_objective=distill",
                                     f"pulse.distill_standardize={str(standardize).lower()}"])
        module = NextItemModule(model, cfg, rationale_vectors=vectors,
                                owner_rationale=torch.arange(6))
        with torch.no_grad():  # the collapsed solution: a projection that ignores the profile
            module.profile_proj.weight.zero_()
            module.profile_proj.bias.fill_(0.5)
        same = torch.full((6, 3, 4), 0.5)
        losses[standardize] = float(module._distill_loss(same, torch.ones(6, 3).bool(),
                                                         torch.arange(6)))
    assert losses[False] == pytest.approx(0.0)
    assert losses[True] == pytest.approx(2.0)
    torch.nn.init.normal_(module.profile_proj.weight)       # a projection that reads the profile
    following = module.profile_proj(vectors).detach()      # the pooled state of each user
    got = module._distill_loss(following.unsqueeze(1).expand(6, 3, 4).contiguous() * 3 + 1,
                               torch.ones(6, 3).bool(), torch.arange(6))
    assert float(got) == pytest.approx(0.0, abs=1e-5)

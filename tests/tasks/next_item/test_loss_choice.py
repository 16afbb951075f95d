"""The default next-item loss on a catalogue too big for a full softmax: ce becomes sampled
softmax (with a line saying why), unless the user named the loss or holds items out."""

from __future__ import annotations

import logging

from rankpref.tasks import next_item
from rankpref.tasks.next_item.config import (CE_BUDGET_BYTES, SAMPLED_NEGATIVES, choose_loss,
                                             full_ce_bytes)


def _cfg(*overrides):
    return next_item.load_config(None, ["data.name=demo", *overrides])


def _too_many(cfg) -> int:
    """The smallest catalogue whose full softmax needs more than the budget."""
    per_item = full_ce_bytes(cfg, 1) - full_ce_bytes(cfg, 0)
    return CE_BUDGET_BYTES // per_item + 1


def test_the_default_stays_ce_while_it_fits():
    cfg = _cfg()
    fits = _too_many(cfg) - 2
    assert full_ce_bytes(cfg, fits) <= CE_BUDGET_BYTES
    assert choose_loss(cfg, fits) == (cfg, None)


def test_the_default_becomes_sampled_softmax_past_the_budget():
    cfg = _cfg()
    chosen, why = choose_loss(cfg, _too_many(cfg))
    assert chosen.loss.name == "sampled_softmax" and chosen.loss.num_negatives == SAMPLED_NEGATIVES
    assert "loss.name=ce" in why and "GiB a step" in why
    assert chosen.model.name == cfg.model.name and chosen.train == cfg.train
    # the smaller the batch, the larger the catalogue a full softmax fits
    small = _cfg("train.batch_size=16")
    assert _too_many(small) > _too_many(cfg)


def test_a_named_loss_or_cold_items_are_kept():
    for cfg in (_cfg("loss.name=ce"), _cfg("data.cold_items=0.1"), _cfg("loss.name=bce")):
        assert choose_loss(cfg, 10 ** 8) == (cfg, None)
    cfg = _cfg("loss.num_negatives=32")
    assert choose_loss(cfg, 10 ** 8)[0].loss.num_negatives == 32


def test_fit_trains_with_the_chosen_loss_and_says_so(tmp_path, monkeypatch, caplog):
    import rankpref.tasks.next_item.config as config

    monkeypatch.setattr(config, "CE_BUDGET_BYTES", 1)  # the demo's 1,500 items now "do not fit"
    cfg = _cfg("model.hidden=16", "data.max_len=10", "train.epochs=1", "train.progress=false",
               f"data.cache_dir={tmp_path / 'cache'}", f"output_dir={tmp_path / 'run'}")
    with caplog.at_level(logging.WARNING):
        result = next_item.fit(cfg)
    assert result.metrics["loss"] == "sampled_softmax"
    assert any("training with sampled_softmax over 256 negatives" in r.message
               for r in caplog.records)
    saved = (result.artifact / "config.yaml").read_text()
    assert "sampled_softmax" in saved


def test_a_sampled_step_computes_only_the_batch_items_and_the_same_loss():
    """With sampled negatives a step asks the model for the vectors of the items it sees
    (inputs, targets, negatives) and gives the loss and gradients of the whole-table step."""
    import torch

    from rankpref.tasks.next_item.models import build_model
    from rankpref.tasks.next_item.module import NextItemModule

    for name, sizes in (("sasrec", {}), ("pulse", {"text_dim": 8, "why_dim": 8})):
        cfg = _cfg(f"model.name={name}", "model.hidden=16", "data.max_len=6",
                   "loss.name=sampled_softmax", "loss.num_negatives=5")
        torch.manual_seed(0)
        model = build_model(cfg, 300, **sizes)
        if name == "pulse":
            model.set_item_text(torch.randn(301, 8))
        model.eval()  # no dropout: both paths must agree exactly
        module = NextItemModule(model, cfg)
        batch = {"inputs": torch.tensor([[0, 0, 5, 17, 250], [3, 9, 9, 120, 7]]),
                 "targets": torch.tensor([[0, 0, 17, 250, 11], [9, 9, 120, 7, 299]])}
        asked = []
        real = model.item_weights

        def spy(rows=None):
            asked.append(None if rows is None else rows.clone())
            return real(rows)

        model.item_weights = spy
        results = []
        for subset in (True, False):
            module._rows_ok = subset
            model.zero_grad()
            torch.manual_seed(1)  # the same negatives both times
            loss = module.training_step(batch, 0)
            loss.backward()
            results.append((loss.detach(), [p.grad.clone() for p in model.parameters()
                                            if p.grad is not None]))
        rows = asked[0]
        assert rows is not None and asked[1] is None
        assert rows[0] == 0 and len(rows) <= 1 + 10 + 8 + 8 * 5 < 301
        assert torch.allclose(results[0][0], results[1][0], atol=1e-6), name
        for a, b in zip(results[0][1], results[1][1]):
            assert torch.allclose(a, b, atol=1e-6), name


def test_draws_covering_much_of_the_catalogue_use_the_whole_table():
    import torch

    from rankpref.tasks.next_item.models import build_model
    from rankpref.tasks.next_item.module import NextItemModule

    cfg = _cfg("model.hidden=16", "data.max_len=6", "loss.name=sampled_softmax",
               "loss.num_negatives=200")
    model = build_model(cfg, 300)
    module = NextItemModule(model, cfg)
    asked = []
    real = model.item_weights
    model.item_weights = lambda rows=None: asked.append(rows) or real(rows)
    batch = {"inputs": torch.tensor([[0, 5, 17]]), "targets": torch.tensor([[5, 17, 250]])}
    module.training_step(batch, 0)
    assert asked == [None]  # 3 + 3 + 600 draws > 150: the whole table

"""Tests for rankpref.models.sasrec: shapes, causality, padding invariance, and that it learns."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rankpref.losses import full_cross_entropy
from rankpref.models.sasrec import SASRec, SASRecConfig


_FIELDS = {f.name for f in dataclasses.fields(SASRecConfig)}
# architecture variants the model offers (the norm / embedding-scale options when present)
VARIANTS = [{}]
if "norm" in _FIELDS:
    VARIANTS.append({"norm": "post"})
if "scale_embeddings" in _FIELDS:
    VARIANTS.append({"scale_embeddings": False})
VARIANT_IDS = ["-".join(f"{k}={v}" for k, v in v.items()) or "default" for v in VARIANTS]
variants = pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)


def tiny(num_items: int = 20, max_len: int = 8, hidden: int = 16, blocks: int = 2,
         heads: int = 2, dropout: float = 0.2, seed: int = 0, variant: dict | None = None
         ) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(SASRecConfig(num_items=num_items, max_len=max_len, hidden=hidden,
                               blocks=blocks, heads=heads, dropout=dropout, **(variant or {})))


def random_inputs(batch: int, t: int, num_items: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, num_items + 1, (batch, t), generator=g)


@variants
def test_output_shapes(variant):
    model = tiny(variant=variant).eval()
    x = random_inputs(3, 8, 20)
    assert model(x).shape == (3, 8, 16)
    assert model(x[:, :5]).shape == (3, 5, 16)     # shorter than max_len
    assert model.user_state(x).shape == (3, 16)
    assert model.item_weights().shape == (21, 16)
    assert model.score_all(x).shape == (3, 21)
    assert model.score_all(x[:, -1:]).shape == (3, 21)


def test_score_all_is_last_state_dot_item_weights():
    model = tiny().eval()
    x = random_inputs(4, 6, 20)
    with torch.no_grad():
        want = model(x)[:, -1] @ model.item_emb.weight.T
        torch.testing.assert_close(model.score_all(x), want)


def test_longer_than_max_len_keeps_the_last_items():
    model = tiny(max_len=8).eval()
    x = random_inputs(2, 12, 20)
    with torch.no_grad():
        torch.testing.assert_close(model.user_state(x), model.user_state(x[:, -8:]))


def test_heads_must_divide_hidden():
    with pytest.raises(ValueError, match="divisible"):
        SASRec(SASRecConfig(num_items=5, hidden=10, heads=3))


def test_padding_embedding_is_zero():
    model = tiny()
    assert torch.count_nonzero(model.item_emb.weight[0]) == 0


@pytest.mark.parametrize("t_change", [2, 5, 7])
@variants
def test_causal_later_items_do_not_change_earlier_states(t_change, variant):
    model = tiny(variant=variant).eval()
    x = random_inputs(4, 8, 20)
    y = x.clone()
    y[:, t_change] = (y[:, t_change] % 20) + 1          # a different real item
    with torch.no_grad():
        hx, hy = model(x), model(y)
    torch.testing.assert_close(hx[:, :t_change], hy[:, :t_change], rtol=0, atol=1e-6)
    # and the change is visible from that position on
    assert (hx[:, t_change:] - hy[:, t_change:]).abs().max() > 1e-4


@variants
def test_left_padding_does_not_change_last_state(variant):
    model = tiny(max_len=10, variant=variant).eval()
    seqs = [[3, 7, 1], [5], [2, 4, 6, 8, 10, 12, 14], [9, 9, 9, 1]]
    with torch.no_grad():
        for seq in seqs:
            states = []
            for length in range(len(seq), 11):      # 0 .. max_len - len extra padding
                row = torch.tensor([[0] * (length - len(seq)) + seq])
                states.append(model.user_state(row)[0])
            for s in states[1:]:
                torch.testing.assert_close(s, states[0], rtol=0, atol=1e-5)
            # the same sequence inside a batch padded for a longer neighbour
            batch = torch.tensor([[0] * (10 - len(seq)) + seq, list(range(1, 11))])
            torch.testing.assert_close(model.user_state(batch)[0], states[0], rtol=0, atol=1e-5)


@variants
def test_left_padding_does_not_change_any_real_position(variant):
    model = tiny(max_len=10, variant=variant).eval()
    seq = torch.tensor([[4, 8, 15, 16]])
    padded = torch.cat([torch.zeros(1, 6, dtype=torch.long), seq], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded)[:, 6:], model(seq), rtol=0, atol=1e-5)


@variants
def test_padded_rows_are_finite(variant):
    model = tiny(variant=variant)
    x = torch.zeros(3, 8, dtype=torch.long)
    x[1, -1] = 4
    for train in (True, False):
        model.train(train)
        out = model(x)
        assert torch.isfinite(out).all()
        assert torch.isfinite(model.score_all(x)).all()
        loss = full_cross_entropy(out[1:2, -1], model.item_weights(), torch.tensor([5]))
        loss.backward()
        for p in model.parameters():
            if p.grad is not None:
                assert torch.isfinite(p.grad).all()
        model.zero_grad()


def test_train_mode_dropout_is_stochastic_and_eval_is_deterministic():
    model = tiny(dropout=0.5)
    x = random_inputs(2, 8, 20)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@variants
def test_learns_next_item_pattern(variant):
    """Item i is always followed by i + 1 (cyclically): CE training should learn it."""
    torch.manual_seed(0)
    num_items, max_len = 12, 6
    model = SASRec(SASRecConfig(num_items=num_items, max_len=max_len, hidden=32, blocks=1,
                                heads=2, dropout=0.0, **variant))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)

    def batch(n: int):
        starts = torch.randint(0, num_items, (n, 1), generator=g)
        lengths = torch.randint(1, max_len + 1, (n,), generator=g)
        seq = (starts + torch.arange(max_len + 1)) % num_items + 1     # [n, max_len + 1]
        inputs, targets = seq[:, :-1].clone(), seq[:, 1:].clone()
        pad = torch.arange(max_len).view(1, -1) < (max_len - lengths).view(-1, 1)
        inputs[pad] = 0                                                # left padding
        targets[pad] = 0
        return inputs, targets

    losses = []
    model.train()
    for _ in range(300):
        inputs, targets = batch(32)
        states = model(inputs)
        keep = targets != 0
        loss = full_cross_entropy(states[keep], model.item_weights(), targets[keep])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    last = sum(losses[-10:]) / 10
    assert losses[0] > 2.0                 # ~ log(12) = 2.48 at the start
    assert last < 0.05 * losses[0]
    model.eval()
    with torch.no_grad():
        inputs, targets = batch(256)
        states = model(inputs)
        keep = targets != 0
        pred = (states[keep] @ model.item_weights().T)[:, 1:].argmax(-1) + 1
        accuracy = (pred == targets[keep]).float().mean()
        # score_all at the last position too
        last_pred = model.score_all(inputs)[:, 1:].argmax(-1) + 1
    assert accuracy >= 0.98
    assert (last_pred == targets[:, -1]).float().mean() >= 0.98

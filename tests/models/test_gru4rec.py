"""GRU4Rec: shapes, padding independence (a bias-free GRU stays at zero through padding), causality, the next-item
interface, and a tiny fit on the demo data through the registry."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from rankpref.cli import app
from rankpref.models.gru4rec import GRU4Rec, GRU4RecConfig

torch.set_num_threads(1)


def _model(**kw):
    torch.manual_seed(0)
    return GRU4Rec(GRU4RecConfig(num_items=30, max_len=8, hidden=16, gru_hidden=24, **kw)).eval()


def test_shapes_and_score_all():
    m = _model()
    x = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    assert m(x).shape == (2, 5, 16)
    assert torch.allclose(m.score_all(x), m.user_state(x) @ m.item_weights().T)
    assert m.score_all(x).shape == (2, 31)


def test_left_padding_changes_no_real_position():
    m = _model(layers=2)
    short = torch.tensor([[3, 4, 5]])
    padded = torch.tensor([[0, 0, 0, 0, 3, 4, 5]])
    with torch.no_grad():
        a, b = m(short), m(padded)
    assert torch.allclose(a, b[:, -3:], atol=1e-6)
    assert torch.equal(b[:, :4], torch.zeros_like(b[:, :4]))  # padding states are zero


def test_a_history_encodes_the_same_in_any_batch():
    m = _model()
    alone = torch.tensor([[0, 0, 0, 7, 8]])
    batch = torch.tensor([[0, 0, 0, 7, 8], [1, 2, 3, 4, 5], [0, 0, 0, 0, 9]])
    with torch.no_grad():
        assert torch.allclose(m.user_state(alone)[0], m.user_state(batch)[0], atol=1e-6)


def test_later_items_do_not_change_earlier_states():
    m = _model()
    a = torch.tensor([[2, 3, 4, 5, 6]])
    b = torch.tensor([[2, 3, 4, 9, 9]])
    with torch.no_grad():
        assert torch.allclose(m(a)[:, :3], m(b)[:, :3], atol=1e-6)
        assert not torch.allclose(m(a)[:, 3:], m(b)[:, 3:])


def test_an_all_padding_row_is_zero_and_finite():
    m = _model()
    with torch.no_grad():
        out = m(torch.tensor([[0, 0, 0], [1, 2, 3]]))
    assert torch.isfinite(out).all() and torch.equal(out[0], torch.zeros_like(out[0]))


def test_bad_settings_are_errors():
    with pytest.raises(ValueError, match="gru_hidden"):
        GRU4RecConfig(num_items=3, gru_hidden=0)
    with pytest.raises(ValueError, match="dropout"):
        GRU4RecConfig(num_items=3, dropout=1.0)


def test_a_tiny_fit_on_the_demo_data(tmp_path):
    out = tmp_path / "gru"
    res = CliRunner().invoke(app, ["fit", "--data", "demo", "--model", "gru4rec", "--epochs",
                                   "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "model" / "metrics.json").read_text())
    assert m["model"] == "gru4rec"
    # two epochs already beat a random ranking of the catalogue (GRU4Rec learns slower than
    # SASRec here: 0.031 against 0.178 test recall@10 after two epochs)
    assert m["test"]["recall@10"] > 3 * 10 / m["data"]["items"]
    res = CliRunner().invoke(app, ["recommend", "--artifact", str(out), "--user", "SYN0000007",
                                   "--k", "3"])
    assert res.exit_code == 0, res.output

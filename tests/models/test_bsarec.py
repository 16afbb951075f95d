"""BSARec: the Fourier filter (low frequencies kept, the rest scaled by beta^2), batch
independence through full-window padding, its need for prefix training, and a tiny fit."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from rankpref.cli import app
from rankpref.errors import ConfigError
from rankpref.models.bsarec import BSARec, BSARecConfig, FrequencyFilter
from rankpref.tasks.next_item import check, load_config

torch.set_num_threads(1)


def _model(**kw):
    torch.manual_seed(0)
    return BSARec(BSARecConfig(num_items=30, max_len=8, hidden=16, **kw)).eval()


def test_filter_keeps_low_and_scales_high_frequencies():
    f = FrequencyFilter(hidden=4, c=3, dropout=0.0).eval()  # bins 0, 1 are "low"
    t = torch.arange(16, dtype=torch.float32)
    low = torch.cos(2 * torch.pi * t / 16)          # bin 1
    high = torch.cos(2 * torch.pi * 5 * t / 16)     # bin 5
    x = (low + high).view(1, 16, 1).expand(1, 16, 4).contiguous()
    with torch.no_grad():
        f.sqrt_beta.fill_(0.5)   # beta^2 = 0.25
        f.norm = torch.nn.Identity()
        got = f(x) - x             # the residual's own part removed
    want = (low + 0.25 * high).view(1, 16, 1).expand(1, 16, 4)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_shapes_and_a_history_encodes_the_same_in_any_batch():
    m = _model()
    alone = torch.tensor([[0, 0, 7, 8]])
    batch = torch.tensor([[0, 0, 0, 0, 7, 8], [1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        assert m(batch).shape == (2, 6, 16)
        assert torch.allclose(m.user_state(alone)[0], m.user_state(batch)[0], atol=1e-5)
        assert m.score_all(batch).shape == (2, 31)


def test_the_filter_mixes_later_positions_into_earlier_ones():
    """Why BSARec trains on prefixes: unlike SASRec, a later item changes earlier states."""
    m = _model()
    a, b = torch.tensor([[2, 3, 4, 5, 6]]), torch.tensor([[2, 3, 4, 9, 9]])
    with torch.no_grad():
        assert not torch.allclose(m(a)[:, :3], m(b)[:, :3])
    with torch.no_grad():
        m_attention_only = _model(alpha=0.0)
        assert torch.allclose(m_attention_only(a)[:, :3], m_attention_only(b)[:, :3], atol=1e-5)


def test_bad_settings_are_errors():
    with pytest.raises(ValueError, match="alpha"):
        BSARecConfig(num_items=3, alpha=1.5)
    with pytest.raises(ValueError, match="post"):
        BSARec(BSARecConfig(num_items=3, norm="pre"))


def test_bsarec_trains_on_prefixes_and_refuses_every_position():
    cfg = check(load_config(overrides=["model.name=bsarec"]))
    assert cfg.data.train_on == "every_prefix"
    with pytest.raises(ConfigError, match="every_prefix"):
        check(load_config(overrides=["model.name=bsarec", "data.train_on=every_position"]))
    assert check(load_config()).data.train_on == "every_position"  # SASRec keeps its recipe


def test_a_tiny_fit_on_the_demo_data(tmp_path):
    out = tmp_path / "bsa"
    # one epoch, short windows: every prefix is a sample, so an epoch is ~9x SASRec's steps
    res = CliRunner().invoke(app, ["fit", "--data", "demo", "--model", "bsarec", "--epochs", "1",
                                   "--set", "train.batch_size=512", "--set", "data.max_len=20",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "model" / "metrics.json").read_text())
    assert m["model"] == "bsarec" and m["train_on"] == "every_prefix"
    # a random ranking of the 1,500 demo items gives recall@10 = 0.0067; one epoch gave 0.053
    assert m["test"]["recall@10"] > 3 * 10 / m["data"]["items"]

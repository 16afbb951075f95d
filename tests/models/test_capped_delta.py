"""PULSE's item representations for cold start: the standardise-then-PCA text map, frozen
content + a capped trainable delta ("Let It Go? Not Quite"), and PCA-initialised IDs."""

from __future__ import annotations

import pytest
import torch

from rankpref.models.pulse import Pulse, PulseConfig, text_pca


def _texts(n=40, d=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(n + 1, d, generator=g) @ torch.randn(d, d, generator=g)
    t[0] = 0
    t[5] = 0  # an item without text
    return t


def _model(**kw):
    torch.manual_seed(0)
    m = Pulse(PulseConfig(num_items=40, max_len=6, hidden=8, text_dim=24, why_dim=24, **kw))
    m.set_item_text(_texts())
    return m


def test_text_pca_is_a_standardised_projection_with_unit_mean_norm():
    t = _texts()
    center, scale, basis = text_pca(t, 8)
    rows = t[t.abs().sum(1) > 0]
    z = ((rows - center) / scale) @ basis
    assert z.shape == (39, 8)
    assert float(z.norm(dim=1).mean()) == pytest.approx(1.0, rel=1e-4)
    # the columns are the leading principal directions: uncorrelated, falling variance
    cov = torch.cov(z.T)
    off = cov - torch.diag(torch.diag(cov))
    assert float(off.abs().max()) < 1e-4
    assert (torch.diag(cov)[:-1] >= torch.diag(cov)[1:] - 1e-6).all()


def test_capped_delta_starts_at_the_content_and_never_leaves_the_cap():
    m = _model(item_repr="capped_delta", delta_cap=0.5, id_dropout=0.0).eval()
    content = m.content(m.item_text)
    assert torch.allclose(m.item_weights(), content * (torch.arange(41) > 0).unsqueeze(1))
    assert torch.equal(m.item_weights()[5], torch.zeros(8))        # no text, no delta yet
    with torch.no_grad():
        m.item_emb.weight.normal_(0, 10.0)                          # a far-travelled delta
        m.item_emb.weight[3] = 0.1                                  # one within the cap
    with torch.no_grad():
        gap = (m.item_weights() - content)[1:].norm(dim=1)
    assert float(gap.max()) <= 0.5 + 1e-5
    assert float(gap[2]) == pytest.approx(float(torch.full((8,), 0.1).norm()), rel=1e-5)
    m.set_unknown_items(torch.tensor([7]))                          # a cold item: text alone
    assert torch.allclose(m.item_weights()[7], content[7])
    assert torch.allclose(m.text_query(m.item_text[9:10]), content[9:10])


def test_capped_delta_trains_the_delta_not_the_content():
    m = _model(item_repr="capped_delta").train()
    loss = m.item_weights().pow(2).sum()
    loss.backward()
    assert m.item_emb.weight.grad is not None and m.item_emb.weight.grad.abs().sum() > 0
    assert not m.text_basis.requires_grad


def test_text_pca_initialisation_of_ids():
    m = _model(id_init="text_pca")
    pca = m.content(m.item_text)
    e = m.item_emb.weight.detach()
    cos = torch.nn.functional.cosine_similarity(e[1:], pca[1:], dim=1)
    has_text = m.item_text[1:].abs().sum(1) > 0
    assert (cos[has_text] > 0.999).all()
    assert float(e[1:].std()) == pytest.approx(0.02, rel=0.05)
    assert not torch.allclose(_model().item_emb.weight, m.item_emb.weight)


def test_bad_settings_are_errors():
    with pytest.raises(ValueError, match="use_text"):
        PulseConfig(num_items=3, item_repr="capped_delta", use_text=False)
    with pytest.raises(ValueError, match="hidden"):
        Pulse(PulseConfig(num_items=3, item_repr="capped_delta", hidden=512, text_dim=384))
    with pytest.raises(ValueError, match="item_repr"):
        PulseConfig(num_items=3, item_repr="other")

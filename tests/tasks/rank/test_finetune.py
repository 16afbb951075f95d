"""A scorer that fine-tunes its text encoder (model.name=finetune): token ids in, the
encoder trained at its own learning rate, saved and reloaded whole, predicting from text."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("transformers")

from rankpref.cli import app  # noqa: E402
from rankpref.models.text_scorer import TextScorer, TextScorerConfig  # noqa: E402
from rankpref.tasks.rank import load_artifact  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "run"
    res = runner.invoke(app, ["rank", "fit", "--data", "emobank-slice", "--target", "V",
                              "--model", "finetune", "--epochs", "1", "--out", str(out),
                              "--set", "lists.lists_per_epoch=6", "--set", "lists.list_size=8",
                              "--set", "train.batch_size=3", "--set", "data.max_tokens=16"])
    assert res.exit_code == 0, res.output
    return out


def test_the_encoder_is_trained_and_saved(finetuned):
    art = load_artifact(finetuned)
    assert art.features["source"] == "tokens" and art.features["input_dim"] == 16
    assert art.features["standardize"] is None  # token ids are not standardised
    fresh = TextScorer(TextScorerConfig(input_dim=16))
    name = "encoder.encoder.layer.0.attention.self.query.weight"
    trained, pretrained = art.model.state_dict()[name], fresh.state_dict()[name]
    assert not torch.equal(trained, pretrained)  # the encoder moved ...
    assert (trained - pretrained).abs().max() < 1e-2  # ... at its small learning rate
    m = json.loads((finetuned / "model" / "metrics.json").read_text())
    assert "baselines" not in m  # ridge on token ids would mean nothing


def test_padded_slots_are_not_encoded_and_groups_have_their_own_lr():
    model = TextScorer(TextScorerConfig(input_dim=6)).eval()
    x = torch.tensor([[[101, 2307, 102, 0, 0, 0], [0, 0, 0, 0, 0, 0]]], dtype=torch.float32)
    with torch.no_grad():
        out = model(x)
        alone = model(x[:, :1])
    assert out.shape == (1, 2) and out[0, 1] == 0.0
    assert torch.allclose(out[0, 0], alone[0, 0], atol=1e-6)
    lrs = [g["lr"] for g in model.param_groups(1e-3, 0.0)]
    assert lrs == [2e-5, 1e-3]


def test_evaluate_and_predict_read_text(finetuned, tmp_path):
    res = runner.invoke(app, ["rank", "evaluate", "--artifact", str(finetuned),
                              "--output", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    saved = json.loads((finetuned / "model" / "metrics.json").read_text())
    again = json.loads((tmp_path / "m.json").read_text())
    assert again["test"]["kendall_tau"] == pytest.approx(saved["test"]["kendall_tau"], abs=1e-6)
    (tmp_path / "new.csv").write_text("id,text\na,What a wonderful day!\nb,I hate this.\n"
                                      "c,The meeting is at noon.\n")
    res = runner.invoke(app, ["rank", "predict", "--artifact", str(finetuned), "--items",
                              str(tmp_path / "new.csv"), "--output", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    assert len(json.loads((tmp_path / "p.json").read_text())) == 3


def test_length_sorted_trimmed_chunks_give_the_untrimmed_scores(monkeypatch):
    import rankpref.models.text_scorer as ts

    monkeypatch.setattr(ts, "CHUNK", 2)  # several chunks of different widths
    model = TextScorer(TextScorerConfig(input_dim=12)).eval()
    rows = [[101, 2307, 2154, 102], [101, 7592, 102], [101, 1045, 2293, 2009, 2172, 102],
            [101, 102]]
    ids = torch.zeros(len(rows), 12, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    with torch.no_grad():
        got = model(ids.float().reshape(2, 2, 12))
        mask = (ids != 0).long()  # the reference: all 12 columns, no sorting, no chunks
        hidden = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        want = model.head(pooled).squeeze(-1).reshape(2, 2)
    assert torch.allclose(got, want, atol=1e-5)

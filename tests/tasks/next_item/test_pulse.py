"""PULSE: the why loss, the ID + text item table, rationale matching, cold-start items,
weight transfer, explanations, and a tiny end-to-end fit on the demo data."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from rankpref.cli import app
from rankpref.tasks.next_item import load_config
from rankpref.data.datasets import prepare
from rankpref.tasks.next_item.data import TrainWindows, collate_train
from rankpref.data.splits import (hold_out_items, make_split, sample_items,
                                  subsample_train_users)
from rankpref.errors import ConfigError, DataError, RankprefError
from rankpref.losses.contrastive import info_nce
from rankpref.models.pulse import Pulse, PulseConfig
from rankpref.rationales.signal import rationale_signal, template_table
from rankpref.tasks.next_item.recommend import Recommender
from rankpref.tasks.next_item import fit

runner = CliRunner()
TINY = ["model.hidden=32", "data.max_len=20", "train.epochs=3", "train.patience=2",
        "train.progress=false", "train.resume=false", "train.batch_size=256"]


# ------------------------------------------------------------------------------ info_nce


def _info_nce_reference(q, k, t, ids=None, neg=None):
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    losses = []
    for i in range(len(q)):
        logits = [q[i] @ k[j] / t for j in range(len(k))
                  if ids is None or j == i or ids[j] != ids[i]]
        pos = q[i] @ k[i] / t
        if neg is not None:
            n = neg[i] / np.linalg.norm(neg[i], axis=1, keepdims=True)
            logits += list(n @ q[i] / t)
        m = max(logits)
        losses.append(-(pos - m - math.log(sum(math.exp(x - m) for x in logits))))
    return float(np.mean(losses))


@pytest.mark.parametrize("temperature", [0.05, 1.0])
def test_info_nce_matches_numpy(temperature):
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    neg = rng.normal(size=(6, 3, 5))
    ids = np.array([0, 1, 0, 2, 3, 1])
    got = info_nce(torch.tensor(q), torch.tensor(k), temperature=temperature,
                   key_ids=torch.tensor(ids), negatives=torch.tensor(neg))
    assert float(got) == pytest.approx(_info_nce_reference(q, k, temperature, ids, neg), rel=1e-6)
    plain = info_nce(torch.tensor(q), torch.tensor(k), temperature=temperature)
    assert float(plain) == pytest.approx(_info_nce_reference(q, k, temperature), rel=1e-6)


def test_info_nce_duplicates_are_not_negatives():
    """Two rows with the same rationale text: masking them keeps a perfect match at loss 0."""
    k = torch.eye(3)[[0, 0, 1]]
    q = k.clone() * 50
    masked = info_nce(q, k, temperature=0.01, key_ids=torch.tensor([7, 7, 8]))
    unmasked = info_nce(q, k, temperature=0.01)
    assert float(masked) < 1e-6 < float(unmasked)


def test_info_nce_rejects_bad_shapes():
    with pytest.raises(ValueError):
        info_nce(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError):
        info_nce(torch.ones(3, 4), torch.ones(3, 4), temperature=0)


# ------------------------------------------------------------------------------ the model


def _model(**kw) -> Pulse:
    torch.manual_seed(0)
    model = Pulse(PulseConfig(num_items=6, max_len=5, hidden=8, heads=2, text_dim=4, why_dim=3,
                              **kw))
    model.set_item_text(torch.randn(7, 4))
    return model


def test_item_table_is_id_plus_projected_text():
    model = _model(id_dropout=0.0).eval()
    table = model.item_weights()
    expected = model.item_emb.weight + model.text_proj(model.item_text)
    assert torch.allclose(table[1:], expected[1:])
    assert torch.all(table[0] == 0)
    model.set_unknown_items(torch.tensor([2]))
    table = model.item_weights()
    assert torch.allclose(table[2], model.text_proj(model.item_text)[2])  # text only
    assert torch.allclose(table[3], expected[3])


def test_text_only_and_id_only_tables():
    text_only = _model(use_ids=False).eval()
    assert torch.allclose(text_only.item_weights()[1:],
                          text_only.text_proj(text_only.item_text)[1:])
    ids_only = _model(use_text=False).eval()
    assert torch.allclose(ids_only.item_weights()[1:], ids_only.item_emb.weight[1:])
    with pytest.raises(ValueError):
        _model(use_ids=False, use_text=False)


def test_id_dropout_only_in_training():
    model = _model(id_dropout=0.5)
    model.eval()
    assert torch.equal(model.item_weights(), model.item_weights())
    model.train()
    torch.manual_seed(1)
    tables = [model.item_weights() for _ in range(5)]
    assert any(not torch.equal(tables[0], t) for t in tables[1:])


def test_item_text_shape_is_checked():
    with pytest.raises(ValueError, match="shape"):
        _model().set_item_text(torch.zeros(3, 4))


# ------------------------------------------------------------------------------ data plumbing


def test_windows_mark_the_last_window_of_each_user():
    seqs = [np.arange(1, 13), np.array([3, 4]), np.array([5])]
    windows = TrainWindows(seqs, max_len=5)
    owners = windows.owners.tolist()
    assert owners.count(0) == 1 and owners.count(1) == 1 and 2 not in owners
    last_of_0 = owners.index(0)
    inputs, targets, owner = windows[last_of_0]
    assert owner == 0 and targets[-1] == 12  # the final state predicts the last training item
    batch = collate_train([windows[i] for i in range(len(windows))])
    assert batch["owners"].tolist() == owners


@pytest.fixture(scope="module")
def demo():
    cfg = load_config(None, ["data.name=demo"])
    ds = prepare(cfg.data, quiet=True)
    split = make_split(ds.interactions, "leave_one_out", 0.1, 0.1)
    return cfg, ds, split


def test_hold_out_items_removes_them_from_training_only(demo):
    _, ds, split = demo
    cold = sample_items(ds.num_items, 0.1, seed=3)
    held = hold_out_items(split, cold)
    assert not any(np.isin(s, cold).any() for s in held.train_sequences)
    assert not any(np.isin(h, cold).any() for h in held.test.histories)
    assert np.array_equal(held.test.targets, split.test.targets)  # targets may be cold
    assert np.isin(held.test.targets, cold).sum() > 0
    assert len(cold) == round(ds.num_items * 0.1) and len(set(cold.tolist())) == len(cold)


def test_subsample_train_users(demo):
    _, _, split = demo
    part = subsample_train_users(split, 0.25, seed=1)
    assert len(part.train_users) == round(len(split.train_users) * 0.25)
    assert set(part.train_users.tolist()) <= set(split.train_users.tolist())
    assert len(part.test) == len(split.test)
    assert subsample_train_users(split, 1.0, 0) is split
    with pytest.raises(DataError):
        subsample_train_users(split, 0.0, 0)


# ------------------------------------------------------------------------------ rationale files


def test_template_rationales_cover_every_training_user(demo):
    _, ds, split = demo
    signal = rationale_signal("template", "demo", ds, split)
    assert signal.counts["users_with_rationale"] == len(split.train_users)
    assert signal.counts["users_without_rationale"] == 0
    assert (signal.owner_text >= 0).all()


def _write(tmp_path, frame: pl.DataFrame, name="r.parquet"):
    path = tmp_path / name
    frame.write_parquet(path)
    return str(path)


def test_rationale_file_partial_stale_and_missing_are_counted(demo, tmp_path):
    _, ds, split = demo
    table = template_table(ds, split).head(300)
    stale = table.head(10).with_columns(pl.lit("S000000000").alias("chosen_item"),
                                        pl.col("user_id"))
    frame = pl.concat([table.slice(10), stale]).with_columns(pl.lit("demo").alias("dataset"),
                                                             pl.lit("m1").alias("model"))
    signal = rationale_signal(_write(tmp_path, frame), "demo", ds, split)
    c = signal.counts
    assert c["users_with_rationale"] == 290
    assert c["stale_chosen_item"] == 10
    assert c["users_without_rationale"] == len(split.train_users) - 290
    assert (signal.owner_text >= 0).sum() == 290


def test_rationale_file_of_another_dataset_or_model_is_refused(demo, tmp_path):
    _, ds, split = demo
    frame = template_table(ds, split).head(50).with_columns(pl.lit("beauty").alias("dataset"),
                                                            pl.lit("m1").alias("model"))
    path = _write(tmp_path, frame)
    with pytest.raises(DataError, match="not 'demo'"):
        rationale_signal(path, "demo", ds, split)
    ok = _write(tmp_path, frame.with_columns(pl.lit("demo").alias("dataset")), "ok.parquet")
    with pytest.raises(DataError, match="no rationales written by 'other'"):
        rationale_signal(ok, "demo", ds, split, model="other")
    assert rationale_signal(ok, "demo", ds, split, model="m1").counts["users_with_rationale"] == 50


def test_rationale_file_that_matches_no_user_is_refused(demo, tmp_path):
    _, ds, split = demo
    frame = template_table(ds, split).head(20).with_columns(pl.lit("S000000000")
                                                            .alias("chosen_item"))
    with pytest.raises(RankprefError, match="none of its 20 rationales"):
        rationale_signal(_write(tmp_path, frame), "demo", ds, split)


def test_rationale_file_missing_columns_or_format(demo, tmp_path):
    _, ds, split = demo
    path = _write(tmp_path, pl.DataFrame({"user_id": ["1"], "text": ["x"]}))
    with pytest.raises(DataError, match="missing column"):
        rationale_signal(path, "demo", ds, split)
    bad = tmp_path / "r.csv"
    bad.write_text("user_id\n1\n")
    with pytest.raises(DataError, match=".parquet"):
        rationale_signal(str(bad), "demo", ds, split)


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def pulse_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pulse")
    cfg = load_config(None, ["data.name=demo", "model.name=pulse", "pulse.rationales=template",
                             f"output_dir={out}", *TINY])
    artifact = fit(cfg).artifact
    return cfg, artifact


def test_pulse_fit_writes_artifact_with_rationales(pulse_run):
    _, artifact = pulse_run
    for name in ("model.safetensors", "rationales.parquet", "rationale_vectors.safetensors"):
        assert (artifact / name).exists(), name
    metrics = json.loads((artifact / "metrics.json").read_text())
    assert metrics["model"] == "pulse"
    assert metrics["pulse"]["rationales"]["users_with_rationale"] == 2000
    assert metrics["test"]["ndcg@10"] > 0.05  # far above chance (1,500 items)
    log = (artifact.parent / "logs" / "version_0" / "metrics.csv").read_text()
    assert "train/why_loss" in log.splitlines()[0]


def test_pulse_why_head_retrieves_its_own_rationale(pulse_run, demo):
    """After training with the why loss, a user's reason vector ranks their own rationale far
    above chance among all 2,000 training rationales."""
    _, artifact = pulse_run
    _, ds, split = demo
    rec = Recommender.load(artifact)
    rec.model.eval()
    table = rec.explainer.table
    vectors = rec.explainer.row_vectors
    index = {u: i for i, u in enumerate(table["user_id"].to_list())}
    users = [(pos, ds.vocab.users[int(u)]) for pos, u in enumerate(split.train_users)][:400]
    ranks = []
    with torch.no_grad():
        for pos, user in users:
            seq = split.train_sequences[pos]
            reason = rec.model.why(rec.model.user_state(rec._batch([seq[:-1].tolist()])))[0]
            sims = vectors @ reason
            ranks.append(int((sims > sims[index[user]]).sum()))
    mrr = float(np.mean([1 / (r + 1) for r in ranks]))
    chance = float(np.mean([1 / (r + 1) for r in range(len(table))]))
    assert mrr > 5 * chance, (mrr, chance)


def test_pulse_explain_and_text_queries(pulse_run):
    _, artifact = pulse_run
    rec = Recommender.load(artifact)
    history = rec.item_indices(["S000000001", "S000000002"])
    ranked = rec.recommend(history, k=3)
    item = ranked[0][0]
    near = rec.explain(history, item, k=2)
    assert len(near) == 2 and all(set(n) >= {"rationale", "similarity", "same_item"}
                                  for n in near)
    same = [n for n in near if n["same_item"]]
    assert all(n["chosen_item"] == rec.vocab.items[item] for n in same)
    assert near == sorted(near, key=lambda n: (not n["same_item"], -n["similarity"]))
    queries = rec.encode_queries(["vanilla face primer", "unscented moisturizer"])
    assert queries.shape == (2, rec.item_vectors().shape[1])


def test_sasrec_artifacts_cannot_explain(tmp_path):
    cfg = load_config(None, ["data.name=demo", f"output_dir={tmp_path}", *TINY,
                             "train.epochs=1"])
    rec = Recommender.load(fit(cfg).artifact)
    with pytest.raises(RankprefError, match="PULSE"):
        rec.explain([1, 2], 3)
    with pytest.raises(RankprefError, match="PULSE"):
        rec.encode_queries(["x"])


def test_transfer_copies_shared_weights_only(pulse_run, tmp_path):
    from rankpref.tasks.next_item.pulse import transfer_weights

    cfg, artifact = pulse_run
    rec = Recommender.load(artifact)
    fresh = Pulse(PulseConfig(**{**rec.model.cfg.__dict__, "num_items": 40}))
    before = fresh.item_emb.weight.clone()
    copied = transfer_weights(fresh, artifact)
    assert "item_emb.weight" not in copied and "text_proj.weight" in copied
    assert torch.equal(fresh.item_emb.weight, before)
    assert torch.equal(fresh.text_proj.weight, rec.model.text_proj.weight)
    other = Pulse(PulseConfig(**{**rec.model.cfg.__dict__, "hidden": 16}))
    with pytest.raises(ConfigError, match="other shapes"):
        transfer_weights(other, artifact)


def test_cold_start_items_are_scored_by_text(tmp_path):
    """With 10% of items held out of training, PULSE (text) finds cold targets, with either
    item representation; SASRec, whose cold item vectors are untrained, almost never does.
    Every metric comes as cold / warm / total."""
    results = {}
    for name, extra in (("sasrec", []), ("pulse", []),
                        ("capped", ["model.item_repr=capped_delta"])):
        model = "sasrec" if name == "sasrec" else "pulse"
        cfg = load_config(None, ["data.name=demo", f"model.name={model}", "data.cold_items=0.1",
                                 f"output_dir={tmp_path / name}", *TINY, *extra])
        metrics = json.loads((fit(cfg).artifact / "metrics.json").read_text())
        cold = metrics["cold_start"]
        assert cold["items_held_out"] == 150 and cold["test_events"] > 50
        assert cold["test_events"] + cold["warm_test_events"] == metrics["test"]["examples"]
        assert cold["total"] == metrics["test"] and cold["test"] == cold["cold"]
        # the total is the events' weighted mean of the two parts
        mix = (cold["cold"]["recall@20"] * cold["test_events"] + cold["warm"]["recall@20"]
               * cold["warm_test_events"]) / metrics["test"]["examples"]
        assert mix == pytest.approx(metrics["test"]["recall@20"], rel=1e-6)
        results[name] = cold["cold"]["recall@20"]
    assert results["pulse"] > results["sasrec"] + 0.05, results
    assert results["capped"] > results["sasrec"] + 0.05, results


def test_cli_fit_pulse_and_recommend_explain(pulse_run):
    _, artifact = pulse_run
    result = runner.invoke(app, ["recommend", "--artifact", str(artifact), "--items",
                                 "S000000001,S000000002", "--k", "2", "--explain", "2",
                                 "--rationale-backend", "template", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 2 and len(rows[0]["because"]) == 2
    assert rows[0]["rationale"].startswith("The shopper chose")
    printed = runner.invoke(app, ["recommend", "--artifact", str(artifact), "--items",
                                  "S000000001,S000000002", "--k", "2", "--explain", "2"])
    assert printed.exit_code == 0, printed.output
    flat = " ".join(printed.stdout.split())
    for near in rows[0]["because"]:  # printed whole (wrapped), never cut mid-word
        assert " ".join(near["rationale"].split()) in flat


def test_cli_fit_refuses_rationales_of_another_dataset(tmp_path):
    path = tmp_path / "r.parquet"
    pl.DataFrame({"dataset": ["beauty"], "user_id": ["1"], "chosen_item": ["2"],
                  "rationale": ["because it is nice and cheap"]}).write_parquet(path)
    result = runner.invoke(app, ["fit", "--data", "demo", "--model", "pulse", "--out",
                                 str(tmp_path / "run"), "--set", f"pulse.rationales={path}",
                                 "--set", "train.progress=false"])
    assert result.exit_code == 2
    assert "not 'demo'" in result.stderr and "Traceback" not in result.output


def test_items_without_text(demo):
    """No item text at all: refused while the text part is on; some missing: counted."""
    import dataclasses

    from rankpref.tasks.next_item.pulse import setup_pulse

    cfg, ds, split = demo
    cfg = load_config(None, ["data.name=demo", "model.name=pulse", *TINY])
    bare = dataclasses.replace(ds, items=None)
    with pytest.raises(DataError, match="no item of 'demo' has text"):
        setup_pulse(cfg, bare, split, np.zeros(0, dtype=np.int64))
    partial = dataclasses.replace(ds, items=ds.items.slice(0, 1000))
    info = setup_pulse(cfg, partial, split, np.zeros(0, dtype=np.int64)).info
    assert info["items_without_text"] == ds.num_items - 1000
    ids_only = load_config(None, ["data.name=demo", "model.name=pulse", "model.use_text=false",
                                  *TINY])
    model = setup_pulse(ids_only, bare, split, np.zeros(0, dtype=np.int64)).model
    assert not model.cfg.use_text


def test_cold_items_need_the_full_softmax(tmp_path):
    cfg = load_config(None, ["data.name=demo", "data.cold_items=0.1", "loss.name=bce",
                             f"output_dir={tmp_path}", *TINY])
    with pytest.raises(ConfigError, match="cold_items needs a loss without sampled negatives"):
        fit(cfg)


def test_sqlite_cache_with_plain_and_scored_rows(demo, tmp_path):
    """A generation cache mixing plain rows (no score) and ToT rows (scored) is read, and the
    scored row wins for its user."""
    from rankpref.rationales.cache import RationaleStore

    _, ds, split = demo
    table = template_table(ds, split).head(150)  # > polars' default schema inference rows
    store = RationaleStore(tmp_path / "r.sqlite")
    rows = [{"key": f"k{i}", "dataset": "demo", "user_id": u, "history_hash": "h",
             "model": "m", "backend": "b", "prompt_version": "p", "chosen_item": c,
             "rationale": t, "attempts": 1} for i, (u, c, t) in enumerate(table.iter_rows())]
    u, c, _ = table.row(0)
    rows.append({"key": "tot", "dataset": "demo", "user_id": u, "history_hash": "h",
                 "model": "m", "backend": "b", "prompt_version": "p-tot", "chosen_item": c,
                 "rationale": "a refined chain of thoughts about this shopper", "attempts": 9,
                 "score": 0.5, "method": "tot"})
    store.add(rows)
    store.close()
    signal = rationale_signal(str(tmp_path / "r.sqlite"), "demo", ds, split)
    assert signal.counts["users_with_rationale"] == 150
    used = dict(zip(signal.table["user_id"].to_list(), signal.table["rationale"].to_list()))
    assert used[u] == "a refined chain of thoughts about this shopper"


def test_the_why_loss_uses_pulse_temperature_and_never_contrasts_a_text_with_itself():
    """Two users whose rationales are the same text share one row of the rationale vectors:
    that row must not be a negative for the other user, and pulse.temperature must reach the
    InfoNCE (both used to be settable without effect)."""
    from types import SimpleNamespace

    from rankpref.tasks.next_item.module import NextItemModule

    class WhyOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cfg = SimpleNamespace(num_items=10)
            self.why_head = torch.nn.Identity()

    torch.manual_seed(0)
    texts = torch.randn(3, 8)  # three distinct rationale texts
    owner = torch.tensor([0, 0, 1, 2, -1])  # users 0 and 1 gave the same text; user 4 none
    states = torch.randn(5, 4, 8)
    owners = torch.tensor([0, 1, 2, 3, 4])
    rows = torch.tensor([0, 0, 1, 2])
    losses = {}
    for temperature in (0.05, 0.5):
        cfg = load_config(None, ["data.name=demo", f"pulse.temperature={temperature}"])
        module = NextItemModule(WhyOnly(), cfg, rationale_vectors=texts, owner_rationale=owner)
        losses[temperature] = module._why_loss(states, owners)
        expected = info_nce(states[:4, -1], texts[rows], temperature=temperature,
                            key_ids=rows)
        assert torch.allclose(losses[temperature], expected)
        with_false_negatives = info_nce(states[:4, -1], texts[rows], temperature=temperature)
        assert not torch.allclose(losses[temperature], with_false_negatives)
    assert not torch.allclose(losses[0.05], losses[0.5])

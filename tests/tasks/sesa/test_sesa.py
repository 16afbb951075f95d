"""Tiny SESA fits on the shipped O*NET slice: training, artifacts, explanations, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rankpref.cli import app
from rankpref.errors import ConfigError, DataError, RankprefError, UnknownIdError
from rankpref.tasks import sesa

torch.set_num_threads(1)
runner = CliRunner()

TINY_GRU = ["data.name=onet-slice", "data.task=related", "model.encoder=gru", "model.hidden=32",
            "model.embed_dim=16", "model.max_doc_tokens=24", "train.epochs=3", "train.threads=1",
            "loss.negatives=in_batch", "train.batch_size=32"]
TINY_MINILM = ["data.name=onet-slice", "data.task=titles", "model.hidden=64", "train.epochs=4",
               "train.batch_size=64",
               "train.threads=1", "model.concept_weights=true"]


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sesa") / "run"
    cfg = sesa.load_config(None, TINY_MINILM + [f"output_dir={out}"])
    result = sesa.fit(cfg)
    model, metrics = result.model, result.metrics
    return out / "model", model, metrics


def test_minilm_fit_learns_and_saves(minilm_run):
    folder, model, metrics = minilm_run
    assert metrics["model"] == "sesa-minilm" and metrics["selected_on"] == "valid ndcg@10"
    assert metrics["epochs_run"] >= 1 and 1 <= metrics["best_epoch"] <= metrics["epochs_run"]
    test = metrics["test"]
    assert test["queries"] == metrics["data"]["test_queries"] > 50
    # 92 occupations: a random ranking has ndcg@10 about 0.06; the trained model is far above
    assert test["ndcg@10"] > 0.3 and 0 < test["concept_micro_f1"] <= 1
    assert 0 < test["top5_share"] <= 1
    art = sesa.load_artifact(folder.parent)  # the run folder works too
    assert art.item_ids[0].startswith(("15-", "17-")) and len(art.concepts) == model.cfg.num_concepts
    for key, value in model.state_dict().items():
        assert torch.equal(value, art.model.state_dict()[key])
    # re-evaluating the artifact reproduces the metrics written at fit time
    prep = sesa.inputs_for_artifact(art)
    again = sesa.evaluate(art.model, prep, "test")
    assert math.isclose(again["ndcg@10"], test["ndcg@10"], rel_tol=1e-6)


def test_explain_contributions_sum_to_score(minilm_run):
    folder, _, _ = minilm_run
    art = sesa.load_artifact(folder)
    hits = sesa.search(art, "python developer", k=3)
    assert len(hits) == 3 and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    out = sesa.explain(art, "python developer", hits[0]["item"], top=500)
    assert math.isclose(out["score"], hits[0]["score"], rel_tol=1e-5)
    assert math.isclose(sum(r["contribution"] for r in out["top"]), out["score"], rel_tol=1e-5)
    assert math.isclose(out["sum_of_contributions"], out["score"], rel_tol=1e-5)
    assert all(r["concept"] in art.concepts for r in out["top"])
    assert out["top"] == sorted(out["top"], key=lambda r: -r["contribution"])
    with pytest.raises(UnknownIdError, match="99-9999.99"):
        sesa.explain(art, "python developer", "99-9999.99")
    with pytest.raises(DataError, match="tokens, the text encoder reads at most 256"):
        sesa.explain(art, "engineer " * 400, hits[0]["item"])
    with pytest.raises(DataError, match="empty"):
        sesa.explain(art, "  ", hits[0]["item"])


def test_cli_evaluate_and_explain(minilm_run):
    folder, _, metrics = minilm_run
    res = runner.invoke(app, ["sesa", "evaluate", "--artifact", str(folder), "--split", "both",
                              "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert math.isclose(got["test"]["ndcg@10"], metrics["test"]["ndcg@10"], rel_tol=1e-6)
    assert math.isclose(got["valid"]["mrr"], metrics["valid"]["mrr"], rel_tol=1e-6)
    res = runner.invoke(app, ["sesa", "explain", "--artifact", str(folder), "--query",
                              "CAD drafter", "--item", "17-3011.00"])
    assert res.exit_code == 0, res.output
    assert "17-3011.00" in res.output and "score:" in res.output and "contrib" in res.output
    res = runner.invoke(app, ["sesa", "explain", "--artifact", str(folder), "--query", "x",
                              "--item", "00-0000.00"])
    assert res.exit_code == 2 and "error: " in res.output
    assert "00-0000.00" in res.output and "not in the artifact's catalogue" in res.output
    res = runner.invoke(app, ["sesa", "search", "--artifact", str(folder), "--query",
                              "network administrator", "--k", "3", "--json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)) == 3
    res = runner.invoke(app, ["sesa", "evaluate", "--artifact", str(folder.parent.parent)])
    assert res.exit_code == 2 and "not a rankpref artifact" in res.output


def test_concept_vectors_in_item_index(minilm_run, tmp_path):
    pytest.importorskip("faiss")
    from rankpref.serving.index import ItemIndex

    folder, _, _ = minilm_run
    res = runner.invoke(app, ["sesa", "index", "--artifact", str(folder), "--out",
                              str(tmp_path / "idx")])
    assert res.exit_code == 0, res.output
    idx = ItemIndex.load(tmp_path / "idx")
    art = sesa.load_artifact(folder)
    assert len(idx) == len(art.item_ids) and idx.dim == len(art.concepts)
    q = sesa.query_vectors(art, ["cad drafter"]).numpy()
    ids, scores = idx.search(q, 5)
    want = sesa.search(art, "cad drafter", k=5)
    assert list(ids[0]) == [h["item"] for h in want]
    assert np.allclose(scores[0], [h["score"] for h in want], rtol=1e-5)


def test_gru_related_fit(tmp_path):
    cfg = sesa.load_config(None, TINY_GRU + [f"output_dir={tmp_path / 'gru'}"])
    result = sesa.fit(cfg)
    model, metrics = result.model, result.metrics
    assert metrics["model"] == "sesa-gru" and metrics["data"]["words"] > 100
    assert metrics["data"]["texts_cut"] > 0  # occupation texts are longer than 24 words
    # held-out occupations never supervised concepts, yet some concepts are predicted
    assert metrics["data"]["items_supervising_concepts"] < 92
    for split in ("valid", "test"):
        assert 0 <= metrics[split]["ndcg@10"] <= 1 and metrics[split]["queries"] > 0
    art = sesa.load_artifact(tmp_path / "gru")
    assert art.words is not None and art.words[:2] == ["<pad>", "<unk>"]
    item = art.item_ids[0]
    out = sesa.explain(art, "software developer", item, top=1000)
    assert math.isclose(sum(r["contribution"] for r in out["top"]), out["score"],
                        rel_tol=1e-5, abs_tol=1e-7)
    with pytest.raises(DataError, match="words, the encoder reads at most 64"):
        sesa.explain(art, "word " * 65, item)


def test_l1_penalty_makes_fewer_active_concepts():
    active = {}
    for l1 in (0.0, 0.5):
        cfg = sesa.load_config(None, TINY_MINILM + ["train.epochs=1", f"loss.l1_weight={l1}"])
        metrics = sesa.fit(cfg, write=False).metrics
        active[l1] = metrics["valid"]["active_concepts_per_query"]
    assert active[0.5] < 0.5 * active[0.0]


def test_latent_baseline_cannot_explain(tmp_path):
    cfg = sesa.load_config(None, TINY_GRU + ["model.head=latent", "train.epochs=1",
                                             f"output_dir={tmp_path / 'dual'}"])
    metrics = sesa.fit(cfg).metrics
    assert metrics["model"] == "dual-gru" and "concept_micro_f1" not in metrics["test"]
    art = sesa.load_artifact(tmp_path / "dual")
    with pytest.raises(RankprefError, match="no concepts to explain"):
        sesa.explain(art, "nurse", art.item_ids[0])


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="model.encoderr: unknown key"):
        sesa.load_config(None, ["model.encoderr=gru"])
    with pytest.raises(ConfigError, match="data.task"):
        sesa.load_config(None, ["data.task=movies"])
    (tmp_path / "c.yaml").write_text("train:\n  lr: -1\n")
    with pytest.raises(ConfigError, match="c.yaml: invalid SESA config: train.lr"):
        sesa.load_config(tmp_path / "c.yaml")
    res = runner.invoke(app, ["sesa", "fit", "--data", "onet-slice", "--set", "model.top_k=0"])
    assert res.exit_code == 2 and "model.top_k" in res.output
    cfg = sesa.load_config(None, ["model.head=latent", "model.top_k=3", "data.name=onet-slice",
                                  "model.encoder=gru"])
    with pytest.raises(ConfigError, match="top_k applies to the concepts head only"):
        sesa.fit(cfg, write=False)


def test_fit_cli_on_slice(tmp_path):
    args = ["sesa", "fit", "--data", "onet-slice", "--task", "related", "--encoder", "gru",
            "--out", str(tmp_path / "cli"), "--epochs", "1"]
    for item in TINY_GRU[3:]:
        if not item.startswith("train.epochs"):
            args += ["--set", item]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "valid (" in res.output and "test (" in res.output and "ndcg@10" in res.output
    assert (tmp_path / "cli" / "model" / "concepts.json").exists()


def test_a_folder_from_before_manifests_still_loads(minilm_run, tmp_path):
    import shutil

    import yaml

    folder, _, metrics = minilm_run
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    (old / "manifest.json").unlink()
    tree = yaml.safe_load((old / "config.yaml").read_text())
    loss = tree.pop("loss")
    tree["train"]["rank_loss"] = loss.pop("name")
    tree["train"].update(loss)
    tree["cache_dir"] = tree["data"].pop("cache_dir")
    (old / "config.yaml").write_text(yaml.safe_dump(tree))
    art = sesa.load_artifact(old)
    assert art.cfg.loss.name == "infonce" and art.cfg.loss.concept_weight == 1.0
    again = sesa.evaluate(art.model, sesa.inputs_for_artifact(art), "test")
    assert math.isclose(again["ndcg@10"], metrics["test"]["ndcg@10"], rel_tol=1e-6)

"""Tests for next-item artifacts: the manifest, save/load roundtrip, refusal of incomplete or
corrupt folders and of other kinds, folders from before manifests, and that loading never
unpickles anything."""

from __future__ import annotations

import json
import pickle
import shutil

import polars as pl
import pytest
import torch

import yaml

from rankpref import artifact
from rankpref.data.preprocess import Vocabulary
from rankpref.errors import RankprefError
from rankpref.tasks.next_item import load_config
from rankpref.tasks.next_item.artifact import REQUIRED, load_artifact, save_artifact
from rankpref.tasks.next_item.models import build_model
from rankpref.tasks.next_item.recommend import Recommender

ARTIFACT_FILES = (*REQUIRED, "model.json", "manifest.json")

NUM_ITEMS = 9


@pytest.fixture
def tiny_artifact(tmp_path):
    """A tiny SASRec saved as an artifact; returns (folder, model, cfg, vocab, metrics, items)."""
    cfg = load_config(overrides=["model.hidden=8", "model.blocks=1", "model.heads=2",
                                 "data.max_len=5", "model.dropout=0.0"])
    torch.manual_seed(0)
    model = build_model(cfg, NUM_ITEMS)
    with torch.no_grad():        # make weights distinguishable from a fresh init
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    vocab = Vocabulary(users=["u1", "u2", "u3"],
                       items=[Vocabulary.PAD] + [f"item{i}" for i in range(1, NUM_ITEMS + 1)])
    metrics = {"valid": {"ndcg@10": 0.25}, "test": {"ndcg@10": 0.125}, "protocol": "full"}
    items = pl.DataFrame({"item_id": vocab.items[1:],
                          "item_idx": list(range(1, NUM_ITEMS + 1)),
                          "title": [f"Title {i}" for i in range(1, NUM_ITEMS + 1)]})
    folder = save_artifact(tmp_path / "run" / "model", model, cfg, vocab, metrics, items)
    return folder, model, cfg, vocab, metrics, items


def test_save_writes_expected_files(tiny_artifact):
    folder = tiny_artifact[0]
    names = {p.name for p in folder.iterdir()}
    assert set(ARTIFACT_FILES) <= names
    assert "items.parquet" in names
    assert not any(n.endswith((".pt", ".pkl", ".ckpt", ".bin")) for n in names)
    # no leftover temporary folders next to it
    assert [p.name for p in folder.parent.iterdir()] == ["model"]


def test_manifest_says_what_the_folder_and_each_file_are(tiny_artifact):
    folder = tiny_artifact[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "next_item" and manifest["model"] == "sasrec"
    assert manifest["format_version"] == artifact.FORMAT_VERSION
    assert set(manifest["files"]) == {p.name for p in folder.iterdir()} - {"manifest.json"}
    assert all(manifest["files"].values())
    assert json.loads((folder / "model.json").read_text())["hidden"] == 8


def test_open_loads_any_artifact_by_its_kind(tiny_artifact):
    from rankpref.load import open_artifact

    rec = open_artifact(tiny_artifact[0])
    assert isinstance(rec, Recommender) and rec.vocab == tiny_artifact[3]


def test_roundtrip(tiny_artifact):
    folder, model, cfg, vocab, metrics, items = tiny_artifact
    art = load_artifact(folder)
    want = model.state_dict()
    assert set(art.state) == set(want)
    for key, value in want.items():
        assert torch.equal(art.state[key], value), key
    assert art.cfg == cfg
    assert art.vocab == vocab
    assert art.metrics == metrics
    assert art.items is not None and art.items.equals(items)


def test_roundtrip_without_items(tmp_path, tiny_artifact):
    _, model, cfg, vocab, metrics, _ = tiny_artifact
    folder = save_artifact(tmp_path / "other", model, cfg, vocab, metrics)
    assert load_artifact(folder).items is None


def test_save_replaces_an_existing_artifact(tiny_artifact):
    folder, model, cfg, vocab, metrics, items = tiny_artifact
    save_artifact(folder, model, cfg, vocab, {"new": 1}, None)
    assert load_artifact(folder).metrics == {"new": 1}
    assert not (folder / "items.parquet").exists()


def test_a_folder_from_before_manifests_still_loads(tiny_artifact):
    """Old artifacts had no manifest.json or model.json and the old config keys."""
    folder, model, cfg, vocab, *_ = tiny_artifact
    (folder / "manifest.json").unlink()
    (folder / "model.json").unlink()
    tree = yaml.safe_load((folder / "config.yaml").read_text())
    tree["model"]["loss"] = tree.pop("loss")["name"]
    tree["pulse"]["use_ids"] = True
    (folder / "config.yaml").write_text(yaml.safe_dump(tree))
    rec = Recommender.load(folder)
    assert rec.cfg.loss.name == "ce" and rec.cfg.model.hidden == 8
    x = torch.tensor([[0, 1, 2, 3, 4]])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(rec.model.score_all(x), model.score_all(x), rtol=0, atol=0)


def test_another_kind_is_refused_with_the_command_that_takes_it(tmp_path, tiny_artifact):
    folder = tiny_artifact[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["kind"] = "rank"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RankprefError) as exc:
        Recommender.load(folder, command="rankpref evaluate")
    msg = str(exc.value)
    assert "a rank artifact" in msg and "rankpref rank evaluate" in msg
    assert "rankpref evaluate needs a next_item artifact" in msg


def test_a_newer_format_is_refused(tiny_artifact):
    folder = tiny_artifact[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = artifact.FORMAT_VERSION + 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RankprefError, match="newer than this rankpref reads"):
        load_artifact(folder)


def test_loaded_model_scores_identically(tiny_artifact):
    folder, model, *_ = tiny_artifact
    rec = Recommender.load(folder)
    model.eval()
    x = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(rec.model.score_all(x), model.score_all(x), rtol=0, atol=0)
    ranked = rec.recommend([1, 2, 3], k=3)
    assert len(ranked) == 3
    assert not {i for i, _ in ranked} & {0, 1, 2, 3}
    rows = rec.describe(ranked)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert all(r["title"] == f"Title {r['item_id'][4:]}" for r in rows)


def test_run_folder_resolves_to_model(tiny_artifact):
    folder = tiny_artifact[0]
    assert artifact.resolve(folder.parent) == folder
    assert artifact.resolve(folder) == folder
    state = load_artifact(folder.parent).state
    assert set(state) == set(tiny_artifact[1].state_dict())


def test_not_an_artifact(tmp_path):
    with pytest.raises(RankprefError, match="no such folder"):
        load_artifact(tmp_path / "does-not-exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RankprefError, match="not a rankpref artifact") as exc:
        load_artifact(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(exc.value)


@pytest.mark.parametrize("missing", [f for f in ARTIFACT_FILES
                                     if f not in ("model.safetensors", "manifest.json")])
def test_refuses_folder_missing_a_file(tiny_artifact, missing):
    folder = tiny_artifact[0]
    (folder / missing).unlink()
    with pytest.raises(RankprefError) as exc:
        load_artifact(folder)
    assert missing in str(exc.value)
    assert "missing" in str(exc.value)


def test_refuses_folder_missing_weights(tiny_artifact):
    folder = tiny_artifact[0]
    (folder / "model.safetensors").unlink()
    with pytest.raises(RankprefError, match="model.safetensors"):
        load_artifact(folder)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_refuses_truncated_safetensors(tiny_artifact, keep):
    folder = tiny_artifact[0]
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(RankprefError) as exc:
        load_artifact(folder)
    assert str(weights) in str(exc.value)
    assert "\n" not in str(exc.value).strip()


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"not safetensors at all",
                                     pickle.dumps({"a": 1})])
def test_refuses_garbage_weights(tiny_artifact, content):
    folder = tiny_artifact[0]
    (folder / "model.safetensors").write_bytes(content)
    with pytest.raises(RankprefError, match="model.safetensors"):
        load_artifact(folder)


def test_refuses_corrupt_metadata(tiny_artifact):
    folder = tiny_artifact[0]
    (folder / "vocab.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(RankprefError, match="corrupt"):
        load_artifact(folder)


def test_refuses_vocab_without_items(tiny_artifact):
    folder = tiny_artifact[0]
    (folder / "vocab.json").write_text(json.dumps({"users": []}), encoding="utf-8")
    with pytest.raises(RankprefError, match="items"):
        load_artifact(folder)


def test_refuses_invalid_config(tiny_artifact):
    folder = tiny_artifact[0]
    text = (folder / "config.yaml").read_text("utf-8")
    (folder / "config.yaml").write_text(text + "surprise: 1\n", encoding="utf-8")
    with pytest.raises(RankprefError) as exc:
        load_artifact(folder)
    assert "surprise: unknown key" in str(exc.value)
    assert "config.yaml" in str(exc.value)


def test_refuses_weights_that_do_not_match_config(tmp_path, tiny_artifact):
    folder = tiny_artifact[0]
    other = tmp_path / "mismatch"
    shutil.copytree(folder, other)
    saved = json.loads((other / "model.json").read_text())
    (other / "model.json").write_text(json.dumps({**saved, "hidden": 16}), encoding="utf-8")
    load_artifact(other)          # the files themselves are fine ...
    with pytest.raises(RankprefError, match="do not match"):
        Recommender.load(other)   # ... but the weights are for another shape


def test_load_never_unpickles(tiny_artifact, monkeypatch):
    folder = tiny_artifact[0]

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle-based loading was used")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    art = load_artifact(folder)
    assert art.state and art.items is not None
    rec = Recommender.load(folder)
    assert rec.recommend([1, 2], k=2)

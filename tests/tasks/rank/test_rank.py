"""``rankpref rank fit / evaluate / predict`` end to end, and their bad-input errors."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from rankpref.cli import app
from rankpref.tasks.rank import load_artifact, load_config

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["rank", *args])


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("wine") / "run"
    res = _run("fit", "--data", "wine-red-slice", "--loss", "ranklist", "--epochs", "4",
               "--margin", "1", "--list-size", "8", "--out", str(out),
               "--set", "loss.curriculum_every=1", "--set", "train.patience=2")
    assert res.exit_code == 0, res.output
    return out, res.output


def test_fit_writes_an_artifact_and_prints_metrics(wine_run):
    out, output = wine_run
    folder = out / "model"
    for name in ("model.safetensors", "config.yaml", "features.json", "metrics.json"):
        assert (folder / name).exists()
    assert "kendall_tau" in output and "artifact:" in output
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["loss"] == "ranklist" and metrics["target"] == "quality"
    assert metrics["train_lists"]["mean_list_size"] <= 8
    assert -1 <= metrics["test"]["kendall_tau"] <= 1
    # a trained scorer ranks red wines far better than chance
    assert metrics["valid"]["kendall_tau"] > 0.2
    assert metrics["selected_on"] == "valid kendall_tau"
    art = load_artifact(out)
    assert art.cfg.lists.margin == 1.0 and art.cfg.loss.margin == 1.0
    assert art.features["input_dim"] == 11
    assert json.loads((folder / "manifest.json").read_text())["kind"] == "rank"


def test_evaluate_reproduces_the_fit_metrics(wine_run, tmp_path):
    out, _ = wine_run
    res = _run("evaluate", "--artifact", str(out), "--split", "both", "--margin", "0",
               "--margin", "2", "--output", str(tmp_path / "m.json"))
    assert res.exit_code == 0, res.output
    got = json.loads((tmp_path / "m.json").read_text())
    saved = json.loads((out / "model" / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert got[split]["kendall_tau"] == pytest.approx(saved[split]["kendall_tau"], abs=1e-9)
        assert "ranking_acc@2" in got[split]


def test_predict_orders_a_file_of_items(wine_run, tmp_path):
    out, _ = wine_run
    items = pl.read_csv("datasets/wine_quality/winequality-red_slice.csv",
                        infer_schema_length=None).head(30).drop("quality")
    items.write_csv(tmp_path / "items.csv")
    res = _run("predict", "--artifact", str(out), "--items", str(tmp_path / "items.csv"),
               "--output", str(tmp_path / "pred.json"), "--top", "3")
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "pred.json").read_text())
    assert [r["rank"] for r in rows] == list(range(1, 31))
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert sorted(r["row"] for r in rows) == list(range(30))


def test_predict_with_missing_feature_column_is_a_clear_error(wine_run, tmp_path):
    out, _ = wine_run
    (tmp_path / "bad.csv").write_text("alcohol,pH\n9.4,3.5\n")
    res = _run("predict", "--artifact", str(out), "--items", str(tmp_path / "bad.csv"))
    assert res.exit_code == 2
    assert "bad.csv" in res.output and "missing column" in res.output


def test_fit_on_a_csv_with_embeddings_and_every_loss(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    emb = rng.normal(size=(n, 6)).astype(np.float32)
    y = np.round(emb[:, 0] + 0.3 * rng.normal(size=n), 1)
    pl.DataFrame({"score": y}).write_csv(tmp_path / "pool.csv")
    np.save(tmp_path / "emb.npy", emb)
    for loss in ("ranknet", "listnet", "listmle", "approxndcg", "lambdaloss", "ranklist",
                 "mse"):
        res = _run("fit", "--data", str(tmp_path / "pool.csv"), "--target", "score",
                   "--embeddings", str(tmp_path / "emb.npy"), "--loss", loss, "--epochs", "3",
                   "--list-size", "8", "--out", str(tmp_path / loss),
                   "--set", "eval.protocol=split")
        assert res.exit_code == 0, (loss, res.output)
        m = json.loads((tmp_path / loss / "model" / "metrics.json").read_text())
        assert m["split"].startswith("fixed 80%/10%/10%") and m["protocol"] == "split"
    res = _run("predict", "--artifact", str(tmp_path / "ranklist"), "--items",
               str(tmp_path / "pool.csv"))
    assert res.exit_code == 2 and "--embeddings" in res.output


@pytest.mark.parametrize("args,message", [
    (["--set", "loss.nme=x"], "loss.nme: unknown key"),
    (["--loss", "softmax"], "loss.name"),
    (["--target", "nope"], "field 'nope': missing column"),
    (["--margin", "9"], "margin W=9 is larger than the label range"),
    (["--list-size", "1"], "lists.list_size"),
    (["--set", "loss.pairs=skip"], "loss.skips"),
])
def test_fit_bad_input_exits_2_with_a_message(args, message):
    res = _run("fit", "--data", "wine-red-slice", "--epochs", "1", *args)
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_rank_config_yaml_rejects_unknown_keys(tmp_path):
    (tmp_path / "c.yaml").write_text("lists:\n  list_size: 16\n  size: 3\n")
    from rankpref.errors import ConfigError
    with pytest.raises(ConfigError, match="lists.size: unknown key"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "ok.yaml").write_text("lists:\n  list_size: 16\nloss:\n  name: listmle\n")
    cfg = load_config(tmp_path / "ok.yaml", ["train.epochs=2"])
    assert (cfg.lists.list_size, cfg.loss.name, cfg.train.epochs) == (16, "listmle", 2)


def test_evaluate_a_folder_that_is_not_an_artifact(tmp_path):
    res = _run("evaluate", "--artifact", str(tmp_path))
    assert res.exit_code == 2 and "not a rankpref artifact" in res.output


def test_a_next_item_artifact_is_refused_by_name(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "manifest.json").write_text(json.dumps(
        {"kind": "next_item", "format_version": 1, "files": {}}))
    res = _run("evaluate", "--artifact", str(tmp_path))
    assert res.exit_code == 2
    assert "a next_item artifact" in res.output and "rankpref rank evaluate needs a rank" in res.output


@pytest.mark.slow
def test_emobank_slice_text_demo(tmp_path):
    """The demo: MiniLM features of the shipped EmoBank slice, fit + evaluate."""
    out = tmp_path / "emo"
    res = _run("fit", "--data", "emobank-slice", "--target", "V", "--loss", "ranklist",
               "--out", str(out))
    assert res.exit_code == 0, res.output
    res = _run("evaluate", "--artifact", str(out), "--split", "test")
    assert res.exit_code == 0, res.output
    m = json.loads((out / "model" / "metrics.json").read_text())
    assert m["test"]["items"] == 200 and m["test"]["kendall_tau"] > 0.3


def test_a_folder_from_before_manifests_still_loads_and_scores_the_same(wine_run, tmp_path):
    import shutil

    import yaml

    out, _ = wine_run
    old = tmp_path / "old"
    shutil.copytree(out / "model", old)
    (old / "manifest.json").unlink()
    tree = yaml.safe_load((old / "config.yaml").read_text())
    tree["data"]["dev_fraction"] = tree["data"].pop("valid_fraction")
    tree["model"].pop("name")
    (old / "config.yaml").write_text(yaml.safe_dump(tree))
    got = _run("evaluate", "--artifact", str(old), "--output", str(tmp_path / "m.json"))
    assert got.exit_code == 0, got.output
    saved = json.loads((out / "model" / "metrics.json").read_text())
    assert json.loads((tmp_path / "m.json").read_text())["test"]["kendall_tau"] == \
        pytest.approx(saved["test"]["kendall_tau"], abs=1e-9)


def test_the_margin_setting_reaches_the_training_loss():
    """loss.margin must change what training minimises, not only what the config records:
    pairs closer than W are left out, so W=1 and W=0 give different losses here."""
    import torch

    from rankpref.registry import LOSSES
    from rankpref.tasks.rank.artifact import build_scorer
    from rankpref.tasks.rank.data import LABEL_PAD
    from rankpref.tasks.rank.module import RankModule, loss_kwargs

    torch.manual_seed(0)
    x = torch.randn(2, 6, 4)
    y = torch.tensor([[5.0, 5.5, 6.0, 7.0, 3.0, 3.4], [1.0, 1.2, 4.0, 2.0, 2.5, 6.0]])
    losses = {}
    for margin in (0.0, 1.0):
        cfg = load_config(None, ["data.name=wine-red-slice", "loss.name=ranklist",
                                 f"loss.margin={margin}", "loss.pairs=nonlocal"])
        torch.manual_seed(1)
        module = RankModule(build_scorer(cfg, 4), cfg)
        module.log = lambda *args, **kwargs: None  # no trainer here
        module.eval()  # no dropout: the same scores twice
        losses[margin] = module.training_step((x, y), 0)
        scores = module.model(x)
        settings = {**loss_kwargs(cfg.loss, 0, 6), "margin": margin}  # the curriculum etc.
        direct = LOSSES.get("ranklist", "listwise")(scores, y, LABEL_PAD, **settings)
        assert torch.allclose(losses[margin], direct)
    assert not torch.allclose(losses[0.0], losses[1.0])


def test_a_fit_without_progress_bars_prints_one_line_per_epoch(tmp_path):
    res = _run("fit", "--data", "wine-red-slice", "--epochs", "2", "--out", str(tmp_path / "r"),
               "--set", "train.progress=false", "--set", "train.patience=5")
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"], res.output
    assert all("train/loss" in line and "valid/kendall_tau" in line and line.endswith(" s)")
               for line in lines)

"""End-to-end tests of the ``rankpref`` command line on the shipped demo data.

One tiny 2-epoch ``fit`` runs once per module; evaluate and recommend reuse its artifact.
Bad input must exit with status 2 and a single ``error: ...`` line, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rankpref.cli import app

runner = CliRunner()
RANKPREF_BIN = Path(sys.executable).parent / "rankpref"


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, *needles: str) -> str:
    """Exit status 2, exactly one ``error:`` line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


@pytest.fixture(scope="module", autouse=True)
def _restore_process_state():
    """The CLI sets torch threads (and OMP_NUM_THREADS); do not leak that into other modules."""
    threads = torch.get_num_threads()
    env = dict(os.environ)
    yield
    torch.set_num_threads(threads)
    for key in set(os.environ) - set(env):
        del os.environ[key]
    os.environ.update(env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Run ``rankpref fit`` on the demo data for 2 epochs, once; return paths and metadata."""
    root = tmp_path_factory.mktemp("cli")
    run = root / "run"
    cache = root / "cache"
    result = invoke("fit", "--data", "demo", "--epochs", "2", "--out", run,
                    "--set", f"data.cache_dir={cache}", "--set", "train.progress=false")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Traceback" not in result.output
    artifact = run / "model"
    assert f"artifact: {artifact}" in result.stdout
    metrics = json.loads((artifact / "metrics.json").read_text("utf-8"))
    vocab = json.loads((artifact / "vocab.json").read_text("utf-8"))
    return {"root": root, "run": run, "artifact": artifact, "cache": cache, "metrics": metrics,
            "vocab": vocab}


# ----------------------------------------------------------------------------- fit


def test_fit_writes_a_complete_artifact(trained):
    artifact = trained["artifact"]
    for name in ("model.safetensors", "config.yaml", "vocab.json", "metrics.json",
                 "items.parquet"):
        assert (artifact / name).is_file(), name
    metrics = trained["metrics"]
    assert metrics["dataset"] == "demo"
    assert metrics["protocol"] == "full"
    assert metrics["mask_history"] is True
    assert metrics["epochs_run"] == 2
    assert 1 <= metrics["best_epoch"] <= 2
    for split in ("valid", "test"):
        m = metrics[split]
        assert m["examples"] > 0
        for k in metrics["ks"]:
            for name in ("recall", "ndcg", "mrr"):
                assert 0.0 <= m[f"{name}@{k}"] <= 1.0
            assert m[f"mrr@{k}"] <= m[f"ndcg@{k}"] <= m[f"recall@{k}"]
    # a 2-epoch model is far better than random on the demo data (random recall@10 ~ 10/1500)
    assert metrics["test"]["recall@10"] > 0.05
    assert trained["vocab"]["items"][0] == "<pad>"
    # the resolved config was saved with the overrides
    cfg_text = (artifact / "config.yaml").read_text("utf-8")
    assert str(trained["cache"]) in cfg_text
    assert "epochs: 2" in cfg_text


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_reproduces_fit_metrics(trained):
    out = trained["root"] / "eval_both.json"
    result = invoke("evaluate", "--artifact", trained["run"], "--split", "both",
                    "--output", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert "test (full ranking" in result.stdout and "valid (full ranking" in result.stdout
    got = json.loads(out.read_text("utf-8"))
    saved = trained["metrics"]
    for split in ("test", "valid"):
        assert set(got[split]) == set(saved[split])
        for key, value in saved[split].items():
            assert got[split][key] == pytest.approx(value, abs=1e-9), (split, key)
    assert got["protocol"] == "full" and got["mask_history"] is True


def test_evaluate_default_split_is_test(trained):
    out = trained["root"] / "eval_test.json"
    result = invoke("evaluate", "--artifact", trained["artifact"], "--output", out)
    assert result.exit_code == 0, (result.output, result.exception)
    got = json.loads(out.read_text("utf-8"))
    assert "test" in got and "valid" not in got
    for key, value in trained["metrics"]["test"].items():
        assert got["test"][key] == pytest.approx(value, abs=1e-9), key


def test_evaluate_protocol_variants(trained):
    """Unmasked history can only lower the metrics; sampled_100 can only raise them."""
    full = trained["metrics"]["test"]
    out = trained["root"] / "eval_nomask.json"
    result = invoke("evaluate", "--artifact", trained["run"], "--no-mask-history",
                    "--output", out)
    assert result.exit_code == 0, (result.output, result.exception)
    nomask = json.loads(out.read_text("utf-8"))
    assert nomask["mask_history"] is False
    out = trained["root"] / "eval_sampled.json"
    result = invoke("evaluate", "--artifact", trained["run"], "--protocol", "sampled_100",
                    "--output", out)
    assert result.exit_code == 0, (result.output, result.exception)
    sampled = json.loads(out.read_text("utf-8"))
    assert sampled["protocol"] == "sampled_100"
    for key in ("recall@10", "ndcg@10", "mrr@10", "recall@20"):
        assert nomask["test"][key] <= full[key] + 1e-12
        assert sampled["test"][key] >= full[key] - 1e-12
    assert sampled["test"]["recall@20"] > full["recall@20"]


# ----------------------------------------------------------------------------- recommend


def test_recommend_items_json(trained):
    given = trained["vocab"]["items"][1:3]
    result = invoke("recommend", "--artifact", trained["run"], "--items", ",".join(given),
                    "--k", "5", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    rows = json.loads(result.stdout)
    assert len(rows) == 5
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    ids = [r["item_id"] for r in rows]
    assert not set(ids) & set(given)
    assert len(set(ids)) == 5
    assert set(ids) <= set(trained["vocab"]["items"][1:])
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_recommend_items_plain_text(trained):
    given = trained["vocab"]["items"][5]
    result = invoke("recommend", "--artifact", trained["artifact"], "--items", given,
                    "--k", "3")
    assert result.exit_code == 0, (result.output, result.exception)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 3
    assert lines[0].lstrip().startswith("1.")
    assert given not in result.stdout


def test_recommend_known_user(trained):
    from rankpref.tasks.next_item.artifact import load_artifact
    from rankpref.data.datasets import prepare
    from rankpref.tasks.next_item.recommend import user_history

    user = trained["vocab"]["users"][0]
    result = invoke("recommend", "--artifact", trained["run"], "--user", user, "--k", "5",
                    "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    rows = json.loads(result.stdout)
    assert len(rows) == 5
    cfg = load_artifact(trained["artifact"]).cfg
    history = user_history(prepare(cfg.data, quiet=True), user)
    seen = {trained["vocab"]["items"][i] for i in history}
    assert history and not {r["item_id"] for r in rows} & seen


# ----------------------------------------------------------------------------- bad input


def test_unknown_config_key_via_set(tmp_path):
    out = tmp_path / "never"
    result = invoke("fit", "--data", "demo", "--out", out, "--set", "train.bogus=1")
    assert_user_error(result, "train.bogus", "unknown key")
    assert not out.exists()


def test_unknown_config_key_via_set_on_evaluate(trained):
    result = invoke("evaluate", "--artifact", trained["run"], "--set", "eval.nosuch=1")
    assert_user_error(result, "eval.nosuch", "unknown key")


def test_bad_protocol_on_evaluate(trained):
    result = invoke("evaluate", "--artifact", trained["run"], "--protocol", "sampled_x")
    assert_user_error(result, "sampled_x")


def test_unknown_item_id(trained):
    known = trained["vocab"]["items"][1]
    result = invoke("recommend", "--artifact", trained["run"], "--items",
                    f"{known},NO-SUCH-ITEM", "--k", "5")
    assert_user_error(result, "unknown item id", "NO-SUCH-ITEM")
    assert result.stdout.strip() == ""


def test_unknown_user(trained):
    result = invoke("recommend", "--artifact", trained["run"], "--user", "NO-SUCH-USER")
    assert_user_error(result, "unknown user", "NO-SUCH-USER")


@pytest.mark.parametrize("which", ["both", "neither"])
def test_user_and_items_exclusive(trained, which):
    extra = {"both": ["--user", trained["vocab"]["users"][0], "--items",
                      trained["vocab"]["items"][1]],
             "neither": []}[which]
    result = invoke("recommend", "--artifact", trained["run"], *extra)
    assert_user_error(result, "--user", "--items")


def test_empty_items_list(trained):
    result = invoke("recommend", "--artifact", trained["run"], "--items", " , ")
    assert_user_error(result, "empty")


@pytest.mark.parametrize("command", ["evaluate", "recommend"])
def test_missing_artifact_folder(tmp_path, command):
    missing = tmp_path / "no-such-run"
    extra = ["--items", "x"] if command == "recommend" else []
    result = invoke(command, "--artifact", missing, *extra)
    assert_user_error(result, str(missing), "no such folder")


def test_missing_config_file(tmp_path):
    missing = tmp_path / "no-such.yaml"
    result = invoke("fit", "--config", missing, "--out", tmp_path / "run")
    assert_user_error(result, str(missing), "not found")


@pytest.mark.parametrize("command", ["fit", "prepare"])
def test_unknown_dataset_name(tmp_path, command):
    result = invoke(command, "--data", "no-such-dataset", "--set",
                    f"data.cache_dir={tmp_path / 'cache'}", "--set",
                    f"output_dir={tmp_path / 'run'}")
    assert_user_error(result, "unknown dataset", "no-such-dataset")
    assert not (tmp_path / "run").exists()


def test_bad_split(trained):
    result = invoke("evaluate", "--artifact", trained["run"], "--split", "bogus")
    assert_user_error(result, "--split", "bogus")


def test_no_traceback_in_real_subprocess(trained, tmp_path):
    """The installed console script: success prints JSON; bad input one line and status 2."""
    assert RANKPREF_BIN.exists(), RANKPREF_BIN
    given = trained["vocab"]["items"][1:3]
    ok = subprocess.run([str(RANKPREF_BIN), "recommend", "--artifact", str(trained["run"]),
                         "--items", ",".join(given), "--k", "5", "--json"],
                        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert ok.returncode == 0, ok.stderr
    rows = json.loads(ok.stdout)
    assert len(rows) == 5 and not {r["item_id"] for r in rows} & set(given)

    bad = subprocess.run([str(RANKPREF_BIN), "recommend", "--artifact", str(trained["run"]),
                          "--items", "NO-SUCH-ITEM"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stdout + bad.stderr
    assert bad.stdout == ""
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "NO-SUCH-ITEM" in lines[0]


def test_fit_epochs_zero_is_rejected(tmp_path):
    # an unknown dataset makes the buggy path stop early instead of training for 200 epochs
    result = invoke("fit", "--epochs", "0", "--data", "no-such-dataset",
                    "--out", tmp_path / "run")
    assert_user_error(result, "train.epochs")


def test_config_that_is_a_directory(tmp_path):
    result = invoke("fit", "--config", tmp_path, "--out", tmp_path / "run")
    assert_user_error(result, str(tmp_path))

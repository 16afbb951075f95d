"""Bad arguments and damaged files given to the commands: each is one line naming the file or
option, exit 2, before any long work, with nothing half-written. (A port in use and the
/search 501 message are in tests/serving/test_serve.py.)"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """A one-epoch demo SASRec artifact (copy it before damaging it)."""
    from typer.testing import CliRunner

    from rankpref.cli import app

    root = tmp_path_factory.mktemp("next_item")
    result = CliRunner().invoke(app, [
        "fit", "--data", "demo", "--out", str(root / "run"), "--set", "train.epochs=1",
        "--set", "model.hidden=16", "--set", "train.progress=false",
        "--set", f"data.cache_dir={root / 'cache'}"])
    assert result.exit_code == 0, result.output
    return root / "run" / "model"


@pytest.fixture(scope="module")
def sesa_artifact(tmp_path_factory) -> Path:
    from rankpref.tasks import sesa

    out = tmp_path_factory.mktemp("sesa") / "run"
    cfg = sesa.load_config(None, [
        "data.name=onet-slice", "data.task=related", "model.encoder=gru", "model.hidden=16",
        "model.embed_dim=8", "model.max_doc_tokens=16", "train.epochs=1", "train.threads=1",
        "loss.negatives=in_batch", "train.batch_size=32", f"output_dir={out}"])
    sesa.fit(cfg)
    return out / "model"


def test_a_corrupt_item_table_in_an_artifact(invoke, artifact, tmp_path, refused):
    damaged = tmp_path / "model"
    shutil.copytree(artifact, damaged)
    (damaged / "items.parquet").write_bytes(b"not parquet at all")
    refused(invoke("recommend", "--artifact", damaged, "--user", "SYN0000007", "--k", "5"),
            "items.parquet", "unreadable")


def test_evaluate_output_that_is_a_folder_is_refused_before_evaluating(invoke, artifact,
                                                                       tmp_path, refused):
    started = time.perf_counter()
    refused(invoke("evaluate", "--artifact", artifact, "--output", tmp_path),
            "--output", "is a folder")
    assert time.perf_counter() - started < 10, "refused only after the evaluation"


def test_index_build_on_a_full_disk(invoke, artifact, full_disk, refused):
    refused(invoke("index", "build", "--artifact", artifact, "--out", full_disk / "ix"),
            str(full_disk / "ix"), "No space left on device", absent=[full_disk / "ix"])
    assert [p.name for p in full_disk.iterdir()] == [".filler"]


@pytest.mark.parametrize("args,needles,usage", [
    (["search", "--query", "nurse", "--k", "-1"], ("--k", "greater than or equal to 1"), True),
    (["search", "--query", "nurse", "--k", "0"], ("--k",), True),
    (["search", "--query", "   ", "--k", "3"], ("query", "empty"), False),
    (["explain", "--query", "nurse", "--top", "-5"], ("--top",), True),
    (["explain", "--query", "", "--top", "3"], ("query", "empty"), False),
], ids=["k-negative", "k-zero", "blank-query", "top-negative", "empty-explain-query"])
def test_sesa_queries_that_cannot_be_answered(invoke, sesa_artifact, refused, args, needles,
                                              usage):
    outcome = invoke("sesa", args[0], "--artifact", sesa_artifact, *args[1:])
    refused(outcome, *needles, usage=usage)


def test_a_yaml_alias_bomb_in_a_tune_spec_is_refused_at_once(invoke, tmp_path, refused):
    """It used to expand until MemoryError (45 s, 3 GB)."""
    lines = ["task: next_item", "trials: 1", "space: {train.lr: {type: float, low: 0.001, "
             "high: 0.01}}", "a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = "a" if i == 1 else f"b{i - 1}"
        lines.append(f"b{i}: &b{i} [" + ", ".join([f"*{prev}"] * 10) + "]")
    lines.append("overrides: {data.name: *b11}")
    spec = tmp_path / "bomb.yaml"
    spec.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    refused(invoke("tune", spec, "--out", tmp_path / "study"), "bomb.yaml", "aliases",
            absent=[tmp_path / "study"])
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("command", [["fit"], ["rank", "fit"], ["sesa", "fit"]])
def test_an_unknown_key_in_a_config_file_names_that_file(invoke, tmp_path, refused, command):
    config = tmp_path / "mine.yaml"
    config.write_text("train:\n  epochz: 3\n")
    line = refused(invoke(*command, "--config", config, "--out", tmp_path / "run"),
                   "mine.yaml", "train.epochz", "unknown key", absent=[tmp_path / "run"])
    assert "default" not in line


def _pool(tmp_path: Path, target) -> Path:
    rng = np.random.default_rng(0)
    n = 90
    x = rng.normal(size=(n, 3))
    y = np.round(x[:, 0] + 0.3 * rng.normal(size=n), 1)
    frame = pl.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": target(y)})
    frame.write_csv(tmp_path / "pool.csv")
    return tmp_path / "pool.csv"


def _rank_fit(invoke, path: Path, out: Path):
    return invoke("rank", "fit", "--data", path, "--target", "y", "--epochs", "2",
                  "--list-size", "8", "--out", out,
                  "--set", "data.feature_columns=[a, b, c]")


@pytest.mark.parametrize("value", [np.inf, -np.inf], ids=["+inf", "-inf"])
def test_an_infinite_rank_target_is_refused_with_its_line(invoke, tmp_path, refused, value):
    """-inf equals the list padding: it used to give valid tau -1.0 and NaN test metrics."""
    def poison(y):
        y = y.copy()
        y[7] = value
        return y

    refused(_rank_fit(invoke, _pool(tmp_path, poison), tmp_path / "run"), "pool.csv",
            "line 9", "field 'y'", "infinite", absent=[tmp_path / "run" / "model"])


def test_a_scale_below_zero_gives_ndcg_between_0_and_1(invoke, tmp_path):
    """Valence on -3..3: NDCG's gains used to go negative (NaN or negative NDCG)."""
    outcome = _rank_fit(invoke, _pool(tmp_path, lambda y: y - 5.0), tmp_path / "run")
    assert outcome.exit_code == 0, outcome.output
    metrics = json.loads((tmp_path / "run" / "model" / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert 0.0 < metrics[split]["ndcg@10"] <= 1.0, metrics[split]
        assert -1.0 <= metrics[split]["kendall_tau"] <= 1.0


def test_rank_outputs_that_cannot_be_written_are_refused_first(invoke, tmp_path, refused):
    pool = _pool(tmp_path, lambda y: y)
    assert _rank_fit(invoke, pool, tmp_path / "run").exit_code == 0
    refused(invoke("rank", "evaluate", "--artifact", tmp_path / "run", "--output", tmp_path),
            "--output", "is a folder")
    (tmp_path / "scores.json").mkdir()
    refused(invoke("rank", "predict", "--artifact", tmp_path / "run", "--items", pool,
                   "--output", tmp_path / "scores.json"), "scores.json", "is a folder")
    refused(invoke("rank", "predict", "--artifact", tmp_path / "run", "--items", pool,
                   "--output", tmp_path / "scores.txt"), "must end in .csv or .json")

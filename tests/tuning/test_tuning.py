"""``rankpref tune``: spec validation, pruning callbacks that see this epoch's value, resumable
SQLite studies, best configs that the fit commands accept, optuna's plots."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from typer.testing import CliRunner

from rankpref.cli import app
from rankpref.tasks.next_item import load_config
from rankpref.errors import ConfigError
from rankpref.registry import TASKS
from rankpref.tuning import check_space, load_spec, pruning_callback, tune

torch.set_num_threads(1)
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"

DEMO_SPEC = {
    "task": "next_item",
    "overrides": {"data.name": "demo", "train.epochs": 3, "train.patience": 2,
                  "train.progress": False, "model.hidden": 16, "model.blocks": 1},
    "trials": 2,
    "sampler": {"name": "tpe", "seed": 0, "startup_trials": 2},
    "pruner": {"name": "none"},
    "space": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
              "model.dropout": {"type": "categorical", "choices": [0.1, 0.3]}},
}


def _write_spec(folder: Path, tree: dict, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


class FakeTrial:
    """Records reports; says "prune" once ``prune_at`` values were reported."""

    def __init__(self, prune_at: int | None = None):
        self.values: list[tuple[int, float]] = []
        self.prune_at = prune_at

    def report(self, value, step):
        self.values.append((step, value))

    def should_prune(self):
        return self.prune_at is not None and len(self.values) >= self.prune_at


def _signal_mid_trial(cmd: list[str], after: str, sig: int) -> tuple[int, str]:
    """Start ``cmd``; once a line starting with ``after`` is printed, wait a second (the next
    trial is running) and send ``sig``. Returns the exit status and the rest of the output."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in proc.stdout:
            if line.startswith(after):
                time.sleep(1.0)
                break
        proc.send_signal(sig)
        rest = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    return proc.returncode, rest


# ------------------------------------------------------------------ spec validation

@pytest.mark.parametrize("param, message", [
    ({"type": "categorical"}, "choices"),
    ({"type": "float", "low": 1.0, "high": 0.5}, "below high"),
    ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log scale needs low > 0"),
    ({"type": "int", "low": 1.5, "high": 3}, "whole-number"),
    ({"type": "float", "low": 0, "high": 1, "choices": [1]}, "not 'choices'"),
    ({"type": "float", "low": 0, "hihg": 1}, "unknown key"),
    ({"type": "int", "low": 1, "high": 3, "step": 0.5}, "whole-number"),
    ({"type": "int", "low": 1, "high": 3, "step": 4}, "larger than the range"),
    ({"type": "categorical", "choices": [[32], [64, 32]]}, "numbers, strings"),
    ({"type": "categorical", "choices": [1, 2, 1]}, "repeat"),
])
def test_bad_param_specs_are_refused(tmp_path, param, message):
    spec = _write_spec(tmp_path, {**DEMO_SPEC, "space": {"train.lr": param}})
    with pytest.raises(ConfigError, match=message) as err:
        load_spec(spec)
    assert "space.train.lr" in str(err.value) and str(spec) in str(err.value)


def test_yardstick_settings_cannot_be_searched(tmp_path):
    """Trials must be measured on the same data, split and metric."""
    task = TASKS.get("next_item")
    for key, param in (("eval.protocol", {"type": "categorical", "choices": ["full", "sampled_20"]}),
                       ("data.split", {"type": "categorical", "choices": ["leave_one_out",
                                                                          "temporal"]})):
        spec, base = load_spec(_write_spec(tmp_path, {**DEMO_SPEC, "space": {key: param}}))
        with pytest.raises(ConfigError, match=f"space.{key}: this setting decides what"):
            check_space(spec, task, base)
    ok = {**DEMO_SPEC, "space": {"data.max_len": {"type": "categorical", "choices": [20, 50]}}}
    spec, base = load_spec(_write_spec(tmp_path, ok))
    check_space(spec, task, base)
    rank = {"task": "rank", "space": {"data.target": {"type": "categorical",
                                                       "choices": ["V", "A"]}}}
    spec, base = load_spec(_write_spec(tmp_path, rank))
    with pytest.raises(ConfigError, match="space.data.target: this setting decides"):
        check_space(spec, TASKS.get("rank"), base)


def test_unknown_spec_key_and_empty_space(tmp_path):
    with pytest.raises(ConfigError, match="trails: unknown key"):
        load_spec(_write_spec(tmp_path, {**DEMO_SPEC, "trails": 3}))
    with pytest.raises(ConfigError, match="space"):
        load_spec(_write_spec(tmp_path, {**DEMO_SPEC, "space": {}}))


def test_space_is_checked_against_the_model_config_before_training(tmp_path):
    task = TASKS.get("next_item")
    bad_key = {**DEMO_SPEC, "space": {"model.hiden": {"type": "int", "low": 8, "high": 16}}}
    spec, base = load_spec(_write_spec(tmp_path, bad_key))
    with pytest.raises(ConfigError, match=r"space.model.hiden = 8 .*model.hiden: unknown key"):
        check_space(spec, task, base)
    bad_value = {**DEMO_SPEC, "space": {"model.dropout": {"type": "float", "low": 0.5,
                                                          "high": 1.5}}}
    spec, base = load_spec(_write_spec(tmp_path, bad_value))
    with pytest.raises(ConfigError, match=r"space.model.dropout = 1.5"):
        check_space(spec, task, base)
    rule = {**DEMO_SPEC, "space": {"model.heads": {"type": "categorical", "choices": [1, 3]}}}
    spec, base = load_spec(_write_spec(tmp_path, rule))  # hidden 16 / 3 heads: a model rule
    with pytest.raises(ConfigError, match=r"space.model.heads = 3 .*divisible"):
        check_space(spec, task, base)
    rank = {"task": "rank", "space": {"loss.pairs": {"type": "categorical",
                                                      "choices": ["nonlocal", "skip"]}}}
    spec, base = load_spec(_write_spec(tmp_path, rank))
    with pytest.raises(ConfigError, match=r"space.loss.pairs = 'skip' .*loss.skips"):
        check_space(spec, TASKS.get("rank"), base)
    float_on_int = {**DEMO_SPEC, "space": {"model.blocks": {"type": "float", "low": 1,
                                                            "high": 3}}}
    spec, base = load_spec(_write_spec(tmp_path, float_on_int))  # 1.0 and 3.0 would pass
    with pytest.raises(ConfigError, match=r"space.model.blocks = 1.74"):
        check_space(spec, task, base)
    bad_override = {**DEMO_SPEC, "overrides": {"model.hiden": 16}}
    path = _write_spec(tmp_path, bad_override, "bad_override.yaml")
    spec, base = load_spec(path)
    with pytest.raises(ConfigError, match=r"bad_override.yaml: base_config and overrides do "
                                          r"not give a valid next_item config: .*model.hiden"):
        check_space(spec, task, base, str(path))
    monitor = {**DEMO_SPEC, "overrides": {"eval.monitor": "ndcg@15"}}
    spec, base = load_spec(_write_spec(tmp_path, monitor))
    with pytest.raises(ConfigError, match="eval.monitor: 'ndcg@15' is not computed"):
        check_space(spec, task, base)
    with pytest.raises(ConfigError, match="base_config 'nope.yaml' not found"):
        load_spec(_write_spec(tmp_path, {**DEMO_SPEC, "base_config": "nope.yaml"}))


def test_nested_overrides_set_single_keys(tmp_path):
    """A nested mapping (or --set overrides.train.epochs=..) sets one key; it never replaces
    the base config's whole section."""
    (tmp_path / "base.yaml").write_text("train:\n  lr: 0.005\n  patience: 3\n",
                                        encoding="utf-8")
    tree = {**DEMO_SPEC, "base_config": "base.yaml", "overrides": {"train": {"epochs": 7}}}
    spec, base = load_spec(_write_spec(tmp_path, tree), ["overrides.train.patience=4"])
    assert spec.overrides == {"train.epochs": 7, "train.patience": 4}
    cfg = check_space(spec, TASKS.get("next_item"), base)
    assert (cfg.train.epochs, cfg.train.patience, cfg.train.lr) == (7, 4, 0.005)
    with pytest.raises(ConfigError, match="overrides: .*train: an empty mapping would replace"):
        load_spec(_write_spec(tmp_path, {**tree, "overrides": {"train": {}}}))


def test_base_config_is_relative_to_the_spec(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  hidden: 24\n  heads: 1\n", encoding="utf-8")
    spec, base = load_spec(_write_spec(tmp_path, {**DEMO_SPEC, "base_config": "base.yaml"}))
    cfg = check_space(spec, TASKS.get("next_item"), base)
    assert base == tmp_path / "base.yaml" and cfg.model.hidden == 16  # overrides win
    assert cfg.model.heads == 1 and cfg.data.name == "demo"


# ------------------------------------------------------------------ pruning callbacks

def test_pruning_callback_reports_this_epochs_valid_ndcg(tmp_path):
    """The value reported after epoch e is the valid ndcg@10 of epoch e (from the CSV log)."""
    from rankpref.plots import read_training_log
    from rankpref.tasks.next_item import fit

    cfg = load_config(None, ["data.name=demo", "train.epochs=3", "model.hidden=16",
                             "model.blocks=1", "train.progress=false",
                             f"output_dir={tmp_path / 'run'}"])
    trial = FakeTrial()
    fit(cfg, callbacks=[pruning_callback(trial, "valid/ndcg@10")])
    log = read_training_log(tmp_path / "run")
    assert [s for s, _ in trial.values] == [0, 1, 2]
    for step, value in trial.values:
        assert value == pytest.approx(log[step]["valid/ndcg@10"], abs=1e-6)
    assert len({round(v, 6) for _, v in trial.values}) > 1  # really per epoch

    pruned = FakeTrial(prune_at=2)
    cfg2 = cfg.model_copy(update={"output_dir": str(tmp_path / "pruned")})
    with pytest.raises(optuna.TrialPruned, match="after epoch 2"):
        fit(cfg2, callbacks=[pruning_callback(pruned, "valid/ndcg@10")])
    assert not (tmp_path / "pruned" / "model").exists()  # a pruned trial writes no artifact


def test_pruning_callback_sees_rank_and_sesa_valid_values_of_the_same_epoch():
    from rankpref.tasks import sesa
    from rankpref.tasks import rank

    cfg = rank.load_config(None, ["data.name=wine-red-slice", "train.epochs=3",
                                  "lists.list_size=8", "train.patience=5"])
    trial = FakeTrial()
    metrics = rank.fit(cfg, write=False,
                       callbacks=[pruning_callback(trial, "valid/kendall_tau")]).metrics
    assert [v for _, v in trial.values] == pytest.approx(
        [h["valid/kendall_tau"] for h in metrics["history"]])

    cfg = sesa.load_config(None, ["data.name=onet-slice", "data.task=related",
                                  "model.encoder=gru", "model.hidden=32", "model.embed_dim=16",
                                  "model.max_doc_tokens=24", "train.epochs=2",
                                  "loss.negatives=in_batch", "train.batch_size=32"])
    trial = FakeTrial()
    metrics = sesa.fit(cfg, write=False,
                       callbacks=[pruning_callback(trial, "valid/ndcg@10")]).metrics
    assert [v for _, v in trial.values] == pytest.approx(
        [h["valid/ndcg@10"] for h in metrics["history"]], abs=1e-6)


# ------------------------------------------------------------------ whole studies

def test_study_resumes_writes_best_config_and_plots(tmp_path):
    spec_path = _write_spec(tmp_path, DEMO_SPEC)
    out = tmp_path / "study"
    res = runner.invoke(app, ["tune", str(spec_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "0 of 2 trials finished" in res.output
    summary = json.loads((out / "study.json").read_text())
    assert summary["trials"] == {"complete": 2}
    assert summary["selected_on"] == "valid/ndcg@10"
    for name in ("history", "importance"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG
    # the best value is the best trial's valid ndcg@10, as its artifact recorded it
    best_metrics = json.loads((Path(summary["best_artifact"]) / "metrics.json").read_text())
    assert summary["best_value"] == pytest.approx(best_metrics["valid"]["ndcg@10"])
    assert summary["best_value"] == max(t["value"] for t in summary["history"])
    assert not (Path(summary["best_artifact"]).parent / "checkpoints").exists()

    # continue the same study to 3 finished trials (naming its storage): exactly one more runs
    res = runner.invoke(app, ["tune", str(spec_path), "--out", str(out), "--trials", "3",
                              "--storage", f"sqlite:///{out / 'study.db'}",
                              "--study-name", "study", "--no-plot"])
    assert res.exit_code == 0, res.output
    assert "2 of 3 trials finished; running up to 1 more" in res.output
    resumed = json.loads((out / "study.json").read_text())
    assert resumed["trials"] == {"complete": 3}
    # the continued sampler does not replay the first run's draws
    firsts = [t["params"] for t in resumed["history"][:2]]
    assert resumed["history"][2]["params"] not in firsts
    res = runner.invoke(app, ["tune", str(spec_path), "--out", str(out), "--trials", "3"])
    assert res.exit_code == 0 and "all 3 trials already finished" in res.output

    # the best config is a full config that `rankpref fit` accepts, with the best values
    best = out / "best_config.yaml"
    cfg = load_config(best)
    params = json.loads((out / "study.json").read_text())["best_params"]
    assert cfg.train.lr == pytest.approx(params["train.lr"])
    assert cfg.model.dropout == params["model.dropout"] and cfg.output_dir is None
    res = runner.invoke(app, ["fit", "--config", str(best), "--epochs", "1",
                              "--out", str(tmp_path / "refit")])
    assert res.exit_code == 0, res.output

    # a changed spec, or a changed base config file, cannot continue the stored study
    changed = _write_spec(tmp_path, {**DEMO_SPEC, "space": {
        "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}, "other.yaml")
    res = runner.invoke(app, ["tune", str(changed), "--out", str(out), "--study-name", "study"])
    assert res.exit_code == 2 and "another spec" in res.output
    # one study per folder: another study name (or storage) is refused, nothing is trained
    res = runner.invoke(app, ["tune", str(spec_path), "--out", str(out), "--study-name", "b"])
    assert res.exit_code == 2 and "holds study 'study'" in res.output
    for url in ("journal.log", "sqlite:////proc/nope/x.db"):
        res = runner.invoke(app, ["tune", str(spec_path), "--out", str(tmp_path / "s2"),
                                  "--storage", url])
        assert res.exit_code == 2 and f"--storage {url!r}" in res.output, res.output


@pytest.mark.slow  # about 35 s of two CPUs: `make test-all`
def test_two_worker_processes_share_one_study(tmp_path):
    """Two `rankpref tune` processes on one study database (as many machines would share a
    PostgreSQL one): together they finish the study's trials, each trial once."""
    import subprocess
    import sys

    spec_path = _write_spec(tmp_path, {**DEMO_SPEC, "trials": 4,
                                       "sampler": {"name": "random", "seed": 0}})
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "rankpref.cli", "tune", str(spec_path), "--out", str(out),
           "--storage", f"sqlite:///{tmp_path / 'shared.db'}", "--study-name", "shared",
           "--no-plot"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}) for _ in range(2)]
    outs = [proc.communicate(timeout=600)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [o[-800:] for o in outs]
    import optuna

    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path / 'shared.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 4 <= len(done) <= 5  # a worker may start one more before it sees the fourth finish
    assert len({t.number for t in done}) == len(done)
    assert json.loads((out / "study.json").read_text())["trials"]["complete"] >= 4


def test_pruner_stops_bad_trials_and_failures_are_counted(tmp_path):
    tree = {**DEMO_SPEC, "trials": 4,
            "overrides": {**DEMO_SPEC["overrides"], "train.epochs": 4, "train.patience": 4},
            "sampler": {"name": "random", "seed": 1},
            "pruner": {"name": "median", "startup_trials": 1, "warmup_epochs": 0},
            # each value is valid alone, but heads=4 does not divide hidden=18: a trial with
            # both fails and the study goes on
            "space": {"train.lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
                      "model.hidden": {"type": "categorical", "choices": [16, 18]},
                      "model.heads": {"type": "categorical", "choices": [1, 4]}}}
    spec, base = load_spec(_write_spec(tmp_path, tree))
    lines: list[str] = []
    summary = tune(spec, base, tmp_path / "study", plot=False, echo=lines.append)
    states = summary["trials"]
    assert states.get("complete", 0) + states.get("pruned", 0) == 4
    by_state = {t["state"] for t in summary["history"]}
    assert "complete" in by_state and "pruned" in by_state
    for t in summary["history"]:
        if t["state"] == "pruned":
            assert t["epochs_reported"] < 4
        impossible = (t["params"]["model.hidden"], t["params"]["model.heads"]) == (18, 4)
        assert (t["state"] == "fail") == impossible
    assert states.get("fail", 0) > 0
    assert any("fail" in line and "divisible" in line for line in lines)


def test_rank_study_best_config_is_accepted_by_rank_fit(tmp_path):
    from rankpref.tasks.rank import load_config as load_rank_config

    tree = {"task": "rank",
            "overrides": {"data.name": "wine-red-slice", "train.epochs": 3,
                          "lists.list_size": 8},
            "trials": 2, "pruner": {"name": "none"},
            "space": {"loss.name": {"type": "categorical", "choices": ["ranknet", "ranklist"]},
                      "train.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}}
    spec, base = load_spec(_write_spec(tmp_path, tree))
    summary = tune(spec, base, tmp_path / "rank", plot=False, echo=lambda _: None)
    assert summary["selected_on"] == "valid/kendall_tau"
    cfg = load_rank_config(tmp_path / "rank" / "best_config.yaml")
    assert cfg.loss.name == summary["best_params"]["loss.name"]
    metrics = json.loads((Path(summary["best_artifact"]) / "metrics.json").read_text())
    assert summary["best_value"] == pytest.approx(metrics["valid"]["kendall_tau"])


def test_killed_study_continues(tmp_path):
    """kill -9 during a study: the SQLite study survives and the next run finishes it."""
    tree = {**DEMO_SPEC, "trials": 3,
            "overrides": {**DEMO_SPEC["overrides"], "train.epochs": 6, "train.patience": 6}}
    spec_path = _write_spec(tmp_path, tree)
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "rankpref.cli", "tune", str(spec_path), "--out", str(out),
           "--no-plot"]
    _signal_mid_trial(cmd, "trial 0:", signal.SIGKILL)
    with sqlite3.connect(out / "study.db") as db:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 of 3 trials finished" in res.stdout or "2 of 3 trials finished" in res.stdout
    summary = json.loads((out / "study.json").read_text())
    assert summary["trials"].get("complete", 0) == 3


def test_sesa_study_and_pulse_space(tmp_path):
    from rankpref.tasks import sesa

    tree = {"task": "sesa",
            "overrides": {"data.name": "onet-slice", "data.task": "related",
                          "model.encoder": "gru", "model.hidden": 32, "model.embed_dim": 16,
                          "model.max_doc_tokens": 24, "train.epochs": 2,
                          "loss.negatives": "in_batch", "train.batch_size": 32},
            "trials": 2, "pruner": {"name": "none"},
            "space": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}}
    spec, base = load_spec(_write_spec(tmp_path, tree))
    summary = tune(spec, base, tmp_path / "sesa", plot=False, echo=lambda _: None)
    assert summary["selected_on"] == "valid/ndcg@10" and summary["trials"] == {"complete": 2}
    cfg = sesa.load_config(tmp_path / "sesa" / "best_config.yaml")
    assert cfg.train.lr == pytest.approx(summary["best_params"]["train.lr"])
    metrics = json.loads((Path(summary["best_artifact"]) / "metrics.json").read_text())
    assert summary["best_value"] == pytest.approx(metrics["valid"]["ndcg@10"])

    # PULSE settings are part of the next_item config, so they can be searched
    pulse = {**DEMO_SPEC, "overrides": {**DEMO_SPEC["overrides"], "model.name": "pulse"},
             "space": {"pulse.why_weight": {"type": "float", "low": 0.0, "high": 1.0},
                       "model.id_dropout": {"type": "float", "low": 0.0, "high": 0.5}}}
    spec, base = load_spec(_write_spec(tmp_path, pulse, "pulse.yaml"))
    assert check_space(spec, TASKS.get("next_item"), base).model.name == "pulse"


def test_an_edited_base_config_cannot_continue_the_study(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  hidden: 16\n", encoding="utf-8")
    tree = {**DEMO_SPEC, "base_config": "base.yaml", "trials": 1,
            "overrides": {**DEMO_SPEC["overrides"], "train.epochs": 1}}
    spec, base = load_spec(_write_spec(tmp_path, tree))
    tune(spec, base, tmp_path / "study", plot=False, echo=lambda _: None)
    (tmp_path / "base.yaml").write_text("model:\n  hidden: 24\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="base config or its text"):
        tune(spec, base, tmp_path / "study", plot=False, echo=lambda _: None)


@pytest.mark.parametrize("spec_path", sorted((ROOT / "benchmarks" / "configs").glob("tune_*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_specs_are_valid(spec_path):
    spec, base = load_spec(spec_path)
    check_space(spec, TASKS.get(spec.task), base)


@pytest.mark.slow
def test_killed_trial_is_retried_after_the_heartbeat_grace_period(tmp_path):
    """After the 45 s grace period, the killed process's running trial is marked failed and
    retried with the same parameters."""
    tree = {**DEMO_SPEC, "trials": 3,
            "overrides": {**DEMO_SPEC["overrides"], "train.epochs": 8, "train.patience": 8}}
    spec_path = _write_spec(tmp_path, tree)
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "rankpref.cli", "tune", str(spec_path), "--out", str(out),
           "--no-plot", "--no-progress"]
    _signal_mid_trial(cmd, "trial 1:", signal.SIGKILL)
    time.sleep(50)
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    history = json.loads((out / "study.json").read_text())["history"]
    failed = [t for t in history if t["state"] == "fail"]
    assert len(failed) == 1
    retried = [t for t in history if t["number"] > failed[0]["number"]
               and t["params"] == failed[0]["params"]]
    assert retried and retried[0]["state"] == "complete"


def test_ctrl_c_marks_the_running_trial_failed(tmp_path):
    """Ctrl-C (SIGINT) mid-trial: exit 130, and the trial is failed at once (not left
    running until the heartbeat grace period), so a rerun redoes it."""
    tree = {**DEMO_SPEC, "trials": 3,
            "overrides": {**DEMO_SPEC["overrides"], "train.epochs": 8, "train.patience": 8}}
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "rankpref.cli", "tune", str(_write_spec(tmp_path, tree)),
           "--out", str(out), "--no-plot", "--no-progress"]
    returncode, rest = _signal_mid_trial(cmd, "trial 0:", signal.SIGINT)
    with sqlite3.connect(out / "study.db") as db:
        states = [row[0] for row in db.execute("select state from trials order by number")]
    if "RUNNING" not in states and states.count("COMPLETE") == 3:
        pytest.skip("the study finished before the interrupt arrived")
    assert returncode == 130 and "interrupted" in rest
    assert "RUNNING" not in states and states[-1] == "FAIL"

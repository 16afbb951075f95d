"""Multi-process training (Lightning DDP over gloo on CPU) and resume after interruption."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

RANKPREF = [sys.executable, "-m", "rankpref.cli"]


def _fit_cmd(out: Path, cache: Path, *extra: str) -> list[str]:
    cmd = RANKPREF + ["fit", "--data", "demo", "--out", str(out),
                      "--set", f"data.cache_dir={cache}", "--set", "train.progress=false"]
    for kv in extra:
        cmd += ["--set", kv]
    return cmd


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def test_ddp_two_cpu_processes_gloo(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(_fit_cmd(out, tmp_path / "cache", "train.epochs=1",
                                   "train.trainer.strategy=ddp", "train.trainer.devices=2",
                                   "train.trainer.accelerator=cpu"),
                          capture_output=True, text=True, timeout=600, env=_env())
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "MEMBER: 2/2" in log, "two processes should have joined the process group"
    assert "gloo" in log
    artifacts = sorted(p.parent for p in tmp_path.rglob("model.safetensors"))
    assert artifacts == [out / "model"], f"expected exactly one artifact, found {artifacts}"
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert metrics[split]["examples"] == 2000
        for name, value in metrics[split].items():
            assert math.isfinite(value), f"{split} {name} = {value}"
        assert 0.0 < metrics[split]["ndcg@10"] <= 1.0
    rows = []
    for csv in (out / "logs").rglob("metrics.csv"):
        lines = csv.read_text().splitlines()
        header = lines[0].split(",")
        rows += [dict(zip(header, line.split(","))) for line in lines[1:]]
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses and all(math.isfinite(v) for v in losses)
    # the valid ndcg@10 logged during training was summed over the two ranks' halves of the
    # users; it must equal the final single-process evaluation of the same (best) weights
    logged = [float(r["valid/ndcg@10"]) for r in rows if r.get("valid/ndcg@10")]
    assert len(logged) == 1
    assert logged[0] == pytest.approx(metrics["valid"]["ndcg@10"], rel=1e-5)


def _epochs_in(csv: Path) -> list[int]:
    lines = csv.read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    return sorted({int(r["epoch"]) for r in rows if r.get("train/loss")})


SETTINGS = ("train.epochs=10", "train.patience=50", "model.hidden=32")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, dict]:
    """The metrics of a 10-epoch run that was never stopped, and its data cache."""
    root = tmp_path_factory.mktemp("uninterrupted")
    cache = root / "cache"
    whole = subprocess.run(_fit_cmd(root / "whole", cache, *SETTINGS), capture_output=True,
                           text=True, timeout=600, env=_env())
    assert whole.returncode == 0, whole.stderr[-3000:]
    return cache, json.loads((root / "whole" / "model" / "metrics.json").read_text())


# kill -9 runs in `make test`; Ctrl-C and SIGTERM (each a minute more) with `make test-all`, and
# in-process, fast, in tests/core/test_lightning.py
@pytest.mark.parametrize("signum", [
    pytest.param(signal.SIGKILL, id="kill-9"),
    pytest.param(signal.SIGINT, id="ctrl-c", marks=pytest.mark.slow),
    pytest.param(signal.SIGTERM, id="sigterm", marks=pytest.mark.slow)])
def test_resume_after_a_stop_mid_training_matches_an_uninterrupted_run(tmp_path, uninterrupted,
                                                                        signum):
    """Stop a 10-epoch fit once its second epoch is checkpointed (kill -9, Ctrl-C or SIGTERM);
    the rerun resumes there, trains only the epochs that were left, and ends with the same
    metrics as a run that was never stopped (same seed: the checkpoint carries the random
    states). Ctrl-C and SIGTERM end with one line naming the checkpoint and 128 + signal."""
    import torch

    cache, reference = uninterrupted
    out = tmp_path / "run"
    cmd = _fit_cmd(out, cache, *SETTINGS)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    last = out / "checkpoints" / "last.ckpt"
    deadline, done = time.time() + 300, -1
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            done = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
            if done >= 1:  # epochs 0 and 1 are finished and saved
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be stopped mid-training"
    os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=120)
    killed_at = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    assert 1 <= killed_at < 9 and not (out / "model").exists()
    if signum == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + signum, stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
        name = signal.Signals(signum).name
        assert (f"interrupted: {name} during epoch {killed_at + 2}: training stopped; "
                f"{last} holds epoch {killed_at + 1}") in stderr, stderr[-3000:]
    assert not list(out.rglob("*.tmp")), "a half-written file was left"
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env())
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, log[-3000:]
    assert "Restored all states from the checkpoint" in log
    second = max((out / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    assert _epochs_in(second / "metrics.csv") == list(range(killed_at + 1, 10))
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, 11))
    assert metrics["best_epoch"] == reference["best_epoch"]
    for split in ("valid", "test"):
        assert metrics[split] == reference[split]


def test_resume_refuses_other_model_settings(tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    first = subprocess.run(_fit_cmd(out, cache, "train.epochs=1"), capture_output=True,
                           text=True, timeout=600, env=_env())
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run(_fit_cmd(out, cache, "train.epochs=2", "model.hidden=32"),
                            capture_output=True, text=True, timeout=600, env=_env())
    assert second.returncode == 2
    assert "holds a run with other settings" in second.stderr
    assert "Traceback" not in second.stderr

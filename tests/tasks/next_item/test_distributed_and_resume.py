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


def test_resume_after_kill(tmp_path):
    """kill -9 a fit after its first checkpoint; the rerun resumes there and finishes."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    cmd = _fit_cmd(out, cache, "train.epochs=4", "train.patience=50")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env())
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists(), "no checkpoint was written before the kill"
    assert not (out / "model").exists() or proc.returncode == 0
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env())
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, log[-3000:]
    assert "Restored all states from the checkpoint" in log
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 4
    # across both launches, every epoch's training loss is logged exactly once
    epochs = []
    for csv in (out / "logs").rglob("metrics.csv"):
        for line in csv.read_text().splitlines()[1:]:
            cells = line.split(",")
            if cells[2]:
                epochs.append(int(cells[0]))
    assert sorted(epochs) == [0, 1, 2, 3]


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

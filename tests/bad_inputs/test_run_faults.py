"""Faults around a training run and its files: damaged or planted checkpoints, stale state,
a full disk, what a killed writer leaves. (Killing a run mid-training with kill -9, Ctrl-C
and SIGTERM is tests/tasks/next_item/test_distributed_and_resume.py.)"""

from __future__ import annotations

import os
import pickle
import shutil
import stat
from pathlib import Path

import pytest

TINY = ("train.epochs=1", "model.hidden=16", "train.progress=false")


def fit(invoke, out: Path, cache: Path, *sets: str):
    args = ["fit", "--data", "demo", "--out", str(out), "--set", f"data.cache_dir={cache}"]
    for kv in TINY + sets:
        args += ["--set", kv]
    return invoke(*args)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A finished one-epoch demo run and its data cache (copy it before changing it)."""
    from typer.testing import CliRunner

    from rankpref.cli import app

    root = tmp_path_factory.mktemp("finished")
    args = ["fit", "--data", "demo", "--out", str(root / "run"),
            "--set", f"data.cache_dir={root / 'cache'}"]
    for kv in TINY:
        args += ["--set", kv]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return root / "run", root / "cache"


def copy_run(finished, tmp_path: Path) -> tuple[Path, Path]:
    run, cache = finished
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run", cache


class Planted:
    executed = []

    def __reduce__(self):
        return (Planted.executed.append, ("ran",))


@pytest.mark.parametrize("damage", ["truncated", "pickle", "empty"])
def test_a_damaged_or_planted_last_checkpoint_is_moved_aside_and_never_run(
        invoke, finished, tmp_path, damage):
    """A full disk used to leave a truncated last.ckpt that crashed every rerun; a pickle
    placed there must never be unpickled."""
    run, cache = copy_run(finished, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    good = last.read_bytes()
    last.write_bytes({"truncated": good[: len(good) // 3], "pickle": pickle.dumps(Planted()),
                      "empty": b""}[damage])
    outcome = fit(invoke, run, cache)
    assert outcome.exit_code == 0, outcome.output
    assert "Traceback" not in outcome.output and not Planted.executed
    assert (run / "last.ckpt.bad").read_bytes() != good
    assert (run / "model" / "metrics.json").is_file() and last.is_file()


def test_resume_false_clears_the_old_run_state(invoke, finished, tmp_path):
    """It used to keep last.ckpt and write last-v1.ckpt; the next plain run then restored the
    old state and died with a MisconfigurationException."""
    run, cache = copy_run(finished, tmp_path)
    outcome = fit(invoke, run, cache, "train.resume=false", "model.hidden=24")
    assert outcome.exit_code == 0, outcome.output
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    again = fit(invoke, run, cache, "model.hidden=24")
    assert again.exit_code == 0 and "Traceback" not in again.output, again.output


def test_a_finished_run_rerun_with_fewer_epochs_keeps_what_it_has(invoke, finished, tmp_path):
    """It used to die with "restored current_epoch=..." from Lightning."""
    run, cache = copy_run(finished, tmp_path)
    assert fit(invoke, run, cache, "train.epochs=3").exit_code == 0
    outcome = fit(invoke, run, cache, "train.epochs=2")
    assert outcome.exit_code == 0 and "Traceback" not in outcome.output, outcome.output
    assert "best epoch 3 of 3" in outcome.output


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(invoke, finished, full_disk,
                                                                 refused, tmp_path):
    _, cache = finished
    refused(fit(invoke, full_disk / "run", cache), "No space left on device",
            absent=[full_disk / "run" / "model"])
    refused(invoke("prepare", "--data", "demo", "--set", f"data.cache_dir={full_disk / 'c'}"),
            "No space left on device", absent=[full_disk / "c"])
    assert not [p for p in full_disk.rglob("*") if p.name.endswith(".tmp")]
    assert not (full_disk / "c").exists() or not any((full_disk / "c").iterdir())


def test_a_killed_writer_leaves_nothing_the_next_write_keeps(invoke, finished, tmp_path):
    """Temporary folders of a writer that was killed (its pid is gone) are removed by the next
    write; an old artifact moved aside just before the kill is brought back."""
    from rankpref.io import remove_stale

    run, cache = copy_run(finished, tmp_path)
    dead = 2 ** 22 + 12345  # above pid_max's default: no such process
    (run / f".model.{dead}.abc.tmp").mkdir()
    (run / f".model.{dead}.abc.tmp" / "model.safetensors").write_bytes(b"partial")
    (run / "checkpoints" / ".last.ckpt.tmp").write_bytes(b"partial")
    outcome = fit(invoke, run, cache, "train.epochs=2")
    assert outcome.exit_code == 0, outcome.output
    left = sorted(p.name for p in run.rglob("*.tmp"))
    assert left == [], left
    os.replace(run / "model", run / ".model.old")  # killed between atomic_dir's two renames
    remove_stale(run / "model")  # what every atomic write to that place does first
    assert (run / "model" / "manifest.json").is_file() and not (run / ".model.old").exists()
    (run / f".model.{os.getpid()}.live.tmp").mkdir()  # a live writer's: kept
    remove_stale(run / "model")
    assert (run / f".model.{os.getpid()}.live.tmp").is_dir()


def test_artifact_files_have_the_usual_permissions(finished):
    run, _ = finished
    mask = os.umask(0)
    os.umask(mask)
    for file in (run / "model").iterdir():
        mode = stat.S_IMODE(file.stat().st_mode)
        assert mode == 0o666 & ~mask, f"{file.name} is {oct(mode)}"


def test_a_failed_save_keeps_the_previous_artifact_whole(finished, tmp_path):
    """The artifact writer must not remove the old folder before the new one is complete."""
    from rankpref.artifact import writer
    from rankpref.tasks.next_item import Recommender

    run, _ = copy_run(finished, tmp_path)
    before = sorted(p.name for p in (run / "model").iterdir())
    with pytest.raises(RuntimeError, match="midway"):
        with writer(run / "model", "next_item", "sasrec") as w:
            w.json("metrics.json", {"partial": True}, "half of a new artifact")
            raise RuntimeError("midway")
    assert sorted(p.name for p in (run / "model").iterdir()) == before
    Recommender.load(run / "model")  # still whole
    assert not list(run.glob(".*.tmp")) and not list(run.glob(".*.old"))

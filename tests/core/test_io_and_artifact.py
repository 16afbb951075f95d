"""Atomic writes (rankpref.io) and the artifact folder contract (rankpref.artifact), on their
own: what is on disk after success, after a failure inside the block, after a failed write."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest
import torch

from rankpref import artifact
from rankpref.artifact import ArtifactError, expect, read_manifest, resolve, writer
from rankpref.io import (WriteError, atomic_dir, atomic_path, io_failure, remove_stale,
                         write_error, write_json, write_text)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _usual(bits: int) -> int:
    mask = os.umask(0)
    os.umask(mask)
    return bits & ~mask


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text(target, "one")
    assert target.read_text() == "one" and _mode(target) == _usual(0o666)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("two")
            raise RuntimeError("crash")
    assert target.read_text() == "one"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]
    write_json(target, {"b": 2})
    assert json.loads(target.read_text()) == {"b": 2}


def test_atomic_dir_keeps_the_old_folder_until_the_new_one_is_whole(tmp_path):
    target = tmp_path / "art"
    with atomic_dir(target) as tmp:
        (tmp / "x").write_text("old")
        (tmp / "inner").mkdir()
    assert (target / "x").read_text() == "old"
    assert _mode(target) == _usual(0o777) and _mode(target / "inner") == _usual(0o777)
    assert _mode(target / "x") == _usual(0o666)
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "x").write_text("new")
            assert (target / "x").read_text() == "old", "old folder touched before the end"
            raise RuntimeError("crash")
    assert (target / "x").read_text() == "old"
    with atomic_dir(target) as tmp:
        (tmp / "y").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["y"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_temporary_names_carry_the_writer_pid_and_stale_ones_are_removed(tmp_path):
    target = tmp_path / "art"
    seen = []
    with atomic_dir(target) as tmp:
        seen.append(tmp.name)
    assert seen[0].startswith(f".art.{os.getpid()}.") and seen[0].endswith(".tmp")
    dead = 2 ** 22 + 777
    (tmp_path / f".art.{dead}.x.tmp").mkdir()
    (tmp_path / f".art.{dead}.y.tmp").write_text("half")
    (tmp_path / f".art.{os.getpid()}.z.tmp").mkdir()  # a live writer's
    (tmp_path / ".other.1.tmp").mkdir()  # someone else's target
    remove_stale(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["art", f".art.{os.getpid()}.z.tmp", ".other.1.tmp"])


def test_an_old_folder_moved_aside_by_a_kill_comes_back(tmp_path):
    target = tmp_path / "art"
    with atomic_dir(target) as tmp:
        (tmp / "x").write_text("old")
    os.replace(target, tmp_path / ".art.old")
    remove_stale(target)
    assert (target / "x").read_text() == "old" and not (tmp_path / ".art.old").exists()
    (tmp_path / ".art.old").mkdir()  # both present: the live folder wins, .old stays put
    remove_stale(target)
    assert (target / "x").read_text() == "old"


def test_write_failures_become_one_line_naming_the_path(tmp_path, monkeypatch):
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert io_failure(full) == os.strerror(errno.ENOSPC)
    assert io_failure(FileNotFoundError(errno.ENOENT, "gone")) is None
    assert io_failure(RuntimeError("I/O error: No space left on device (os error 28)")) \
        == os.strerror(errno.ENOSPC)
    assert io_failure(ValueError("bad value")) is None
    error = write_error(tmp_path / "x", full)
    assert isinstance(error, WriteError)
    assert str(error) == f"{tmp_path / 'x'}: could not write it (No space left on device); " \
                         "nothing was changed"
    target = tmp_path / "art"
    with atomic_dir(target) as tmp:
        (tmp / "x").write_text("old")
    with pytest.raises(WriteError, match="art: could not write it"):
        with atomic_dir(target) as tmp:
            raise RuntimeError("Error while serializing: I/O error: No space left on device")
    with pytest.raises(ValueError, match="not an I/O failure"):
        with atomic_dir(target) as tmp:
            raise ValueError("not an I/O failure")
    with pytest.raises(WriteError, match="a.txt: could not write it"):
        with atomic_path(tmp_path / "a.txt") as tmp:
            raise full
    assert (target / "x").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_the_writer_records_every_file_in_the_manifest(tmp_path):
    with writer(tmp_path / "m", "rank", "mlp") as w:
        w.weights("w.safetensors", {"a": torch.ones(2)}, "the weights")
        w.json("c.json", {"k": 1}, "settings")
        w.text("n.txt", "hi", "a note")
    folder, manifest = read_manifest(tmp_path / "m")
    assert folder == tmp_path / "m" and manifest.kind == "rank" and manifest.model == "mlp"
    assert manifest.files == {"w.safetensors": "the weights", "c.json": "settings",
                              "n.txt": "a note"}
    assert manifest.format_version == artifact.FORMAT_VERSION and not manifest.inferred
    assert _mode(folder / "w.safetensors") == _usual(0o666)
    assert resolve(tmp_path / "m") == folder
    (tmp_path / "run").mkdir()
    os.replace(folder, tmp_path / "run" / "model")
    assert resolve(tmp_path / "run") == tmp_path / "run" / "model"
    assert expect(tmp_path / "run", "rank")[1].kind == "rank"


def test_manifest_problems_are_one_line_errors(tmp_path):
    with pytest.raises(ArtifactError, match="no such folder"):
        resolve(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="not a rankpref artifact"):
        resolve(tmp_path / "empty")
    with writer(tmp_path / "m", "sesa") as w:
        w.json("network.json", {}, "x")
    with pytest.raises(ArtifactError, match="a sesa artifact .*rankpref sesa evaluate.* but "
                                            "rankpref evaluate needs a next_item artifact"):
        expect(tmp_path / "m", "next_item", "rankpref evaluate")
    (tmp_path / "m" / "network.json").unlink()
    with pytest.raises(ArtifactError, match="incomplete sesa artifact, missing network.json"):
        read_manifest(tmp_path / "m")
    (tmp_path / "m" / "manifest.json").write_text('{"kind": "sesa", "format_version": 99}')
    with pytest.raises(ArtifactError, match="format 99 is newer"):
        read_manifest(tmp_path / "m")
    (tmp_path / "m" / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable manifest"):
        read_manifest(tmp_path / "m")


def test_a_folder_from_before_manifests_is_known_by_its_files(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "features.json").write_text("{}")
    (tmp_path / "old" / "model.safetensors").write_bytes(b"")
    folder, manifest = read_manifest(tmp_path / "old")
    assert manifest.kind == "rank" and manifest.inferred and manifest.format_version == 0
    assert set(manifest.files) == {"features.json", "model.safetensors"}

"""The bad-input corpus: every hostile input or fault the reliability probe found, kept as a
test. Each case asserts the one-line message, the exit code, and that nothing half-written
(no ``*.tmp``, no partial output) is left."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rankpref.cli import app


@dataclass
class Outcome:
    exit_code: int
    output: str


@pytest.fixture
def invoke():
    """Run the ``rankpref`` CLI in-process: ``invoke("prepare", "--set", ...)``."""
    runner = CliRunner()

    def run(*args: str) -> Outcome:
        result = runner.invoke(app, [str(a) for a in args])
        out = result.output  # stdout and stderr, interleaved
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            out += "Traceback\n" + "".join(traceback.format_exception(result.exception))
        return Outcome(result.exit_code, out)

    return run


def half_written(root: Path) -> list[Path]:
    """What an interrupted or failed write would leave: temporary files and folders."""
    return sorted(p for p in root.rglob("*") if p.name.endswith((".tmp", ".old")))


@pytest.fixture
def refused(tmp_path):
    """``refused(outcome, "needle", ..., absent=[paths])``: exit 2, one ``error:`` line
    holding every needle, no traceback, nothing half-written under tmp_path, and none of
    ``absent`` created."""

    def check(outcome: Outcome, *needles: str, absent=(), code: int = 2,
              usage: bool = False) -> str:
        out = outcome.output
        assert outcome.exit_code == code, out
        assert "Traceback" not in out, out
        if usage:  # a range or type check of an option: click's usage error names it
            errors = [" ".join(out.split())]
            assert "Invalid value" in errors[0], out
        else:
            errors = [line for line in out.splitlines()
                      if line.startswith(("error:", "interrupted:"))]
            assert len(errors) == 1, f"expected one error line in {out!r}"
        for needle in needles:
            assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
        assert not half_written(tmp_path), half_written(tmp_path)
        for path in absent:
            assert not Path(path).exists() or (Path(path).is_dir()
                                               and not any(Path(path).iterdir())), path
        return errors[0]

    return check


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a real tmpfs with 8 KiB free, so writes fail with ENOSPC as on a full
    disk (it holds a hidden ``.filler`` file)."""
    mount = tmp_path / "full"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: the full-disk cases need a small tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs ({done.stderr.strip()}); the full-disk "
                    "cases need root")
    try:
        free = shutil.disk_usage(mount).free
        with open(mount / ".filler", "wb") as fh:  # leave 8 KiB: any real write fails
            fh.write(b"\0" * max(0, free - 8192))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)

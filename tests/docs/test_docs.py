"""The README and every docs page stay true: their code blocks run, and the site builds with
``mkdocs build --strict`` (every link and nav entry resolves).

Blocks fenced ```python or ```bash run, in order, in one fresh folder per page (python blocks
of a page share one namespace; bash runs with ``set -euo pipefail`` and rankpref's venv on the
PATH). A block right after a line ``<!-- skip-test: why -->`` is shown but not run: the why
says what it needs (shared Beauty data and hours of CPU, a GPU, a server left running).
"""

from __future__ import annotations

import os
import re
from contextlib import ExitStack
import subprocess
import sys
from pathlib import Path

import pytest

import rankpref.load  # noqa: F401  (registers every built-in before a page's scratch registry)
from rankpref.registry import ARTIFACTS, LOSSES, MODELS, TASKS

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<skip><!-- skip-test: [^>]+-->\n)?```(?P<lang>python|bash)\n(?P<code>.*?)^```$",
                   re.M | re.S)


def blocks(page: Path) -> list[tuple[str, str, bool, int]]:
    text = page.read_text("utf-8")
    return [(m["lang"], m["code"], bool(m["skip"]), text[:m.start()].count("\n") + 1)
            for m in FENCE.finditer(text)]


def test_pages_have_runnable_examples_and_every_skip_says_why():
    assert len(PAGES) > 5, "docs/ is missing"
    for page in PAGES:
        text = page.read_text("utf-8")
        for reason in re.findall(r"<!-- skip-test:([^>]*)-->", text):
            assert len(reason.strip()) > 10, f"{page.name}: a skip without a reason"
    ran = sum(1 for p in PAGES for _, _, skip, _ in blocks(p) if not skip)
    assert ran >= 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_blocks_run(page, tmp_path, monkeypatch):
    todo = [b for b in blocks(page) if not b[2]]
    if not todo:
        pytest.skip(f"{page.name} has no runnable block")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    namespace: dict = {"__name__": "__doc__"}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    # extending.md registers an example model and loss; they must not outlive the page
    with ExitStack() as scratch:
        for table in (MODELS, LOSSES, TASKS, ARTIFACTS):
            scratch.enter_context(table.scratch())
        run_blocks(todo, page, tmp_path, env, namespace, cwd)


def run_blocks(todo, page, tmp_path, env, namespace, cwd):
    try:
        for lang, code, _, line in todo:
            where = f"{page.name}:{line}"
            if lang == "bash":
                res = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path,
                                     env=env, capture_output=True, text=True, timeout=900)
                assert res.returncode == 0, f"{where}\n{code}\n{res.stdout[-3000:]}{res.stderr[-3000:]}"
            else:
                exec(compile(code, where, "exec", dont_inherit=True), namespace)  # noqa: S102 - our own docs
    finally:
        os.chdir(cwd)


def test_mkdocs_builds_strict(tmp_path):
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                          "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "site" / "index.html").exists()

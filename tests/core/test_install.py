"""An installed wheel carries its shipped data: outside the checkout, the demo data and the
slices resolve from the package, so `pip install rankpref` can run the demo."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(work), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(work.glob("rankpref-*.whl"))
    site = work / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                              "--target", str(site), str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    return wheel, site, work


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1",
           "RANKPREF_DATA_DIR": str(cwd / "no-shared-data")}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_the_wheel_holds_the_shipped_data_and_no_research_data(installed):
    wheel, _, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    for want in ("rankpref/_data/synthetic_amazon/reviews.json.gz",
                 "rankpref/_data/emobank/emobank_slice.csv",
                 "rankpref/_data/onet_slice/occupations_tech_skills.jsonl",
                 "rankpref/_data/wine_quality/winequality-red_slice.csv"):
        assert want in names
    assert not any("rationales/" in n and n.endswith(".parquet") for n in names)
    assert not any(n.endswith(".py") and "_data" in n for n in names)


def test_installed_package_runs_outside_the_checkout(installed):
    _, site, work = installed
    where = _run(site, work, "-c", "import rankpref, rankpref.settings as s; "
                 "print(rankpref.__file__); print(s.shipped('synthetic_amazon'))")
    assert where.returncode == 0, where.stderr
    module, data = where.stdout.split()
    assert module.startswith(str(site)) and data.startswith(str(site))
    for args in (["prepare", "--data", "demo"],
                 ["rank", "fit", "--data", "wine-red", "--epochs", "1", "--out", "rank"],
                 ["sesa", "fit", "--data", "onet-slice", "--encoder", "gru", "--epochs", "1",
                  "--out", "sesa"]):
        res = _run(site, work, "-m", "rankpref", *args)
        assert res.returncode == 0, (args, res.stderr[-2000:])
    assert (work / "rank" / "model" / "manifest.json").exists()

"""benchmarks/scale.py: its generator makes the data it claims (seeded, long-tailed, readable
by prepare), its growth exponents are log-log slopes, and a tiny run writes its JSON."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("scale_bench", ROOT / "benchmarks" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generator_is_seeded_long_tailed_and_prepares(scale, tmp_path):
    from rankpref.data.datasets import prepare

    a = scale.generate(20_000, tmp_path / "a", seed=3)
    scale.generate(20_000, tmp_path / "b", seed=3)
    for name in ("reviews.jsonl", "meta.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a["items_generated"] == a["users_generated"] == 2_000
    assert abs(a["interactions_generated"] - 20_000) < 1_000
    reviews = pl.read_ndjson(tmp_path / "a" / "reviews.jsonl")
    counts = reviews["parent_asin"].value_counts()["count"].sort(descending=True)
    top = counts.head(len(counts) // 100).sum() / counts.sum()
    assert top > 0.05  # the 1% most popular items take over 5% of interactions (uniform: 1%)
    ds = prepare(scale.dataset_config(tmp_path / "a"), quiet=True)
    assert ds.interactions.group_by("user_idx").len()["len"].min() >= 5
    assert ds.items is not None and ds.items["title"].null_count() == 0


def test_growth_exponents_are_log_log_slopes(scale):
    rows = [{"stage": "prepare", "interactions": n, "seconds": 2 * n ** 1.5}
            for n in (10 ** 3, 10 ** 4, 10 ** 5)]
    assert scale.exponents(rows)["prepare"] == [1.5, 1.5]


@pytest.mark.slow  # starts one process per stage
def test_a_tiny_run_writes_json_plot_and_report(tmp_path):
    out = tmp_path / "scale.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--sizes",
                          "5000,10000", "--stages", "generate,prepare,sasrec,index", "--budget",
                          "2", "--out", str(out), "--work", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    result = json.loads(out.read_text())
    assert {(r["interactions_target"], r["stage"]) for r in result["rows"]} == {
        (n, s) for n in (5000, 10000) for s in ("generate", "prepare", "sasrec", "index")}
    assert all("stopped" not in r and r["peak_rss_mib"] > 0 for r in result["rows"])
    assert len(result["growth_exponents"]["sasrec"]) == 1
    assert math.isfinite(result["growth_exponents"]["sasrec"][0])
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    table = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--report",
                            "--out", str(out)], capture_output=True, text=True, check=True).stdout
    assert "| sasrec |" in table and "HNSW32" in table
    assert not (tmp_path / "work").exists()  # generated data removed

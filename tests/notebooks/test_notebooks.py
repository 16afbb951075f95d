"""The notebooks in ``notebooks/``: stored without outputs, and executed headlessly end to end.

Each notebook runs in a fresh ``python3`` kernel with the repository root as working directory
and ``RANKPREF_NOTEBOOK_OUT`` pointing at the test's temporary folder, where every run,
artifact, figure and ``summary.json`` must land. The checks read those files and the executed
cells' outputs; a cell that raises fails the test (nbclient raises ``CellExecutionError``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["quickstart.ipynb", "subjective_ranking.ipynb", "explicit_concepts.ipynb"]
CELL_TIMEOUT = 600  # seconds per cell; each notebook takes about a minute in all
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# run folders the libraries would create under runs/ if a notebook forgot to set output_dir
DEFAULT_RUN_PREFIXES = ("demo-", "rank-emobank-slice", "onet-slice-")


def load_clean(name: str):
    """The stored notebook, checked: valid, python3 kernel, no outputs, no execution counts."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: cell {i} is stored with outputs"
            assert cell.execution_count is None, f"{name}: cell {i} has an execution count"
    first = next(c for c in nb.cells if c.cell_type == "code").source
    assert "RANKPREF_NOTEBOOK_OUT" in first and "pyproject.toml" in first
    return nb


def repo_state() -> dict:
    """What a notebook must not add to: notebooks/ and the default run folders."""
    runs = ROOT / "runs"
    made = sorted(p.name for p in runs.iterdir()) if runs.exists() else []
    return {"notebooks": sorted(p.name for p in NOTEBOOKS.iterdir()),
            "runs": [name for name in made if name.startswith(DEFAULT_RUN_PREFIXES)]}


def execute(name: str, out: Path):
    nb = load_clean(name)
    before = repo_state()
    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute(env={**os.environ, "RANKPREF_NOTEBOOK_OUT": str(out)})
    assert repo_state() == before, "the notebook wrote into the repository"
    return nb


def stdout(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs if o.output_type == "stream" and o.name == "stdout")


def check_figures(nb, expected: int) -> None:
    """Every cell tagged ``figure`` shows at least one inline PNG."""
    figure_cells = [c for c in nb.cells if "figure" in c.metadata.get("tags", [])]
    assert len(figure_cells) == expected
    for cell in figure_cells:
        pngs = [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")
                and "image/png" in o.get("data", {})]
        assert pngs, f"no inline image in the figure cell starting {cell.source[:60]!r}"


def check_pngs(out: Path, *names: str) -> None:
    for name in names:
        path = out / name
        assert path.is_file(), f"{name} not written under RANKPREF_NOTEBOOK_OUT"
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, f"{name} is not a real PNG"


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def in_unit(x) -> bool:
    return isinstance(x, (int, float)) and not math.isnan(x) and 0 < x <= 1


@pytest.mark.parametrize("name", NAMES)
def test_stored_without_outputs(name):
    load_clean(name)


def test_quickstart(tmp_path):
    nb = execute("quickstart.ipynb", tmp_path)
    check_figures(nb, 3)
    check_pngs(tmp_path, "sasrec/training_curves.png", "pulse/training_curves.png",
               "test_metrics.png", "thought_space_map.png")
    for run in ("sasrec", "pulse"):
        assert (tmp_path / run / "model" / "model.safetensors").is_file()
    assert (tmp_path / "thought-space" / "thought_space.safetensors").is_file()
    s = summary(tmp_path)
    for model in ("sasrec", "pulse"):
        test = s[model]["test"]
        assert all(in_unit(test[k]) for k in ("recall@10", "ndcg@10", "mrr@10"))
        assert test["ndcg@10"] <= test["recall@10"] <= test["recall@20"]
        # random ranking of 1,500 items gives ndcg@10 ~ 0.003; both learn the planted patterns
        assert test["ndcg@10"] > 0.1, (model, test)
    counts = s["pulse"]["rationales"]
    assert counts["users_with_rationale"] == counts["training_users"] > 0
    space = s["thought_space"]
    assert in_unit(space["valid_mrr"]) and in_unit(space["valid_mrr_raw_backbone"])
    recs = s["recommendations"]["items"]
    assert len(recs) == 5 and [r["rank"] for r in recs] == [1, 2, 3, 4, 5]
    assert all(r["because"] and r["because"][0]["rationale"] for r in recs)
    text = stdout(nb)
    assert "held-out MRR" in text and "because (" in text


def test_subjective_ranking(tmp_path):
    nb = execute("subjective_ranking.ipynb", tmp_path)
    check_figures(nb, 2)
    check_pngs(tmp_path, "test_kendall_tau.png", "valid_tau_per_epoch.png")
    assert not list(tmp_path.rglob("model.safetensors")), "fit(write=False) wrote an artifact"
    s = summary(tmp_path)
    losses = {"ranklist", "ranklist W=0.2", "ranknet", "listnet", "listmle", "approxndcg",
              "lambdaloss"}
    assert set(s) == losses
    for name, runs in s.items():
        assert len(runs["test_kendall_tau"]) == len(runs["seeds"]) == 5
        for tau in runs["valid_kendall_tau"] + runs["test_kendall_tau"]:
            assert in_unit(tau), (name, tau)  # tau > 0: better than a random order
        for history, best in zip(runs["valid_tau_history"], runs["best_epoch"]):
            assert 1 <= best <= len(history)
    # MiniLM features order valence well above chance (the README reports about 0.49)
    ranklist = s["ranklist"]["test_kendall_tau"]
    assert sum(ranklist) / len(ranklist) > 0.3
    assert "test tau" in stdout(nb)


def test_explicit_concepts(tmp_path):
    nb = execute("explicit_concepts.ipynb", tmp_path)
    check_figures(nb, 2)
    check_pngs(tmp_path, "test_metrics.png", "concept_contributions.png")
    for run in ("sesa", "dual"):
        assert (tmp_path / run / "model" / "model.safetensors").is_file()
    s = summary(tmp_path)
    for model in ("sesa", "dual"):
        test = s[model]["test"]
        assert all(in_unit(test[k]) for k in ("ndcg@10", "recall@10", "mrr"))
        assert test["ndcg@10"] > 0.3, (model, test)  # 92 occupations: random is ~0.05
    assert 0 <= s["sesa"]["test"]["top5_share"] <= 1
    assert "top5_share" not in s["dual"]["test"]
    ex = s["explanation"]
    assert ex["score"] > 0 and ex["top"]
    assert math.isclose(ex["score"], ex["sum_of_contributions"], rel_tol=1e-4, abs_tol=1e-4)
    shown = sum(row["contribution"] for row in ex["top"])
    assert 0 < shown <= ex["sum_of_contributions"] + 1e-4
    assert ex["item"] == s["search"][0]["item"]
    assert "concept contributions" in stdout(nb)

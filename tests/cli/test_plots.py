"""Plots: training curves from CSV logs, metric bar charts, `fit --plot`, `evaluate --plot`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rankpref.cli import app
from rankpref.errors import RankprefError
from rankpref.plots import plot_metric_bars, plot_training_curves, read_training_log

torch.set_num_threads(1)
runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"
HEADER = "epoch,step,train/loss,valid/ndcg@10,valid/recall@10\n"


def _log(run: Path, version: int, rows: str) -> None:
    folder = run / "logs" / f"version_{version}"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text(HEADER + rows, encoding="utf-8")


def test_log_rows_of_an_epoch_merge_and_a_resumed_launch_wins(tmp_path):
    run = tmp_path / "run"
    # Lightning writes validation and training values of one epoch on separate rows
    _log(run, 0, "0,10,,0.10,0.20\n0,10,5.0,,\n1,20,,0.15,0.25\n1,20,4.0,,\n")
    _log(run, 1, "1,20,,0.16,0.26\n1,20,3.9,,\n2,30,,0.12,0.22\n2,30,3.5,,\n")  # resumed at 1
    log = read_training_log(run / "model")  # the artifact folder finds its run
    assert log == {0: {"train/loss": 5.0, "valid/ndcg@10": 0.10, "valid/recall@10": 0.20},
                   1: {"train/loss": 3.9, "valid/ndcg@10": 0.16, "valid/recall@10": 0.26},
                   2: {"train/loss": 3.5, "valid/ndcg@10": 0.12, "valid/recall@10": 0.22}}
    # a later launch that started over (its log begins at epoch 0) replaces the older ones
    _log(run, 2, "0,10,,0.30,0.40\n0,10,2.0,,\n")
    assert read_training_log(run) == {0: {"train/loss": 2.0, "valid/ndcg@10": 0.30,
                                          "valid/recall@10": 0.40}}
    (run / "logs" / "version_2" / "metrics.csv").unlink()
    (run / "logs" / "version_2").rmdir()
    out = plot_training_curves(run)
    assert out == run / "training_curves.png" and out.read_bytes()[:8] == PNG
    with pytest.raises(RankprefError, match=r"no 'valid/mrr@5' \(it has: .*valid/ndcg@10"):
        plot_training_curves(run, monitor="mrr@5")


def test_bad_logs_are_named(tmp_path):
    with pytest.raises(RankprefError, match="no training log"):
        read_training_log(tmp_path)
    _log(tmp_path / "bad", 0, "0,10,,0.1,0.2\n0,10,oops,,\n")
    with pytest.raises(RankprefError, match=r"version_0/metrics.csv, line 3, field "
                                            r"'train/loss': not a number: 'oops'"):
        read_training_log(tmp_path / "bad")


def test_metric_bars(tmp_path):
    runs = {"a": {"ndcg@10": 0.1, "recall@10": 0.2}, "b": {"ndcg@10": 0.12, "recall@10": 0.25}}
    out = plot_metric_bars(runs, tmp_path / "bars.png", title="t")
    assert out.read_bytes()[:8] == PNG
    with pytest.raises(RankprefError, match="run 'a' has no metric 'mrr@10'"):
        plot_metric_bars(runs, tmp_path / "x.png", metrics=["ndcg@10", "mrr@10"])
    with pytest.raises(RankprefError, match="no runs"):
        plot_metric_bars({}, tmp_path / "x.png")


def test_plotting_leaves_the_global_backend_alone(tmp_path):
    """Notebooks keep their inline backend: the plots never call matplotlib.use."""
    import matplotlib

    before = matplotlib.rcParams["backend"]
    plot_metric_bars({"a": {"ndcg@10": 0.1}}, tmp_path / "bars.png")
    assert matplotlib.rcParams["backend"] == before


def test_a_failed_plot_leaves_no_file(tmp_path, monkeypatch):
    import matplotlib.figure

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    with pytest.raises(OSError):
        plot_metric_bars({"a": {"ndcg@10": 0.1}}, tmp_path / "bars.png")
    assert list(tmp_path.iterdir()) == []


def test_fit_and_evaluate_plot_from_the_cli(tmp_path):
    runs = []
    for name, model in (("sasrec", "sasrec"), ("pulse", "pulse")):
        out = tmp_path / name
        args = ["fit", "--data", "demo", "--model", model, "--epochs", "2", "--out", str(out),
                "--set", "model.hidden=16", "--set", "model.blocks=1",
                "--set", "train.progress=false", "--plot"]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        assert (out / "training_curves.png").read_bytes()[:8] == PNG
        assert f"training curves: {out / 'training_curves.png'}" in res.output
        runs.append(out / "model")
    report = tmp_path / "compare.json"
    res = runner.invoke(app, ["evaluate", "--artifact", str(runs[0]), "--artifact", str(runs[1]),
                              "--artifact", str(runs[0]), "--split", "both",
                              "--output", str(report), "--plot"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "compare.png").read_bytes()[:8] == PNG  # next to --output
    result = json.loads(report.read_text())["runs"]
    assert list(result) == ["sasrec", "pulse", "sasrec (2)"]
    for run, name in ((runs[0], "sasrec"), (runs[1], "pulse")):
        trained = json.loads((run / "metrics.json").read_text())
        assert result[name]["test"]["ndcg@10"] == pytest.approx(trained["test"]["ndcg@10"],
                                                                abs=1e-6)
    assert result["sasrec (2)"]["valid"] == result["sasrec"]["valid"]
    # one artifact: the JSON keeps its single-run shape; --plot-file chooses the file
    res = runner.invoke(app, ["evaluate", "--artifact", str(runs[1]), "--output",
                              str(tmp_path / "one.json"), "--plot", "--plot-file",
                              str(tmp_path / "chart.png")])
    assert res.exit_code == 0, res.output
    assert "test" in json.loads((tmp_path / "one.json").read_text())
    assert (tmp_path / "chart.png").read_bytes()[:8] == PNG
    # runs measured differently are not drawn on one chart
    res = runner.invoke(app, ["evaluate", "--artifact", str(runs[0]), "--artifact",
                              str(runs[1]), "--set", "eval.mask_history=false", "--plot",
                              "--plot-file", str(tmp_path / "same.png")])
    assert res.exit_code == 0, res.output  # --set applies to every run: still comparable
    other = tmp_path / "sasrec" / "model" / "config.yaml"
    other.write_text(other.read_text().replace("mask_history: true", "mask_history: false"))
    res = runner.invoke(app, ["evaluate", "--artifact", str(runs[0]), "--artifact",
                              str(runs[1]), "--plot", "--plot-file", str(tmp_path / "no.png")])
    assert res.exit_code == 2 and "mask_history True but 'sasrec' has False" in res.output
    assert not (tmp_path / "no.png").exists()


def test_rank_and_sesa_fit_plot_their_valid_history(tmp_path):
    res = runner.invoke(app, ["rank", "fit", "--data", "wine-red-slice", "--epochs", "3",
                              "--list-size", "8", "--out", str(tmp_path / "rank"), "--plot"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rank" / "training_curves.png").read_bytes()[:8] == PNG
    res = runner.invoke(app, ["sesa", "fit", "--data", "onet-slice", "--task", "related",
                              "--encoder", "gru", "--epochs", "2", "--out",
                              str(tmp_path / "sesa"), "--set", "model.hidden=32",
                              "--set", "model.embed_dim=16", "--plot"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "sesa" / "training_curves.png").read_bytes()[:8] == PNG


def test_history_plot_needs_its_metric(tmp_path):
    from rankpref.plots import plot_history

    history = [{"epoch": 1, "valid/ndcg@10": 0.2, "train/loss": 1.0},
               {"epoch": 2, "valid/ndcg@10": 0.3, "train/loss": 0.8}]
    assert plot_history(history, tmp_path / "h.png", "valid/ndcg@10").read_bytes()[:8] == PNG
    with pytest.raises(RankprefError, match="no 'valid/kendall_tau'.*valid/ndcg@10"):
        plot_history(history, tmp_path / "h.png", "valid/kendall_tau")

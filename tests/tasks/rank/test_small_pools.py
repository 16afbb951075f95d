"""Small pools: the ridge baseline beside every fit, the linear scorer, the pointwise mse,
k-fold cross-validation (seeded, nested) and what metrics.json says about it."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from rankpref.cli import app
from rankpref.tasks.rank import load_config
from rankpref.tasks.rank.baselines import ridge_loo, ridge_predict
from rankpref.tasks.rank.data import ListDataModule, load_data
from rankpref.tasks.rank.fit import fold_split, kfold_assignments

runner = CliRunner()


def _brute_force_loo(x, y, alpha):
    """Refit ridge without each row in turn (normal equations, unpenalised intercept)."""
    errs = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        xk, yk = x[keep], y[keep]
        mx, my = xk.mean(0), yk.mean()
        w = np.linalg.solve((xk - mx).T @ (xk - mx) + alpha * np.eye(x.shape[1]),
                            (xk - mx).T @ (yk - my))
        errs.append(y[i] - (x[i] @ w + my - mx @ w))
    return float(np.mean(np.square(errs)))


def test_ridge_leave_one_out_matches_refitting_without_each_row():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    y = x @ rng.normal(size=6) + 0.5 * rng.normal(size=40) + 3.0
    alphas = (0.01, 1.0, 30.0, 1000.0)
    fitted = ridge_loo(x, y, alphas)
    brute = {a: _brute_force_loo(x, y, a) for a in alphas}
    assert fitted["alpha"] == min(brute, key=brute.get)
    assert fitted["loo_mse"] == pytest.approx(brute[fitted["alpha"]], rel=1e-9)
    # the weights are the ridge solution on all rows at that alpha
    mx, my = x.mean(0), y.mean()
    w = np.linalg.solve((x - mx).T @ (x - mx) + fitted["alpha"] * np.eye(6),
                        (x - mx).T @ (y - my))
    np.testing.assert_allclose(fitted["weights"], w, rtol=1e-9)
    np.testing.assert_allclose(ridge_predict(fitted, x), x @ w + my - mx @ w, rtol=1e-9)


def test_folds_are_seeded_balanced_and_test_never_selects():
    fold = kfold_assignments(53, 5, seed=3)
    assert np.array_equal(fold, kfold_assignments(53, 5, seed=3))
    assert not np.array_equal(fold, kfold_assignments(53, 5, seed=4))
    counts = np.bincount(fold)
    assert counts.max() - counts.min() <= 1
    for f in range(5):
        split = fold_split(fold, f, (f + 1) % 5)
        assert set(np.flatnonzero(split == "test")) == set(np.flatnonzero(fold == f))
        assert not set(np.flatnonzero(split == "valid")) & set(np.flatnonzero(split == "test"))
    tested = np.concatenate([np.flatnonzero(fold_split(fold, f, (f + 1) % 5) == "test")
                             for f in range(5)])
    assert sorted(tested) == list(range(53))  # every item tested exactly once
    with pytest.raises(Exception, match="too few"):
        kfold_assignments(7, 5, seed=0)


@pytest.fixture()
def small_pool(tmp_path):
    rng = np.random.default_rng(1)
    n = 120
    x = rng.normal(size=(n, 5))
    y = np.round(x[:, 0] - 0.5 * x[:, 1] + 0.4 * rng.normal(size=n), 2)
    frame = pl.DataFrame({f"f{i}": x[:, i] for i in range(5)}).with_columns(
        pl.Series("y", y))
    frame.write_csv(tmp_path / "pool.csv")
    return tmp_path / "pool.csv"


def _fit(path, out, *extra):
    return runner.invoke(app, ["rank", "fit", "--data", str(path), "--target", "y",
                               "--feature-columns", "f0,f1,f2,f3,f4", "--epochs", "15",
                               "--out", str(out), *extra])


def test_a_small_pool_is_cross_validated_and_says_so(small_pool, tmp_path):
    res = _fit(small_pool, tmp_path / "run", "--model", "linear")
    assert res.exit_code == 0, res.output
    assert "5-fold cross-validation" in res.output and "±" in res.output
    assert "baseline: ridge" in res.output
    m = json.loads((tmp_path / "run" / "model" / "metrics.json").read_text())
    assert m["protocol"] == "kfold" and m["folds"] == 5 and m["model"] == "linear"
    taus = [f["test"]["kendall_tau"] for f in m["fold_results"]]
    assert m["test"]["kendall_tau"] == pytest.approx(np.mean(taus))
    assert m["test_std"]["kendall_tau"] == pytest.approx(np.std(taus, ddof=1))
    assert sum(f["test"]["items"] for f in m["fold_results"]) == 120
    assert m["test"]["kendall_tau"] > 0.4  # a linear target: the linear scorer finds it
    ridge = m["baselines"]["ridge"]
    assert len(ridge["alpha"]) == 5 and ridge["test"]["kendall_tau"] > 0.4
    res = runner.invoke(app, ["rank", "evaluate", "--artifact", str(tmp_path / "run")])
    assert res.exit_code == 2 and "k-fold" in res.output


def test_the_protocol_can_be_forced_either_way(small_pool, tmp_path):
    res = _fit(small_pool, tmp_path / "split", "--set", "eval.protocol=split", "--loss", "mse")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "split" / "model" / "metrics.json").read_text())
    assert m["protocol"] == "split" and "fold_results" not in m
    assert m["baselines"]["ridge"]["fit_on"] == "train+valid"
    res = _fit(small_pool, tmp_path / "k3", "--set", "eval.protocol=kfold",
               "--set", "eval.folds=3", "--set", "eval.kfold_below=0")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "k3" / "model" / "metrics.json").read_text())["folds"] == 3


def test_a_big_pool_keeps_one_split(small_pool, tmp_path):
    res = _fit(small_pool, tmp_path / "run", "--set", "eval.kfold_below=50")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "run" / "model" / "metrics.json").read_text())
    assert m["protocol"] == "split" and m["split"].startswith("fixed 80%/10%/10%")


def test_a_small_pool_still_gets_several_steps_an_epoch(small_pool):
    cfg = load_config(None, [f"data.name={small_pool}", "data.target=y",
                             "data.feature_columns=[f0, f1, f2, f3, f4]",
                             "lists.list_size=32"])
    pool = load_data(cfg.data)
    dm = ListDataModule(cfg, {s: pool.part(s).features for s in ("train", "valid", "test")},
                        pool)
    one_pass = -(-len(pool.part("train")) // 32)
    assert dm.batch_size == min(cfg.train.batch_size, one_pass)
    assert dm.lists_per_epoch() // dm.batch_size >= cfg.lists.min_steps
    # about min_steps passes over the items, not a hundred
    assert dm.lists_per_epoch() * 32 <= (cfg.lists.min_steps + 1) * len(pool.part("train")) * 2


def test_mse_regresses_standardised_labels_and_ranking_losses_see_raw_ones():
    import torch

    from rankpref.tasks.rank.artifact import build_scorer
    from rankpref.tasks.rank.data import LABEL_PAD
    from rankpref.tasks.rank.module import RankModule

    x = torch.randn(2, 3, 4)
    y = torch.tensor([[5.0, 7.0, LABEL_PAD], [6.0, 9.0, 3.0]])
    seen = {}
    for loss in ("mse", "ranknet"):
        cfg = load_config(None, [f"loss.name={loss}"])
        module = RankModule(build_scorer(cfg, 4), cfg, label_stats=(6.0, 2.0))
        module.loss_fn = lambda s, labels, pad, **kw: seen.__setitem__(loss, labels) or s.sum()
        module.log = lambda *a, **k: None
        module.training_step((x, y), 0)
    expected = torch.tensor([[-0.5, 0.5, LABEL_PAD], [0.0, 1.5, -1.5]])
    assert torch.equal(seen["mse"], expected)
    assert torch.equal(seen["ranknet"], y)

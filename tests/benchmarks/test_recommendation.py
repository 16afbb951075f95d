"""benchmarks/recommendation.py: the feed both libraries read keeps each user's file order
among equal timestamps (and breaks every tie), the split check names users whose held-out
targets differ, and rows/ratios come out as the JSON quotes them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

INTER = """user_id:token\titem_id:token\trating:float\ttimestamp:float
2\t20\t3\t100
1\t11\t4\t50
1\t13\t4\t70
1\t12\t4\t50
2\t21\t3\t100
2\t22\t3\t90
1\t14\t5\t80
2\t23\t3\t110
"""


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("rec_bench",
                                                  ROOT / "benchmarks" / "recommendation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def shared(tmp_path, monkeypatch):
    folder = tmp_path / "shared" / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "ml-100k.inter").write_text(INTER)
    monkeypatch.setenv("RANKPREF_DATA_DIR", str(tmp_path / "shared"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_feed_keeps_file_order_among_ties_and_breaks_every_tie(bench, shared):
    feed = bench.sorted_feed(shared / "work")
    lines = [line.split("\t") for line in feed.read_text().splitlines()[1:]]
    by_user = {}
    for user, item, _, rank in lines:
        by_user.setdefault(user, []).append((item, int(rank)))
    # user 1: 11 and 12 tie at t=50 and keep the file's order; user 2: 22 (t=90) comes
    # first, then the tie 20, 21 in file order, then 23
    assert [i for i, _ in by_user["1"]] == ["11", "12", "13", "14"]
    assert [i for i, _ in by_user["2"]] == ["22", "20", "21", "23"]
    ranks = [r for _, r in by_user["1"] + by_user["2"]]
    assert ranks == sorted(set(ranks))  # strictly increasing: no two events tie any more
    assert feed.parent.name == bench.FEED != "ml-100k"  # RecBole would read its own copy


def test_split_check_compares_every_user(bench, shared):
    work = shared / "work"
    feed = bench.sorted_feed(work)
    assert bench.split_check(feed, work)["identical"] is None  # nothing exported yet
    ours = bench.rankpref_targets(feed)
    assert ours["test"] == {"1": "14", "2": "23"} and ours["valid"] == {"1": "13", "2": "21"}
    export = work / "recbole" / "split.json"
    export.parent.mkdir(parents=True)
    export.write_text(json.dumps({"valid_targets": ours["valid"], "test_targets": ours["test"]}))
    assert bench.split_check(feed, work)["identical"] is True
    export.write_text(json.dumps({"valid_targets": {"1": "13", "2": "20"},
                                  "test_targets": ours["test"]}))
    check = bench.split_check(feed, work)
    assert check["identical"] is False
    assert check["valid"]["differ"] == 1 and check["valid"]["first_differing"] == ["2"]


def test_rows_and_ratios(bench):
    m = {"test": {"ndcg@10": 0.06, "recall@10": 0.12}, "valid": {"ndcg@10": 0.07},
         "seconds_per_epoch": 10.0, "best_epoch": 5, "epochs_run": 15}
    ours = bench.row("rankpref", "sasrec", "default", m, 0)
    theirs = bench.row("recbole 1.2.1", "sasrec", "default",
                       {**m, "test": {"ndcg@10": 0.05, "recall@10": 0.1},
                        "seconds_per_epoch": 200.0}, 2020)
    assert ours["ndcg@10"] == 0.06 and ours["split"] == "test" and ours["dataset"] == "ml-100k"
    other_seed = {**ours, "seed": 1, "ndcg@10": 0.04}
    lines = bench.summary([ours, other_seed, theirs])
    mine = next(line for line in lines if line["library"] == "rankpref")
    assert mine["seeds"] == [0, 1] and mine["ndcg@10"] == pytest.approx(0.05)
    assert mine["ndcg@10 std"] == pytest.approx(0.01414, rel=1e-3)
    (ratio,) = bench.ratios(bench.summary([ours, theirs]))
    assert ratio["ndcg@10 rankpref / recbole"] == pytest.approx(1.2)
    assert ratio["seconds_per_epoch recbole / rankpref"] == pytest.approx(20.0)


def test_paired_bootstrap_interval(bench):
    a = {u: 0.1 for u in range(200)}
    b = {u: 0.1 + (0.02 if u % 2 else 0.0) for u in range(200)}
    out = bench.paired_bootstrap(a, b)
    assert out["users"] == 200 and out["mean_difference"] == pytest.approx(0.01)
    low, high = out["ci95"]
    assert 0 < low < 0.01 < high < 0.02
    same = bench.paired_bootstrap(a, a)
    assert same["ci95"] == [0.0, 0.0]


def test_beauty_pairs_compare_like_with_like(bench):
    users = range(100)
    per_user = {("sasrec", "ce", 0): {u: 0.1 for u in users},
                ("pulse", "text", 0): {u: 0.2 for u in users},
                ("pulse", "template, distill", 0): {u: 0.25 for u in users},
                ("pulse", "text, cold 10%, sum", 0): {u: 0.05 for u in users},
                ("pulse", "text, cold 10%, capped_delta", 0): {u: 0.07 for u in users}}
    every = bench.paired_against(per_user, ("sasrec", "ce"))
    # a cold-start row holds different test users out: it is never set against a full one
    assert {p["row"] for p in every} == {"pulse (text)", "pulse (template, distill)"}
    (why,) = bench.paired_against(per_user, ("pulse", "text"),
                                  [("pulse", "template, distill")])
    assert why["ndcg@10"]["mean_difference"] == pytest.approx(0.05)
    (cold,) = bench.paired_against(per_user, ("pulse", "text, cold 10%, sum"),
                                   bench.BEAUTY_PAIRS[("pulse", "text, cold 10%, sum")])
    assert cold["row"] == "pulse (text, cold 10%, capped_delta)"


def test_merge_keeps_rows_it_did_not_redo_in_the_table_order(bench):
    m = {"test": {"ndcg@10": 0.05, "recall@10": 0.1}, "valid": {"ndcg@10": 0.06},
         "seconds_per_epoch": 1.0, "best_epoch": 1, "epochs_run": 2}
    old_sasrec = bench.row("rankpref", "sasrec", "ce", m, 0, dataset="beauty")
    old_gbce = bench.row("rankpref", "sasrec", "gbce", m, 0, dataset="beauty")
    pair = {"baseline": "sasrec (ce)", "row": "sasrec (gbce)", "seed": 0,
            "ndcg@10": {"users": 1, "mean_difference": 0.0, "ci95": [0.0, 0.0]}}
    previous = {"rows": [old_gbce, old_sasrec], "paired_bootstrap": [pair]}
    new_sasrec = {**old_sasrec, "ndcg@10": 0.07}
    new_pulse = bench.row("rankpref", "pulse", "text", m, 0, dataset="beauty")
    merged = bench.merge_rows(bench.ROW_SETS["beauty"],
                              {"rows": [new_pulse, new_sasrec], "paired_bootstrap": []}, previous)
    assert [(r["model"], r["variant"]) for r in merged["rows"]] == [
        ("sasrec", "ce"), ("sasrec", "gbce"), ("pulse", "text")]
    assert merged["rows"][0]["ndcg@10"] == 0.07      # the new run replaces the old row
    assert merged["paired_bootstrap"] == [pair]
    assert len(merged["summary"]) == 3


def test_model_config_keeps_only_the_keys_a_model_has(bench, tmp_path):
    from rankpref.tasks.next_item import load_config

    assert bench.model_config(tmp_path, bench.BEAUTY_CONFIG, "sasrec") == bench.BEAUTY_CONFIG
    path = bench.model_config(tmp_path, bench.BEAUTY_CONFIG, "gru4rec")
    cfg = load_config(path, ["model.name=gru4rec"])       # unknown keys would be errors
    assert cfg.train.lr == 0.001 and cfg.model.hidden == 64


def test_every_row_set_reports_its_rows_and_pairs(bench):
    m = {"test": {"ndcg@10": 0.1, "recall@10": 0.2}, "valid": {"ndcg@10": 0.11},
         "seconds_per_epoch": 8.0, "best_epoch": 14, "epochs_run": 19}
    why = bench.ROW_SETS["ml100k-why"]
    rows = [bench.row("rankpref", "pulse", v, m, 0, dataset=why.dataset)
            for _, v in why.rows]
    pair = {"baseline": "pulse (text)", "row": "pulse (template, distill)", "seed": 0,
            "ndcg@10": {"users": 943, "mean_difference": 0.0016, "ci95": [-0.0067, 0.0099]}}
    text = bench.markdown({why.part: bench.merge_rows(why, {"rows": rows,
                                                            "paired_bootstrap": [pair]}, None)})
    assert "| ml-100k 5-core: model |" in text and "| pulse | template, distill | 0.1000 |" in text
    assert "| pulse (template, distill) | pulse (text) | 0 | +0.0016 | [-0.0067, +0.0099] |" in text


def test_pairs_over_all_seeds_average_each_users_difference(bench):
    users = range(50)
    per_user = {}
    for seed, gain in ((0, 0.01), (1, 0.03)):
        per_user[("pulse", "text", seed)] = {u: 0.1 for u in users}
        per_user[("pulse", "template, distill", seed)] = {u: 0.1 + gain for u in users}
    pairs = bench.paired_against(per_user, ("pulse", "text"))
    assert [p["seed"] for p in pairs] == [0, 1, "mean of 2"]
    assert pairs[-1]["ndcg@10"]["mean_difference"] == pytest.approx(0.02)

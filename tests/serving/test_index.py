"""ItemIndex: exact search checked against numpy, exclusion keeps k results, add/remove,
save/load with checksums, bad input, recall against exact, and a trained SASRec artifact."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rankpref.errors import RankprefError, UnknownIdError
from rankpref.serving.index import ItemIndex, recall_check, sample_item_queries, vectors_checksum

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import faiss

    threads, omp = torch.get_num_threads(), faiss.omp_get_max_threads()
    env = dict(os.environ)
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(omp)
    for key in set(os.environ) - set(env):
        del os.environ[key]
    os.environ.update(env)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(20, 24)).astype(np.float32)
    x = centres[rng.integers(0, 20, 2000)] + 0.3 * rng.normal(size=(2000, 24)).astype(np.float32)
    ids = [f"item-{i}" for i in range(len(x))]
    return ids, x


def numpy_topk(x: np.ndarray, q: np.ndarray, k: int, metric: str, skip=None):
    """Reference: score every item with numpy, drop skipped rows, sort best first."""
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2":
        scores = -((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    else:
        scores = q @ x.T
    out = []
    for i in range(len(q)):
        s = scores[i].copy()
        for r in (skip[i] if skip else []):
            s[r] = -np.inf
        order = np.argsort(-s, kind="stable")
        out.append([int(r) for r in order if np.isfinite(s[r])][:k])
    return out, scores


# ----------------------------------------------------------------------------- exact search


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_flat_search_matches_numpy(data, metric):
    ids, x = data
    index = ItemIndex.build(ids, x, metric=metric)
    q = x[:50] + 0.05
    got, scores = index.search(q, 10)
    want, ref = numpy_topk(x, q, 10, metric)
    assert got == [[ids[r] for r in row] for row in want]
    ref_scores = np.take_along_axis(ref, np.array(want), 1)
    expected = -ref_scores if metric == "l2" else ref_scores
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-3)


def test_exclude_drops_items_and_keeps_k(data):
    ids, x = data
    index = ItemIndex.build(ids, x)
    q = x[:20]
    first, _ = index.search(q, 10)
    exclude = [row[:7] + ["not-an-item"] for row in first]  # unknown excluded ids are ignored
    got, scores = index.search(q, 10, exclude=exclude)
    skip = [[ids.index(i) for i in row[:7]] for row in first]
    want, _ = numpy_topk(x, q, 10, "ip", skip)
    assert got == [[ids[r] for r in row] for row in want]
    assert all(len(row) == 10 for row in got) and np.isfinite(scores).all()


def test_approximate_index_that_runs_short_is_filled_exactly(data):
    ids, x = data
    index = ItemIndex.build(ids, x, factory="IVF32,Flat", search_params="nprobe=1")
    q = x[:30]
    plain, _ = index.search(q, 10)
    exclude = [[ids[r] for r in range(0, 2000, 3)] for _ in range(30)]  # a third of the catalogue
    got, scores = index.search(q, 200, exclude=exclude)
    assert all(len(row) == 200 for row in got) and np.isfinite(scores).all()
    assert not any(set(row) & set(exclude[0]) for row in got)
    assert len(plain[0]) == 10


def test_k_larger_than_the_catalogue_pads_with_nan(data):
    ids, x = data
    index = ItemIndex.build(ids[:5], x[:5])
    got, scores = index.search(x[:2], 8, exclude=[[ids[0]], []])
    assert [len(r) for r in got] == [4, 5]
    assert scores.shape == (2, 8)
    assert np.isnan(scores[0, 4:]).all() and np.isnan(scores[1, 5:]).all()
    assert np.isfinite(scores[0, :4]).all()


def test_single_vector_query_and_empty_batch(data):
    ids, x = data
    index = ItemIndex.build(ids, x, metric="l2")
    got, scores = index.search(x[3], 1)  # a 1-d vector is one query
    assert got == [[ids[3]]] and scores.shape == (1, 1) and scores[0, 0] == pytest.approx(0, abs=1e-4)
    got, scores = index.search(np.zeros((0, 24), np.float32), 5)
    assert got == [] and scores.shape == (0, 5)


# ----------------------------------------------------------------------------- updates


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF16,Flat"])
def test_add_and_remove(data, factory):
    ids, x = data
    index = ItemIndex.build(ids[:1500], x[:1500], factory=factory, metric="l2", search_params=(
        "nprobe=16" if factory.startswith("IVF") else ""))
    index.add(ids[1500:], x[1500:])
    assert len(index) == 2000
    got, _ = index.search(x[1990:1991], 1)
    assert got == [[ids[1990]]]
    np.testing.assert_array_equal(index.vector(ids[1990]), x[1990])
    index.remove([ids[1990], ids[5]])
    assert len(index) == 1998 and ids[1990] not in index
    got, _ = index.search(x[[1990, 5]], 20)
    assert ids[1990] not in got[0] and ids[5] not in got[1]
    # surviving items still map to their own vectors after the re-fill
    got, _ = index.search(x[[6, 1999]], 1)
    assert got == [[ids[6]], [ids[1999]]]
    with pytest.raises(UnknownIdError, match="item-1990"):
        index.vector(ids[1990])
    with pytest.raises(RankprefError, match="already in the index"):
        index.add([ids[0]], x[:1])


def test_remove_everything_or_unknown_is_refused(data):
    ids, x = data
    index = ItemIndex.build(ids[:3], x[:3])
    with pytest.raises(RankprefError, match="every item"):
        index.remove(ids[:3])
    with pytest.raises(UnknownIdError, match="'nope'"):
        index.remove(["nope"])
    assert len(index) == 3


# ----------------------------------------------------------------------------- save / load


def test_save_load_roundtrip(tmp_path, data):
    ids, x = data
    index = ItemIndex.build(ids, x, factory="HNSW16", metric="cosine",
                            metadata={"model": "test"}, search_params="efSearch=40")
    folder = index.save(tmp_path / "ix")
    assert sorted(p.name for p in folder.iterdir()) == ["ids.json", "index.faiss",
                                                        "manifest.json", "meta.json",
                                                        "vectors.safetensors"]
    assert json.loads((folder / "manifest.json").read_text())["kind"] == "index"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["dimension"] == 24 and meta["metric"] == "cosine" and meta["count"] == 2000
    assert meta["metadata"]["model"] == "test" and len(meta["sha256"]) == 3
    loaded = ItemIndex.load(folder)
    a = index.search(x[:30], 10)
    b = loaded.search(x[:30], 10)
    assert a[0] == b[0]
    np.testing.assert_allclose(a[1], b[1])
    assert loaded.search_params == "efSearch=40" and loaded.factory == "HNSW16"
    assert not list(tmp_path.glob(".ix*")), "no temporary folder is left behind"


def _saved(tmp_path, data) -> Path:
    ids, x = data
    return ItemIndex.build(ids[:100], x[:100]).save(tmp_path / "ix")


def test_truncated_index_file_is_refused(tmp_path, data):
    folder = _saved(tmp_path, data)
    raw = (folder / "index.faiss").read_bytes()
    (folder / "index.faiss").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(RankprefError, match=r"index\.faiss: checksum does not match"):
        ItemIndex.load(folder)


def test_mismatched_files_are_refused(tmp_path, data):
    ids, x = data
    folder = _saved(tmp_path, data)
    other = ItemIndex.build(ids[:50], x[:50]).save(tmp_path / "other")
    (folder / "index.faiss").write_bytes((other / "index.faiss").read_bytes())
    with pytest.raises(RankprefError, match="checksum"):
        ItemIndex.load(folder)
    # checksums re-written to match: the shape check still refuses it
    meta = json.loads((folder / "meta.json").read_text())
    import hashlib

    meta["sha256"]["index.faiss"] = hashlib.sha256((folder / "index.faiss").read_bytes()).hexdigest()
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RankprefError, match="holds 50 vectors, meta says 100"):
        ItemIndex.load(folder)


def test_broken_meta_and_missing_files_are_refused(tmp_path, data):
    folder = _saved(tmp_path, data)
    with pytest.raises(RankprefError, match="no index folder"):
        ItemIndex.load(tmp_path / "nothing")
    (folder / "ids.json").unlink()
    with pytest.raises(RankprefError, match=r"missing ids\.json"):
        ItemIndex.load(folder)
    folder = _saved(tmp_path, data)
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(RankprefError, match=r"meta\.json: not valid JSON"):
        ItemIndex.load(folder)
    (folder / "meta.json").write_text(json.dumps({"format_version": 1, "factory": "Flat"}))
    with pytest.raises(RankprefError, match="field 'metric'"):
        ItemIndex.load(folder)


# ----------------------------------------------------------------------------- bad input


def test_bad_build_input(data):
    ids, x = data
    bad = x[:10].copy()
    bad[4, 2] = np.nan
    with pytest.raises(RankprefError, match="row 4 has a NaN"):
        ItemIndex.build(ids[:10], bad)
    with pytest.raises(RankprefError, match="duplicate id 'item-0'"):
        ItemIndex.build([ids[0]] * 2, x[:2])
    with pytest.raises(RankprefError, match="3 ids for 2 vectors"):
        ItemIndex.build(ids[:3], x[:2])
    with pytest.raises(RankprefError, match="2-d"):
        ItemIndex.build(ids[:1], x[0])
    with pytest.raises(RankprefError, match="metric must be"):
        ItemIndex.build(ids[:2], x[:2], metric="dot")
    with pytest.raises(RankprefError, match="factory 'Bogus12'"):
        ItemIndex.build(ids[:2], x[:2], factory="Bogus12")
    with pytest.raises(RankprefError, match="needs at least 64 vectors"):
        ItemIndex.build(ids[:10], x[:10], factory="IVF64,Flat")
    with pytest.raises(RankprefError, match="search_params"):
        ItemIndex.build(ids[:10], x[:10], search_params="nosuchparam=3")


def test_bad_search_input(data):
    ids, x = data
    index = ItemIndex.build(ids[:10], x[:10])
    for k in (0, -1, 2.5, True):
        with pytest.raises(RankprefError, match="k must be a positive integer"):
            index.search(x[:1], k)
    with pytest.raises(RankprefError, match="dimension 3 does not match the index"):
        index.search(np.ones((1, 3)), 2)
    with pytest.raises(RankprefError, match="2 lists for 1 queries"):
        index.search(x[:1], 2, exclude=[[], []])


# ----------------------------------------------------------------------------- recall check


def test_recall_check_against_exact(data):
    ids, x = data
    q, exclude = sample_item_queries(ItemIndex.build(ids, x), 100, seed=1)
    assert len(exclude) == 100 and all(len(e) == 1 for e in exclude)
    exact = recall_check(ItemIndex.build(ids, x), q, 10, exclude)
    assert exact["recall"] == 1.0 and exact["queries"] == 100
    rough = ItemIndex.build(ids, x, factory="IVF64,Flat", search_params="nprobe=1")
    report = recall_check(rough, q, 10, exclude)
    # recomputed by hand: overlap of the approximate and the numpy top-10
    got, _ = rough.search(q, 10, exclude=exclude)
    skip = [[ids.index(e[0])] for e in exclude]
    want, _ = numpy_topk(x, q, 10, "ip", skip)
    manual = np.mean([len(set(g) & {ids[r] for r in w}) / 10 for g, w in zip(got, want)])
    assert report["recall"] == pytest.approx(manual)
    assert report["recall"] < 1.0
    rough.set_search_params("nprobe=64")  # every list probed: exact again
    assert recall_check(rough, q, 10, exclude)["recall"] == 1.0
    assert rough.search_params == "nprobe=64"
    with pytest.raises(RankprefError, match="search_params 'nprobe=x'"):
        rough.set_search_params("nprobe=x")


# ----------------------------------------------------------------------------- a trained model


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from rankpref.cli import app

    root = tmp_path_factory.mktemp("index_fit")
    result = runner.invoke(app, ["fit", "--data", "demo", "--epochs", "1", "--out", str(root / "run"),
                                 "--set", f"data.cache_dir={root / 'cache'}",
                                 "--set", "train.progress=false"])
    assert result.exit_code == 0, (result.output, result.exception)
    return root / "run" / "model"


def test_from_recommender_reproduces_the_model_ranking(artifact, tmp_path):
    from rankpref.tasks.next_item.recommend import Recommender

    rec = Recommender.load(artifact)
    index = ItemIndex.from_recommender(rec)
    assert index.metadata["model"] == "sasrec" and index.metadata["dataset"] == "demo"
    assert index.metadata["source_checksum"] == vectors_checksum(rec.item_vectors())
    assert index.ids == rec.item_ids and index.dim == rec.item_vectors().shape[1]
    histories = [[1, 2, 3], [10, 40], [7]]
    users = rec.user_vectors(histories)
    for h, u in zip(histories, users):
        want = rec.recommend(h, k=10, exclude_seen=True)
        got, scores = index.search(u[None, :], 10, exclude=[[rec.vocab.items[i] for i in h]])
        assert got[0] == [rec.vocab.items[i] for i, _ in want]
        np.testing.assert_allclose(scores[0], [s for _, s in want], rtol=1e-4, atol=1e-4)
    loaded = ItemIndex.load(index.save(tmp_path / "ix"))
    assert loaded.metadata["model"] == "sasrec"


# ----------------------------------------------------------------------------- command line


def _cli(*args):
    from rankpref.cli import app

    return runner.invoke(app, [str(a) for a in args])


def test_cli_build_search_check(artifact, tmp_path):
    out = tmp_path / "ix"
    result = _cli("index", "build", "--artifact", artifact, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert (out / "meta.json").is_file()
    from rankpref.tasks.next_item.recommend import Recommender

    rec = Recommender.load(artifact)
    first = rec.item_ids[0]
    result = _cli("index", "search", "--index", out, "--item", first, "--k", "5", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 5 and first not in [r["item_id"] for r in rows]
    history = ",".join(rec.item_ids[:3])
    result = _cli("index", "search", "--index", out, "--artifact", artifact, "--history", history,
                  "--k", "4", "--json")
    assert result.exit_code == 0, result.output
    want = rec.recommend([1, 2, 3], k=4)
    assert [r["item_id"] for r in json.loads(result.stdout)] == [rec.vocab.items[i] for i, _ in want]
    result = _cli("index", "check", "--index", out, "--queries", "50")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["recall"] == 1.0


def test_cli_approximate_build_reports_recall_and_refuses_a_poor_one(artifact, tmp_path):
    out = tmp_path / "ivf"
    result = _cli("index", "build", "--artifact", artifact, "--out", out, "--factory", "IVF64,Flat",
                  "--search-params", "nprobe=1", "--min-recall", "0.999", "--queries", "200")
    assert result.exit_code == 2, result.output
    assert "error: " in result.stderr and "recall@10" in result.stderr
    assert not out.exists()
    result = _cli("index", "build", "--artifact", artifact, "--out", out, "--factory", "IVF64,Flat",
                  "--search-params", "nprobe=64", "--queries", "200")
    assert result.exit_code == 0, result.output
    assert "recall@10" in result.stdout
    result = _cli("index", "check", "--index", out, "--search-params", "nprobe=1",
                  "--min-recall", "0.999", "--queries", "200")
    assert result.exit_code == 1 and json.loads(result.stdout)["passed"] is False


def test_cli_bad_input(artifact, tmp_path):
    result = _cli("index", "search", "--index", tmp_path / "missing", "--item", "x")
    assert result.exit_code == 2 and "error: " in result.stderr and "no index folder" in result.stderr
    out = tmp_path / "ix"
    assert _cli("index", "build", "--artifact", artifact, "--out", out).exit_code == 0
    result = _cli("index", "search", "--index", out, "--item", "no-such-item")
    assert result.exit_code == 2 and "unknown item id(s): 'no-such-item'" in result.stderr
    result = _cli("index", "build", "--artifact", artifact, "--out", tmp_path / "b",
                  "--factory", "Nope")
    assert result.exit_code == 2 and "factory 'Nope'" in result.stderr
    result = _cli("index", "build", "--out", tmp_path / "c")
    assert result.exit_code == 2 and "--artifact" in result.stderr


def test_cli_build_from_vectors_file(tmp_path, data):
    ids, x = data
    np.save(tmp_path / "v.npy", x[:300])
    (tmp_path / "ids.txt").write_text("\n".join(ids[:300]) + "\n")
    out = tmp_path / "ix"
    result = _cli("index", "build", "--vectors", tmp_path / "v.npy", "--ids", tmp_path / "ids.txt",
                  "--out", out, "--metric", "cosine", "--model-name", "concepts")
    assert result.exit_code == 0, (result.output, result.exception)
    loaded = ItemIndex.load(out)
    assert loaded.metric == "cosine" and loaded.metadata["model"] == "concepts" and len(loaded) == 300
    (tmp_path / "short.txt").write_text("\n".join(ids[:10]))
    result = _cli("index", "build", "--vectors", tmp_path / "v.npy", "--ids", tmp_path / "short.txt",
                  "--out", tmp_path / "bad")
    assert result.exit_code == 2 and "10 ids for 300 vectors" in result.stderr


def test_to_gpu_without_a_gpu_says_what_it_needs(data):
    import faiss

    ids, vectors = data[0], data[1]
    index = ItemIndex.build(ids, vectors)
    if getattr(faiss, "get_num_gpus", lambda: 0)() > 0:
        pytest.skip("a GPU is visible: to_gpu would succeed")
    with pytest.raises(RankprefError, match="FAISS sees no GPU.*faiss-gpu"):
        index.to_gpu()
    assert index.search(vectors[:2], 3)[0][0][0] == ids[0]  # still searches on the CPU

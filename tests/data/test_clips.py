"""Clips in, ranking out: openSMILE features from synthesised clips, the cache, refused files,
paths outside the table's folder, channel/rate mixes, and `rankpref rank fit/predict` on a
folder of recordings end to end."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

pytest.importorskip("opensmile", reason="clip features need opensmile (pip install "
                    "'rankpref[audio]')")
soundfile = pytest.importorskip("soundfile")

from rankpref.cli import app  # noqa: E402
from rankpref.data import clips  # noqa: E402
from rankpref.data.clips import MediaFeatures  # noqa: E402
from rankpref.data.tones import write_clips  # noqa: E402
from rankpref.metrics.correlation import kendall_tau_b  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    table = write_clips(folder, 60, seed=0, seconds=1.5)
    return folder, table


def _paths(folder, table):
    return [folder / p for p in table["path"].to_list()]


def test_egemaps_features_and_a_second_run_from_the_cache(clip_folder, tmp_path, monkeypatch):
    folder, table = clip_folder
    paths = _paths(folder, table)[:8]
    first, names, report = MediaFeatures(cache_dir=tmp_path, progress=False).features(paths)
    assert first.shape == (8, 88) and len(names) == 88 and np.isfinite(first).all()
    assert report.computed == 8 and report.cached == 0
    assert any("F0semitone" in n for n in names)

    def no_audio(*args, **kwargs):
        raise AssertionError("a cached clip was read again")

    monkeypatch.setattr(clips, "read_clip", no_audio)
    again, _, report = MediaFeatures(cache_dir=tmp_path, progress=False).features(paths)
    assert report.cached == 8 and report.computed == 0
    np.testing.assert_array_equal(again, first)


def test_the_cache_key_is_the_file_content_not_its_name(clip_folder, tmp_path):
    folder, table = clip_folder
    src = _paths(folder, table)[0]
    copy = tmp_path / "renamed.wav"
    copy.write_bytes(src.read_bytes())
    media = MediaFeatures(cache_dir=tmp_path / "cache", progress=False)
    media.features([src])
    _, _, report = MediaFeatures(cache_dir=tmp_path / "cache", progress=False).features([copy])
    assert report.cached == 1


def test_pitch_features_follow_the_synthesised_pitch(clip_folder, tmp_path):
    folder, table = clip_folder
    x, names, _ = MediaFeatures(cache_dir=tmp_path, progress=False).features(
        _paths(folder, table))
    f0 = x[:, names.index("eGeMAPSv02:F0semitoneFrom27.5Hz_sma3nz_amean")]
    assert kendall_tau_b(f0, table["f0_hz"].to_numpy()) > 0.9


def _bad_files(folder):
    sr = 16000
    t = np.arange(sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("this is not audio\n")
    soundfile.write(str(folder / "good.wav"), tone, sr)
    (folder / "corrupt.wav").write_bytes((folder / "good.wav").read_bytes()[:30])
    soundfile.write(str(folder / "silent.wav"), np.zeros(sr, np.float32), sr)
    soundfile.write(str(folder / "short.wav"), tone[: sr // 10], sr)
    return {"missing.wav": "file not found", "empty.wav": "empty file",
            "text.wav": "not readable as audio", "corrupt.wav": "not readable as audio",
            "silent.wav": "silent", "short.wav": "too short"}


def test_each_bad_file_is_refused_with_its_name_and_reason(tmp_path):
    expected = _bad_files(tmp_path)
    names = list(expected) + ["good.wav"]
    x, _, report = MediaFeatures(cache_dir=tmp_path / "c", progress=False).features(
        [tmp_path / n for n in names])
    assert set(report.refused) == set(range(len(expected)))
    for row, name in enumerate(expected):
        assert name in report.refused[row] and expected[name] in report.refused[row]
        assert np.isnan(x[row]).all()
    assert np.isfinite(x[-1]).all()


def test_stereo_and_other_rates_become_mono_16k(tmp_path):
    import audresample

    sr = 16000
    t = np.arange(2 * sr) / sr
    mono = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
            ).astype(np.float32)
    soundfile.write(str(tmp_path / "mono.wav"), mono, sr, subtype="FLOAT")
    # channels that differ: their mean is the mono clip, either channel alone is not
    soundfile.write(str(tmp_path / "stereo.wav"), np.stack([0.5 * mono, 1.5 * mono], axis=1),
                    sr, subtype="FLOAT")
    soundfile.write(str(tmp_path / "hi.flac"),
                    audresample.resample(mono, sr, 44100)[0], 44100)
    x, names, report = MediaFeatures(cache_dir=tmp_path / "c", progress=False).features(
        [tmp_path / n for n in ("mono.wav", "stereo.wav", "hi.flac")])
    assert report.converted == {"stereo": 1, "resampled": 1}
    np.testing.assert_allclose(x[1], x[0], rtol=1e-4, atol=1e-4)
    f0 = names.index("eGeMAPSv02:F0semitoneFrom27.5Hz_sma3nz_amean")
    assert x[2, f0] == pytest.approx(x[0, f0], abs=0.05)


def _fit(table, out, *extra):
    return runner.invoke(app, ["rank", "fit", "--data", str(table), "--audio-column", "path",
                               "--target", "pitch", "--epochs", "60", "--out", str(out),
                               "--set", f"data.cache_dir={out.parent / 'cache'}", *extra])


def test_clip_to_ranking_end_to_end_with_bad_files_and_predict(clip_folder, tmp_path):
    folder, table = clip_folder
    bad = _bad_files(folder / "clips")
    extra = pl.DataFrame({"id": [f"bad{i}" for i in range(len(bad))],
                          "path": [f"clips/{n}" for n in bad],
                          "pitch": [4.0] * len(bad)})
    ratings = folder / "train.csv"
    pl.concat([table.select("id", "path", "pitch"), extra]).write_csv(ratings)
    out = tmp_path / "run"
    res = _fit(ratings, out)
    assert res.exit_code == 0, res.output
    for name in bad:
        assert f"skipped {folder / 'clips' / name}" in res.output
    m = json.loads((out / "model" / "metrics.json").read_text())
    assert m["protocol"] == "kfold" and len(m["fold_results"]) == 5
    assert m["media"]["refused"] == len(bad) and m["media"]["computed"] == 60
    assert m["test"]["items"] == 60
    # perceived pitch is easy from F0: the scorer and the ridge baseline both get it
    assert m["test"]["kendall_tau"] > 0.4
    assert m["baselines"]["ridge"]["test"]["kendall_tau"] > 0.4
    features = json.loads((out / "model" / "features.json").read_text())
    assert features["source"] == "audio" and features["input_dim"] == 88

    new_folder = folder / "unseen"  # new speakers, rated by nobody yet
    held = write_clips(new_folder, 15, seed=1, seconds=1.5)
    new = new_folder / "new.csv"
    pl.concat([held.select("id", "path"),
               pl.DataFrame({"id": ["gone"], "path": ["clips/missing.wav"]})]).write_csv(new)
    res = runner.invoke(app, ["rank", "predict", "--artifact", str(out), "--items", str(new),
                              "--output", str(tmp_path / "pred.json")])
    assert res.exit_code == 0, res.output
    assert "missing.wav: file not found" in res.output
    pred = json.loads((tmp_path / "pred.json").read_text())
    assert len(pred) == 15 and "gone" not in {r["id"] for r in pred}
    by_id = dict(zip(held["id"].to_list(), held["f0_hz"].to_list()))
    score = np.array([r["score"] for r in pred])
    f0 = np.array([by_id[r["id"]] for r in pred])
    assert kendall_tau_b(score, f0) > 0.5


def test_a_path_outside_the_table_folder_is_refused_unless_allowed(clip_folder, tmp_path):
    folder, table = clip_folder
    inner = tmp_path / "project"
    inner.mkdir()
    outside = [str(p) for p in _paths(folder, table)]
    pl.DataFrame({"path": outside, "pitch": table["pitch"]}).write_csv(inner / "r.csv")
    res = _fit(inner / "r.csv", tmp_path / "run", "--epochs", "2")
    assert res.exit_code == 2
    assert "outside the table's folder" in res.output and "line 2" in res.output
    assert "allow_outside_paths" in res.output
    res = _fit(inner / "r.csv", tmp_path / "run2", "--epochs", "2",
               "--set", "data.allow_outside_paths=true")
    assert res.exit_code == 0, res.output


def test_a_table_of_only_bad_files_is_one_clear_error(tmp_path):
    bad = _bad_files(tmp_path)
    pl.DataFrame({"path": list(bad), "pitch": np.arange(len(bad), dtype=float)}).write_csv(
        tmp_path / "r.csv")
    res = _fit(tmp_path / "r.csv", tmp_path / "run", "--epochs", "2")
    assert res.exit_code == 2
    assert "none of the 6 files" in res.output and "r.csv" in res.output


def test_images_need_a_model_folder(tmp_path):
    (tmp_path / "r.csv").write_text("img,y\na.png,1\nb.png,2\n")
    res = runner.invoke(app, ["rank", "fit", "--data", str(tmp_path / "r.csv"),
                              "--image-column", "img", "--target", "y"])
    assert res.exit_code == 2 and "image_model" in res.output


def _tiny_audio_model(folder):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4),
                         conv_kernel=(10, 4), num_conv_pos_embeddings=8,
                         num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(cfg).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    return folder


def test_a_local_audio_model_folder_gives_pooled_embeddings(clip_folder, tmp_path):
    pytest.importorskip("transformers")
    folder, table = clip_folder
    model = _tiny_audio_model(tmp_path / "w2v")
    media = MediaFeatures(str(model), cache_dir=tmp_path / "c", progress=False)
    x, names, report = media.features(_paths(folder, table)[:4])
    assert x.shape == (4, 16) and np.isfinite(x).all() and len(names) == 16
    assert not np.allclose(x[0], x[1])  # different clips, different vectors
    _, _, again = MediaFeatures(str(model), cache_dir=tmp_path / "c",
                                progress=False).features(_paths(folder, table)[:4])
    assert again.cached == 4


def test_images_through_a_local_model_folder(tmp_path):
    pytest.importorskip("transformers")
    from PIL import Image
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    model = tmp_path / "vit"
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, image_size=32, patch_size=8)).save_pretrained(model)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(model)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png")
    (tmp_path / "bad.png").write_text("not an image")
    x, _, report = MediaFeatures(str(model), kind="image", cache_dir=tmp_path / "c",
                                 progress=False).features(
        [tmp_path / n for n in ("0.png", "1.png", "2.png", "bad.png")])
    assert np.isfinite(x[:3]).all() and x.shape[1] == 16
    assert list(report.refused) == [3] and "not readable as an image" in report.refused[3]


def test_compare_2016_by_setting(clip_folder, tmp_path):
    folder, table = clip_folder
    x, names, _ = MediaFeatures("ComParE_2016", cache_dir=tmp_path, progress=False).features(
        _paths(folder, table)[:2])
    assert x.shape == (2, 6373) and names[0].startswith("ComParE_2016:")
    egemaps, _, _ = MediaFeatures(cache_dir=tmp_path, progress=False).features(
        _paths(folder, table)[:2])
    assert egemaps.shape == (2, 88)  # one cache folder per extractor: no mix-up

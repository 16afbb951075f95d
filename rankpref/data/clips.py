"""Media files (audio clips, images) named by a table column -> one feature row per file.

Audio features are openSMILE functionals (PyPI ``opensmile``, offline): ``eGeMAPSv02`` (88
per clip, the default) or ``ComParE_2016`` (6,373), or the mean-pooled last hidden state of a
local Hugging Face audio model folder (wav2vec2, HuBERT, ... : anything ``AutoFeatureExtractor``
and ``AutoModel`` load). Images go through a user-named model folder only (no image weights
ship offline): ``AutoImageProcessor`` + ``AutoModel``, pooled.

Every clip is read with libsndfile (``soundfile``: wav, flac, ogg, mp3), mixed down to mono
and resampled to :data:`SAMPLE_RATE`, so a folder mixing stereo and mono or 44.1 and 16 kHz
recordings yields comparable features (how many were converted is reported). A file that is
missing, empty, undecodable, shorter than ``min_seconds`` or silent is refused with its name
and reason, and the rest are kept. Paths are relative to the table's folder and must stay in
its tree unless ``allow_outside`` is set (a table should not make the tool read
``/etc/...``).

Features are cached on disk keyed by (extractor, sha256 of the file's bytes), through the
same append-only store as text embeddings, so a second run reads no audio at all.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from rankpref.errors import DataError, RankprefError
from rankpref.io import sha256_file

SAMPLE_RATE = 16000
"""Every clip is resampled to this rate before features are computed."""

OPENSMILE_SETS = ("eGeMAPSv02", "ComParE_2016")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SILENCE_PEAK = 1e-4
"""A clip whose absolute peak is below this (about -80 dBFS) is refused as silent."""


class ClipProblem(Exception):
    """Why one file cannot be used (its row is left out, the run goes on)."""


@dataclass
class ClipReport:
    """What happened to the files of one table."""

    refused: dict[int, str] = field(default_factory=dict)  # row -> "file: reason"
    converted: dict[str, int] = field(default_factory=dict)  # "stereo", "resampled"
    cached: int = 0
    computed: int = 0

    def as_dict(self) -> dict:
        return {"refused": len(self.refused), "refused_files": list(self.refused.values())[:50],
                **self.converted, "cached": self.cached, "computed": self.computed}


def resolve_paths(values: Sequence[object], table: Path, column: str, *,
                  allow_outside: bool = False) -> list[Path]:
    """The files a column names, relative to the table's folder. A path leaving that folder
    tree is an error naming its line, unless ``allow_outside``."""
    root = table.resolve().parent
    out = []
    for row, value in enumerate(values):
        if value is None or not str(value).strip():
            raise DataError("empty file path", path=table, line=row + 2, field=column)
        raw = Path(str(value).strip()).expanduser()
        path = (raw if raw.is_absolute() else root / raw).resolve()
        if not allow_outside and not path.is_relative_to(root):
            raise DataError(f"{value!s} is outside the table's folder {root} (set "
                            "data.allow_outside_paths=true to allow it)", path=table,
                            line=row + 2, field=column)
        out.append(path)
    return out


def read_clip(path: Path, min_seconds: float = 0.5) -> tuple[np.ndarray, dict]:
    """A mono float32 signal at :data:`SAMPLE_RATE` and what was converted; raises
    :class:`ClipProblem` with the reason."""
    import soundfile

    if not path.exists():
        raise ClipProblem("file not found")
    if path.stat().st_size == 0:
        raise ClipProblem("empty file (0 bytes)")
    try:
        signal, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile: unknown format, truncated, not audio
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClipProblem(f"not readable as audio ({first})") from None
    info = {}
    if signal.shape[1] > 1:
        signal = signal.mean(axis=1, keepdims=True)
        info["stereo"] = 1
    signal = signal[:, 0]
    if signal.size == 0:
        raise ClipProblem("no samples")
    seconds = signal.size / rate
    if seconds < min_seconds:
        raise ClipProblem(f"too short ({seconds:.2f} s < {min_seconds:g} s)")
    if not np.isfinite(signal).all():
        raise ClipProblem("non-finite samples")
    if float(np.abs(signal).max()) < SILENCE_PEAK:
        raise ClipProblem("silent (peak below -80 dBFS)")
    if rate != SAMPLE_RATE:
        import audresample

        signal = audresample.resample(signal, rate, SAMPLE_RATE)[0].astype(np.float32)
        info["resampled"] = 1
    return np.ascontiguousarray(signal), info


class _OpenSmile:
    def __init__(self, feature_set: str):
        try:
            import opensmile
        except ImportError:
            raise RankprefError("audio features need opensmile: pip install 'rankpref[audio]'"
                                ) from None
        self._smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                                      feature_level=opensmile.FeatureLevel.Functionals)
        self.names = [f"{feature_set}:{n}" for n in self._smile.feature_names]
        self.id = f"opensmile-{opensmile.__version__}-{feature_set}-{SAMPLE_RATE}"

    def __call__(self, signal: np.ndarray) -> np.ndarray:
        return self._smile.process_signal(signal, SAMPLE_RATE).to_numpy()[0]


def _model_folder(name: str, what: str) -> tuple[str, str]:
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise RankprefError(f"{path}: not a Hugging Face model folder (no config.json) "
                                f"for {what}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        st = sorted((f.name, f.stat().st_size) for f in path.iterdir() if f.is_file())
        digest = hashlib.sha256(repr(st).encode()).hexdigest()[:10]
        return str(path), f"{path.resolve().name}-{digest}"
    return name, name  # a hub name: loading fails clearly when offline


class _PooledModel:
    """Mean of the model's last hidden state over time (audio) or patches (images)."""

    def __init__(self, name: str, kind: str):
        from transformers import AutoModel

        self.source, model_id = _model_folder(name, f"{kind} embeddings")
        self.kind = kind
        try:
            if kind == "audio":
                from transformers import AutoFeatureExtractor as Processor
            else:
                from transformers import AutoImageProcessor as Processor
            self.processor = Processor.from_pretrained(self.source)
            self.model = AutoModel.from_pretrained(self.source).eval()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RankprefError(f"cannot load {kind} model {name!r}: {first}") from None
        width = getattr(self.model.config, "hidden_size", None)
        self.names = [f"{model_id}:{i}" for i in range(width or 0)]
        self.id = f"{kind}-model-{re.sub(r'[^A-Za-z0-9_.-]+', '_', model_id)}"

    def __call__(self, item) -> np.ndarray:
        import torch

        if self.kind == "audio":
            inputs = self.processor(item, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        else:
            inputs = self.processor(images=item, return_tensors="pt")
        with torch.no_grad():
            hidden = self.model(**inputs).last_hidden_state
        vector = hidden.mean(dim=1)[0].double().numpy()
        if not self.names:
            self.names = [f"{self.id}:{i}" for i in range(vector.size)]
        return vector


def read_image(path: Path):
    if not path.exists():
        raise ClipProblem("file not found")
    if path.stat().st_size == 0:
        raise ClipProblem("empty file (0 bytes)")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ClipProblem(f"not readable as an image ({exc})") from None


class MediaFeatures:
    """Cached features of audio clips (``kind="audio"``: an openSMILE set or a model folder)
    or images (``kind="image"``: a model folder)."""

    def __init__(self, extractor: str = "eGeMAPSv02", *, kind: str = "audio",
                 cache_dir: str | Path | None = ".cache/rankpref/clips",
                 min_seconds: float = 0.5, progress: bool = True):
        if kind not in ("audio", "image"):
            raise RankprefError(f"media kind must be audio or image, got {kind!r}")
        if kind == "image" and extractor in OPENSMILE_SETS:
            raise RankprefError("images need a model folder (data.image_model): no image "
                                "weights ship offline")
        self.kind = kind
        self.extractor_name = extractor
        self.min_seconds = min_seconds
        self.progress = progress
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._extractor = None

    @property
    def extractor(self):
        if self._extractor is None:
            if self.extractor_name in OPENSMILE_SETS:
                self._extractor = _OpenSmile(self.extractor_name)
            else:
                self._extractor = _PooledModel(self.extractor_name, self.kind)
        return self._extractor

    def _cache(self):
        from rankpref.text import EmbeddingCache

        if self.cache_dir is None:
            return None
        return EmbeddingCache(self.cache_dir / self.extractor.id)

    def features(self, paths: Sequence[Path]) -> tuple[np.ndarray, list[str], ClipReport]:
        """``[n, d]`` float32 (refused rows are NaN), feature names, and the report."""
        report = ClipReport()
        keys: list[str | None] = []
        for row, path in enumerate(paths):
            try:
                if not path.exists():
                    raise ClipProblem("file not found")
                if path.is_dir():
                    raise ClipProblem("a folder, not a file")
                keys.append(sha256_file(path))
            except (ClipProblem, OSError) as exc:
                report.refused[row] = f"{path}: {exc}"
                keys.append(None)
        cache = self._cache()
        todo = [i for i, k in enumerate(keys) if k is not None
                and (cache is None or k not in cache)]
        unique: dict[str, int] = {}
        for i in todo:
            unique.setdefault(keys[i], i)
        report.cached = sum(1 for k in keys if k is not None) - len(todo)
        computed: dict[str, np.ndarray] = {}
        bar = None
        if self.progress and len(unique) > 1:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(unique), unit="clip" if self.kind == "audio" else "image",
                       desc=f"{self.kind} features ({self.extractor_name})")
        batch_keys, batch_rows = [], []

        def flush():
            if cache is not None and batch_keys:
                cache.add(list(batch_keys), np.stack(batch_rows))
            batch_keys.clear()
            batch_rows.clear()

        for key, row in unique.items():
            path = paths[row]
            try:
                if self.kind == "audio":
                    signal, info = read_clip(path, self.min_seconds)
                    for what in info:
                        report.converted[what] = report.converted.get(what, 0) + 1
                    vector = self.extractor(signal)
                else:
                    vector = self.extractor(read_image(path))
                if not np.isfinite(vector).all():
                    raise ClipProblem("features are not finite")
            except ClipProblem as exc:
                report.refused[row] = f"{path}: {exc}"
                vector = None
            if vector is not None:
                computed[key] = np.asarray(vector, dtype=np.float32)
                batch_keys.append(key)
                batch_rows.append(computed[key])
                if len(batch_keys) >= 256:  # persist as we go: a stop loses one batch
                    flush()
            if bar is not None:
                bar.update(1)
        flush()
        if bar is not None:
            bar.close()
        report.computed = len(computed)
        names = list(self.extractor.names)
        dim = len(names)
        out = np.full((len(paths), dim), np.nan, dtype=np.float32)
        bad_keys = {keys[r] for r in report.refused if keys[r] is not None}
        for row, key in enumerate(keys):
            if key is None or row in report.refused:
                continue
            if key in bad_keys:  # same bytes as a refused file
                report.refused[row] = f"{paths[row]}: same content as a refused file"
                continue
            out[row] = computed[key] if key in computed else cache.get([key])[0]
        return out, names, report

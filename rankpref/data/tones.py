"""Synthetic voice-like clips whose perceived traits are known, for tests, the clip benchmark
and trying ``rankpref rank fit --audio-column`` without recordings (nothing large ships).

Each clip is a harmonic tone with a speaker's pitch (f0, log-uniform 100-280 Hz: eGeMAPS finds no voicing in these tones much below 90 Hz), a spectral
tilt (brightness), a syllable-rate loudness envelope, vibrato and breath noise. Five simulated
raters score two traits on 1-7 from the true parameters plus rater noise; the table holds each
trait's mean and its rater std:

* ``pitch``: how high the voice sounds (monotone in log f0; easy for eGeMAPS' F0 features),
* ``pleasant``: a non-monotone mix (a preferred middle pitch, brighter and less breathy is
  better): what a linear scorer cannot fit exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

RATE = 16000
RATERS = 5


def _clip(rng: np.random.Generator, f0: float, tilt: float, breath: float, loud: float,
          seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    vibrato = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 6) * t + rng.uniform(0, 6.3))
    phase = 2 * np.pi * np.cumsum(f0 * vibrato) / rate
    harmonics = np.arange(1, int(min(40, 0.45 * rate / f0)) + 1)
    amps = harmonics.astype(float) ** -tilt
    voiced = (amps[:, None] * np.sin(harmonics[:, None] * phase[None, :])).sum(0)
    voiced /= np.abs(voiced).max() + 1e-9
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(3, 5) * t) ** 2
    signal = envelope * (voiced + breath * rng.standard_normal(t.size))
    return (loud * signal / (np.abs(signal).max() + 1e-9)).astype(np.float32)


def _ratings(rng: np.random.Generator, truth: np.ndarray, noise: float) -> tuple[np.ndarray,
                                                                                  np.ndarray]:
    z = (truth - truth.mean()) / (truth.std() + 1e-12)
    scores = np.clip(np.round(4 + 1.2 * z[:, None] +
                              noise * rng.standard_normal((truth.size, RATERS))), 1, 7)
    return scores.mean(axis=1), scores.std(axis=1)


def write_clips(folder: str | Path, n: int = 60, *, seconds: float = 3.0, seed: int = 0,
                rate: int = RATE, noise: float = 0.6, subdir: str = "clips") -> pl.DataFrame:
    """Write ``n`` wav clips under ``folder/subdir`` and ``folder/ratings.csv`` (``path``
    relative to the table, ``pitch``, ``pleasant``, their rater std); returns the table."""
    import soundfile

    folder = Path(folder)
    (folder / subdir).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    f0 = np.exp(rng.uniform(np.log(100), np.log(280), n))
    tilt = rng.uniform(0.6, 2.0, n)
    breath = rng.uniform(0.0, 0.5, n)
    loud = rng.uniform(0.2, 0.8, n)
    paths = []
    for i in range(n):
        name = f"{subdir}/speaker{i:04d}.wav"
        soundfile.write(str(folder / name), _clip(rng, f0[i], tilt[i], breath[i], loud[i],
                                                  seconds, rate), rate, subtype="PCM_16")
        paths.append(name)
    pitch, pitch_std = _ratings(rng, np.log(f0), noise)
    pleasant_truth = -np.abs(np.log(f0) - np.log(150)) - 0.4 * tilt - 1.5 * breath
    pleasant, pleasant_std = _ratings(rng, pleasant_truth, noise)
    table = pl.DataFrame({"id": [f"speaker{i:04d}" for i in range(n)], "path": paths,
                          "pitch": pitch, "pitch_std": pitch_std, "pleasant": pleasant,
                          "pleasant_std": pleasant_std, "f0_hz": f0})
    table.write_csv(folder / "ratings.csv")
    return table

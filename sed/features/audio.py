"""Audio decoding to mono float32 at a target sample rate, and speed perturbation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class AudioError(RuntimeError):
    """A file that cannot be read as audio; the message names the file and the reason."""


def load_audio(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode a whole file (wav, flac, ogg, mp3 ...) to mono float32.

    Args:
        path: audio file.
        sample_rate: resample to this rate (soxr, high quality); None keeps the file's rate.

    Returns:
        ``(wave (N,), sample_rate)``.

    Raises:
        AudioError: missing, empty or undecodable file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types (LibsndfileError, RuntimeError ...)
        raise AudioError(f"{path}: cannot decode audio ({e})") from None
    if wave.shape[0] == 0:
        raise AudioError(f"{path}: no audio samples")
    # downmix: field recorders are often stereo, models are mono
    wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    if sample_rate is not None and sr != sample_rate:
        wave = soxr.resample(wave, sr, sample_rate).astype(np.float32, copy=False)
        sr = sample_rate
    if not np.all(np.isfinite(wave)):
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(wave, dtype=np.float32), sr


def speed_perturb(wave: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Play ``wave`` ``factor`` times faster (pitch and tempo change together, like ``sox speed``).

    The result has ``len(wave) / factor`` samples at the same sample rate; event times scale by
    ``1 / factor``.
    """
    if factor <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    if factor == 1.0:
        return wave
    # reading the samples as if recorded at sample_rate*factor, then resampling to sample_rate
    out = soxr.resample(wave, sample_rate * factor, sample_rate)
    return np.ascontiguousarray(out, dtype=np.float32)

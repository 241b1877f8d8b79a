"""Chroma energy normalised statistics (CENS) of a waveform at a chosen frame rate.

CENS (Müller et al.) folds a constant-Q spectrum into 12 pitch classes, normalises each frame,
quantises it and smooths it over time: a robust, low-rate description of "which pitches sound
now" in which a repeated call draws the same pattern each time it is sung. The motif miner
compares 5 s stretches of it (``sed.motifs.profile``).

Frames follow ``sed.frames``: frame ``i`` is centred at ``i * hop / sr`` seconds and a signal of
``n`` samples has ``n // hop + 1`` frames.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from sed.frames import FrameGrid

__all__ = [
    "band_power",
    "cens_features",
    "cens_grid",
    "n_octaves_below_nyquist",
    "silent_frames",
]

#: Highest number of octaves of the constant-Q spectrum (librosa's default for chroma).
MAX_OCTAVES = 7
#: Fraction of the Nyquist frequency the top constant-Q bin must stay under: the top filter
#: has a bandwidth, and librosa refuses a filter bank that reaches past Nyquist.
_NYQUIST_MARGIN = 0.9


def cens_grid(sample_rate: int, frame_rate: float) -> FrameGrid:
    """The frame grid of CENS features at about ``frame_rate`` frames per second.

    The hop is ``round(sample_rate / frame_rate)`` whole samples, so the realised rate
    (``grid.frames_per_second``) may differ slightly from the request (it is exact at 16, 22.05,
    32 and 48 kHz for 10 frames/s); every time conversion uses the realised rate.
    """
    if not (math.isfinite(frame_rate) and frame_rate > 0):
        raise ValueError(f"frame_rate must be a positive number of frames/s, got {frame_rate}")
    hop = int(round(sample_rate / frame_rate))
    if hop < 1:
        raise ValueError(f"frame_rate {frame_rate} is above the sample rate {sample_rate}")
    return FrameGrid(sample_rate=int(sample_rate), hop_length=hop)


def n_octaves_below_nyquist(sample_rate: int, fmin: float, limit: int = MAX_OCTAVES) -> int:
    """Whole octaves above ``fmin`` that fit under the Nyquist frequency (at most ``limit``).

    Raises:
        ValueError: not even one octave fits.
    """
    n = int(math.floor(math.log2(_NYQUIST_MARGIN * sample_rate / 2 / fmin)))
    if n < 1:
        raise ValueError(
            f"fmin={fmin} Hz leaves no octave below the Nyquist frequency of {sample_rate} Hz audio"
        )
    return min(n, limit)


def cens_features(
    wave: np.ndarray,
    sample_rate: int,
    frame_rate: float = 10.0,
    fmin: float = 200.0,
    n_octaves: int | None = None,
    smooth_seconds: float = 1.0,
) -> np.ndarray:
    """CENS features of a mono waveform.

    Args:
        wave: mono samples (N,), float.
        sample_rate: Hz.
        frame_rate: frames per second wanted (see :func:`cens_grid` for the realised rate).
        fmin: lowest frequency of the constant-Q spectrum in Hz. Birds sing above ~200 Hz; lower
            bands carry wind, traffic and handling noise that would fold into every pitch class.
        n_octaves: octaves of the constant-Q spectrum; None takes as many as fit under the
            Nyquist frequency (at most 7), e.g. 200 Hz - 12.8 kHz at 32 kHz.
        smooth_seconds: length of CENS's temporal smoothing window. The default (1 s) is
            librosa's default smoothing (41 frames of 512 samples at 22.05 kHz ~ 0.95 s) at
            any frame rate; librosa's 41 frames taken at 10 frames/s would smooth over 4 s.

    Returns:
        ``cens (12, T)`` float64, ``T = N // hop + 1``; every frame has unit L2 norm, except
        frames without any energy, which are all zeros.
    """
    import librosa  # heavy import, only where features are made

    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"wave must be mono (N,), got shape {wave.shape}")
    grid = cens_grid(sample_rate, frame_rate)
    if n_octaves is None:
        n_octaves = n_octaves_below_nyquist(sample_rate, fmin)
    win = max(1, int(round(smooth_seconds * grid.frames_per_second)))
    with warnings.catch_warnings():
        # a very short wave makes librosa warn that n_fft exceeds the input; the frames it
        # returns are still right
        warnings.simplefilter("ignore", UserWarning)
        cens = librosa.feature.chroma_cens(
            y=wave,
            sr=sample_rate,
            hop_length=grid.hop_length,
            fmin=fmin,
            n_octaves=n_octaves,
            # tuning 0: an estimate per recording would move one call into other pitch bins
            # from one recording to the next (and is meaningless on noise)
            tuning=0.0,
            win_len_smooth=win,
        )
    n = grid.n_frames(len(wave))
    if cens.shape[1] < n:
        # every later step (silence, band power, windows) assumes the sed.frames grid
        raise RuntimeError(f"librosa returned {cens.shape[1]} CENS frames, expected {n}")
    return np.ascontiguousarray(cens[:, :n], dtype=np.float64)


def _frames(wave: np.ndarray, grid: FrameGrid) -> np.ndarray:
    """Frames (T, 2*hop) of ``wave``: frame i holds samples ``[i*hop - hop, i*hop + hop)``
    (zero outside the wave), i.e. it is centred like the CENS frames. A view, no copy."""
    hop = grid.hop_length
    n = grid.n_frames(len(wave))
    wave = np.asarray(wave, dtype=np.float32)
    padded = np.concatenate([np.zeros(hop, np.float32), wave, np.zeros(2 * hop, np.float32)])
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * hop)[::hop][:n]


def band_power(
    wave: np.ndarray, sample_rate: int, frame_rate: float = 10.0, fmin: float = 200.0
) -> np.ndarray:
    """Power of each frame above ``fmin`` (Hann-windowed spectrum of two hops; relative units).

    Used to tell windows with a call (which adds energy in the band of the chroma) from windows
    of background: see ``sed.motifs.profile.active_windows``.

    Returns:
        ``power (T,)`` float64, on the grid of :func:`cens_features`.
    """
    grid = cens_grid(sample_rate, frame_rate)
    frames = _frames(wave, grid)
    n = frames.shape[1]
    keep = np.fft.rfftfreq(n, 1.0 / sample_rate) >= fmin
    out = np.empty(len(frames))
    window = np.hanning(n)
    # blocks of frames: one rfft over an hour of audio at once would hold GBs
    for s in range(0, len(frames), 1024):
        spec = np.fft.rfft(frames[s : s + 1024].astype(np.float64) * window, axis=1)
        out[s : s + 1024] = (np.abs(spec[:, keep]) ** 2).sum(axis=1) / n
    return out


def silent_frames(
    wave: np.ndarray, sample_rate: int, frame_rate: float = 10.0, silence_db: float = -80.0
) -> np.ndarray:
    """Frames whose RMS (over a window of two hops) is below ``silence_db`` dB full scale.

    Digital silence and fade-outs have no pitch content: two silent stretches would be a
    perfect but meaningless "motif", so the miner leaves every window that touches one out.

    Returns:
        ``silent (T,)`` bool, on the grid of :func:`cens_features`.
    """
    frames = _frames(wave, cens_grid(sample_rate, frame_rate))
    # mean square over the frame's two hops (the zero padding at the ends counts as silence)
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frames.shape[1]
    with np.errstate(divide="ignore"):
        db = 10 * np.log10(power)
    return db < silence_db

"""A segment's log-mel spectrogram as text (shade characters, fits a terminal) or as a PNG.

Pure numpy (a small STFT and a triangular mel filterbank): librosa would cost the reviewer
seconds at start-up for a picture a few dozen characters high. Matplotlib is imported only when
a PNG is asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

UNICODE_SHADES = " ░▒▓█"
ASCII_SHADES = " .:-=+*#%@"
MARGIN = 7  # "12.3k |" before each row
MIN_SPAN = 20.0  # dB between blank and full shade, at least


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 50.0, fmax: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Triangular filters evenly spaced on the (HTK) mel scale.

    Returns:
        ``(weights (n_mels, n_fft // 2 + 1), centre frequencies in Hz (n_mels,))``.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (bins[None] - lo) / (mid - lo)
    fall = (hi - bins[None]) / (hi - mid)
    weights = np.clip(np.minimum(rise, fall), 0.0, None)
    # a band narrower than one FFT bin (low frequencies, few mels) would be empty: give it the
    # nearest bin, so no row of the picture is blank for want of resolution
    empty = weights.sum(axis=1) == 0
    for i in np.flatnonzero(empty):
        weights[i, np.argmin(np.abs(bins - mid[i, 0]))] = 1.0
    # unit area: white noise gives every band the same level, so wide high bands do not look
    # louder than narrow low ones
    weights /= weights.sum(axis=1, keepdims=True)
    return weights, edges[1:-1]


def log_mel(
    wave: np.ndarray, sample_rate: int, n_mels: int = 16
) -> tuple[np.ndarray, np.ndarray, float]:
    """Log-mel power of a mono signal, for display.

    Args:
        wave: samples (N,) (or (N, channels), averaged).
        sample_rate: of ``wave``.
        n_mels: mel bands (rows of the picture).

    Returns:
        ``(dB (n_mels, T), band centres in Hz (n_mels,), hop in seconds)``; windows of about
        25 ms, half overlapping.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    n_fft = int(2 ** max(8, round(np.log2(0.025 * sample_rate))))
    hop = n_fft // 2
    if len(wave) < n_fft:
        wave = np.pad(wave, (0, n_fft - len(wave)))
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2  # (T, F)
    weights, centres = mel_filterbank(sample_rate, n_fft, n_mels)
    mel = weights @ power.T  # (n_mels, T)
    return 10.0 * np.log10(mel + 1e-10), centres, hop / sample_rate


def _columns(spec: np.ndarray, width: int) -> np.ndarray:
    """``(rows, T)`` -> ``(rows, width)``: the max over the frames each column covers (a short
    call stays visible when many frames share a column), or frames repeated when fewer."""
    t = spec.shape[1]
    lo = (np.arange(width) * t) // width
    hi = np.maximum(lo + 1, (np.arange(1, width + 1) * t) // width)
    return np.stack([spec[:, a:b].max(axis=1) for a, b in zip(lo, hi, strict=True)], axis=1)


def render_text(
    spec: np.ndarray,
    centres: np.ndarray,
    width: int,
    span: tuple[float, float] | None = None,
    ascii_only: bool = False,
    dynamic_range: float = 60.0,
) -> list[str]:
    """A spectrogram as lines of text, high frequencies on top, each line at most ``width``.

    Args:
        spec: dB values (n_mels, T) (:func:`log_mel`).
        centres: band centre frequencies in Hz (n_mels,), for the axis labels.
        width: characters per line (axis included); at least ``MARGIN + 10``.
        span: ``(start, end)`` of the detection as fractions of the segment: adds a ruler line
            (``━`` / ``=`` under the detection, ``─`` / ``-`` under the context).
        ascii_only: shades `` .:-=+*#%@`` instead of unicode blocks (terminals without UTF-8).
        dynamic_range: at most this many dB from the loudest cell down to the blank shade.

    Returns:
        n_mels lines (+ 1 ruler line with ``span``).
    """
    shades = ASCII_SHADES if ascii_only else UNICODE_SHADES
    cols = max(10, width - MARGIN)
    grid = _columns(spec, cols)
    top = float(grid.max())
    # blank at the segment's background (its 20th percentile), so that stationary noise stays
    # pale and calls stand out; at least MIN_SPAN dB and at most dynamic_range below the top
    floor = min(max(float(np.percentile(grid, 20)), top - dynamic_range), top - MIN_SPAN)
    level = np.clip((grid - floor) / (top - floor), 0.0, 1.0)
    idx = np.round(level * (len(shades) - 1)).astype(int)
    bar = "|" if ascii_only else "│"
    lines = []
    n = len(centres)
    for r in range(n - 1, -1, -1):  # the highest band first
        # a frequency label on the top row, the bottom row and every fourth between
        label = f"{centres[r] / 1000:5.1f}k" if (n - 1 - r) % 4 == 0 or r == 0 else ""
        lines.append(f"{label:>6}{bar}" + "".join(shades[i] for i in idx[r]))
    if span is not None:
        inside, outside = ("=", "-") if ascii_only else ("━", "─")
        t = (np.arange(cols) + 0.5) / cols
        ruler = "".join(inside if span[0] <= x <= span[1] else outside for x in t)
        lines.append(" " * (MARGIN - 1) + bar + ruler)
    return lines


def write_png(
    path: str | Path,
    wave: np.ndarray,
    sample_rate: int,
    title: str = "",
    span_seconds: tuple[float, float] | None = None,
) -> Path:
    """Write a 64-band log-mel picture of ``wave`` (N,) to ``path``; the detection span, if
    given (seconds from the segment start), is marked by two vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec, centres, hop = log_mel(wave, sample_rate, n_mels=64)
    fig, ax = plt.subplots(figsize=(10, 4))
    extent = (0.0, spec.shape[1] * hop, 0.0, float(len(centres)))
    top = float(spec.max())
    ax.imshow(spec, origin="lower", aspect="auto", extent=extent, vmin=top - 80, vmax=top)
    ticks = np.arange(0, len(centres), 8)
    ax.set_yticks(ticks + 0.5, [f"{centres[i] / 1000:.1f}" for i in ticks])
    ax.set_xlabel("time in segment (s)")
    ax.set_ylabel("kHz (mel scale)")
    if span_seconds is not None:
        for x in span_seconds:
            ax.axvline(x, color="white", linestyle="--", linewidth=1)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""The log-mel front end in numpy: :class:`sed.features.frontend.LogMel` without torch.

The same numbers as ``LogMel`` (torchaudio's ``MelSpectrogram``: periodic Hann window, centred
with ``win_length < n_fft`` zero-padded to ``n_fft``; ``center=True`` with reflect padding of
``n_fft // 2`` at both ends; power ``re² + im²`` (or ``|z| ** power``); Slaney-scale,
Slaney-normalised triangular filters; ``log(mel + log_offset)``), within float32 rounding
(``tests/test_infer_lite.py`` compares them on several settings).

:class:`LogMelStream` computes the frames of a signal pushed in blocks: the signal is reflect
padded at its start once ``n_fft / 2`` samples are in, at its end when the last block comes, and a
frame is emitted as soon as its ``n_fft`` samples are there, so the frames equal those of the
whole signal whatever the blocks (as :class:`sed.infer.stream.FeatureStream` for torch).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _load_pocketfft() -> Any | None:
    """scipy's pocketfft extension, loaded alone: 4x faster than ``numpy.fft`` on a batch of
    frames (it vectorises across them), and importing ``scipy.fft`` itself costs 0.3 s of
    start-up (scipy.special, array-api shims). None where it cannot be found or loaded."""
    import glob
    import importlib.machinery
    import importlib.util
    import os

    try:
        spec = importlib.util.find_spec("scipy")
        if spec is None or not spec.submodule_search_locations:
            return None
        root = os.path.join(next(iter(spec.submodule_search_locations)), "fft", "_pocketfft")
        found = glob.glob(os.path.join(root, "pypocketfft*.so"))
        if not found:
            return None
        loader = importlib.machinery.ExtensionFileLoader("pypocketfft", found[0])
        mod_spec = importlib.util.spec_from_file_location("pypocketfft", found[0], loader=loader)
        if mod_spec is None:
            return None
        module = importlib.util.module_from_spec(mod_spec)
        loader.exec_module(module)
        return module
    except Exception:  # any failure: numpy.fft gives the same numbers, slower
        return None


_POCKETFFT = _load_pocketfft()


def _rfft(frames: np.ndarray) -> np.ndarray:
    """Real FFT of each row of (T, n_fft) float32 frames -> (T, n_fft // 2 + 1) complex64."""
    if _POCKETFFT is not None:
        return _POCKETFFT.r2c(frames, axes=(1,), forward=True, inorm=0, out=None, nthreads=1)
    return np.fft.rfft(frames, axis=1)


_F_SP = 200.0 / 3  # Slaney mel scale: linear below 1 kHz ...
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0  # ... logarithmic above


def _hz_to_mel(f: float) -> float:
    return f / _F_SP if f < _MIN_LOG_HZ else _MIN_LOG_MEL + math.log(f / _MIN_LOG_HZ) / _LOGSTEP


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    hz = _F_SP * m
    log = m >= _MIN_LOG_MEL
    hz[log] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (m[log] - _MIN_LOG_MEL))
    return hz


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
) -> np.ndarray:
    """Slaney-normalised triangular filters on the Slaney mel scale, as torchaudio's
    ``melscale_fbanks(..., norm="slaney", mel_scale="slaney")``.

    Computed in float64: torchaudio's float32 ``linspace`` and ``exp`` round differently from
    numpy's, so no float32 order of operations reproduces its bits; the filters differ by under
    1e-6 (relative 1e-3 at most in the narrowest low bands, which a few FFT bins cover).

    Returns:
        Filters (n_fft // 2 + 1, n_mels), float32.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    # torchaudio spaces the FFT bins up to sample_rate // 2 (integer division)
    freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    pts = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    diff = np.diff(pts)
    slopes = pts[None, :] - freqs[:, None]  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    fb *= 2.0 / (pts[2 : n_mels + 2] - pts[:n_mels])
    return fb.astype(np.float32)


class LogMelNP:
    """Waveform -> log-mel, numpy; the arguments of :class:`sed.features.frontend.LogMel`.

    Raises:
        ValueError: band edges outside ``0 <= fmin < fmax <= sample_rate / 2``.
    """

    def __init__(
        self,
        sample_rate: int = 32000,
        n_fft: int = 1024,
        hop_length: int = 320,
        n_mels: int = 64,
        fmin: float = 50.0,
        fmax: float | None = None,
        win_length: int | None = None,
        power: float = 2.0,
        log_offset: float = 1e-6,
    ) -> None:
        top = fmax if fmax is not None else sample_rate / 2
        if not 0 <= fmin < top <= sample_rate / 2:
            raise ValueError(
                f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={fmin}, fmax={fmax}, "
                f"sample_rate={sample_rate}"
            )
        self.sample_rate, self.n_fft, self.hop = int(sample_rate), int(n_fft), int(hop_length)
        self.n_mels, self.power, self.log_offset = int(n_mels), float(power), float(log_offset)
        win = int(win_length or n_fft)
        # torch.hann_window(win) is periodic; torch.stft centres a shorter window in n_fft
        hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)).astype(np.float32)
        left = (self.n_fft - win) // 2
        self.window = np.zeros(self.n_fft, np.float32)
        self.window[left : left + win] = hann
        self.fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
        self.half = self.n_fft // 2
        used = np.flatnonzero(self.fb.any(axis=1))
        # bins outside [fmin, fmax] have all-zero filters: their power is never needed
        self.lo, self.hi = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 1)
        self.fb_used = np.ascontiguousarray(self.fb[self.lo : self.hi])
        self._buf: np.ndarray | None = None

    @classmethod
    def from_features(cls, feats: dict[str, Any]) -> LogMelNP:
        """From the ``sed.features`` metadata of an exported file (``FeaturesConf`` as a dict).

        Raises:
            ValueError: features that are not log-mel (an embedding experiment).
        """
        if feats.get("kind", "logmel") != "logmel":
            raise ValueError(f"features.kind is '{feats['kind']}': no log-mel front end")
        return cls(
            sample_rate=feats["sample_rate"],
            n_fft=feats["n_fft"],
            hop_length=feats["hop_length"],
            n_mels=feats["n_mels"],
            fmin=feats.get("fmin", 50.0),
            fmax=feats.get("fmax"),
            win_length=feats.get("win_length"),
            power=feats.get("power", 2.0),
            log_offset=feats.get("log_offset", 1e-6),
        )

    def frames(self, padded: np.ndarray) -> np.ndarray:
        """Log-mel of every full ``n_fft`` frame of an already padded signal, every ``hop``.

        Returns:
            (T, n_mels) float32, time first (windows are cut along time).
        """
        n = (len(padded) - self.n_fft) // self.hop + 1
        if n <= 0:
            return np.zeros((0, self.n_mels), np.float32)
        view = sliding_window_view(padded, self.n_fft)[:: self.hop][:n]
        if self._buf is None or len(self._buf) != n:
            # blocks are mostly one size: reusing the buffers saves a page fault per 4 KB
            self._buf = np.empty((n, self.n_fft), np.float32)
        frames = np.multiply(view, self.window, out=self._buf)
        z = _rfft(frames)[:, self.lo : self.hi]  # only the bins the filters use
        if self.power == 2.0:
            spec = np.square(z.real)
            spec += np.square(z.imag)
        else:
            spec = (np.abs(z) ** self.power).astype(np.float32, copy=False)
        mel = spec @ self.fb_used
        mel += np.float32(self.log_offset)
        return np.log(mel, out=mel)

    def pad(self, wave: np.ndarray) -> np.ndarray:
        """The signal reflect padded by ``n_fft // 2`` at both ends (as ``torch.stft``'s
        ``center=True``)."""
        return np.pad(np.asarray(wave, np.float32), self.half, mode="reflect")

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        """Log-mel of a whole mono signal (N,) with ``N > n_fft // 2``, as ``LogMel``.

        Returns:
            (n_mels, N // hop + 1) float32.
        """
        return np.ascontiguousarray(self.frames(self.pad(wave)).T)


class LogMelStream:
    """Log-mel frames of a signal pushed in blocks, equal to :class:`LogMelNP` on the whole
    signal (a signal of at most ``n_fft // 2`` samples is zero padded to ``n_fft // 2 + 1``
    first and keeps its own ``N // hop + 1`` frames, as the torch stream does).

    Args:
        frontend: the front end.
    """

    def __init__(self, frontend: LogMelNP) -> None:
        self.fe = frontend
        self.head: list[np.ndarray] = []  # samples before the start padding can be made
        self.buf = np.zeros(0, np.float32)  # the padded signal from padded index buf_start on
        self.buf_start = 0
        self.started = False
        self.n_samples = 0
        self.next_frame = 0

    def push(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """Add samples; return the frames that became final, (n_new, n_mels) (n_new may be 0)."""
        fe = self.fe
        samples = np.asarray(samples, np.float32)
        self.n_samples += len(samples)
        if not self.started:
            self.head.append(samples)
            if self.n_samples <= fe.half and not last:
                return np.zeros((0, fe.n_mels), np.float32)
            x = np.concatenate(self.head)
            self.head = []
            if len(x) <= fe.half:  # the whole signal, too short to reflect
                x = np.pad(x, (0, fe.half + 1 - len(x)))
                out = fe(x).T[: self.n_samples // fe.hop + 1]
                self.next_frame = len(out)
                return np.ascontiguousarray(out)
            self.started = True
            self.buf = np.concatenate([x[fe.half : 0 : -1], x])
        elif len(samples):
            self.buf = np.concatenate([self.buf, samples])
        if last:
            n = self.n_samples
            tail = self.buf[len(self.buf) - fe.half - 1 : len(self.buf) - 1][::-1]
            self.buf = np.concatenate([self.buf, tail])
            stop = (n + 2 * fe.half - fe.n_fft) // fe.hop + 1
        else:
            end = self.buf_start + len(self.buf)
            stop = (end - fe.n_fft) // fe.hop + 1 if end >= fe.n_fft else 0
        if stop <= self.next_frame:
            return np.zeros((0, fe.n_mels), np.float32)
        a = self.next_frame * fe.hop - self.buf_start
        b = (stop - 1) * fe.hop + fe.n_fft - self.buf_start
        out = fe.frames(self.buf[a:b])
        self.next_frame = stop
        # the end's reflect padding needs the last n_fft // 2 + 1 samples, whatever the hop
        end = self.buf_start + len(self.buf)
        keep = max(0, min(stop * fe.hop, end - fe.half - 1) - self.buf_start)
        self.buf = self.buf[keep:]
        self.buf_start += keep
        return out

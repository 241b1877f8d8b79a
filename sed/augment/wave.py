"""Waveform augmentations: noise at an SNR, volume envelopes, pitch shift, speed and time stretch.

All take waveforms (B, N) and keep their length N. Resampling uses torchaudio's ``resample`` at a
ratio of small integers (:func:`~sed.augment.base.ratio`) and time stretching its phase vocoder;
both run on the data's device, one selected clip at a time where clips draw different factors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import torch
import torchaudio.functional as AF

from sed.augment.base import (
    Augmentation,
    Context,
    as_range,
    check_positive,
    fix_length,
    ratio,
    register_augment,
    replace_rows,
)
from sed.augment.shift import move_frames, scaled_sources

# --------------------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------------------


@register_augment("gaussian_noise", stage="wave")
class GaussianNoise(Augmentation):
    """Add white Gaussian noise at an SNR relative to each clip's own power.

    A silent clip stays silent (its power is 0, so is the noise's).

    Args:
        snr_db: [low, high] signal-to-noise ratio in dB, drawn uniformly per clip.
    """

    def __init__(self, snr_db: Sequence[float] = (3.0, 30.0)) -> None:
        self.snr_db = as_range(snr_db, "snr_db")

    def noise(self, n: int, length: int, ctx: Context, device: torch.device) -> torch.Tensor:
        """Unscaled noise (n, length) on ``device``."""
        return ctx.randn((n, length)).to(device)

    def apply(self, x: torch.Tensor, idx: torch.Tensor, batch: dict, ctx: Context) -> torch.Tensor:
        snr = ctx.uniform(len(idx), *self.snr_db).float().to(x.device)
        noise = self.noise(len(idx), x.shape[-1], ctx, x.device)
        return replace_rows(x, idx, AF.add_noise(x[idx.to(x.device)], noise, snr))


@register_augment("pink_noise", stage="wave")
class PinkNoise(GaussianNoise):
    """Add pink (1/f power) noise at an SNR relative to each clip's own power.

    Args:
        snr_db: [low, high] signal-to-noise ratio in dB, drawn uniformly per clip.
    """

    def noise(self, n: int, length: int, ctx: Context, device: torch.device) -> torch.Tensor:
        # white noise shaped to 1/f power (1/sqrt(f) amplitude); DC removed. Its level does not
        # matter: add_noise scales it to the drawn SNR
        spec = torch.fft.rfft(ctx.randn((n, length)).to(device), dim=-1)
        k = torch.arange(spec.shape[-1], device=device, dtype=torch.float32)
        spec = spec * torch.where(k > 0, k.clamp(min=1).rsqrt(), 0.0)
        return torch.fft.irfft(spec, n=length, dim=-1)


# --------------------------------------------------------------------------------------------------
# Volume
# --------------------------------------------------------------------------------------------------

VOLUME_MODES = ("uniform", "fade", "cosine", "sine")


@register_augment("volume", stage="wave")
class Volume(Augmentation):
    """Change the gain of each clip, constant or along an envelope over the clip.

    A clip draws ``g`` dB from ``gain_db`` and a mode; the gain at relative time ``t`` in [0, 1)
    is ``g * e(t)`` dB with ``e`` = 1 (``uniform``), ``1 - t`` (``fade``: ``g`` dB at the start
    back to unity at the end, a fade-in for ``g < 0``), ``cos(2 pi t)`` or ``sin(2 pi t)`` (one
    slow swell and dip per clip).

    Args:
        gain_db: [low, high] gain in dB.
        mode: one of uniform, fade, cosine, sine, or a list of them (one drawn per clip).
    """

    def __init__(
        self, gain_db: Sequence[float] = (-10.0, 10.0), mode: str | Sequence[str] = "uniform"
    ) -> None:
        self.gain_db = as_range(gain_db, "gain_db")
        modes = [mode] if isinstance(mode, str) else list(mode)
        if not modes or any(m not in VOLUME_MODES for m in modes):
            raise ValueError(
                f"'mode' must be one of {', '.join(VOLUME_MODES)} or a list of them, got {mode!r}"
            )
        self.mode = modes

    def apply(self, x: torch.Tensor, idx: torch.Tensor, batch: dict, ctx: Context) -> torch.Tensor:
        gain = ctx.uniform(len(idx), *self.gain_db).float().to(x.device)  # (S,) dB
        which = ctx.randint(0, len(self.mode) - 1, (len(idx),))
        n = x.shape[-1]
        t = torch.arange(n, device=x.device, dtype=torch.float32) / n
        shapes = {
            "uniform": torch.ones_like(t),
            "fade": 1.0 - t,
            "cosine": torch.cos(2 * math.pi * t),
            "sine": torch.sin(2 * math.pi * t),
        }
        env = torch.stack([shapes[m] for m in self.mode])[which.to(x.device)]  # (S, N)
        scale = torch.pow(10.0, gain[:, None] * env / 20.0)
        return replace_rows(x, idx, x[idx.to(x.device)] * scale)


# --------------------------------------------------------------------------------------------------
# Pitch, speed and tempo
# --------------------------------------------------------------------------------------------------


def stretch(x: torch.Tensor, rate: float, n_fft: int) -> torch.Tensor:
    """Phase-vocoder time stretch of waveforms (S, N) to (S, round(N / rate)), pitch kept.

    ``rate`` > 1 plays faster (shorter).
    """
    hop = n_fft // 4
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x, n_fft, hop_length=hop, window=window, center=True, return_complex=True)
    advance = torch.linspace(0, math.pi * hop, spec.shape[-2], device=x.device)[..., None]
    spec = AF.phase_vocoder(spec, rate, advance)
    return torch.istft(
        spec, n_fft, hop_length=hop, window=window, length=int(round(x.shape[-1] / rate))
    )


@register_augment("pitch_shift", stage="wave")
class PitchShift(Augmentation):
    """Shift the pitch of each clip, keeping its timing (frame targets stay).

    The clip is time-stretched by the phase vocoder by ``a/b``, the pitch-up factor as a ratio
    of small integers, then resampled by ``b/a``: same length, pitch times ``a/b`` (within a
    fraction of a cent of the drawn value).

    Args:
        semitones: [low, high] shift in semitones, drawn uniformly per clip.
        n_fft: FFT size of the phase vocoder.
        max_denominator: bound on ``b``, which sets the resampling kernel size.
    """

    def __init__(
        self,
        semitones: Sequence[float] = (-2.0, 2.0),
        n_fft: int = 512,
        max_denominator: int = 64,
    ) -> None:
        self.semitones = as_range(semitones, "semitones")
        if self.semitones == (0.0, 0.0):
            raise ValueError("'semitones' [0, 0] would never change anything")
        check_positive(n_fft, "n_fft", integer=True)
        check_positive(max_denominator, "max_denominator", integer=True)
        self.n_fft = n_fft
        self.max_denominator = max_denominator

    def apply(self, x: torch.Tensor, idx: torch.Tensor, batch: dict, ctx: Context) -> torch.Tensor:
        steps = ctx.uniform(len(idx), *self.semitones)
        rows = []
        for i, s in zip(idx.tolist(), steps.tolist(), strict=True):
            up = ratio(2.0 ** (s / 12.0), self.max_denominator)
            longer = stretch(x[i : i + 1], float(1 / up), self.n_fft)
            shifted = AF.resample(longer, up.numerator, up.denominator)
            rows.append(fix_length(shifted, x.shape[-1]))
        return replace_rows(x, idx, torch.cat(rows))


class _Tempo(Augmentation):
    """Shared part of speed and time stretch: a factor per clip, targets moved with the audio."""

    def __init__(self, factor: Sequence[float], max_denominator: int) -> None:
        self.factor = as_range(factor, "factor")
        if self.factor[0] <= 0 or self.factor == (1.0, 1.0):
            raise ValueError(f"'factor' must be positive and not [1, 1], got {factor!r}")
        check_positive(max_denominator, "max_denominator", integer=True)
        self.max_denominator = max_denominator

    def change(self, x: torch.Tensor, f: Fraction) -> torch.Tensor:
        """Clip (1, N) played ``f`` times faster, (1, about N / f)."""
        raise NotImplementedError

    def apply(self, x: torch.Tensor, idx: torch.Tensor, batch: dict, ctx: Context) -> torch.Tensor:
        factors = [
            ratio(f, self.max_denominator) for f in ctx.log_uniform(len(idx), *self.factor).tolist()
        ]
        rows = [
            fix_length(self.change(x[i : i + 1], f), x.shape[-1])
            for i, f in zip(idx.tolist(), factors, strict=True)
        ]
        target = batch.get("frame_target")
        if target is not None:
            exact = torch.tensor([float(f) for f in factors], dtype=torch.float64)
            move_frames(batch, idx, scaled_sources(target.shape[1], exact))
        return replace_rows(x, idx, torch.cat(rows))


@register_augment("speed", stage="wave")
class Speed(_Tempo):
    """Play each clip faster or slower, pitch moving with it (like a tape; sox ``speed``).

    The clip is resampled by a ratio of small integers and cropped or zero-padded back to N at its
    end; frame targets are moved the same way (:func:`~sed.augment.shift.move_frames`).

    Args:
        factor: [low, high] speed factor (> 1: faster), drawn log-uniformly per clip.
        max_denominator: bound on the ratio's denominator (resampling kernel size).
    """

    def __init__(self, factor: Sequence[float] = (0.9, 1.1), max_denominator: int = 100) -> None:
        super().__init__(factor, max_denominator)

    def change(self, x: torch.Tensor, f: Fraction) -> torch.Tensor:
        # x taken as sampled at a Hz and resampled to b Hz: N * b / a samples, played f times faster
        return AF.resample(x, f.numerator, f.denominator)


@register_augment("time_stretch", stage="wave")
class TimeStretch(_Tempo):
    """Change the tempo of each clip, keeping its pitch (phase vocoder).

    Cropped or zero-padded back to N at the end; frame targets are moved the same way.

    Args:
        factor: [low, high] tempo factor (> 1: faster), drawn log-uniformly per clip.
        n_fft: FFT size of the phase vocoder.
        max_denominator: the factor is rounded to a ratio with at most this denominator, so
            that the frame targets follow the audio exactly.
    """

    def __init__(
        self, factor: Sequence[float] = (0.9, 1.1), n_fft: int = 512, max_denominator: int = 100
    ) -> None:
        super().__init__(factor, max_denominator)
        check_positive(n_fft, "n_fft", integer=True)
        self.n_fft = n_fft

    def change(self, x: torch.Tensor, f: Fraction) -> torch.Tensor:
        return stretch(x, float(f), self.n_fft)

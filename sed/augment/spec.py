"""Spectrogram augmentations on log-mel features (B, F, T): masks, stripes and contrast.

Masks are drawn here rather than with ``torchaudio.functional.mask_along_axis_iid``, which draws on
the data's device from torch's global generator (not reproducible from the pipeline's seed, and
different on CPU and CUDA).

Fill values: the features are log-mel, where 0 is not silence (it is log 1, a fairly loud bin),
so a masked region is filled with the clip's ``mean`` by default, or its ``min`` (close to silence),
or ``zero`` (right only for features normalised to zero mean, as after PANNs' input batch norm).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sed.augment.base import (
    Augmentation,
    Context,
    as_range,
    check_choice,
    check_positive,
    register_augment,
    replace_rows,
)

FILLS = ("mean", "min", "zero")


def band_mask(ctx: Context, n: int, length: int, n_bands: int, max_width: int) -> torch.Tensor:
    """``n_bands`` random bands of 1 .. ``max_width`` bins along an axis of ``length``.

    Returns:
        (n, length) bool on CPU, True inside any band (bands may overlap).
    """
    max_width = max(1, min(max_width, length))
    width = ctx.randint(1, max_width, (n, n_bands))
    start = (torch.rand(n, n_bands, generator=ctx.generator) * (length - width + 1)).long()
    pos = torch.arange(length)[None, None, :]
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])
    return inside.any(dim=1)


def fill_value(rows: torch.Tensor, fill: str) -> torch.Tensor | float:
    """Per-clip fill of features (S, F, T): (S, 1, 1), or 0."""
    if fill == "mean":
        return rows.mean(dim=(1, 2), keepdim=True)
    if fill == "min":
        return rows.amin(dim=(1, 2), keepdim=True)
    return 0.0


def masked(
    x: torch.Tensor,
    idx: torch.Tensor,
    fill: str,
    time: torch.Tensor | None = None,
    freq: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x`` with selected clips filled where ``time`` (S, T) or ``freq`` (S, F) masks are set."""
    rows = x[idx.to(x.device)]
    hit = torch.zeros(rows.shape, dtype=torch.bool, device=x.device)
    if time is not None:
        hit |= time.to(x.device)[:, None, :]
    if freq is not None:
        hit |= freq.to(x.device)[:, :, None]
    return replace_rows(x, idx, torch.where(hit, fill_value(rows, fill), rows))


@register_augment("time_mask", stage="spec")
class TimeMask(Augmentation):
    """SpecAugment time masks: ``n_masks`` bands of frames filled with one value.

    Args:
        max_seconds: the longest band; each band spans 1 .. that many frames.
        n_masks: bands per clip (they may overlap).
        fill: mean | min | zero (see the module notes).
    """

    def __init__(self, max_seconds: float = 0.5, n_masks: int = 2, fill: str = "mean") -> None:
        check_positive(max_seconds, "max_seconds")
        check_positive(n_masks, "n_masks", integer=True)
        check_choice(fill, "fill", FILLS)
        self.max_seconds = max_seconds
        self.n_masks = n_masks
        self.fill = fill

    def apply(self, x: torch.Tensor, idx: torch.Tensor, batch: dict, ctx: Context) -> torch.Tensor:
        width = ctx.grid.seconds_to_frames(self.max_seconds)
        time = band_mask(ctx, len(idx), x.shape[-1], self.n_masks, width)
        return masked(x, idx, self.fill, time=time)


@register_augment("freq_mask", stage="spec")
class FreqMask(Augmentation):
    """SpecAugment frequency masks: ``n_masks`` bands of mel bins filled with one value.

    Args:
        max_bins: the widest band; each band spans 1 .. that many bins.
        n_masks: bands per clip (they may overlap).
        fill: mean | min | zero (see the module notes).
    """

    def __init__(self, max_bins: int = 8, n_masks: int = 2, fill: str = "mean") -> None:
        check_positive(max_bins, "max_bins", integer=True)
        check_positive(n_masks, "n_masks", integer=True)
        check_choice(fill, "fill", FILLS)
        self.max_bins = max_bins
        self.n_masks = n_masks
        self.fill = fill

    def apply(self, x: torch.Tensor, idx: torch.Tensor, batch: dict, ctx: Context) -> torch.Tensor:
        freq = band_mask(ctx, len(idx), x.shape[1], self.n_masks, self.max_bins)
        return masked(x, idx, self.fill, freq=freq)


@register_augment("drop_stripes", stage="spec")
class DropStripes(Augmentation):
    """PANNs-style stripes: time and frequency stripes dropped together, under one probability.

    The defaults are PANNs' (two stripes of up to 64 frames at its 10 ms hop, two of up to 8 mel
    bins). Set a count to 0 to drop stripes along one axis only.

    Args:
        time_stripes: time stripes per clip.
        time_seconds: the longest time stripe.
        freq_stripes: frequency stripes per clip.
        freq_bins: the widest frequency stripe.
        fill: mean | min | zero (see the module notes).
    """

    def __init__(
        self,
        time_stripes: int = 2,
        time_seconds: float = 0.64,
        freq_stripes: int = 2,
        freq_bins: int = 8,
        fill: str = "mean",
    ) -> None:
        for key, value in (("time_stripes", time_stripes), ("freq_stripes", freq_stripes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"'{key}' must be a non-negative integer, got {value!r}")
        if time_stripes + freq_stripes == 0:
            raise ValueError("'time_stripes' and 'freq_stripes' are both 0: nothing to drop")
        check_positive(time_seconds, "time_seconds")
        check_positive(freq_bins, "freq_bins", integer=True)
        check_choice(fill, "fill", FILLS)
        self.time_stripes = time_stripes
        self.time_seconds = time_seconds
        self.freq_stripes = freq_stripes
        self.freq_bins = freq_bins
        self.fill = fill

    def apply(self, x: torch.Tensor, idx: torch.Tensor, batch: dict, ctx: Context) -> torch.Tensor:
        time = freq = None
        if self.time_stripes:
            width = ctx.grid.seconds_to_frames(self.time_seconds)
            time = band_mask(ctx, len(idx), x.shape[-1], self.time_stripes, width)
        if self.freq_stripes:
            freq = band_mask(ctx, len(idx), x.shape[1], self.freq_stripes, self.freq_bins)
        return masked(x, idx, self.fill, time=time, freq=freq)


@register_augment("power", stage="spec")
class Power(Augmentation):
    """Contrast change: a power of the clip's features scaled to [0, 1], scaled back.

    ``x**p`` needs a positive input with a fixed top, which log-mel is not (any level, mostly
    negative). Each clip is therefore mapped to ``s = (x - min) / (max - min)`` in [0, 1],
    raised to ``p`` and mapped back to its own range: the loudest and quietest bins stay,
    ``p > 1`` pushes the middle down (background darker, calls stand out), ``p < 1`` lifts it.
    (A power of the mel energies themselves, ``M**p``, would only scale log-mel by ``p``.)

    Args:
        exponent: [low, high] for ``p``, drawn log-uniformly per clip (so 1/2 and 2 are as
            likely).
    """

    def __init__(self, exponent: Sequence[float] = (0.5, 2.0)) -> None:
        self.exponent = as_range(exponent, "exponent")
        if self.exponent[0] <= 0 or self.exponent == (1.0, 1.0):
            raise ValueError(f"'exponent' must be positive and not [1, 1], got {exponent!r}")

    def apply(self, x: torch.Tensor, idx: torch.Tensor, batch: dict, ctx: Context) -> torch.Tensor:
        p = ctx.log_uniform(len(idx), *self.exponent).float().to(x.device)[:, None, None]
        rows = x[idx.to(x.device)]
        lo = rows.amin(dim=(1, 2), keepdim=True)
        span = rows.amax(dim=(1, 2), keepdim=True) - lo
        # a constant clip (span 0) has no contrast to change; keep it as it is
        s = (rows - lo) / span.clamp(min=torch.finfo(rows.dtype).tiny)
        return replace_rows(x, idx, torch.where(span > 0, lo + span * s.pow(p), rows))

"""The augmentation base class, the registry and the random draws every augmentation shares.

An augmentation works on a whole batch but changes only the samples the pipeline selected for it
(``idx``); every random number comes from the pipeline's CPU generator (:class:`Context`) so that
a run is the same on CPU and CUDA and resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import torch
from scipy.special import betaincinv

from sed.frames import FrameGrid
from sed.registry import Registry

# stages: "wave" (B, N) waveforms, "spec" (B, F, T) log-mel features, "mix" either (batch-level),
# "time" waveforms or features, whichever stage the pipeline runs it at (see AugmentPipeline)
STAGES = ("wave", "spec", "mix", "time")


@dataclass
class Context:
    """What an augmentation needs besides its parameters: the frame grid and the random source.

    Args:
        grid: sample rate and hop of the features (frame targets are on this grid).
        generator: the pipeline's CPU generator; draws are made on CPU, then moved to the data.
    """

    grid: FrameGrid
    generator: torch.Generator

    def uniform(self, n: int, lo: float, hi: float) -> torch.Tensor:
        """``n`` draws from U[lo, hi), float64 on CPU, shape (n,)."""
        return lo + (hi - lo) * torch.rand(n, generator=self.generator, dtype=torch.float64)

    def log_uniform(self, n: int, lo: float, hi: float) -> torch.Tensor:
        """``n`` draws uniform in log between positive ``lo`` and ``hi`` (factors: 1/2 as likely
        as 2), float64 on CPU, shape (n,)."""
        return torch.exp(self.uniform(n, math.log(lo), math.log(hi)))

    def randint(self, lo: int, hi: int, size: tuple[int, ...]) -> torch.Tensor:
        """Integers in ``[lo, hi]`` (both included), int64 on CPU."""
        return torch.randint(lo, hi + 1, size, generator=self.generator)

    def randn(self, size: tuple[int, ...]) -> torch.Tensor:
        """Standard normal float32 on CPU."""
        return torch.randn(size, generator=self.generator)

    def beta(self, n: int, alpha: float) -> torch.Tensor:
        """``n`` draws from Beta(alpha, alpha), float64 on CPU.

        torch's Beta distribution takes no generator, so the draw is the inverse CDF of a
        uniform from ours (scipy's ``betaincinv``).
        """
        u = torch.rand(n, generator=self.generator, dtype=torch.float64)
        return torch.from_numpy(betaincinv(alpha, alpha, u.numpy()))

    def others(self, batch_size: int, idx: torch.Tensor, k: int) -> torch.Tensor:
        """For each sample in ``idx``, ``k`` distinct other samples of the batch, (S, k) int64.

        Needs ``k < batch_size``.
        """
        keys = torch.rand(len(idx), batch_size, generator=self.generator)
        keys[torch.arange(len(idx)), idx] = 2.0  # never pick the sample itself
        return keys.argsort(dim=1)[:, :k]


class Augmentation:
    """Base class: a registered augmentation.

    Subclasses set ``stage`` and implement :meth:`apply`; constructor arguments are the YAML keys
    of the entry (besides ``name`` and ``p``), all with defaults, validated in the constructor.
    """

    name: ClassVar[str] = ""
    stage: ClassVar[str] = ""

    def apply(self, x: torch.Tensor, idx: torch.Tensor, batch: dict, ctx: Context) -> torch.Tensor:
        """Augment the samples ``idx`` of ``x``.

        Args:
            x: float32 batch, (B, N) waveforms or (B, F, T) features by stage; not modified.
            idx: the selected samples, (S,) int64 on CPU, S >= 1, sorted.
            batch: targets (``clip_target`` (B, C), ``frame_target`` (B, L, C), optional
                ``frame_mask`` (B, L, C)); augmentations that move or mix audio replace them.
            ctx: frame grid and random draws.

        Returns:
            A new tensor like ``x`` whose rows outside ``idx`` are exactly those of ``x``.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


AUGMENTATIONS: Registry[type[Augmentation]] = Registry("augmentation")


def register_augment(name: str, stage: str):
    """Class decorator adding an augmentation to :data:`AUGMENTATIONS` under ``name``.

    ``stage`` is kept as the class's ``stage`` (what the pipeline reads) and as the registry
    attribute ``stage`` (``AUGMENTATIONS.attrs(name)["stage"]``).

    Raises:
        ValueError: an unknown ``stage``, or ``name`` already registered to another class.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got '{stage}'")

    def deco(cls: type[Augmentation]) -> type[Augmentation]:
        AUGMENTATIONS.register(name, cls, stage=stage)
        cls.name = name
        cls.stage = stage
        return cls

    return deco


# --------------------------------------------------------------------------------------------------
# Parameter checks and small helpers shared by the modules
# --------------------------------------------------------------------------------------------------


def as_range(value: float | Sequence[float], key: str) -> tuple[float, float]:
    """A ``[lo, hi]`` parameter (a single number means a fixed value) as two floats."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), float(value)
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and value[0] <= value[1]
    ):
        return float(value[0]), float(value[1])
    raise ValueError(f"'{key}' must be [low, high] with low <= high (or one number), got {value!r}")


def check_positive(value: float, key: str, integer: bool = False) -> None:
    kind = (int,) if integer else (int, float)
    if not isinstance(value, kind) or isinstance(value, bool) or value <= 0:
        raise ValueError(
            f"'{key}' must be a positive {'integer' if integer else 'number'}, got {value!r}"
        )


def check_choice(value: str, key: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"'{key}' must be one of {', '.join(allowed)}, got {value!r}")


def ratio(value: float, max_denominator: int) -> Fraction:
    """``value`` as a fraction of small integers, never exactly 1 for a value other than 1.

    Resampling by ``a/b`` builds a kernel of about ``b x a`` taps, so ratios are kept small
    (``torchaudio.functional.pitch_shift`` resamples at ``int(sr / rate) : sr`` and takes seconds
    per clip at 32 kHz for that reason).
    """
    frac = Fraction(value).limit_denominator(max_denominator)
    if frac == 1 and value != 1:
        step = Fraction(1, max_denominator)
        frac = 1 + step if value > 1 else 1 - step
    return frac


def fix_length(x: torch.Tensor, n: int) -> torch.Tensor:
    """Crop or zero-pad the last axis of ``x`` to ``n``."""
    if x.shape[-1] >= n:
        return x[..., :n]
    return torch.nn.functional.pad(x, (0, n - x.shape[-1]))


def replace_rows(x: torch.Tensor, idx: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` with rows ``idx`` (S,) replaced by ``rows`` (S, ...)."""
    out = x.clone()
    out[idx.to(x.device)] = rows.to(x.dtype)
    return out

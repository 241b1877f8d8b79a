"""Absolute sinusoidal positions for the sequence families, computed for any length.

Vaswani et al., "Attention Is All You Need", 2017, §3.5:
``pe[t, 2i] = sin(t / 10000^(2i / D))``, ``pe[t, 2i + 1] = cos(t / 10000^(2i / D))``.

Nothing here is sized to a sequence length (no table, no buffer): a model trained on 10 s crops
runs unchanged on a 60 s recording, and checkpoints carry no length-dependent state.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(
    length: int,
    dim: int,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Sinusoidal position table.

    Args:
        length: number of positions T (positions 0 .. T - 1).
        dim: channels D (odd D is allowed: the last cosine column is dropped).
        device: where to build the table.
        dtype: type of the result (computed in float32 whatever the model's precision).

    Returns:
        Tensor: (T, D); row ``t`` depends on ``t`` and ``D`` only, never on ``length``.
    """
    half = (dim + 1) // 2
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    freq = torch.exp(
        torch.arange(half, device=device, dtype=torch.float32) * (-2.0 * math.log(10000.0) / dim)
    )
    angle = pos * freq  # (T, ceil(D / 2))
    # interleave sin/cos so columns 2i, 2i + 1 share a frequency, as in the paper
    pe = torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(1)[:, :dim]
    return pe.to(dtype)


class SinusoidalPositionalEncoding(nn.Module):
    """Adds sinusoidal positions to a batch of sequences; no parameters, no buffers.

    Args:
        dim: channels D of the sequence.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (Tensor): (B, T, D). Returns: (B, T, D), ``x + pe[:T]``."""
        return x + sinusoidal_positions(x.shape[1], self.dim, x.device, x.dtype)

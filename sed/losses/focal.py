"""Sigmoid focal loss (Lin et al., 2017): BCE down-weighted on well-classified elements."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sed.losses import register_loss
from sed.losses.common import as_float, clip_mask, frame_mask, masked_mean


def sigmoid_focal(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    alpha: float | None,
    gamma: float,
) -> torch.Tensor:
    """Mean over counted elements of ``alpha_t * (1 - p_t) ** gamma * BCE``.

    Args:
        logits (Tensor): (..., C).
        target (Tensor): (..., C) in [0, 1].
        mask (Tensor | None): (..., C), 1 = counts.
        alpha: weight of positives (negatives get ``1 - alpha``); None: no class weighting.
        gamma: focusing exponent (0: plain BCE).

    Returns:
        Tensor: scalar.
    """
    x, y = logits.float(), target.float()
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p = torch.sigmoid(x)
    p_t = p * y + (1 - p) * (1 - y)
    values = ce * (1 - p_t).pow(gamma)
    if alpha is not None:
        values = values * (alpha * y + (1 - alpha) * (1 - y))
    return masked_mean(values, mask)


@register_loss("focal")
class FocalLoss(nn.Module):
    """``(1 - frame_ratio) * focal(clip) + frame_ratio * focal(frame)``.

    Masks as for ``frame_clip``: ``clip_mask`` (B, C), ``frame_mask`` (B, T', C).

    Args:
        alpha: weight of positive elements in [0, 1] (negatives: ``1 - alpha``); None: none.
        gamma: focusing exponent >= 0 (0 with alpha None is plain BCE).
        frame_ratio: weight of the frame term in [0, 1] (0: clip logits only).
    """

    def __init__(
        self, alpha: float | None = 0.25, gamma: float = 2.0, frame_ratio: float = 0.0
    ) -> None:
        super().__init__()
        alpha = None if alpha is None else as_float(alpha, "alpha")
        gamma, frame_ratio = as_float(gamma, "gamma"), as_float(frame_ratio, "frame_ratio")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] or null, got {alpha}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if not 0.0 <= frame_ratio <= 1.0:
            raise ValueError(f"frame_ratio must be in [0, 1], got {frame_ratio}")
        self.alpha, self.gamma, self.frame_ratio = alpha, gamma, frame_ratio

    def forward(self, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Args:
            outputs: ``clip_logits`` (B, C) and, with ``frame_ratio`` > 0, ``frame_logits``
                (B, T', C).
            batch: ``clip_target`` (B, C), ``frame_target`` (B, T', C), optional masks.

        Returns:
            ``(total, {"clip": ...[, "frame": ...]})``.
        """
        logits = outputs["clip_logits"]
        clip = sigmoid_focal(
            logits, batch["clip_target"], clip_mask(batch, logits), self.alpha, self.gamma
        )
        if self.frame_ratio == 0.0:
            return clip, {"clip": clip.detach()}
        flogits = outputs["frame_logits"]
        frame = sigmoid_focal(
            flogits, batch["frame_target"], frame_mask(batch, flogits), self.alpha, self.gamma
        )
        total = (1.0 - self.frame_ratio) * clip + self.frame_ratio * frame
        return total, {"clip": clip.detach(), "frame": frame.detach()}

"""Binary cross-entropy on clip logits, frame logits or both (seed 001's FrameClipLoss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sed.losses import register_loss


@register_loss("frame_clip")
class FrameClipLoss(nn.Module):
    """``clip_ratio * BCE(clip) + (1 - clip_ratio) * BCE(frame)``.

    Args:
        clip_ratio: weight of the clip term in [0, 1] (1: weak labels only).
    """

    def __init__(self, clip_ratio: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= clip_ratio <= 1.0:
            raise ValueError(f"clip_ratio must be in [0, 1], got {clip_ratio}")
        self.clip_ratio = clip_ratio

    def forward(self, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Args:
            outputs: model outputs with ``clip_logits`` (B, C) and ``frame_logits`` (B, T', C).
            batch: ``clip_target`` (B, C) and ``frame_target`` (B, T', C).

        Returns:
            ``(total, {"clip": ..., "frame": ...})``.
        """
        clip = F.binary_cross_entropy_with_logits(
            outputs["clip_logits"].float(), batch["clip_target"]
        )
        frame = F.binary_cross_entropy_with_logits(
            outputs["frame_logits"].float(), batch["frame_target"]
        )
        total = self.clip_ratio * clip + (1.0 - self.clip_ratio) * frame
        return total, {"clip": clip.detach(), "frame": frame.detach()}


@register_loss("bce_clip")
class ClipBCELoss(FrameClipLoss):
    """Binary cross-entropy on clip logits only (weak labels)."""

    def __init__(self) -> None:
        super().__init__(clip_ratio=1.0)

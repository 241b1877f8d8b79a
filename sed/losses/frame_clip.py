"""Binary cross-entropy on clip logits, frame logits or both (seed 001's FrameClipLoss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sed.losses import register_loss
from sed.losses.common import as_float, clip_mask, frame_mask, masked_mean


def pos_weight_tensor(pos_weight: float | list[float] | None) -> torch.Tensor | None:
    """``pos_weight`` as a tensor: a scalar for every class, or one value per class (C,)."""
    if pos_weight is None:
        return None
    if isinstance(pos_weight, (list, tuple)):
        w = torch.tensor([as_float(v, "pos_weight[i]") for v in pos_weight])
    else:
        w = torch.tensor(as_float(pos_weight, "pos_weight"))
    if w.numel() == 0 or not (w > 0).all():
        raise ValueError(f"pos_weight must be positive numbers, got {pos_weight!r}")
    return w


def masked_bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """BCE with logits averaged over the counted elements.

    Args:
        logits (Tensor): (..., C), cast to float32 (autocast may give bf16).
        target (Tensor): (..., C) in [0, 1].
        mask (Tensor | None): (..., C), 1 = counts.
        pos_weight (Tensor | None): () or (C,): weight of the positive term per class.

    Returns:
        Tensor: scalar.
    """
    if pos_weight is not None and pos_weight.ndim == 1 and pos_weight.numel() != logits.shape[-1]:
        raise ValueError(
            f"loss pos_weight has {pos_weight.numel()} values but the model has "
            f"{logits.shape[-1]} classes"
        )
    values = F.binary_cross_entropy_with_logits(
        logits.float(), target.float(), reduction="none", pos_weight=pos_weight
    )
    return masked_mean(values, mask)


@register_loss("frame_clip")
class FrameClipLoss(nn.Module):
    """``clip_ratio * BCE(clip) + (1 - clip_ratio) * BCE(frame)``.

    Honours ``batch["clip_mask"]`` (B, C) and ``batch["frame_mask"]`` (B, T', C) (the clip mask
    stands in for a missing frame mask): each term is the mean over counted elements.

    Args:
        clip_ratio: weight of the clip term in [0, 1] (1: weak labels only).
        pos_weight: weight of the positive term of BCE, one number for all classes or a list of
            one per class (C); > 1 favours recall of rare species.
    """

    def __init__(
        self, clip_ratio: float = 0.5, pos_weight: float | list[float] | None = None
    ) -> None:
        super().__init__()
        clip_ratio = as_float(clip_ratio, "clip_ratio")
        if not 0.0 <= clip_ratio <= 1.0:
            raise ValueError(f"clip_ratio must be in [0, 1], got {clip_ratio}")
        self.clip_ratio = clip_ratio
        # a buffer, so .to(device) moves it with the module
        self.register_buffer("pos_weight", pos_weight_tensor(pos_weight), persistent=False)

    def forward(self, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Args:
            outputs: model outputs with ``clip_logits`` (B, C) and ``frame_logits`` (B, T', C).
            batch: ``clip_target`` (B, C) and ``frame_target`` (B, T', C); optional
                ``clip_mask`` (B, C) and ``frame_mask`` (B, T', C).

        Returns:
            ``(total, {"clip": ..., "frame": ...})`` (only ``clip`` when ``clip_ratio`` is 1).
        """
        clip_logits = outputs["clip_logits"]
        clip = masked_bce(
            clip_logits, batch["clip_target"], clip_mask(batch, clip_logits), self.pos_weight
        )
        if self.clip_ratio == 1.0:
            return clip, {"clip": clip.detach()}
        frame_logits = outputs["frame_logits"]
        frame = masked_bce(
            frame_logits, batch["frame_target"], frame_mask(batch, frame_logits), self.pos_weight
        )
        total = self.clip_ratio * clip + (1.0 - self.clip_ratio) * frame
        return total, {"clip": clip.detach(), "frame": frame.detach()}


@register_loss("bce_clip")
class ClipBCELoss(FrameClipLoss):
    """Binary cross-entropy on clip logits only (weak labels).

    Args:
        pos_weight: as for ``frame_clip``.
    """

    def __init__(self, pos_weight: float | list[float] | None = None) -> None:
        super().__init__(clip_ratio=1.0, pos_weight=pos_weight)

"""Helpers shared by the losses: masked reductions and number checks (no loss is registered here).

A mask is 1 where an element counts and 0 where it is ignored (e.g. secondary labels, whose
presence is uncertain); a loss is the mean over counted elements only.
"""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over the elements where ``mask`` is 1 (all of them without a mask).

    Args:
        values (Tensor): element-wise losses, any shape.
        mask (Tensor | None): same shape as ``values`` (or broadcastable to it), 1 = counts.

    Returns:
        Tensor: a scalar; 0 when no element counts (a batch of ignored labels adds nothing).
    """
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype).expand_as(values)
    # the numerator is 0 whenever the denominator is, so the clamp only avoids 0 / 0
    return (values * mask).sum() / mask.sum().clamp_min(1e-12)


def clip_mask(batch: dict, like: torch.Tensor) -> torch.Tensor | None:
    """``batch["clip_mask"]`` (B, C) checked against the clip logits ``like`` (B, C), or None."""
    mask = batch.get("clip_mask")
    if mask is not None and mask.shape != like.shape:
        raise ValueError(
            f"clip_mask has shape {tuple(mask.shape)}, the clip logits {tuple(like.shape)}"
        )
    return mask


def frame_mask(batch: dict, like: torch.Tensor) -> torch.Tensor | None:
    """The frame mask (B, T', C) for frame logits ``like`` (B, T', C), or None.

    ``batch["frame_mask"]`` when given; else the clip mask broadcast over time, because a class
    whose presence in a crop is unknown is unknown in each of its frames too.
    """
    mask = batch.get("frame_mask")
    if mask is None:
        mask = batch.get("clip_mask")
        return None if mask is None else mask.unsqueeze(1).expand_as(like)
    if mask.shape != like.shape:
        raise ValueError(
            f"frame_mask has shape {tuple(mask.shape)}, the frame logits {tuple(like.shape)}: "
            "a frame mask must be at the model's frame rate, like frame_target"
        )
    return mask


def as_float(value: object, what: str) -> float:
    """``value`` as a float; YAML 1.1 reads ``1e-3`` (no dot) as a string, so strings count too.

    Raises:
        ValueError: naming ``what`` when ``value`` is not a number.
    """
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None

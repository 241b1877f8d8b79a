"""Frame activity ("is any species calling?") loss for models with an activity head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sed.config import ConfigError
from sed.losses import register_loss
from sed.losses.common import frame_mask, masked_mean


# "diarization" is the design card's name for the same loss (who is calling when, class-agnostic)
@register_loss("diarization")
@register_loss("activity")
class ActivityLoss(nn.Module):
    """BCE of ``activity_logits`` (B, T', 1) against "any class active" per frame.

    With a mask, a frame's target is known when a counted class is active there (then it is 1
    whatever the ignored classes do) or when every class counts; other frames are ignored.
    """

    def forward(self, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Args:
            outputs: ``activity_logits`` (B, T', 1) and ``frame_logits`` (B, T', C).
            batch: ``frame_target`` (B, T', C); optional ``frame_mask`` / ``clip_mask``.

        Returns:
            ``(total, {"activity": total})``.

        Raises:
            ConfigError: the model has no activity head.
        """
        if "activity_logits" not in outputs:
            raise ConfigError(
                "loss 'activity' needs the model's activity_logits output: set "
                "'model.params.activity_head: true' (or remove the activity loss)"
            )
        logits = outputs["activity_logits"].float()
        frame_target = batch["frame_target"].float()
        mask = frame_mask(batch, outputs.get("frame_logits", frame_target))
        if mask is None:
            target, valid = frame_target.amax(-1, keepdim=True), None
        else:
            mask = mask.to(frame_target.dtype)
            target = (frame_target * mask).amax(-1, keepdim=True)
            valid = ((target > 0) | (mask.amin(-1, keepdim=True) > 0)).to(logits.dtype)
        values = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        loss = masked_mean(values, valid)
        return loss, {"activity": loss.detach()}

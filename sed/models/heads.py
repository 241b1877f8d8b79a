"""Heads shared by every SED family: frame-wise class logits pooled into clip logits."""

from __future__ import annotations

import torch
from torch import nn

CLIP_POOLINGS = ("attention", "max", "mean")


class AttentionHead(nn.Module):
    """Decision-level pooling of frame logits (PANNs' AttBlock, in logit space).

    ``attention``: clip logit = sum over time of softmax(attention) x frame logit (PANNs);
    ``max``: max over time of frame logits (the seed's "max over time"); ``mean``: average.
    Pooling logits instead of probabilities keeps the loss numerically stable under AMP.

    Args:
        in_dim: channels D of the frame features.
        n_classes: C.
        clip_pooling: one of ``attention``, ``max``, ``mean``.
        activity_head: add a one-channel frame activity ("dializer") output.
    """

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        clip_pooling: str = "attention",
        activity_head: bool = False,
    ) -> None:
        super().__init__()
        if clip_pooling not in CLIP_POOLINGS:
            raise ValueError(f"clip_pooling must be one of {CLIP_POOLINGS}, got '{clip_pooling}'")
        self.clip_pooling = clip_pooling
        self.cla = nn.Conv1d(in_dim, n_classes, kernel_size=1)
        self.att = (
            nn.Conv1d(in_dim, n_classes, kernel_size=1) if clip_pooling == "attention" else None
        )
        self.activity = nn.Conv1d(in_dim, 1, kernel_size=1) if activity_head else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: x (Tensor): frame features (B, D, T').

        Returns:
            dict: ``clip_logits`` (B, C), ``frame_logits`` (B, T', C) and, with the activity head,
            ``activity_logits`` (B, T', 1).
        """
        frame = self.cla(x)  # (B, C, T')
        if self.att is not None:
            weights = torch.softmax(torch.tanh(self.att(x)), dim=-1)
            clip = (weights * frame).sum(dim=-1)
        elif self.clip_pooling == "max":
            clip = frame.amax(dim=-1)
        else:
            clip = frame.mean(dim=-1)
        out = {"clip_logits": clip, "frame_logits": frame.transpose(1, 2)}
        if self.activity is not None:
            out["activity_logits"] = self.activity(x).transpose(1, 2)
        return out

"""Center loss (Wen et al., 2016) on the clip embedding, multi-label version."""

from __future__ import annotations

import torch
from torch import nn

from sed.losses import register_loss
from sed.losses.common import as_float, clip_mask


@register_loss("center")
class CenterLoss(nn.Module):
    """Pulls each clip embedding towards the learned centers of its positive classes.

    ``loss = sum_{b,c} w_bc * ||e_b - m_c||^2 / sum_{b,c} w_bc`` with ``w = clip_target *
    clip_mask``: the mean squared Euclidean distance over positive (sample, class) pairs, 0 for a
    batch without any. Gradients reach both the embeddings and the centers; the centers are an
    ``nn.Parameter`` of this module, so the optimizer owns them (``lr`` gives them their own
    learning rate, as in the paper) and ``.to(device)`` keeps them the same objects.

    Args:
        n_classes: C (set by the framework).
        embedding_dim: D, the model's embedding size (set by the framework from the model's
            ``embedding_dim`` attribute).
        lr: learning rate of the centers; None: the optimizer's default group.
    """

    def __init__(self, n_classes: int, embedding_dim: int, lr: float | None = None) -> None:
        super().__init__()
        if n_classes < 1 or embedding_dim < 1:
            raise ValueError(
                f"center loss needs n_classes and embedding_dim >= 1, got {n_classes}, "
                f"{embedding_dim}"
            )
        lr = None if lr is None else as_float(lr, "lr")
        if lr is not None and not lr > 0:
            raise ValueError(f"lr must be > 0 or null, got {lr}")
        self.lr = lr
        self.centers = nn.Parameter(torch.randn(n_classes, embedding_dim))

    def forward(self, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Args:
            outputs: ``embedding`` (B, D).
            batch: ``clip_target`` (B, C); optional ``clip_mask`` (B, C).

        Returns:
            ``(total, {"center": total})``.
        """
        emb = outputs["embedding"].float()
        if emb.shape[-1] != self.centers.shape[1]:
            raise ValueError(
                f"center loss has {self.centers.shape[1]}-dim centers but the model's embedding "
                f"has {emb.shape[-1]} dims"
            )
        weight = batch["clip_target"].float()
        mask = clip_mask(batch, weight)
        if mask is not None:
            weight = weight * mask.to(weight.dtype)
        # (B, C): squared distance of every embedding to every center
        dist = (emb.unsqueeze(1) - self.centers.unsqueeze(0)).pow(2).sum(-1)
        loss = (weight * dist).sum() / weight.sum().clamp_min(1e-12)
        return loss, {"center": loss.detach()}

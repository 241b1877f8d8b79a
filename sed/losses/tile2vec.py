"""The tile2vec triplet loss (Jean et al., 2019) with in-batch negatives (seed 000)."""

from __future__ import annotations

import torch
from torch import nn

from sed.losses import register_loss
from sed.losses.common import as_float


@register_loss("tile2vec")
class Tile2VecLoss(nn.Module):
    """Anchor close to its positive, far from every crop of another species in the batch.

    The batch holds B anchors then their B positives (:func:`sed.datasets.triplets.
    triplet_collate`): rows ``i`` and ``B + i`` are a pair. For anchor ``a``, positive ``p`` and
    each in-batch row ``n`` of another species (``species`` differs; both known, >= 0)::

        hinge(a, n) = max(0, ||a - p|| - ||a - n|| + margin)
        loss = mean of the hinges over (anchor, negative) pairs
               + l2 * mean over anchors and positives of ||z||

    Distances are Euclidean as in tile2vec; the norm penalty keeps the embedding from growing
    until every hinge is met by scale alone. A batch without a negative (one species) adds only
    the penalty and the positive distance's mean is still logged.

    Args:
        margin: the hinge margin.
        l2: weight of the embedding-norm penalty (tile2vec: 0.01).
        hardest: use only each anchor's closest negative instead of all of them.
    """

    def __init__(self, margin: float = 1.0, l2: float = 0.01, hardest: bool = False) -> None:
        super().__init__()
        self.margin, self.l2 = as_float(margin, "margin"), as_float(l2, "l2")
        if not self.margin > 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        if self.l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.hardest = bool(hardest)

    def forward(self, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Args:
            outputs: ``embedding`` (2B, D).
            batch: ``species`` (2B,) int64, -1 unknown.

        Returns:
            ``(total, {"triplet", "l2", "positive_distance", "negative_distance", "active"})``;
            ``active`` is the share of (anchor, negative) pairs whose hinge is not yet met.
        """
        if "species" not in batch:
            raise ValueError(
                "loss tile2vec needs anchor/positive batches (triplet.enabled: true); the batch "
                "has no 'species'"
            )
        z = outputs["embedding"].float()
        species = batch["species"].to(z.device)
        if z.shape[0] % 2 or z.shape[0] != species.shape[0]:
            raise ValueError(
                f"tile2vec needs 2B embeddings for B anchor/positive pairs, got {z.shape[0]} "
                f"rows and {species.shape[0]} species"
            )
        b = z.shape[0] // 2
        anchors, positives = z[:b], z[b:]
        d_pos = (anchors - positives).pow(2).sum(-1).add(1e-12).sqrt()  # (B,)
        d_all = torch.cdist(anchors, z).clamp_min(0)  # (B, 2B)
        neg = (species[:b, None] != species[None, :]) & (species[:b, None] >= 0)
        neg &= species[None, :] >= 0
        norm = z.norm(dim=-1).mean()
        terms = {"positive_distance": d_pos.mean().detach(), "l2": norm.detach()}
        if not bool(neg.any()):
            zero = z.sum() * 0.0  # keeps the graph: every rank runs backward alike
            total = zero + self.l2 * norm
            terms |= {"triplet": zero.detach(), "active": zero.detach()}
            terms["negative_distance"] = zero.detach()
            return total, terms
        hinge = torch.relu(d_pos[:, None] - d_all + self.margin)
        if self.hardest:
            masked = d_all.masked_fill(~neg, float("inf"))
            j = masked.argmin(dim=1)
            has = neg.any(dim=1)
            triplet = hinge[torch.arange(b, device=z.device), j][has].mean()
        else:
            triplet = hinge[neg].mean()
        total = triplet + self.l2 * norm
        terms |= {
            "triplet": triplet.detach(),
            "negative_distance": d_all[neg].mean().detach(),
            "active": (hinge[neg] > 0).float().mean().detach(),
        }
        return total, terms

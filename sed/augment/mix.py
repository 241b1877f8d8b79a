"""Batch augmentations: mixup and additive mixup, on waveforms (B, N) or log-mel (B, F, T).

A selected clip is mixed with other clips of the same batch, taken before any mixing, and its
targets follow: ``clip_target`` (B, C) and ``frame_target`` (B, L, C) are mixed or maxed, and a
frame counts in the loss (``frame_mask``) only if it counts in every clip of the mix. A class
counts in a mix's clip loss (``clip_mask``) if it counts in every clip of the mix, or if one clip
of the mix is known to hold it (a counted positive): a secondary label left out of one clip's loss
stays out, unless the other clip's call makes the class present anyway.
"""

from __future__ import annotations

import torch

from sed.augment.base import Augmentation, Context, check_choice, check_positive, register_augment

TARGET_KEYS = ("clip_target", "frame_target")


def _rows(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return t[index.to(t.device)]


def _put(t: torch.Tensor, idx: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    out = t.clone()
    out[idx.to(t.device)] = rows.to(t.dtype)
    return out


def _combine_masks(
    batch: dict,
    idx: torch.Tensor,
    partners: torch.Tensor,
    use: torch.Tensor,
    clip_before: torch.Tensor | None = None,
) -> None:
    """Masks of each mix (module docstring); ``use`` (S, k) says which partners are in it and
    ``clip_before`` is ``clip_target`` before mixing."""
    mask = batch.get("frame_mask")
    if mask is not None:
        rows = _rows(mask, idx)
        for m in range(partners.shape[1]):
            other = _rows(mask, partners[:, m])
            keep = use[:, m].to(mask.device)[:, None, None]
            rows = torch.where(keep, rows * other, rows)
        batch["frame_mask"] = _put(mask, idx, rows)
    cmask = batch.get("clip_mask")
    if cmask is None or clip_before is None:
        return
    rows = _rows(cmask, idx)
    known = (_rows(clip_before, idx) > 0.5) & (rows > 0)
    for m in range(partners.shape[1]):
        other = _rows(cmask, partners[:, m])
        keep = use[:, m].to(cmask.device)[:, None]
        known = torch.where(
            keep, known | ((_rows(clip_before, partners[:, m]) > 0.5) & (other > 0)), known
        )
        rows = torch.where(keep, rows * other, rows)
    batch["clip_mask"] = _put(cmask, idx, torch.where(known, torch.ones_like(rows), rows))


@register_augment("mixup", stage="mix")
class Mixup(Augmentation):
    """Mixup: ``lam * x_i + (1 - lam) * x_j`` with a random other clip j, lam ~ Beta(alpha, alpha).

    Each selected clip draws its own partner and weight. On log-mel features this mixes the log
    values (as PANNs does), not the sounds.

    Note: a small ``alpha`` puts most weights near 0 or 1; with ``alpha = 0.1`` about one
    selected clip in ten gets a weight within float precision of 1 and comes out unchanged.

    Args:
        alpha: Beta parameter (> 0); 1 draws the weight uniformly.
        labels: ``mix`` (targets mixed with the same weight) or ``max`` (the union of the
            clips' labels: each target is the larger of the two).
    """

    def __init__(self, alpha: float = 0.4, labels: str = "mix") -> None:
        check_positive(alpha, "alpha")
        check_choice(labels, "labels", ("mix", "max"))
        self.alpha = alpha
        self.labels = labels

    def apply(self, x: torch.Tensor, idx: torch.Tensor, batch: dict, ctx: Context) -> torch.Tensor:
        partner = ctx.others(x.shape[0], idx, 1)  # (S, 1)
        lam = ctx.beta(len(idx), self.alpha).float()  # (S,)
        clip_before = batch.get("clip_target")

        def mix(t: torch.Tensor) -> torch.Tensor:
            w = lam.to(t.device).view(-1, *([1] * (t.dim() - 1)))
            return w * _rows(t, idx) + (1 - w) * _rows(t, partner[:, 0])

        for key in TARGET_KEYS:
            t = batch.get(key)
            if t is None:
                continue
            if self.labels == "mix":
                rows = mix(t)
            else:
                rows = torch.maximum(_rows(t, idx), _rows(t, partner[:, 0]))
            batch[key] = _put(t, idx, rows)
        _combine_masks(batch, idx, partner, torch.ones(len(idx), 1, dtype=torch.bool), clip_before)
        return _put(x, idx, mix(x))


@register_augment("additive_mixup", stage="mix")
class AdditiveMixup(Augmentation):
    """Add 1 .. ``max_clips`` other clips of the batch to each selected clip (seed 004).

    Sounds add: waveforms are summed, and log-mel features are combined with ``logaddexp``
    (``log(exp(a) + exp(b))``: the mel energies add, exact for log power-mel up to the small log
    offset). Labels are the max over the clips: everything heard is present.

    Args:
        max_clips: the most clips added to one; each selected clip draws how many, uniformly
            (capped at batch size - 1).
    """

    def __init__(self, max_clips: int = 1) -> None:
        check_positive(max_clips, "max_clips", integer=True)
        self.max_clips = max_clips

    def apply(self, x: torch.Tensor, idx: torch.Tensor, batch: dict, ctx: Context) -> torch.Tensor:
        k = min(self.max_clips, x.shape[0] - 1)
        partners = ctx.others(x.shape[0], idx, k)  # (S, k)
        count = ctx.randint(1, k, (len(idx),))
        use = torch.arange(k)[None, :] < count[:, None]  # (S, k): partner m is added

        add = torch.logaddexp if x.dim() == 3 else torch.add
        clip_before = batch.get("clip_target")
        rows = _rows(x, idx)
        for m in range(k):
            keep = use[:, m].to(x.device).view(-1, *([1] * (x.dim() - 1)))
            rows = torch.where(keep, add(rows, _rows(x, partners[:, m])), rows)
        for key in TARGET_KEYS:
            t = batch.get(key)
            if t is None:
                continue
            got = _rows(t, idx)
            for m in range(k):
                keep = use[:, m].to(t.device).view(-1, *([1] * (t.dim() - 1)))
                got = torch.where(keep, torch.maximum(got, _rows(t, partners[:, m])), got)
            batch[key] = _put(t, idx, got)
        _combine_masks(batch, idx, partners, use, clip_before)
        return _put(x, idx, rows)

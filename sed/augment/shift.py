"""Moving frame targets with the audio, and the time shift itself.

Augmentations that move audio in time (time shift, speed, time stretch) describe the move as a map
from each output frame to the input frame it came from, and :func:`move_frames` applies that map to
``frame_target`` and ``frame_mask``. Frames that came from outside the input (padding) are silence:
target 0, mask 1 (the label "nothing here" is known). A clip label backed by frame activity that
has entirely left the crop is dropped; a clip label without any frame activity (a weak label) is
kept, since nothing says where its call is.
"""

from __future__ import annotations

import torch

from sed.augment.base import Augmentation, Context, check_choice, check_positive, register_augment


def move_frames(batch: dict, idx: torch.Tensor, src: torch.Tensor) -> None:
    """Move the frame targets of samples ``idx`` in place in ``batch``.

    Args:
        batch: holds ``frame_target`` (B, L, C), optional ``frame_mask`` (B, L, C) and
            ``clip_target`` (B, C); each is replaced by a new tensor.
        idx: selected samples (S,).
        src: (S, L) int64, the input frame of each output frame, -1 where the output is padding.
    """
    target = batch.get("frame_target")
    if target is None:
        return
    dev = target.device
    idx = idx.to(dev)
    src = src.to(dev)
    inside = (src >= 0).unsqueeze(-1)  # (S, L, 1)
    gather_idx = src.clamp(min=0).unsqueeze(-1).expand(-1, -1, target.shape[-1])
    old = target[idx]
    new = torch.where(
        inside, old.gather(1, gather_idx), torch.zeros((), dtype=old.dtype, device=dev)
    )
    batch["frame_target"] = _put(target, idx, new)
    mask = batch.get("frame_mask")
    if mask is not None:
        moved = torch.where(
            inside, mask[idx].gather(1, gather_idx), torch.ones((), dtype=mask.dtype, device=dev)
        )
        batch["frame_mask"] = _put(mask, idx, moved)
    clip = batch.get("clip_target")
    if clip is not None:
        lost = (old.amax(dim=1) > 0) & (new.amax(dim=1) <= 0)  # (S, C)
        kept = torch.where(
            lost.to(clip.device), torch.zeros((), dtype=clip.dtype, device=clip.device), clip[idx]
        )
        batch["clip_target"] = _put(clip, idx.to(clip.device), kept)


def _put(x: torch.Tensor, idx: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    out[idx] = rows
    return out


def scaled_sources(n_frames: int, factors: torch.Tensor) -> torch.Tensor:
    """Frame map of audio played ``factors`` (S,) times faster: output frame j <- input j * f.

    Returns:
        (S, n_frames) int64 on CPU; -1 where ``j * f`` lies past the last input frame.
    """
    j = torch.arange(n_frames, dtype=torch.float64)
    src = torch.floor(j[None, :] * factors[:, None].double() + 0.5).long()
    return torch.where(src < n_frames, src, -1)


@register_augment("time_shift", stage="time")
class TimeShift(Augmentation):
    """Shift each clip in time by a whole number of feature frames (seed 004).

    Runs once per batch: on the waveform when the pipeline has other waveform augmentations (its
    place among them is kept), otherwise on the features (see
    :class:`~sed.augment.pipeline.AugmentPipeline`). Shifts are whole frames at both stages (the
    waveform moves by ``frames * hop_length`` samples) so the frame targets move exactly with it.

    Args:
        max_seconds: largest shift either way; each clip draws a non-zero shift of
            ``1 .. round(max_seconds * frames_per_second)`` frames and a random direction.
        mode: ``roll`` (what leaves one end comes back at the other) or ``pad`` (the vacated
            part is silence: zeros on a waveform, the clip's minimum on log-mel features).
    """

    def __init__(self, max_seconds: float = 1.0, mode: str = "roll") -> None:
        check_positive(max_seconds, "max_seconds")
        check_choice(mode, "mode", ("roll", "pad"))
        self.max_seconds = max_seconds
        self.mode = mode

    def apply(self, x: torch.Tensor, idx: torch.Tensor, batch: dict, ctx: Context) -> torch.Tensor:
        hop = ctx.grid.hop_length
        wave = x.dim() == 2
        # the period of a roll in frames: a waveform of N samples repeats every N / hop frames
        period = x.shape[-1] // hop if wave else x.shape[-1]
        limit = max(1, min(ctx.grid.seconds_to_frames(self.max_seconds), period - 1))
        shift = ctx.randint(1, limit, (len(idx),))
        shift = torch.where(ctx.randint(0, 1, (len(idx),)) == 1, shift, -shift)  # (S,) frames

        n = x.shape[-1]
        step = shift * hop if wave else shift
        pos = torch.arange(n)[None, :] - step[:, None]  # (S, n) source position of each output
        rows = x[idx.to(x.device)]
        if self.mode == "roll":
            got = rows.gather(-1, _expand(pos % n, rows).to(x.device))
        else:
            inside = ((pos >= 0) & (pos < n)).to(x.device)
            got = rows.gather(-1, _expand(pos.clamp(0, n - 1), rows).to(x.device))
            fill = 0.0 if wave else rows.amin(dim=(1, 2), keepdim=True)
            got = torch.where(_expand(inside, rows), got, fill)
        out = x.clone()
        out[idx.to(x.device)] = got

        target = batch.get("frame_target")
        if target is not None:
            n_frames = target.shape[1]
            src = torch.arange(n_frames)[None, :] - shift[:, None]
            if self.mode == "roll":
                src = src % period
                src = torch.where(src < n_frames, src, -1)
            else:
                src = torch.where((src >= 0) & (src < n_frames), src, -1)
            move_frames(batch, idx, src)
        return out


def _expand(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Index (S, n) along the last axis of ``like`` (S, n) or (S, F, n)."""
    if like.dim() == 2:
        return index
    return index[:, None, :].expand(-1, like.shape[1], -1)

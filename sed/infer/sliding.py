"""Sliding-window prediction of one model over a recording's features in memory.

A convenience over :class:`sed.infer.engine.WindowEngine` (the one windowing and stitching
engine) for a single torch model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sed.infer.engine import TorchScorer, WindowEngine


def predict_recording(
    model: nn.Module,
    feats: np.ndarray | torch.Tensor,
    window: int,
    hop: int,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    frame_combine: str = "max",
    n_classes: int | None = None,
    gate_activity: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Clip and frame probabilities of one recording.

    The recording is cut into windows of ``window`` frames every ``hop`` frames, the last one
    ending at the recording's end (a recording shorter than a window is repeated to fill it);
    clip probabilities are the max over windows, frame probabilities are stitched on the model's
    frame grid (max or mean where windows overlap). See :mod:`sed.infer.engine`.

    Args:
        model: a model of the DESIGN §5 contract, in eval mode (a waveform model runs its body:
            the features of stage 1 are what its front end computes).
        feats: log-mel features (n_mels, T).
        window: window length in input frames.
        hop: hop in input frames (both rounded down to multiples of the model's time reduction).
        batch_size: windows per forward pass.
        device: where the model is.
        amp_dtype: autocast dtype (None: full precision).
        frame_combine: ``max`` or ``mean`` over overlapping windows.
        n_classes: keep only the first ``n_classes`` outputs (drops a training-only noise class).
        gate_activity: multiply frame probabilities by the activity head's (when it has one).

    Returns:
        ``clip (C,)`` and ``frame (T // r, C)`` probabilities, float32.
    """
    scorer = TorchScorer([model], device, amp_dtype, n_classes)
    engine = WindowEngine(scorer, window, hop, batch_size, frame_combine, gate_activity)
    res = engine.predict(feats)
    return res.clip[0], res.frame[0]

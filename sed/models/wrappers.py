"""Wrappers around any registered model: waveform input, and dropping training-only outputs."""

from __future__ import annotations

import torch
from torch import nn

from sed.features.frontend import LogMel, WaveFrames


class WaveformSED(nn.Module):
    """A model that takes waveforms: the stage-1 front end runs inside it (on its device).

    ``model.params.frontend: true`` builds one around the configured model. The trainer calls
    :attr:`frontend` and :attr:`body` separately so that waveform and spectrogram augmentations
    fit in between; inference calls the whole module.

    Args:
        frontend: the front end of the experiment's ``features`` section
            (:func:`sed.features.frontend.build_frontend`: log-mel, or the framed waveform of
            ``kind: wave``), waveforms ``(B, N)`` -> ``(B, n_mels, N // hop + 1)``.
        body: a model of the DESIGN §5 contract taking ``(B, n_mels, T)``.
    """

    def __init__(self, frontend: LogMel | WaveFrames, body: nn.Module) -> None:
        super().__init__()
        self.frontend = frontend
        self.body = body
        # frame outputs stay on the feature grid: the body's reduction is in feature frames
        self.time_reduction = int(getattr(body, "time_reduction", 1))
        self.hop_length = int(frontend.grid.hop_length)
        self.embedding_dim = getattr(body, "embedding_dim", None)

    def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs of the body (DESIGN §5) for waveforms ``(B, N)``; T = N // hop_length + 1."""
        return self.body(self.frontend(wave))


class KeepClasses(nn.Module):
    """Keeps the first ``n_classes`` outputs: drops an extra training-only class (the noise class).

    Args:
        model: any model of the contract.
        n_classes: outputs to keep (the corpus's classes).
    """

    def __init__(self, model: nn.Module, n_classes: int) -> None:
        super().__init__()
        self.model = model
        self.n_classes = n_classes
        self.time_reduction = int(getattr(model, "time_reduction", 1))
        if isinstance(getattr(model, "frontend", None), nn.Module):
            # keep the waveform model's two parts reachable (inference on dumped features)
            self.frontend = model.frontend
            self.body = KeepClasses(model.body, n_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.model(x))
        for key in ("clip_logits", "frame_logits"):
            out[key] = out[key][..., : self.n_classes]
        return out

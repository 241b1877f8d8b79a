"""The front end of an embedding experiment for inference over audio files (``sedkit infer``).

A log-mel experiment turns audio into features with :class:`sed.features.frontend.LogMel`; an
experiment of ``features.kind: embedding`` needs its stage-1 extractor instead (BirdNET ...).
:class:`EmbeddingFrontend` answers the same call, ``waveform (N,) -> (D, N // hop + 1)``, with
frame ``i`` the extractor's window centred at sample ``i * hop`` (zero-padded before the start and
past the end), the frames of the stage-1 dump, and exposes ``n_fft`` = the window length so that
:class:`sed.infer.stream.FeatureStream` keeps half a window of context at block edges: a frame is
emitted once its whole window is decoded, and equals the dump's.

:func:`build_frontend` picks the front end of a ``features`` section.
"""

from __future__ import annotations

import numpy as np
import torch

from sed.config import FeaturesConf
from sed.features.frontend import LogMel, WaveFrames
from sed.features.frontend import build_frontend as torch_frontend

__all__ = ["EmbeddingFrontend", "build_frontend"]


class EmbeddingFrontend:
    """Waveform -> centred embedding frames of the config's extractor.

    Args:
        features: a ``features`` section with ``kind: embedding``.
        num_threads: the extractor's CPU threads (None: the config's ``embedding.params``).

    Attributes:
        sample_rate: input rate (Hz).
        hop_length: samples between frames.
        n_fft: the extractor's window in samples (the context a frame needs, as an FFT's).
        dim: embedding size D.

    Raises:
        sed.config.ConfigError: the extractor's rate or size differ from the config's.
        sed.embeddings.birdnet.BirdNETUnavailable: BirdNET's optional packages are missing.
    """

    def __init__(self, features: FeaturesConf, num_threads: int | None = None) -> None:
        from sed.embeddings.base import build_extractor
        from sed.embeddings.dump import centre_padding

        if features.kind != "embedding":
            raise ValueError(f"features.kind is '{features.kind}', not embedding")
        e = features.embedding
        params = dict(e.params)
        if num_threads is not None:
            params["num_threads"] = int(num_threads)
        self.extractor = build_extractor(e.name, params)
        if (self.extractor.sample_rate, self.extractor.dim) != (
            features.sample_rate,
            features.n_mels,
        ):
            from sed.config import ConfigError

            raise ConfigError(
                f"the '{e.name}' extractor takes {self.extractor.sample_rate} Hz and gives "
                f"{self.extractor.dim}-d embeddings, the experiment was trained on "
                f"{features.sample_rate} Hz and {features.n_mels}-d ones"
            )
        self.hop_seconds = e.hop_seconds
        grid = self.extractor.grid(e.hop_seconds)
        if grid.hop_samples != features.hop_length:
            raise ValueError(
                f"embedding hop of {grid.hop_samples} samples, features.hop_length is "
                f"{features.hop_length}"
            )
        self.sample_rate = int(features.sample_rate)
        self.hop_length = int(features.hop_length)
        self.n_fft = int(grid.window_samples)
        self.dim = int(self.extractor.dim)
        self._pad = np.zeros(centre_padding(self.extractor, e.hop_seconds), np.float32)

    def eval(self) -> EmbeddingFrontend:
        """No training mode (the call mirrors ``LogMel(...).eval()``)."""
        return self

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        """Embeddings of a waveform.

        Args:
            wave: mono samples (N,) at :attr:`sample_rate`.

        Returns:
            float32 (D, N // hop_length + 1); column ``i`` is the window centred at
            ``i * hop_length``.
        """
        x = wave.detach().cpu().numpy().astype(np.float32, copy=False)
        if x.ndim != 1:
            raise ValueError(f"expected one waveform (N,), got shape {tuple(x.shape)}")
        emb = self.extractor.embed(np.concatenate([self._pad, x]), self.hop_seconds)
        return torch.from_numpy(emb)


def build_frontend(features: FeaturesConf) -> LogMel | WaveFrames | EmbeddingFrontend:
    """The front end of a ``features`` section, in evaluation mode: ``LogMel`` for log-mel,
    ``WaveFrames`` for ``kind: wave``, :class:`EmbeddingFrontend` for ``kind: embedding``. Each
    maps a waveform (N,) to frames (D, N // hop_length + 1); the context a frame needs is
    ``features.n_fft`` for log-mel and the front end's ``n_fft`` attribute otherwise:
    ``getattr(frontend, "n_fft", features.n_fft)``."""
    if features.kind == "embedding":
        return EmbeddingFrontend(features)
    return torch_frontend(features)  # log-mel or wave frames

"""A trained sed experiment as an embedding extractor: ``model(feats)["embedding"]`` per window.

Every model of the contract (DESIGN §5) returns a clip embedding (B, D) next to its clip logits
(B, C); this extractor cuts a recording into the experiment's inference windows, computes the
experiment's log-mel features of each window (:class:`sed.features.frontend.LogMel` of its
``features`` section, the features the model was trained on) and returns those embeddings, with
the clip logits as the logits and the experiment's classes as the labels.

One fold's model is used (the first fold with the checkpoint unless ``fold`` is given): the
folds are trained separately, so their embedding spaces differ and are never averaged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sed.embeddings.base import EmbeddingExtractor, register_extractor
from sed.features.frontend import build_frontend
from sed.models.loading import (
    checkpoint_path,
    default_checkpoint,
    experiment_folds,
    load_fold_model,
)


def _feature_model(model: nn.Module) -> nn.Module:
    """The part of ``model`` that takes log-mel features: a waveform model's body, else itself
    (the rule of :func:`sed.infer.engine.feature_model`, kept here so that embeddings do not
    import the inference package, which may come to use them)."""
    if isinstance(getattr(model, "frontend", None), nn.Module):
        return model.body
    return model


@register_extractor("experiment")
class ExperimentExtractor(EmbeddingExtractor):
    """Embeddings of one fold of a trained experiment.

    Args:
        expdir: the experiment folder (``exp/<recipe>/<family>/<version>``).
        fold: the fold whose model embeds (None: the first fold holding ``checkpoint``).
        checkpoint: ``best``, ``last``, ``step<N>`` (None: the experiment's
            ``infer.checkpoint``).
        window_seconds: window length (None: the experiment's inference window,
            ``infer.window_seconds`` or else the training crop ``data.crop_seconds``).
        batch_size: windows per forward.
        device: where the model runs.
        num_threads: torch's intra-op threads (None: leave torch's setting alone).

    Raises:
        FileNotFoundError: no fold of ``expdir`` has the checkpoint.
    """

    def __init__(
        self,
        expdir: str,
        fold: int | None = None,
        checkpoint: str | None = None,
        window_seconds: float | None = None,
        batch_size: int = 8,
        device: str = "cpu",
        num_threads: int | None = None,
    ) -> None:
        self.expdir = Path(expdir)
        if not self.expdir.is_dir():
            raise FileNotFoundError(f"{self.expdir}: experiment folder not found")
        self.checkpoint = checkpoint or default_checkpoint(self.expdir)
        if fold is None:
            folds = experiment_folds(self.expdir, self.checkpoint)
            if not folds:
                raise FileNotFoundError(
                    f"{self.expdir}: no fold<k>/checkpoints/{self.checkpoint}.pt; train it first"
                )
            fold = folds[0]
        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        self.fold = int(fold)
        self.device = torch.device(device)
        model, cfg, classes = load_fold_model(self.expdir, self.fold, self.checkpoint, self.device)
        self.model = _feature_model(model)
        self.frontend = build_frontend(cfg.features).to(self.device).eval()
        self.sample_rate = int(cfg.features.sample_rate)
        # the experiment's inference window (sed.infer.engine.infer_windows)
        self.window_seconds = float(
            window_seconds or cfg.infer.window_seconds or cfg.data.crop_seconds
        )
        self.batch_size = int(batch_size)
        self.labels = list(classes)
        self.dim = int(self._forward(np.zeros((1, self._window_samples()), np.float32))[0].shape[1])

    def _window_samples(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    @torch.inference_mode()
    def _forward(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feats = self.frontend(torch.from_numpy(windows).to(self.device))  # (B, n_mels, T)
        out = self.model(feats)
        emb = out["embedding"].float().cpu().numpy()
        logits = out["clip_logits"].float().cpu().numpy()
        return emb, logits

    def forward(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings (B, D) and clip logits (B, C) of windows (B, window_samples)."""
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] != self._window_samples():
            raise ValueError(
                f"expected windows (B, {self._window_samples()}), got shape {windows.shape}"
            )
        return self._forward(windows)

    def describe(self) -> dict[str, Any]:
        path = checkpoint_path(self.expdir, self.fold, self.checkpoint)
        stat = path.stat()
        return {
            "name": "experiment",
            "expdir": str(self.expdir.resolve()),
            "fold": self.fold,
            "checkpoint": self.checkpoint,
            # a retrained fold is another model: its dumps are redone
            "checkpoint_size": stat.st_size,
            "checkpoint_mtime_ns": stat.st_mtime_ns,
        }

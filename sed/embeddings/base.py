"""The embedding-extractor interface, its frame grid and its registry.

An extractor turns a mono waveform into one embedding (and optionally class logits) per window of
``window_seconds``: a pretrained bioacoustic model (BirdNET, a local Perch export) or a trained sed
experiment. Adding one is one file in this folder with a subclass of :class:`EmbeddingExtractor`
decorated by ``@register_extractor("name")``; it implements :meth:`EmbeddingExtractor.forward`
(a batch of windows -> embeddings, logits) and the base class does the windowing and batching.

Frame grid (the same for every extractor, recorded in every dump): frame ``i`` is the window of
``window_seconds`` starting at ``i * hop_seconds``, i.e. it covers
``[i * hop_seconds, i * hop_seconds + window_seconds)`` and its centre is at
``i * hop_seconds + window_seconds / 2``. A window that runs past the end of the recording is
zero-padded; windows holding less than ``min_seconds`` of audio (half a window by default, as
BirdNET's own analyzer does) are dropped, except the first, so every recording has at least one
frame: ``T = 1 + max(0, (N - min_samples) // hop_samples)``.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sed.registry import Registry

__all__ = [
    "EXTRACTORS",
    "EmbeddingExtractor",
    "EmbeddingGrid",
    "build_extractor",
    "register_extractor",
]

_REGISTERS = re.compile(r"@register_extractor\(\s*[\"']([^\"']+)[\"']")


def _module_of(name: str) -> str | None:
    """The module of this package whose source registers ``name`` (without importing it)."""
    for path in sorted(Path(__file__).parent.glob("[!_]*.py")):
        if name in _REGISTERS.findall(path.read_text(encoding="utf-8")):
            return f"{__package__}.{path.stem}"
    return None


def _discover(name: str | None) -> None:
    """Import the module registering ``name`` (``None``: every module that registers one), so
    building the experiment extractor never imports BirdNET's runtime and vice versa."""
    if name is not None:
        module = _module_of(name)
        if module is not None:
            importlib.import_module(module)
        return
    for path in sorted(Path(__file__).parent.glob("[!_]*.py")):
        if _REGISTERS.search(path.read_text(encoding="utf-8")):
            importlib.import_module(f"{__package__}.{path.stem}")


EXTRACTORS: Registry[type[EmbeddingExtractor]] = Registry("embedding extractor", discover=_discover)


def register_extractor(name: str) -> Any:
    """Class decorator adding an :class:`EmbeddingExtractor` subclass to :data:`EXTRACTORS`."""
    return EXTRACTORS.register(name)


def build_extractor(
    name: str, params: Mapping[str, Any] | None = None, where: str = ""
) -> EmbeddingExtractor:
    """Build a registered extractor with its constructor arguments.

    Raises:
        sed.config.ConfigError: unknown name or parameter (with the closest valid one).
    """
    return EXTRACTORS.build(name, dict(params or {}), "embedding.params", where=where)


@dataclass(frozen=True)
class EmbeddingGrid:
    """Windows of ``window_seconds`` every ``hop_seconds`` over a signal at ``sample_rate``.

    Window lengths and hops are whole samples (``round(seconds * sample_rate)``); the properties
    give the seconds they stand for exactly.
    """

    sample_rate: int
    window_samples: int
    hop_samples: int
    min_samples: int

    @classmethod
    def from_seconds(
        cls,
        sample_rate: int,
        window_seconds: float,
        hop_seconds: float,
        min_seconds: float | None = None,
    ) -> EmbeddingGrid:
        """The grid of a window and hop in seconds (``min_seconds`` None: half a window)."""
        window = round(window_seconds * sample_rate)
        hop = round(hop_seconds * sample_rate)
        min_samples = window // 2 if min_seconds is None else round(min_seconds * sample_rate)
        if window <= 0 or hop <= 0:
            raise ValueError(
                f"window ({window_seconds} s) and hop ({hop_seconds} s) must be at least one "
                f"sample at {sample_rate} Hz"
            )
        if not 0 < min_samples <= window:
            raise ValueError(
                f"min_seconds ({min_seconds}) must be positive and at most the window "
                f"({window_seconds} s)"
            )
        return cls(sample_rate, window, hop, min_samples)

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate

    @property
    def hop_seconds(self) -> float:
        return self.hop_samples / self.sample_rate

    @property
    def min_seconds(self) -> float:
        return self.min_samples / self.sample_rate

    def n_frames(self, n_samples: int) -> int:
        """Windows of a signal of ``n_samples`` samples (at least one)."""
        if n_samples < self.min_samples:
            return 1
        return 1 + (n_samples - self.min_samples) // self.hop_samples

    def starts(self, n_samples: int) -> np.ndarray:
        """First sample of each window, shape (T,)."""
        return np.arange(self.n_frames(n_samples), dtype=np.int64) * self.hop_samples

    def frame_times(self, n_frames: int) -> np.ndarray:
        """Start time in seconds of each of ``n_frames`` windows, shape (n_frames,)."""
        return np.arange(n_frames) * self.hop_seconds

    def frame_spans(self, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """``(onsets, offsets)`` in seconds of each window, shapes (n_frames,)."""
        start = self.frame_times(n_frames)
        return start, start + self.window_seconds

    def windows(self, wave: np.ndarray, first: int = 0, count: int | None = None) -> np.ndarray:
        """Windows ``first .. first + count - 1`` of ``wave`` (N,), zero-padded past its end.

        Returns:
            float32 array (count, window_samples).
        """
        total = self.n_frames(len(wave))
        count = total - first if count is None else min(count, total - first)
        out = np.zeros((max(count, 0), self.window_samples), dtype=np.float32)
        for j in range(count):
            s = (first + j) * self.hop_samples
            piece = wave[s : s + self.window_samples]
            out[j, : len(piece)] = piece
        return out

    def as_dict(self) -> dict[str, float]:
        """The grid in seconds, for dump attributes."""
        return {
            "sample_rate": self.sample_rate,
            "window_seconds": self.window_seconds,
            "hop_seconds": self.hop_seconds,
            "min_seconds": self.min_seconds,
        }


#: how the frame grid is described in dumps (one sentence, read by people)
FRAME_TIME = (
    "frame i is the window [i * hop_seconds, i * hop_seconds + window_seconds) s, "
    "zero-padded past the end of the recording"
)


class EmbeddingExtractor(ABC):
    """Waveform -> one embedding (and optionally class logits) per window.

    Subclasses set :attr:`sample_rate`, :attr:`window_seconds`, :attr:`dim` and :attr:`labels`
    (or ``None`` without a classifier) in their constructor and implement :meth:`forward`.

    Attributes:
        sample_rate: rate in Hz of the waveforms :meth:`embed` takes.
        window_seconds: length of one window.
        dim: embedding size D.
        labels: class names of the logits (C,), None when the extractor has no classifier.
        batch_size: windows per :meth:`forward` call.
        min_seconds: shortest audio a window may hold (None: half a window).
    """

    sample_rate: int
    window_seconds: float
    dim: int
    labels: list[str] | None = None
    batch_size: int = 16
    min_seconds: float | None = None

    @abstractmethod
    def forward(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Embed a batch of windows.

        Args:
            windows: float32 (B, window_samples) at :attr:`sample_rate`.

        Returns:
            ``(embeddings (B, D) float32, logits (B, C) float32 or None)``.
        """

    def describe(self) -> dict[str, Any]:
        """What identifies the model (file, version, checkpoint ...), recorded in dumps so a dump
        made with another model is redone. JSON-serialisable."""
        return {}

    @property
    def has_logits(self) -> bool:
        return self.labels is not None

    def grid(self, hop_seconds: float | None = None) -> EmbeddingGrid:
        """The frame grid at ``hop_seconds`` (None: consecutive windows, hop = window)."""
        hop = self.window_seconds if hop_seconds is None else hop_seconds
        return EmbeddingGrid.from_seconds(
            self.sample_rate, self.window_seconds, hop, self.min_seconds
        )

    def embed(self, wave: np.ndarray, hop_seconds: float | None = None) -> np.ndarray:
        """Embeddings of a recording on the frame grid (see the module docstring).

        Args:
            wave: mono float32 samples (N,) at :attr:`sample_rate`.
            hop_seconds: seconds between window starts (None: the window length).

        Returns:
            float32 (D, T), ``T = grid(hop_seconds).n_frames(N)``; column ``i`` is the window
            starting at ``i * hop_seconds``.
        """
        return self.embed_with_logits(wave, hop_seconds, logits=False)[0]

    def embed_with_logits(
        self, wave: np.ndarray, hop_seconds: float | None = None, logits: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Embeddings and class logits of a recording on the frame grid.

        Args:
            wave: mono float32 samples (N,) at :attr:`sample_rate`.
            hop_seconds: seconds between window starts (None: the window length).
            logits: also return the logits (when the extractor has a classifier).

        Returns:
            ``(embeddings (D, T), logits (C, T) or None)``, float32.
        """
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"expected a mono waveform (N,), got shape {wave.shape}")
        grid = self.grid(hop_seconds)
        n = grid.n_frames(len(wave))
        embs: list[np.ndarray] = []
        outs: list[np.ndarray] = []
        step = max(1, int(self.batch_size))
        for first in range(0, n, step):
            e, lo = self.forward(grid.windows(wave, first, step))
            embs.append(np.asarray(e, dtype=np.float32))
            if logits and lo is not None:
                outs.append(np.asarray(lo, dtype=np.float32))
        emb = np.concatenate(embs, axis=0).T
        if emb.shape != (self.dim, n):
            raise RuntimeError(
                f"{type(self).__name__}: embeddings of shape {emb.shape}, expected "
                f"({self.dim}, {n}) (dim x windows)"
            )
        out = np.ascontiguousarray(np.concatenate(outs, axis=0).T) if outs else None
        return np.ascontiguousarray(emb), out

    def settings(self, hop_seconds: float | None = None) -> dict[str, Any]:
        """Everything that determines the embeddings at ``hop_seconds`` (JSON-serialisable)."""
        return {
            "kind": "embedding",
            **self.grid(hop_seconds).as_dict(),
            "dim": int(self.dim),
            "n_labels": None if self.labels is None else len(self.labels),
            "frame_time": FRAME_TIME,
            "model": self.describe(),
        }


def check_labels(labels: Sequence[str], n_outputs: int, where: str) -> list[str]:
    """``labels`` as a list, refused when it does not match the model's ``n_outputs`` logits."""
    labels = list(labels)
    if len(labels) != n_outputs:
        raise ValueError(f"{where}: {len(labels)} labels for a model with {n_outputs} outputs")
    return labels

"""Validation of an embedding model: nearest-neighbour species accuracy across recordings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from sed.datasets.crop_dataset import read_crop
from sed.features.dump import FeatureStore
from sed.frames import FrameGrid
from sed.utils.device import autocast_context


def nn_accuracy(emb: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """1-nearest-neighbour accuracy under cosine similarity, the neighbour always taken from
    another group (recording), so that a window is never matched with its own recording's
    background; and the accuracy a random neighbour from another group would have (chance).

    Args:
        emb: (N, D) embeddings.
        labels: (N,) class of each.
        groups: (N,) recording of each.

    Returns:
        ``(accuracy, chance)`` over the rows that have a neighbour in another group; ``(nan,
        nan)`` when none has.
    """
    emb = np.asarray(emb, dtype=np.float64)
    labels, groups = np.asarray(labels), np.asarray(groups)
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    other = groups[:, None] != groups[None, :]
    sim[~other] = -np.inf
    rows = np.flatnonzero(other.any(axis=1))
    if rows.size == 0:
        return float("nan"), float("nan")
    nearest = sim[rows].argmax(axis=1)
    acc = float(np.mean(labels[nearest] == labels[rows]))
    same = (labels[:, None] == labels[None, :]) & other
    chance = float(np.mean(same[rows].sum(axis=1) / other[rows].sum(axis=1)))
    return acc, chance


class NearestNeighbourEvaluator:
    """Embeds windows of the validation recordings and scores how well the embedding separates
    species: ``nn_accuracy`` (see :func:`nn_accuracy`) and ``nn_chance`` beside it.

    Windows: centred on up to ``windows`` annotated events of a strongly labelled recording
    (labelled by the event's class), or on up to ``windows`` spans of a weakly labelled one
    (``spans``, e.g. its mined motifs; else evenly spaced), labelled by its clip label.

    Args:
        store: feature dumps.
        ids: validation recordings.
        events: recording id -> (E, 3) ``onset, offset, class`` (tp events).
        weak: recording id -> class indices of recordings without events.
        window: window length in frames.
        windows: windows per recording.
        batch_size: windows per forward pass.
        device: model device.
        amp_dtype: autocast dtype or None.
        classes: class names.
        spans: recording id -> (S, 2) spans to centre weak windows on.
    """

    def __init__(
        self,
        store: FeatureStore,
        ids: Sequence[str],
        events: Mapping[str, np.ndarray],
        weak: Mapping[str, Sequence[int]],
        window: int,
        windows: int = 4,
        batch_size: int = 16,
        device: torch.device | str = "cpu",
        amp_dtype: torch.dtype | None = None,
        classes: Sequence[str] | None = None,
        spans: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.store, self.window, self.batch_size = store, int(window), int(batch_size)
        self.device, self.amp_dtype = torch.device(device), amp_dtype
        self.grid = FrameGrid(int(store.features["sample_rate"]), int(store.features["hop_length"]))
        self.items: list[tuple[str, int, int]] = []  # (recording, first frame, class)
        for rid in ids:
            n = store.n_frames(rid)
            last = max(0, n - self.window)
            ev = np.asarray(events.get(rid, np.zeros((0, 3))), dtype=np.float64).reshape(-1, 3)
            if len(ev):
                picks = ev[np.linspace(0, len(ev) - 1, min(windows, len(ev))).round().astype(int)]
                centres = [(0.5 * (a + b), int(c)) for a, b, c in picks]
            elif weak.get(rid):
                label = int(next(iter(weak[rid])))
                sp = np.asarray((spans or {}).get(rid, np.zeros((0, 2))), dtype=np.float64)
                if len(sp):
                    centres = [(0.5 * (a + b), label) for a, b in sp[:windows]]
                else:
                    dur = self.grid.frames_to_seconds(n - 1)
                    centres = [(t, label) for t in np.linspace(0, dur, windows + 2)[1:-1]]
            else:
                continue
            for t, c in centres:
                f0 = self.grid.seconds_to_frames(t) - self.window // 2
                self.items.append((rid, int(np.clip(f0, 0, last)), c))
        self.classes = list(classes) if classes is not None else None

    @torch.no_grad()
    def embed(self, model: nn.Module) -> np.ndarray:
        """(N, D) embeddings of the validation windows, in :attr:`items` order."""
        net = model.body if getattr(model, "frontend", None) is not None else model
        out = []
        for s in range(0, len(self.items), self.batch_size):
            chunk = self.items[s : s + self.batch_size]
            x = np.stack([read_crop(self.store, r, f0, self.window) for r, f0, _ in chunk])
            with autocast_context(self.device, self.amp_dtype):
                emb = net(torch.from_numpy(x).to(self.device))["embedding"]
            out.append(emb.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def __call__(self, model: nn.Module) -> dict[str, float]:
        emb = self.embed(model)
        labels = np.array([c for _, _, c in self.items])
        groups = np.array([r for r, _, _ in self.items])
        acc, chance = nn_accuracy(emb, labels, groups)
        return {"nn_accuracy": acc, "nn_chance": chance}

    def embeddings(self, model: nn.Module, limit: int = 1000) -> tuple[np.ndarray, list[str]]:
        """Window embeddings and their species names, for TensorBoard's projector."""
        emb = self.embed(model)[:limit]
        names = [self.classes[c] if self.classes else str(c) for _, _, c in self.items[:limit]]
        return emb, names

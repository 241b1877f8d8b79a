"""Validation on whole recordings: sliding windows, max over windows, lwlrap (clip and frame)
and, with ``train.selection.positive``, the selection metrics of that class (F-beta, precision at
a recall, AP; :mod:`sed.metrics.selection`) with their tuned thresholds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from sed.config import ConfigError, SelectionConf, closest
from sed.datasets.targets import reduce_frame_targets, window_targets
from sed.features.dump import FeatureStore
from sed.features.wave_store import WaveStore
from sed.frames import FrameGrid
from sed.infer.sliding import predict_recording
from sed.metrics import lwlrap
from sed.metrics.selection import SELECTION_KEYS, selection_metrics


class WholeRecordingEvaluator:
    """Scores a model on whole validation recordings, as inference will see them.

    ``lwlrap`` ranks the clip probabilities (max over windows); ``lwlrap_frame`` ranks the max over
    time of the frame probabilities. With ``selection.positive``, the clip probabilities of that
    class also give ``fbeta``, ``precision_at_recall`` and ``ap`` (``train.best_metric`` may name
    them) and the thresholds tuned on these rows for the first two, ``fbeta_threshold`` and
    ``precision_at_recall_threshold`` (probabilities; logged like every metric, so they are in
    TensorBoard's ``valid/`` scalars and in the ``history`` of checkpoints and
    ``train_summary.json``). All are NaN while the class has no positive validation recording.
    After a call, :meth:`per_class` and :meth:`figures` describe the same predictions for
    TensorBoard.

    Args:
        store: feature dumps, or a :class:`~sed.features.wave_store.WaveStore` for a waveform
            model whose front end stage 1 does not dump (features come from the model's front end).
        ids: validation recordings.
        truth: recording-level labels (N, C).
        window: window in input frames.
        hop: hop in input frames.
        batch_size: windows per forward pass.
        device: model device.
        amp_dtype: autocast dtype or None.
        classes: class names (C); default ``0 .. C-1``.
        events: recording id -> (E, 3) ``onset, offset, class`` (for frame truth in figures).
        selection: the ``train.selection`` section; its ``positive`` must be one of ``classes``.

    Raises:
        ConfigError: ``selection.positive`` is not a class.
    """

    def __init__(
        self,
        store: FeatureStore | WaveStore,
        ids: Sequence[str],
        truth: np.ndarray,
        window: int,
        hop: int,
        batch_size: int = 16,
        device: torch.device | str = "cpu",
        amp_dtype: torch.dtype | None = None,
        classes: Sequence[str] | None = None,
        events: Mapping[str, np.ndarray] | None = None,
        selection: SelectionConf | None = None,
    ) -> None:
        self.store, self.ids, self.truth = store, list(ids), truth
        self.window, self.hop, self.batch_size = window, hop, batch_size
        self.device, self.amp_dtype = torch.device(device), amp_dtype
        self.has_positives = bool(truth.any())
        self.n_classes = truth.shape[1]
        self.classes = (
            list(classes) if classes is not None else [str(i) for i in range(truth.shape[1])]
        )
        self.events = dict(events or {})
        self.selection = selection if selection is not None and selection.positive else None
        self.positive: int | None = None
        if self.selection is not None:
            name = self.selection.positive
            if name not in self.classes:
                hint = closest(str(name), self.classes)
                raise ConfigError(
                    f"train.selection.positive '{name}' is not a class of this corpus "
                    f"(classes.txt: {', '.join(self.classes)})"
                    + (f"; did you mean '{hint}'?" if hint else "")
                )
            self.positive = self.classes.index(name)
        self.grid = FrameGrid(int(store.features["sample_rate"]), int(store.features["hop_length"]))
        # the recording shown in figures: the one with the most annotated calls, fixed for the run
        counts = [len(self.events.get(r, ())) for r in self.ids]
        self.figure_id = self.ids[int(np.argmax(counts))] if self.ids else None
        self._clip: np.ndarray | None = None
        self._figure_frames: np.ndarray | None = None

    def predict(self, model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """Clip scores (N, C) and max-over-time frame scores (N, C)."""
        clips, frames = [], []
        for rid in self.ids:
            clip, frame = predict_recording(
                model,
                self._features(model, rid),
                self.window,
                self.hop,
                self.batch_size,
                self.device,
                self.amp_dtype,
                n_classes=self.n_classes,
            )
            clips.append(clip)
            frames.append(frame.max(axis=0) if len(frame) else np.zeros_like(clip))
            if rid == self.figure_id:
                self._figure_frames = frame
        return np.stack(clips), np.stack(frames)

    @torch.inference_mode()
    def _features(self, model: nn.Module, rid: str) -> np.ndarray:
        """The model's input features (F, T) of a whole recording: the dump's, or with a
        :class:`~sed.features.wave_store.WaveStore` the waveform through the model's own front end
        (a waveform model whose front end stage 1 does not dump)."""
        if getattr(self.store, "kind", None) != "wave":
            return self.store.read(rid)
        frontend = getattr(model, "frontend", None)
        if frontend is None:
            raise ValueError("a waveform store needs a model with a front end (frontend: true)")
        wave = torch.from_numpy(self.store.read(rid))
        device = next(model.parameters()).device
        return frontend(wave[None].to(device))[0].float().cpu().numpy()

    def __call__(self, model: nn.Module) -> dict[str, float]:
        clip, frame = self.predict(model)
        self._clip = clip
        out = {"lwlrap": float("nan"), "lwlrap_frame": float("nan")}
        if self.has_positives:
            out = {"lwlrap": lwlrap(self.truth, clip), "lwlrap_frame": lwlrap(self.truth, frame)}
        if self.selection is not None:
            out.update(self._selection(clip))
        return out

    def _selection(self, clip: np.ndarray) -> dict[str, float]:
        """Selection metrics of the positive class on the clip scores (N, C)."""
        assert self.selection is not None and self.positive is not None
        truth = self.truth[:, self.positive]
        if not truth.any():  # undefined until a validation recording holds the class
            return dict.fromkeys(SELECTION_KEYS, float("nan"))
        return selection_metrics(
            truth, clip[:, self.positive], self.selection.beta, self.selection.recall
        )

    def per_class(self) -> dict[str, dict[str, float]]:
        """``{"valid_ap": {class: AP}}`` of the last call's clip scores (classes with positives)."""
        from sed.train.figures import per_class_ap

        if self._clip is None:
            return {}
        ap = per_class_ap(self._clip, self.truth)
        return {"valid_ap": {c: float(v) for c, v in zip(self.classes, ap, strict=True) if v == v}}

    def figures(self, model: nn.Module) -> dict[str, Figure]:
        """Figures of the last call: one recording's frame scores against its calls, and the
        per-class score distributions of positives against negatives."""
        from sed.train.figures import recording_figure, score_distribution_figure

        out: dict[str, Figure] = {}
        if self._clip is None:
            return out
        out["valid/score_distributions"] = score_distribution_figure(
            self._clip, self.truth, self.classes
        )
        if self.figure_id is not None and self._figure_frames is not None:
            rid, frames = self.figure_id, self._figure_frames
            feats = self._features(model, rid)
            # the stitched frames are T // r (a ratio guessed from their count is off for a
            # stride-32 model on a short recording: 188 frames -> 5, guessed r 38, not 32)
            r = int(model.time_reduction)
            ev = np.asarray(self.events.get(rid, np.zeros((0, 3))), dtype=np.float64)
            _, truth = window_targets(
                ev,
                0.0,
                self.grid.frames_to_seconds(feats.shape[1] - 1),
                feats.shape[1],
                self.grid,
                self.n_classes,
                0.0,
            )
            truth = reduce_frame_targets(torch.from_numpy(truth)[None], r, len(frames))[0].numpy()
            spf = self.grid.frames_to_seconds(1)
            out["valid/recording"] = recording_figure(
                feats, frames, truth, self.classes, spf, spf * r, title=f"{rid} (validation)"
            )
        return out

    @torch.inference_mode()
    def embeddings(self, model: nn.Module, limit: int = 1000) -> tuple[np.ndarray, list[str]]:
        """Window embeddings of validation recordings and their labels (active classes joined by
        ``+``, or ``none``), for TensorBoard's projector."""
        net = model.body if getattr(model, "frontend", None) is not None else model
        embs, labels = [], []
        for rid in self.ids:
            feats = torch.from_numpy(self._features(model, rid))
            ev = np.asarray(self.events.get(rid, np.zeros((0, 3))), dtype=np.float64)
            for s in range(0, max(1, feats.shape[1] - self.window + 1), self.window):
                win = feats[:, s : s + self.window]
                if win.shape[1] < self.window:
                    continue
                out = net(win[None].to(self.device))
                embs.append(out["embedding"].float().cpu().numpy()[0])
                t0, t1 = (
                    self.grid.frames_to_seconds(s),
                    self.grid.frames_to_seconds(s + self.window),
                )
                active = sorted({int(c) for a, b, c in ev if a < t1 and b > t0})
                labels.append("+".join(self.classes[c] for c in active) or "none")
                if len(embs) >= limit:
                    return np.stack(embs), labels
        return (np.stack(embs) if embs else np.zeros((0, 0), np.float32)), labels

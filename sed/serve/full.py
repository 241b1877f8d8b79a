"""The full path's served model: an experiment folder (its folds averaged) or an ``.onnx`` file
through ``sed.infer.files.load_model`` and :class:`sed.infer.stream.StreamingPredictor`, the
loader and the one inference path of ``sedkit infer`` (imports torch).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sed.infer.engine import Scorer, WindowScores
from sed.infer.events import Event, EventRules
from sed.infer.files import load_model
from sed.infer.report import DEFAULT_GAP
from sed.infer.stream import FeatureStream, FrameSkip, LoadedModel, StreamingPredictor
from sed.infer.tta import View
from sed.serve.jobs import Scored, WindowsCallback, model_info


@dataclass
class FullServed:
    """A model loaded once, shared by all jobs (its scorer and front end are only read).

    Attributes:
        loaded: the model and the experiment's settings.
        predictor: the streaming predictor with the server's settings (jobs copy it).
        rules: stage-4 post-processing (thresholds, smoothing, event rules).
        report_gap: default merge gap of the reports, in seconds.
    """

    loaded: LoadedModel
    predictor: StreamingPredictor
    rules: EventRules
    report_gap: float = DEFAULT_GAP
    engine: ClassVar[str] = "full"

    @property
    def classes(self) -> list[str]:
        return self.loaded.classes

    @property
    def source(self) -> str:
        return self.loaded.source

    @property
    def window_seconds(self) -> float:
        p = self.predictor
        return p.window / p.grid.frames_per_second

    def info(self) -> dict[str, Any]:
        """What ``GET /model`` answers: classes and the settings a result depends on."""
        p = self.predictor
        backend = type(self.loaded.scorer).__name__
        return model_info(self, p, backend, self.engine, [v.name for v in p.views], self.rules)

    def predict(
        self,
        path: Path,
        progress: Callable[[float], None] | None = None,
        on_windows: WindowsCallback | None = None,
    ) -> Scored:
        """One file's scores (all views merged); ``on_windows`` gets the original view's
        windows as they are scored."""
        predictor = TappedPredictor(self.predictor, on_windows) if on_windows else self.predictor
        res = predictor.predict_file(path, progress=progress)
        return Scored(res.clip, res.frame, res.boundaries(), res.duration, len(res.window_starts))

    def detect(self, frame: np.ndarray, boundaries: np.ndarray) -> list[Event]:
        """The post-processing of ``sedkit infer``'s ``OutputWriter`` and of stage 4."""
        return self.rules.apply(frame, boundaries, self.loaded.classes)[1]


def load_full_served(
    model: str | Path,
    backend: str = "auto",
    checkpoint: str | None = None,
    folds: Sequence[int] | None = None,
    device: str = "auto",
    amp: str = "off",
    threads: int | None = None,
    threshold: float | None = None,
    no_tta: bool = False,
    batch_size: int | None = None,
    block_seconds: float = 30.0,
    report_gap: float = DEFAULT_GAP,
) -> FullServed:
    """:func:`sed.serve.jobs.load_served` on the full path (same arguments).

    Raises:
        FileNotFoundError, ValueError: what :func:`sed.infer.files.load_model` raises.
    """
    if threads:
        import torch

        # the front end (and the torch backend) run in this process's torch thread pool
        torch.set_num_threads(threads)
    loaded = load_model(model, backend, checkpoint, folds, device, amp, threads)
    rules = loaded.events
    if threshold is not None:
        rules = dataclasses.replace(rules, thresholds=threshold)
    predictor = loaded.predictor(
        batch_size=batch_size, block_seconds=block_seconds, views=[View()] if no_tta else None
    )
    return FullServed(loaded, predictor, rules, report_gap)


# --------------------------------------------------------------------------------------------------
# Windows as they are scored
# --------------------------------------------------------------------------------------------------


class _TapScorer:
    """The shared scorer, reporting each batch's clip scores (K, B, C) to the job's predictor."""

    def __init__(self, inner: Scorer, on_batch: Callable[[np.ndarray], None]) -> None:
        self.inner = inner
        self.time_reduction = inner.time_reduction
        self.on_batch = on_batch

    def __call__(self, feats: np.ndarray) -> WindowScores:
        out = self.inner(feats)
        self.on_batch(out.clip)
        return out


class TappedPredictor(StreamingPredictor):
    """A job's copy of the server's predictor that hands each scored window to ``on_windows``.

    The windows the engine scores come from :meth:`iter_windows` in start order, and its
    accumulator scores them in that order, batch by batch; so the starts recorded here pair up
    with the clip scores the scorer returns. Only the first pass (the original view) is
    reported: test-time views are other signals, merged at the end.

    Args:
        base: the server's predictor (its settings; its engine is copied, not changed).
        on_windows: called with ``(starts (B,) in seconds, clip scores (B, C) members
            averaged)`` after every scored batch of the original view.
    """

    def __init__(self, base: StreamingPredictor, on_windows: WindowsCallback) -> None:
        # the same settings and objects as the server's predictor (no argument to re-derive)
        self.__dict__.update(vars(base))
        self.engine = copy.copy(base.engine)
        self.engine.scorer = self.scorer = _TapScorer(base.engine.scorer, self._on_batch)
        self.on_windows = on_windows
        self._pass = -1
        self._starts: list[int] = []

    def iter_windows(
        self,
        blocks: Any,
        feats: FeatureStream | None = None,
        progress: Callable[[float], None] | None = None,
        skip: FrameSkip | None = None,
    ) -> Iterator[list[tuple[int, np.ndarray]]]:
        self._pass += 1
        for windows in super().iter_windows(blocks, feats, progress, skip):
            if self._pass == 0:
                self._starts.extend(s for s, _ in windows)
            yield windows

    def _on_batch(self, clip: np.ndarray) -> None:
        if self._pass != 0:
            return
        b = clip.shape[1]
        starts, self._starts = self._starts[:b], self._starts[b:]
        self.on_windows(np.asarray(starts) / self.grid.frames_per_second, clip.mean(axis=0))

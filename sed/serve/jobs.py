"""The model a server holds, and one job: a recording streamed through it, lines out as they come.

:func:`load_served` opens the model once (``sed.infer.files.load_model``: an experiment folder or
an ``.onnx`` file, the loader of ``sedkit infer``) with its streaming predictor and stage-4
post-processing. A :class:`Job` runs in a worker thread: the recording goes through
:meth:`sed.infer.stream.StreamingPredictor.predict_file` (the one inference path), the frame
scores through :meth:`sed.infer.events.EventRules.apply` (as ``sedkit infer`` does), the
detections into :mod:`sed.infer.report`; on the way it sends NDJSON lines:

- ``{"type": "start", "file", "duration", "sample_rate", "channels", "classes"}``
- ``{"type": "window", "onset", "offset", "top": [[label, score], ...]}`` per scored window of
  the original view (clip scores, members averaged, the ``top_k`` best), as the model scores them
- ``{"type": "progress", "fraction", "seconds"}`` per decoded block of audio
- ``{"type": "detection", "onset", "offset", "label", "score"}`` per detection, once the whole
  recording is scored (detections need the stitched and smoothed frame scores)
- last ``{"type": "done", "file", "duration", "detections", "clip_scores", "summary", "report",
  ...}`` (``summary``: :func:`sed.infer.report.file_summary`; ``report``: its text), or
  ``{"type": "error", "status", "error"}``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sed.features.audio import AudioError
from sed.infer.engine import Scorer, WindowScores
from sed.infer.events import EventRules
from sed.infer.files import load_model
from sed.infer.report import DEFAULT_GAP, file_summary, summary_text
from sed.infer.stream import FeatureStream, FrameSkip, LoadedModel, StreamingPredictor
from sed.infer.tta import View

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """The client went away (or the server is stopping): the job stops at the next block."""


# --------------------------------------------------------------------------------------------------
# The served model
# --------------------------------------------------------------------------------------------------


@dataclass
class ServedModel:
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

    def info(self) -> dict[str, Any]:
        """What ``GET /model`` answers: classes and the settings a result depends on."""
        p, r = self.predictor, self.rules
        thresholds = r.thresholds if isinstance(r.thresholds, float | int) else dict(r.thresholds)
        return {
            "source": self.loaded.source,
            "backend": type(self.loaded.scorer).__name__,
            "classes": list(self.loaded.classes),
            "sample_rate": p.grid.sample_rate,
            "window_seconds": p.window / p.grid.frames_per_second,
            "hop_seconds": p.hop / p.grid.frames_per_second,
            "batch_size": p.batch_size,
            "views": [v.name for v in p.views],
            "gate_activity": p.gate_activity,
            "block_seconds": p.block_seconds,
            "events": {
                "thresholds": thresholds,
                "median": _plain(r.median),
                "kernel": _plain(r.kernel),
                "score": r.score,
                "min_duration": r.min_duration,
                "merge_gap": r.merge_gap,
            },
            "report_gap_seconds": self.report_gap,
        }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, Sequence | np.ndarray) else value


def load_served(
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
) -> ServedModel:
    """Open an experiment folder or ``.onnx`` file as ``sedkit infer`` does (same loader, same
    defaults: the experiment's window, hop, views, thresholds and event rules).

    Args:
        model: experiment folder or ``.onnx`` file.
        backend, checkpoint, folds, device, amp, threads: as ``sedkit infer``
            (:func:`sed.infer.files.load_model`).
        threshold: one detection threshold for every class (None: the model's own).
        no_tta: score the original signal only.
        batch_size: windows per forward (None: the model's default).
        block_seconds: audio decoded per block (also the progress step).
        report_gap: default merge gap of the reports.

    Raises:
        FileNotFoundError, ValueError: what :func:`sed.infer.files.load_model` raises.
    """
    loaded = load_model(model, backend, checkpoint, folds, device, amp, threads)
    rules = loaded.events
    if threshold is not None:
        rules = dataclasses.replace(rules, thresholds=threshold)
    predictor = loaded.predictor(
        batch_size=batch_size, block_seconds=block_seconds, views=[View()] if no_tta else None
    )
    return ServedModel(loaded, predictor, rules, report_gap)


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

    def __init__(
        self, base: StreamingPredictor, on_windows: Callable[[np.ndarray, np.ndarray], None]
    ) -> None:
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


# --------------------------------------------------------------------------------------------------
# A job
# --------------------------------------------------------------------------------------------------


def ndjson(obj: dict[str, Any]) -> bytes:
    """One NDJSON line (compact, UTF-8, newline-terminated)."""
    return (json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n").encode()


class Job:
    """One uploaded recording through the model, its lines handed to ``send`` as they come.

    Args:
        served: the model.
        path: the uploaded file.
        name: the client's file name (reports and messages say this, not the temporary path).
        info: ``(frames, sample_rate, channels)`` from the file's header.
        send: takes one NDJSON line; may block (the client reads slowly) and raises
            :class:`JobCancelled` when the client is gone.
        windows: send a line per scored window.
        top_k: labels per window line.
        gap: merge gap of the report (None: the server's).
    """

    def __init__(
        self,
        served: ServedModel,
        path: Path,
        name: str,
        info: tuple[int, int, int],
        send: Callable[[bytes], None],
        windows: bool = True,
        top_k: int = 3,
        gap: float | None = None,
    ) -> None:
        self.served = served
        self.path = path
        self.name = name
        self.info = info
        self.send = send
        self.windows = windows
        self.top_k = max(1, int(top_k))
        self.gap = served.report_gap if gap is None else float(gap)
        frames, sr, _ = info
        self.duration = frames / sr if sr else 0.0
        self._done_seconds = 0.0

    def _on_windows(self, starts: np.ndarray, clip: np.ndarray) -> None:
        classes = self.served.loaded.classes
        p = self.served.predictor
        window = p.window / p.grid.frames_per_second  # rounded to output frames, as scored
        k = min(self.top_k, clip.shape[1])
        for start, scores in zip(starts.tolist(), clip, strict=True):
            top = np.argsort(-scores, kind="stable")[:k]
            self.send(
                ndjson(
                    {
                        "type": "window",
                        "onset": round(start, 4),
                        "offset": round(min(start + window, self.duration), 4),
                        "top": [[classes[i], round(float(scores[i]), 4)] for i in top],
                    }
                )
            )

    def _on_progress(self, seconds: float) -> None:
        if seconds <= 0:  # the empty read that ends a file of whole blocks
            return
        self._done_seconds += seconds
        fraction = min(1.0, self._done_seconds / self.duration) if self.duration else 1.0
        self.send(
            ndjson(
                {
                    "type": "progress",
                    "fraction": round(fraction, 4),
                    "seconds": round(self._done_seconds, 2),
                }
            )
        )

    def run(self) -> dict[str, Any]:
        """Score the recording, sending every line but the last; returns the last line's
        object (``done``, or ``error`` for audio that fails to decode midway), which the caller
        sends once it has freed the job's resources: a client that reads the last line and
        sends its next recording at once must find the job's slot free.

        Raises:
            JobCancelled: from ``send``, when the client is gone (nothing more is sent).
        """
        _, sr, channels = self.info
        loaded = self.served.loaded
        self.send(
            ndjson(
                {
                    "type": "start",
                    "file": self.name,
                    "duration": round(self.duration, 4),
                    "sample_rate": sr,
                    "channels": channels,
                    "classes": list(loaded.classes),
                }
            )
        )
        start = time.perf_counter()
        predictor = (
            TappedPredictor(self.served.predictor, self._on_windows)
            if self.windows
            else self.served.predictor
        )
        try:
            res = predictor.predict_file(self.path, progress=self._on_progress)
        except AudioError as e:
            # the message names the temporary file: the client knows its file by its own name
            final = {
                "type": "error",
                "status": 422,
                "error": str(e).replace(str(self.path), self.name),
            }
            return final
        events = []
        if len(res.frame):
            # the post-processing of sedkit infer's OutputWriter and of stage 4
            _, events = self.served.rules.apply(res.frame, res.boundaries(), loaded.classes)
        for e in events:
            self.send(
                ndjson(
                    {
                        "type": "detection",
                        "onset": e.onset,
                        "offset": e.offset,
                        "label": e.label,
                        "score": e.score,
                    }
                )
            )
        summary = file_summary(self.name, events, res.duration, self.gap, loaded.classes)
        elapsed = time.perf_counter() - start
        final = {
            "type": "done",
            "file": self.name,
            "duration": res.duration,
            "n_windows": len(res.window_starts),
            "detections": [dataclasses.asdict(e) for e in events],
            "clip_scores": {
                c: float(s) if math.isfinite(s) else None
                for c, s in zip(loaded.classes, res.clip.tolist(), strict=True)
            },
            "elapsed_seconds": round(elapsed, 3),
            "real_time_factor": round(res.duration / elapsed, 1) if elapsed > 0 else None,
            "summary": summary,
            "report": summary_text(summary),
        }
        log.info(
            "%s: %.1f s of audio in %.1f s, %d detection(s)",
            self.name,
            res.duration,
            elapsed,
            len(events),
        )
        return final


class LineSender:
    """Lines from a worker thread to the event loop that streams them, at most ``maxsize`` in
    flight: a slow client slows the job down instead of filling the server's memory.

    Args:
        put: hands a line (or None: the end) to the event loop; called from the worker thread
            (``loop.call_soon_threadsafe(queue.put_nowait, line)``).
        maxsize: lines sent but not yet taken by :meth:`taken`.
    """

    def __init__(self, put: Callable[[bytes | None], None], maxsize: int = 256) -> None:
        self.put = put
        self.space = threading.Semaphore(maxsize)
        self.cancelled = threading.Event()

    def __call__(self, line: bytes | None) -> None:
        while not self.space.acquire(timeout=0.2):
            if self.cancelled.is_set():
                raise JobCancelled
        if self.cancelled.is_set():
            raise JobCancelled
        try:
            self.put(line)
        except RuntimeError:  # the event loop is closed: the server is stopping
            raise JobCancelled from None

    def finish(self, line: bytes) -> None:
        """Send the last line and the end without waiting for room: the worker thread is
        free at once, whatever the client's pace (one line over the bound)."""
        if self.cancelled.is_set():
            return
        try:
            self.put(line)
            self.put(None)
        except RuntimeError:  # the event loop is closed: the server is stopping
            pass

    def taken(self) -> None:
        """The consumer took a line off the queue."""
        self.space.release()

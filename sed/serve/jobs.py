"""The model a server holds, and one job: a recording streamed through it, lines out as they come.

:func:`load_served` opens the model once, as ``sedkit infer`` does: an ``.onnx`` file on the
torch-free lite path (:mod:`sed.serve.lite`, :mod:`sed.infer.lite`: numpy log-mel and
onnxruntime) unless it needs the full path or ``lite=False``; an experiment folder (or an
``.onnx`` file with ``lite=False``) on the full path (:mod:`sed.serve.full`,
``sed.infer.files.load_model`` and :class:`sed.infer.stream.StreamingPredictor`). Both apply
stage 4's post-processing the way ``sedkit infer`` does on that path. This module imports
neither torch nor the full path: a server of an ``.onnx`` file never loads them.

A :class:`Job` runs in a worker thread: the recording through the model's ``predict``, the frame
scores through its ``detect``, the detections into :mod:`sed.infer.report`; on the way it sends
NDJSON lines (the same for both paths):

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

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sed.features.audio import AudioError
from sed.infer.report import DEFAULT_GAP, file_summary, summary_text

log = logging.getLogger(__name__)

# (window starts (B,) in seconds, clip probabilities (B, C)) after each scored batch
WindowsCallback = Callable[[np.ndarray, np.ndarray], None]


class JobCancelled(Exception):
    """The client went away (or the server is stopping): the job stops at the next block."""


# --------------------------------------------------------------------------------------------------
# The served model
# --------------------------------------------------------------------------------------------------


@dataclass
class Scored:
    """One recording's scores, whichever path made them.

    Attributes:
        clip: recording probabilities (C,).
        frame: frame probabilities (T', C) of the whole recording (views merged).
        boundaries: output frame boundaries in seconds (T' + 1,).
        duration: seconds of audio at the model's rate.
        n_windows: windows scored per view.
    """

    clip: np.ndarray
    frame: np.ndarray
    boundaries: np.ndarray
    duration: float
    n_windows: int


class ServedModel(Protocol):
    """A model loaded once, shared by all jobs (:class:`sed.serve.full.FullServed` or
    :class:`sed.serve.lite.LiteServed`); every method may run in several threads at once."""

    report_gap: float

    @property
    def classes(self) -> list[str]: ...

    @property
    def source(self) -> str: ...

    @property
    def window_seconds(self) -> float:
        """Window length as scored (rounded to whole output frames)."""
        ...

    def info(self) -> dict[str, Any]:
        """What ``GET /model`` answers: classes and the settings a result depends on."""
        ...

    def predict(
        self,
        path: Path,
        progress: Callable[[float], None] | None = None,
        on_windows: WindowsCallback | None = None,
    ) -> Scored:
        """Score one file; ``progress`` gets the seconds decoded per block, ``on_windows`` the
        original view's windows as they are scored.

        Raises:
            AudioError: the file cannot be decoded (also midway).
        """
        ...

    def detect(self, frame: np.ndarray, boundaries: np.ndarray) -> list[Any]:
        """Stage 4's detections (dataclasses with onset, offset, label, score) of frame scores
        (T', C) with boundaries (T' + 1,)."""
        ...


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, Sequence | np.ndarray) else value


def events_info(rules: Any) -> dict[str, Any]:
    """The post-processing settings of ``GET /model`` (``sed.infer.events.EventRules`` or
    ``sed.infer.lite.model.EventSettings``: the same fields)."""
    t = rules.thresholds
    return {
        "thresholds": t if isinstance(t, float | int) else dict(t),
        "median": _plain(rules.median),
        "kernel": _plain(rules.kernel),
        "score": rules.score,
        "min_duration": rules.min_duration,
        "merge_gap": rules.merge_gap,
    }


def model_info(
    served: ServedModel,
    predictor: Any,
    backend: str,
    engine: str,
    views: Sequence[str],
    rules: Any,
) -> dict[str, Any]:
    """What ``GET /model`` answers for either path: classes and the settings a result depends
    on (``predictor``: the path's predictor, with ``grid``, ``window``, ``hop``,
    ``batch_size``, ``gate_activity`` and ``block_seconds``)."""
    p = predictor
    return {
        "source": served.source,
        "backend": backend,
        "engine": engine,
        "classes": list(served.classes),
        "sample_rate": p.grid.sample_rate,
        "window_seconds": p.window / p.grid.frames_per_second,
        "hop_seconds": p.hop / p.grid.frames_per_second,
        "batch_size": p.batch_size,
        "views": list(views),
        "gate_activity": p.gate_activity,
        "block_seconds": p.block_seconds,
        "events": events_info(rules),
        "report_gap_seconds": served.report_gap,
    }


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
    lite: bool | None = None,
) -> ServedModel:
    """Open an experiment folder or ``.onnx`` file as ``sedkit infer`` does (same loaders, same
    defaults: the model's window, hop, views, thresholds and event rules).

    Args:
        model: experiment folder or ``.onnx`` file.
        backend, checkpoint, folds, device, amp, threads: as ``sedkit infer``
            (:func:`sed.infer.files.load_model`); ``threads`` also sets torch's thread count on
            the full path.
        threshold: one detection threshold for every class (None: the model's own).
        no_tta: score the original signal only.
        batch_size: windows per forward (None: the model's default).
        block_seconds: audio decoded per block (also the progress step).
        report_gap: default merge gap of the reports.
        lite: ``.onnx`` files on the torch-free lite path: None (default) when the file allows
            it (no test-time views unless ``no_tta``), True always (else an error), False
            never (the full path's onnx backend).

    Raises:
        FileNotFoundError, ValueError: what :func:`sed.infer.files.load_model` or
            :func:`sed.infer.lite.model.load_lite` raise; ``lite=True`` for a model the lite
            path cannot serve.
    """
    path = Path(model)
    onnx_file = path.suffix == ".onnx" and backend in ("auto", "onnx")
    if lite and not onnx_file:
        raise ValueError(f"{path}: the lite path serves .onnx files only (--lite)")
    if onnx_file and lite is not False:
        # imported here: an experiment folder's server needs no onnxruntime
        from sed.infer.lite.model import LiteUnsupported
        from sed.serve.lite import load_lite_served

        try:
            return load_lite_served(
                path, threads, threshold, no_tta, batch_size, block_seconds, report_gap
            )
        except LiteUnsupported as e:
            if lite:
                raise LiteUnsupported(f"{e} (--lite)") from None
            log.info("%s: serving it on the full path", e)
    # imported here: it loads torch, which an .onnx file on the lite path never needs
    from sed.serve.full import load_full_served

    return load_full_served(
        path, backend, checkpoint, folds, device, amp, threads, threshold, no_tta, batch_size,
        block_seconds, report_gap,
    )  # fmt: skip


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
        classes = self.served.classes
        window = self.served.window_seconds  # rounded to output frames, as scored
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
        classes = self.served.classes
        self.send(
            ndjson(
                {
                    "type": "start",
                    "file": self.name,
                    "duration": round(self.duration, 4),
                    "sample_rate": sr,
                    "channels": channels,
                    "classes": list(classes),
                }
            )
        )
        start = time.perf_counter()
        try:
            res = self.served.predict(
                self.path, self._on_progress, self._on_windows if self.windows else None
            )
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
            events = self.served.detect(res.frame, res.boundaries)
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
        summary = file_summary(self.name, events, res.duration, self.gap, classes)
        elapsed = time.perf_counter() - start
        final = {
            "type": "done",
            "file": self.name,
            "duration": res.duration,
            "n_windows": res.n_windows,
            "detections": [dataclasses.asdict(e) for e in events],
            "clip_scores": {
                c: float(s) if math.isfinite(s) else None
                for c, s in zip(classes, res.clip.tolist(), strict=True)
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

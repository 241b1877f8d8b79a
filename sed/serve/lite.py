"""The lite path's served model: an exported ``.onnx`` file through :mod:`sed.infer.lite` (numpy
log-mel, onnxruntime, stage 4's rules in numpy), the torch-free path of ``sedkit infer``.

Imports numpy, soundfile, soxr and onnxruntime (scipy only when the file's post-processing
smooths), never torch: a server of an ``.onnx`` file starts in a fraction of the full path's time
and memory. Window lines, progress, detections and scores are those of the full path's onnx
backend within float tolerance (``tests/test_serve.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sed.infer.lite.model import EventSettings, LiteModel, load_lite
from sed.infer.lite.outputs import Event, detect_events, smooth
from sed.infer.lite.predict import LitePredictor
from sed.infer.report import DEFAULT_GAP
from sed.serve.jobs import Scored, WindowsCallback, model_info


@dataclass
class LiteServed:
    """An export loaded once, shared by all jobs (the onnxruntime session is thread-safe).

    Attributes:
        model: the session and the file's settings.
        rules: stage-4 post-processing (thresholds, smoothing, event rules).
        options: keyword arguments of :class:`sed.infer.lite.predict.LitePredictor` (the
            server's settings; None: the file's).
        report_gap: default merge gap of the reports, in seconds.
        predictor: a predictor with those settings (checked at load; ``GET /model`` reads it).
    """

    model: LiteModel
    rules: EventSettings
    options: dict[str, Any]
    report_gap: float = DEFAULT_GAP
    predictor: LitePredictor = field(init=False)
    engine: ClassVar[str] = "lite"

    def __post_init__(self) -> None:
        self.predictor = LitePredictor(self.model, **self.options)

    @property
    def classes(self) -> list[str]:
        return self.model.classes

    @property
    def source(self) -> str:
        return self.model.source

    @property
    def window_seconds(self) -> float:
        p = self.predictor
        return p.window / p.grid.frames_per_second

    def info(self) -> dict[str, Any]:
        """What ``GET /model`` answers: classes and the settings a result depends on."""
        # backend: onnxruntime, named as the full path's onnx backend; no test-time views
        return model_info(self, self.predictor, "OnnxScorer", self.engine, ["orig"], self.rules)

    def predict(
        self,
        path: Path,
        progress: Callable[[float], None] | None = None,
        on_windows: WindowsCallback | None = None,
    ) -> Scored:
        """One file's scores; ``on_windows`` gets its windows as they are scored."""
        # a predictor per job: the numpy front end reuses a scratch buffer from call to call,
        # so two jobs at once must not share one (it costs a mel filterbank, milliseconds)
        res = LitePredictor(self.model, **self.options).predict_file(path, progress, on_windows)
        return Scored(res.clip, res.frame, res.boundaries, res.duration, len(res.window_starts))

    def detect(self, frame: np.ndarray, boundaries: np.ndarray) -> list[Event]:
        """The post-processing of the lite ``sedkit infer`` (stage 4's rules)."""
        return detect_events(smooth(frame, self.rules), boundaries, self.model.classes, self.rules)


def load_lite_served(
    model: str | Path,
    threads: int | None = None,
    threshold: float | None = None,
    no_tta: bool = False,
    batch_size: int | None = None,
    block_seconds: float = 30.0,
    report_gap: float = DEFAULT_GAP,
) -> LiteServed:
    """An ``.onnx`` file on the lite path (arguments as :func:`sed.serve.jobs.load_served`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file without sed metadata, or settings the lite path rejects.
        sed.infer.lite.model.LiteUnsupported: a file that needs the full path (test-time
            views without ``no_tta``, features other than log-mel).
    """
    # idle onnxruntime threads sleep: the cores are shared by concurrent jobs, their decoding
    # and the event loop that answers /health
    lite = load_lite(model, threads, allow_views=no_tta, spinning=False)
    rules = lite.events
    if threshold is not None:
        rules = dataclasses.replace(rules, thresholds=threshold)
    options = {"batch_size": batch_size, "block_seconds": block_seconds}
    return LiteServed(lite, rules, options, report_gap)

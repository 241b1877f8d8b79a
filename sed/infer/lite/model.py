"""An exported ``.onnx`` file as onnxruntime session + settings, without torch.

The file carries its settings as ``sed.*`` metadata (:func:`sed.infer.onnx_backend.export_onnx`):
classes, feature settings, the time reduction and the experiment's inference settings. They are
read from the session itself (``custom_metadata_map``), so the file is parsed once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

OUTPUTS = ("clip_logits", "frame_logits", "activity_logits")
FRONTEND_PREFIX = "frontend."


class LiteUnsupported(ValueError):
    """The file needs something only the full (torch) path has; the message says what."""


def session(model: str | bytes, threads: int | None, spinning: bool = True) -> Any:
    """An onnxruntime CPU session with the full path's options (``sed.infer.onnx_backend``);
    ``spinning=False``: its idle threads sleep instead of spinning, leaving the cores to the
    decoding thread."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # peak memory: one batch of activations, not a power-of-two arena that never shrinks
    opts.enable_cpu_mem_arena = False
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in float32 without overflow warnings (exp(-x) = inf gives 0)."""
    x = np.asarray(x, np.float32)
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32, copy=False)


@dataclass
class EventSettings:
    """Stage 4's post-processing of the file (``sed.infer.events.EventRules``' fields)."""

    thresholds: float | dict[str, float] = 0.5
    median: int | list[int] | None = None
    kernel: list[float] | None = None
    score: str = "max"
    min_duration: float = 0.0
    merge_gap: float = 0.0


@dataclass
class LiteModel:
    """A loaded export: the session and the settings of its metadata.

    Attributes:
        session: onnxruntime session of the model graph (input ``feats (B, n_mels, W)``).
        outputs: its outputs (names of :data:`OUTPUTS`).
        classes: class names (C,).
        features: the ``sed.features`` dict (``FeaturesConf`` fields).
        time_reduction: the model's r.
        infer: the ``sed.infer`` dict (window, hop, batch sizes, frame_combine ...).
        events: the post-processing.
        views: the file's test-time views (``infer.tta`` entries; the lite path runs none).
        source: the file, for outputs.
    """

    session: Any
    outputs: list[str]
    classes: list[str]
    features: dict[str, Any]
    time_reduction: int
    infer: dict[str, Any]
    events: EventSettings = field(default_factory=EventSettings)
    views: list[dict] = field(default_factory=list)
    source: str = ""

    @property
    def window_seconds(self) -> float:
        return float(self.infer.get("window_seconds", 10.0))

    @property
    def hop_seconds(self) -> float:
        return float(self.infer.get("hop_seconds", self.window_seconds / 2))

    def score(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Probabilities of windows ``feats (B, n_mels, W)``: clip (B, C), frame (B, T', C) and
        activity (B, T') or None."""
        out = self.session.run(self.outputs, {"feats": np.ascontiguousarray(feats, np.float32)})
        probs = dict(zip(self.outputs, out, strict=True))
        act = probs.get("activity_logits")
        return (
            sigmoid(probs["clip_logits"]),
            sigmoid(probs["frame_logits"]),
            None if act is None else sigmoid(act)[..., 0],
        )


def _model_only(path: Path) -> bytes:
    """The model graph of a file that also holds the exported front end (``sed.frontend:
    onnx``): onnxruntime wants every graph input fed, and the lite path computes log-mel in
    numpy."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.load(str(path))
    names = [o.name for o in model.graph.output]
    body = Extractor(model).extract_model(["feats"], [n for n in OUTPUTS if n in names])
    body.ir_version = model.ir_version
    del body.opset_import[:]
    body.opset_import.extend(model.opset_import)
    return body.SerializeToString()


def load_lite(
    path: str | Path,
    threads: int | None = None,
    allow_views: bool = False,
    spinning: bool = True,
) -> LiteModel:
    """Open an exported file for the lite path.

    Args:
        path: the ``.onnx`` file.
        threads: onnxruntime intra-op threads (None: its default, all cores).
        allow_views: accept a file with test-time views (they are not run: ``--no_tta``).
        spinning: let onnxruntime's idle threads spin (see :func:`session`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file without ``sed.*`` metadata (not written by ``sedkit export``).
        LiteUnsupported: a file whose settings the lite path cannot apply (test-time views,
            non-log-mel features).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX file not found")
    try:
        sess = session(str(path), threads, spinning)
    except Exception as e:  # onnxruntime's own error types; the full path explains more
        raise LiteUnsupported(f"{path}: onnxruntime cannot load it ({e})") from None
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    if "sed.classes" not in meta or "sed.features" not in meta:
        raise ValueError(
            f"{path}: no sed metadata (classes, features); export it with sedkit export"
        )
    features = json.loads(meta["sed.features"])
    if features.get("kind", "logmel") != "logmel":
        raise LiteUnsupported(f"{path}: features.kind '{features['kind']}' is not log-mel")
    infer = json.loads(meta.get("sed.infer", "{}"))
    views = list(infer.get("tta") or [])
    if views and not allow_views:
        raise LiteUnsupported(f"{path}: test-time views (infer.tta) need the full path")
    if meta.get("sed.frontend") == "onnx" or "feats" not in {i.name for i in sess.get_inputs()}:
        sess = session(_model_only(path), threads, spinning)
    outputs = [o.name for o in sess.get_outputs() if o.name in OUTPUTS]
    thresholds: float | dict[str, float] = 0.5
    if "sed.thresholds" in meta:
        thresholds = {str(k): float(v) for k, v in json.loads(meta["sed.thresholds"]).items()}
    return LiteModel(
        session=sess,
        outputs=outputs,
        classes=[str(c) for c in json.loads(meta["sed.classes"])],
        features=features,
        time_reduction=int(meta.get("sed.time_reduction", "1")),
        infer=infer,
        events=EventSettings(
            thresholds=thresholds,
            median=infer.get("median_frames"),
            kernel=infer.get("smooth_kernel") or None,
            score=infer.get("event_score", "max"),
            min_duration=float(infer.get("min_event_seconds", 0.0)),
            merge_gap=float(infer.get("merge_gap_seconds", 0.0)),
        ),
        views=views,
        source=str(path),
    )

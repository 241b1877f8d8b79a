"""ONNX export of a fold model and an onnxruntime backend for streaming inference.

An exported file needs nothing else: its metadata holds the classes, the feature settings, the
time reduction and the experiment's inference settings (keys ``sed.*``), so
``sedkit infer --backend onnx model.onnx files...`` rebuilds the log-mel front end from them.

The graph takes log-mel features ``feats (B, n_mels, T)`` with dynamic batch and time axes and
returns ``clip_logits (B, C)``, ``frame_logits (B, T', C)`` and, with an activity head,
``activity_logits (B, T', 1)``. The model goes through the TorchScript exporter: ``torch.export``
(``dynamo=True``) specialises T on these models.

The front end stays in torch by default. The TorchScript exporter cannot export it (``torch.stft``
returns complex tensors, which it does not support); the ``torch.export`` exporter can (ONNX
``STFT``), so ``with_frontend=True`` adds it to the same file as a second, independent graph
``frontend.wave (N,) -> frontend.logmel (n_mels, T)``, split off again when loading. In
onnxruntime 1.31 that STFT is several times slower than torch's, so it is for deployments without
torch's front end, not for speed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sed.config import Config, FeaturesConf
from sed.features.frontend import LogMel
from sed.fileio import atomic_path
from sed.infer.engine import WindowScores, feature_model, infer_windows
from sed.infer.events import EventRules
from sed.infer.stream import LoadedModel
from sed.infer.tta import parse_views

log = logging.getLogger(__name__)

OPSET = 18  # STFT needs >= 17; both graphs of a file share one opset
OUTPUTS = ("clip_logits", "frame_logits", "activity_logits")
FRONTEND_PREFIX = "frontend."


class _TupleOutputs(nn.Module):
    """ONNX graphs return tuples, not dicts: the named outputs in a fixed order."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(feats)
        return tuple(out[k] for k in self.names)


class _Frontend(nn.Module):
    """LogMel of one waveform (N,) -> (n_mels, T), with an input name for the frontend graph."""

    def __init__(self, frontend: LogMel) -> None:
        super().__init__()
        self.frontend = frontend

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.frontend(wave)


def _export_frontend(features: FeaturesConf, path: Path) -> None:
    """Export the log-mel front end with the ``torch.export`` exporter (ONNX ``STFT``)."""
    module = _Frontend(LogMel.from_config(features)).eval()
    n = torch.export.Dim("n", min=features.n_fft, max=2**31 - 1)
    # the torch.export exporter prints its steps to stdout; sed's stdout is for results
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.randn(features.sample_rate),),
            str(path),
            dynamo=True,
            opset_version=OPSET,
            input_names=["wave"],
            output_names=["logmel"],
            dynamic_shapes={"wave": {0: n}},
            verbose=False,
        )


def export_onnx(
    model: nn.Module,
    cfg: Config,
    classes: Sequence[str],
    path: str | Path,
    with_frontend: bool = False,
    extra_metadata: dict[str, Any] | None = None,
    calibration: np.ndarray | None = None,
) -> dict[str, Any]:
    """Export a model (features in, logits out) with its metadata, and check it against torch.

    Args:
        model: a trained model of the DESIGN §5 contract (a waveform model exports its body).
        cfg: the fold's config (features and inference settings go into the metadata).
        classes: class names (C,).
        path: output ``.onnx`` file (written atomically).
        with_frontend: also export the log-mel front end into the file.
        extra_metadata: more ``sed.*`` entries (e.g. expdir, fold, checkpoint).
        calibration: log-mel windows (N, n_mels, T) of real recordings: quantise the model to
            int8 (:mod:`sed.infer.quantize`) with activation ranges calibrated on them.

    Returns:
        A report: ``outputs``, ``frontend`` (``onnx`` or ``torch``), ``max_abs_diff`` (largest
        logit difference between onnxruntime and torch on a test input) and, for int8,
        ``int8_max_prob_diff`` (largest clip or frame probability difference from torch on the
        calibration windows).
    """
    import onnx

    body = feature_model(model).eval().cpu()
    feats = cfg.features
    window, hop = infer_windows(cfg)
    n_frames = feats.sample_rate * window // feats.hop_length + 1
    torch.manual_seed(0)
    x = torch.randn(2, feats.n_mels, int(n_frames)) * 3
    with torch.no_grad():
        names = [k for k in OUTPUTS if k in body(x)]
    wrapper = _TupleOutputs(body, names).eval()
    dynamic = {"feats": {0: "batch", 2: "time"}, "clip_logits": {0: "batch"}}
    dynamic |= {k: {0: "batch", 1: "frames"} for k in names[1:]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        main = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():  # deprecation and constant-folding notes
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (x,),
                str(main),
                dynamo=False,
                opset_version=OPSET,
                input_names=["feats"],
                output_names=names,
                dynamic_axes=dynamic,
            )
        if calibration is not None:
            from sed.infer.quantize import quantize_int8

            quantize_int8(main, Path(tmp) / "int8.onnx", calibration)
            main = Path(tmp) / "int8.onnx"
        graph = onnx.load(str(main))
        frontend = "torch"
        if with_frontend:
            fe_path = Path(tmp) / "frontend.onnx"
            _export_frontend(feats, fe_path)
            fe = onnx.compose.add_prefix(onnx.load(str(fe_path)), FRONTEND_PREFIX)
            # one file, two independent graphs: no edge joins them (io_map is empty)
            fe.ir_version = graph.ir_version = min(fe.ir_version, graph.ir_version)
            graph = onnx.compose.merge_models(graph, fe, io_map=[])
            frontend = "onnx"
    window, hop = infer_windows(cfg)
    meta = {
        "sed.classes": json.dumps(list(classes)),
        "sed.features": json.dumps(dataclasses.asdict(feats)),
        "sed.time_reduction": str(int(getattr(body, "time_reduction", 1))),
        "sed.infer": json.dumps(
            {
                "window_seconds": window,
                "hop_seconds": hop,
                "batch_size": cfg.infer.batch_size,
                "cpu_batch_size": cfg.infer.cpu_batch_size,
                "frame_combine": cfg.infer.frame_combine,
                "clip_score": cfg.infer.clip_score,
                "gate_activity": cfg.infer.gate_activity,
                "tta": cfg.infer.tta,
                "speed_perturb": list(feats.speed_perturb),
                "median_frames": cfg.infer.median_frames,
                "smooth_kernel": list(cfg.infer.smooth_kernel),
                "event_score": cfg.infer.event_score,
                "min_event_seconds": cfg.infer.min_event_seconds,
                "merge_gap_seconds": cfg.infer.merge_gap_seconds,
            }
        ),
        "sed.model": cfg.model.name,
        "sed.frontend": frontend,
        "sed.precision": "float32" if calibration is None else "int8",
        **{k: str(v) for k, v in (extra_metadata or {}).items()},
    }
    del graph.metadata_props[:]
    for k, v in meta.items():
        graph.metadata_props.add(key=k, value=v)
    with atomic_path(path) as tmp_path:
        onnx.save(graph, str(tmp_path))
    loaded = load_onnx(path, threads=1)
    scores = loaded.scorer.raw(x.numpy())
    with torch.no_grad():
        ref = wrapper(x)
    diff = max(float(np.abs(scores[k] - r.numpy()).max()) for k, r in zip(names, ref, strict=True))
    report = {"outputs": names, "frontend": frontend, "max_abs_diff": diff, "path": str(path)}
    if calibration is not None:
        # logits of an int8 graph drift most where probabilities saturate; what users see is
        # the probabilities, on recordings like theirs
        worst = 0.0
        for i in range(0, len(calibration), 8):
            xs = torch.from_numpy(np.ascontiguousarray(calibration[i : i + 8], np.float32))
            scores = loaded.scorer.raw(xs.numpy())
            with torch.no_grad():
                ref = wrapper(xs)
            for k, r in zip(names, ref, strict=True):
                p = torch.sigmoid(torch.from_numpy(scores[k]))
                worst = max(worst, float((p - torch.sigmoid(r)).abs().max()))
        report["int8_max_prob_diff"] = worst
        report["calibration_windows"] = len(calibration)
    return report


# --------------------------------------------------------------------------------------------------
# onnxruntime backend
# --------------------------------------------------------------------------------------------------


def _session(model_bytes: bytes, threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    # one graph at a time: parallelism comes from the intra-op threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # the arena grows in powers of two and never shrinks: without it peak memory is the
    # model's activations for one batch (measured: 1.7 -> 0.76 GB at batch 16, b0, 10 s windows)
    opts.enable_cpu_mem_arena = False
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


class OnnxScorer:
    """Exported models run by onnxruntime, one member each (their recording scores are averaged
    by the engine, as the folds of an experiment).

    Args:
        sessions: onnxruntime sessions of graphs with input ``feats`` and :data:`OUTPUTS`.
        time_reduction: the models' time reduction r.
    """

    def __init__(self, sessions: Sequence[Any], time_reduction: int) -> None:
        self.sessions = list(sessions)
        self.time_reduction = int(time_reduction)
        self.names = [[o.name for o in s.get_outputs()] for s in self.sessions]

    def raw(self, feats: np.ndarray, index: int = 0) -> dict[str, np.ndarray]:
        """Logits of one session for features (B, n_mels, W)."""
        out = self.sessions[index].run(self.names[index], {"feats": feats})
        return dict(zip(self.names[index], out, strict=True))

    def __call__(self, feats: np.ndarray) -> WindowScores:
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        probs: dict[str, list[np.ndarray]] = {}
        for i in range(len(self.sessions)):
            for k, v in self.raw(feats, i).items():
                # torch's sigmoid: the same numbers as the torch backend, no overflow warnings
                probs.setdefault(k, []).append(torch.sigmoid(torch.from_numpy(v)).numpy())
        act = probs.get("activity_logits")
        return WindowScores(
            np.stack(probs["clip_logits"]),
            np.stack(probs["frame_logits"]),
            None if act is None else np.stack(act)[..., 0],
        )


class OnnxFrontend:
    """The exported log-mel front end: waveform (N,) -> (n_mels, T), as a torch tensor."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input = session.get_inputs()[0].name

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        (out,) = self.session.run(None, {self.input: wave.numpy().astype(np.float32, copy=False)})
        return torch.from_numpy(out)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``sed.*`` metadata of an exported file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def load_onnx(
    path: str | Path, threads: int | None = None, torch_frontend: bool = False
) -> LoadedModel:
    """Load a file written by :func:`export_onnx` as a :class:`LoadedModel`.

    Args:
        path: the ``.onnx`` file.
        threads: onnxruntime intra-op threads (None: its default, all cores).
        torch_frontend: use torch's log-mel front end even when the file holds one.

    Raises:
        ValueError: a file without ``sed.*`` metadata (not written by ``sedkit export``).
    """
    import onnx
    from onnx.utils import Extractor

    path = Path(path)
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    if "sed.classes" not in meta or "sed.features" not in meta:
        raise ValueError(
            f"{path}: no sed metadata (classes, features); export it with sedkit export"
        )
    names = [o.name for o in model.graph.output]
    frontend: Any
    features = FeaturesConf(**json.loads(meta["sed.features"]))
    if meta.get("sed.frontend") == "onnx":
        extractor = Extractor(model)
        body = extractor.extract_model(["feats"], [n for n in OUTPUTS if n in names])
        fe = extractor.extract_model([FRONTEND_PREFIX + "wave"], [FRONTEND_PREFIX + "logmel"])
        for part in (body, fe):
            part.ir_version = model.ir_version
            del part.opset_import[:]
            part.opset_import.extend(model.opset_import)
        scorer_session = _session(body.SerializeToString(), threads)
        frontend = (
            LogMel.from_config(features).eval()
            if torch_frontend
            else OnnxFrontend(_session(fe.SerializeToString(), threads))
        )
    else:
        scorer_session = _session(model.SerializeToString(), threads)
        frontend = LogMel.from_config(features).eval()
    infer = json.loads(meta.get("sed.infer", "{}"))
    thresholds: float | dict[str, float] = 0.5
    if "sed.thresholds" in meta:
        thresholds = {str(k): float(v) for k, v in json.loads(meta["sed.thresholds"]).items()}
    return LoadedModel(
        scorer=OnnxScorer([scorer_session], int(meta.get("sed.time_reduction", "1"))),
        frontend=frontend,
        features=features,
        classes=list(json.loads(meta["sed.classes"])),
        window_seconds=float(infer.get("window_seconds", 10.0)),
        hop_seconds=float(infer.get("hop_seconds", infer.get("window_seconds", 10.0) / 2)),
        # onnxruntime runs here on the CPU
        batch_size=int(infer.get("cpu_batch_size", 4)),
        frame_combine=infer.get("frame_combine", "max"),
        clip_score=infer.get("clip_score", "clip"),
        gate_activity=bool(infer.get("gate_activity", False)),
        views=parse_views(infer.get("tta", []), infer.get("speed_perturb", []), str(path)),
        events=EventRules(
            thresholds=thresholds,
            median=infer.get("median_frames"),
            kernel=infer.get("smooth_kernel") or None,
            score=infer.get("event_score", "max"),
            min_duration=float(infer.get("min_event_seconds", 0.0)),
            merge_gap=float(infer.get("merge_gap_seconds", 0.0)),
        ),
        source=str(path),
    )

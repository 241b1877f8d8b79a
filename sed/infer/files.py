"""``sedkit infer`` as a library: audio files in, scores and detections out.

:func:`collect_files` finds the audio files of the inputs, :func:`load_model` opens an experiment
folder or an exported ONNX file with its inference settings, :func:`infer_files` streams every
file through :class:`sed.infer.stream.StreamingPredictor` and :class:`OutputWriter` writes the
outputs (formats in :mod:`sed.bin.infer_files`). The frame scores go through the experiment's
stage-4 post-processing (:class:`sed.infer.events.EventRules`: smoothing, tuned thresholds, event
rules), so an experiment folder gives the detections stage 4 gives for the same recording.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sed.features.audio import AudioError
from sed.fileio import write_csv, write_json
from sed.infer.events import Event, EventRules, score_dataframe
from sed.infer.file_ids import AUDIO_SUFFIXES as AUDIO_SUFFIXES  # re-exported
from sed.infer.file_ids import collect_files as collect_files  # re-exported
from sed.infer.stream import LoadedModel, StreamingPredictor, StreamResult, audio_info
from sed.infer.writers import write_detections_csv, write_raven_table, write_score_tsv
from sed.utils.progress import progress_bar

log = logging.getLogger(__name__)

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def load_model(
    model: str | Path,
    backend: str = "auto",
    checkpoint: str | None = None,
    folds: Sequence[int] | None = None,
    device: str = "auto",
    amp: str = "off",
    threads: int | None = None,
) -> LoadedModel:
    """An experiment folder (its folds averaged) or an exported ``.onnx`` file.

    Args:
        model: the folder or file.
        backend: ``auto`` (onnx for a ``.onnx`` file, torch for a folder), ``torch`` or ``onnx``.
        checkpoint: torch: ``best | last | step<N>`` (None: the experiment's ``infer.checkpoint``).
        folds: torch: folds to average (None: all with the checkpoint).
        device: torch: ``auto | cpu | cuda[:k]``.
        amp: torch: ``off | bf16 | fp16``.
        threads: onnxruntime intra-op threads.

    Raises:
        FileNotFoundError: no such file or folder, or no fold with the checkpoint.
        ValueError: an ONNX file without sed metadata, folds that disagree, bad thresholds.
    """
    path = Path(model)
    if backend == "auto":
        backend = "onnx" if path.suffix == ".onnx" else "torch"
    if backend == "onnx":
        # imported here: the torch backend does not need onnx, nor the onnx one the models
        from sed.infer.onnx_backend import load_onnx

        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX file not found")
        return load_onnx(path, threads=threads)
    from sed.infer.stream import load_experiment
    from sed.models.loading import default_checkpoint
    from sed.utils.device import resolve_device

    if not path.is_dir():
        raise FileNotFoundError(f"{path}: experiment folder not found")
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of {sorted(AMP_DTYPES)}, got '{amp}'")
    return load_experiment(
        path,
        checkpoint or default_checkpoint(path),
        folds,
        resolve_device(device),
        AMP_DTYPES[amp],
    )


# --------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------


class OutputWriter:
    """Writes each recording's outputs as soon as it is done; tables of all files at the end.

    The formats come from :mod:`sed.infer.writers` (score TSVs, Raven tables, detections CSV);
    frame scores go through :meth:`sed.infer.events.EventRules.apply`, the post-processing of
    stage 4, so ``scores/<id>.tsv`` holds the smoothed scores that the detections come from (as
    stage 4's ``events_*/scores/``).

    Args:
        outdir: output folder.
        classes: class names (C,).
        rules: smoothing, thresholds and event rules.
    """

    def __init__(self, outdir: str | Path, classes: Sequence[str], rules: EventRules) -> None:
        self.outdir = Path(outdir)
        self.classes = list(classes)
        self.rules = rules
        self.clip_rows: list[dict] = []
        self.events: dict[str, list[Event]] = {}
        for sub in ("scores", "window_scores", "raven"):
            (self.outdir / sub).mkdir(parents=True, exist_ok=True)

    def add(self, rid: str, path: Path, res: StreamResult, file_rate: int) -> None:
        """Write the outputs of one recording (its frame and window tables, its Raven table)."""
        self.clip_rows.append(
            {"recording_id": rid, "file": str(path), "duration": round(res.duration, 4)}
            | dict(zip(self.classes, res.clip.tolist(), strict=True))
        )
        win = pd.DataFrame(res.window_clip, columns=self.classes)
        win.insert(0, "offset", np.minimum(res.window_starts + res.window_seconds, res.duration))
        win.insert(0, "onset", res.window_starts)
        write_csv(self.outdir / "window_scores" / f"{rid}.csv", win, float_format="%.6f")
        events: list[Event] = []
        if len(res.frame):
            # sed_scores_eval frames are contiguous: T + 1 boundaries
            timestamps = res.boundaries()
            smoothed, events = self.rules.apply(res.frame, timestamps, self.classes)
            write_score_tsv(
                self.outdir / "scores" / f"{rid}.tsv",
                score_dataframe(smoothed, timestamps, self.classes),
                validate=False,  # score_dataframe checked the boundaries
            )
        else:
            log.warning("%s: shorter than one output frame: no frame scores", path)
        self.events[rid] = events
        # Raven opens the original file: bands default to its own Nyquist frequency
        write_raven_table(
            self.outdir / "raven" / f"{rid}.Table.1.selections.txt", events, file_rate
        )

    def close(self, skipped: Sequence[tuple[str, str]]) -> None:
        """Write the tables over all files: clip scores, detections, skipped files."""
        cols = ["recording_id", "file", "duration", *self.classes]
        write_csv(
            self.outdir / "clip_scores.csv",
            pd.DataFrame(self.clip_rows, columns=cols),
            float_format="%.6f",
        )
        write_detections_csv(self.outdir / "detections.csv", self.events)
        write_csv(self.outdir / "skipped.csv", pd.DataFrame(skipped, columns=["file", "reason"]))


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------


@dataclass
class InferSummary:
    """What :func:`infer_files` did (also written to ``summary.json``)."""

    n_files: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    elapsed_seconds: float = 0.0


def infer_files(
    loaded: LoadedModel,
    predictor: StreamingPredictor,
    files: Sequence[tuple[str, Path]],
    outdir: str | Path,
    rules: EventRules | None = None,
    skipped: Sequence[tuple[str, str]] = (),
    strict: bool = False,
    progress: bool = True,
    argv: Sequence[str] = (),
) -> InferSummary:
    """Predict every file and write the outputs into ``outdir``.

    Args:
        loaded: the model (classes, source and backend for the summary).
        predictor: its streaming predictor (:meth:`LoadedModel.predictor`).
        files: ``[(recording_id, path)]`` (:func:`collect_files`).
        outdir: output folder.
        rules: post-processing (default: the model's own, ``loaded.events``).
        skipped: inputs skipped already, ``[(input, reason)]`` (listed in ``skipped.csv``).
        strict: raise on the first unreadable file instead of listing it and going on.
        progress: show a progress bar (seconds of audio).
        argv: the command line, for ``summary.json``.

    Raises:
        AudioError: with ``strict``, the first file that cannot be read (nothing more is
            written).
    """
    outdir = Path(outdir)
    summary = InferSummary(skipped=list(skipped))
    writer = OutputWriter(outdir, loaded.classes, rules or loaded.events)
    infos: dict[Path, tuple[int, int, int]] = {}
    for _, path in files:
        try:
            infos[path] = audio_info(path)
        except AudioError as e:
            if strict:
                raise
            summary.skipped.append((str(path), str(e)))
    total = sum(n / sr for n, sr, _ in infos.values() if sr)
    start = time.perf_counter()
    bar = progress_bar(
        total=round(total, 1), unit="s", unit_scale=False, desc="sedkit infer", disable=not progress
    )
    with bar:
        for rid, path in files:
            if path not in infos:
                continue
            bar.set_postfix_str(path.name, refresh=False)
            try:
                res = predictor.predict_file(path, progress=bar.update)
            except AudioError as e:
                if strict:
                    raise
                log.warning("skipped: %s", e)
                summary.skipped.append((str(path), str(e)))
                continue
            writer.add(rid, path, res, infos[path][1])
            summary.n_files += 1
            summary.audio_seconds += res.duration
    summary.elapsed_seconds = time.perf_counter() - start
    writer.close(summary.skipped)
    elapsed, seconds = summary.elapsed_seconds, summary.audio_seconds
    info: dict[str, Any] = {
        "model": loaded.source,
        "backend": type(loaded.scorer).__name__,
        "classes": loaded.classes,
        "views": [v.name for v in predictor.views],
        "n_files": summary.n_files,
        "n_skipped": len(summary.skipped),
        "audio_seconds": round(seconds, 3),
        "elapsed_seconds": round(elapsed, 3),
        "real_time_factor": round(seconds / elapsed, 1) if elapsed > 0 else None,
        "argv": list(argv),
    }
    write_json(outdir / "summary.json", info)
    log.info(
        "%d file(s) predicted (%.0f s of audio in %.1f s), %d skipped -> %s",
        summary.n_files,
        seconds,
        elapsed,
        len(summary.skipped),
        outdir,
    )
    return summary

"""Run a trained experiment (its folds averaged) or an exported ONNX model on audio files.

Usage::

    sed infer exp/rfcx/eff/v022 recordings/ more.flac --outdir out/   # torch, fold mean
    sed infer model.onnx recordings/ --outdir out/ --threads 2        # backend from the suffix

Files are streamed in blocks (any length, any sample rate or channel count; wav, flac, ogg, mp3),
scored with sliding windows and written into ``--outdir``:

- ``clip_scores.csv``: recording_id, file, duration, one column per class (recording scores).
- ``window_scores/<id>.csv``: onset, offset, one column per class (clip scores of each window).
- ``scores/<id>.tsv``: frame scores in the ``sed_scores_eval`` format (onset, offset, classes).
- ``detections.csv``: recording_id, onset, offset, label, score (thresholded frame scores).
- ``raven/<id>.Table.1.selections.txt``: the detections as Raven selection tables.
- ``skipped.csv``: file, reason (files that could not be read); ``summary.json``: settings, counts,
  speed.

``<id>`` is the file's path below the folder it was found in, without suffix, ``/`` -> ``__``.
Unreadable files are reported and skipped; the exit status is non-zero only when no file could be
processed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sed.bin.common import setup_logging
from sed.features.audio import AudioError
from sed.fileio import write_csv, write_json
from sed.infer.stream import LoadedModel, StreamResult, audio_info, load_experiment
from sed.utils.progress import progress_bar

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aif", ".aiff")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sed infer",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("model", help="experiment folder (exp/<recipe>/<family>/<version>) or .onnx")
    p.add_argument("inputs", nargs="+", help="audio files or folders (searched recursively)")
    p.add_argument("--outdir", required=True, help="output folder")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnx"],
        help="auto: onnx for a .onnx file, torch for an experiment folder",
    )
    p.add_argument("--checkpoint", default="best", help="torch: best | last | step<N>")
    p.add_argument(
        "--folds",
        default=None,
        help="torch: comma-separated folds to average (default: all with the checkpoint)",
    )
    p.add_argument(
        "--window_seconds",
        type=float,
        default=None,
        help="window length (default: the experiment's infer.window_seconds)",
    )
    p.add_argument(
        "--hop_seconds",
        type=float,
        default=None,
        help="hop between windows (default: the experiment's infer.hop_seconds)",
    )
    p.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="windows per forward (default: the experiment's infer.batch_size on CUDA, "
        "infer.cpu_batch_size on the CPU and with onnx)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch and onnxruntime (default: their own)",
    )
    p.add_argument("--device", default="auto", help="torch: auto | cpu | cuda[:k]")
    p.add_argument(
        "--amp",
        default="off",
        choices=["off", "bf16", "fp16"],
        help="torch: autocast dtype (bf16 is fast on CPUs with AMX)",
    )
    p.add_argument(
        "--gate_activity",
        action="store_true",
        help="multiply frame scores by the activity head's probability",
    )
    p.add_argument("--threshold", type=float, default=0.5, help="detection threshold")
    p.add_argument(
        "--median_frames",
        type=int,
        default=1,
        help="median filter over output frames before detection (odd; 1: none)",
    )
    p.add_argument("--min_duration", type=float, default=0.0, help="shortest detection (s)")
    p.add_argument(
        "--merge_gap", type=float, default=0.0, help="merge detections of a class this close (s)"
    )
    p.add_argument("--block_seconds", type=float, default=30.0, help="audio decoded per block")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def collect_files(inputs: Sequence[str]) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    """Audio files of the inputs with a unique recording id each, and inputs that do not exist.

    A folder gives its audio files (by suffix, recursively, sorted); a file is taken whatever its
    suffix (it was asked for). Ids are paths below the folder without suffix (``/`` -> ``__``);
    a name taken already gets its suffix appended (``soundscape_ogg``), then a number.

    Returns:
        ``[(recording_id, path)]`` and ``[(input, reason)]``.
    """
    files: list[tuple[str, Path]] = []
    missing: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in inputs:
        root = Path(item)
        if root.is_dir():
            found = sorted(
                p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
            )
            pairs = [("__".join(p.relative_to(root).with_suffix("").parts), p) for p in found]
        elif root.is_file():
            pairs = [(root.stem, root)]
        else:
            missing.append((item, "not found"))
            continue
        for rid, path in pairs:
            if rid in seen:  # the same audio in two formats: soundscape.flac, soundscape.ogg
                rid = f"{rid}_{path.suffix.lstrip('.').lower()}"
            base, k = rid, 1
            while rid in seen:  # the same name under two inputs
                k += 1
                rid = f"{base}_{k}"
            seen.add(rid)
            files.append((rid, path))
    return files, missing


# --------------------------------------------------------------------------------------------------
# Outputs (adapter over sed.infer.events / postprocess / writers)
# --------------------------------------------------------------------------------------------------


class OutputWriter:
    """Writes each recording's outputs as soon as it is done; tables of all files at the end.

    The formats come from :mod:`sed.infer.writers` (score TSVs, Raven tables, detections CSV),
    :mod:`sed.infer.events` (frame scores -> events) and :mod:`sed.infer.postprocess` (median
    filter); this class is the one place that calls them.
    """

    def __init__(
        self,
        outdir: Path,
        classes: Sequence[str],
        threshold: float,
        median_frames: int = 1,
        min_duration: float = 0.0,
        merge_gap: float = 0.0,
    ) -> None:
        self.outdir = outdir
        self.classes = list(classes)
        self.threshold = threshold
        self.median_frames = median_frames
        self.min_duration = min_duration
        self.merge_gap = merge_gap
        self.clip_rows: list[dict] = []
        self.events: dict[str, list] = {}
        for sub in ("scores", "window_scores", "raven"):
            (outdir / sub).mkdir(parents=True, exist_ok=True)

    def add(self, rid: str, path: Path, res: StreamResult, file_rate: int) -> None:
        """Write the outputs of one recording (its frame and window tables, its Raven table)."""
        from sed.infer.events import detect_events, score_dataframe
        from sed.infer.postprocess import smooth_frames
        from sed.infer.writers import write_raven_table, write_score_tsv

        self.clip_rows.append(
            {"recording_id": rid, "file": str(path), "duration": round(res.duration, 4)}
            | dict(zip(self.classes, res.clip.tolist(), strict=True))
        )
        win = pd.DataFrame(res.window_clip, columns=self.classes)
        win.insert(0, "offset", np.minimum(res.window_starts + res.window_seconds, res.duration))
        win.insert(0, "onset", res.window_starts)
        write_csv(self.outdir / "window_scores" / f"{rid}.csv", win, float_format="%.6f")
        events: list = []
        if len(res.frame):
            on, off = res.frame_times()
            # sed_scores_eval frames are contiguous: T + 1 boundaries
            timestamps = np.r_[on[:1], off]
            write_score_tsv(
                self.outdir / "scores" / f"{rid}.tsv",
                score_dataframe(res.frame, timestamps, self.classes),
                validate=False,  # score_dataframe checked the boundaries
            )
            frames = res.frame
            if self.median_frames > 1:
                frames = smooth_frames(frames, median=self.median_frames)
            events = detect_events(
                frames,
                timestamps,
                self.classes,
                self.threshold,
                min_duration=self.min_duration,
                merge_gap=self.merge_gap,
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
        from sed.infer.writers import write_detections_csv

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


def load_model(args: argparse.Namespace) -> LoadedModel:
    """The model of ``args.model`` with the chosen backend."""
    path = Path(args.model)
    backend = args.backend
    if backend == "auto":
        backend = "onnx" if path.suffix == ".onnx" else "torch"
    if backend == "onnx":
        from sed.infer.onnx_backend import load_onnx

        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX file not found")
        return load_onnx(path, threads=args.threads)
    from sed.train.trainer import resolve_device

    folds = [int(k) for k in args.folds.split(",")] if args.folds else None
    amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: experiment folder not found")
    return load_experiment(path, args.checkpoint, folds, resolve_device(args.device), amp)


def run(
    loaded: LoadedModel,
    files: Sequence[tuple[str, Path]],
    writer: OutputWriter,
    args: argparse.Namespace,
) -> tuple[int, list[tuple[str, str]], float]:
    """Predict every file; returns (files done, [(file, reason)] skipped, audio seconds)."""
    predictor = loaded.predictor(
        args.window_seconds,
        args.hop_seconds,
        args.batch_size,
        args.gate_activity,
        args.block_seconds,
    )
    skipped: list[tuple[str, str]] = []
    infos: dict[Path, tuple[int, int, int]] = {}
    for _, path in files:
        try:
            infos[path] = audio_info(path)
        except AudioError as e:
            skipped.append((str(path), str(e)))
    total = sum(n / sr for n, sr, _ in infos.values() if sr)
    done, seconds = 0, 0.0
    bar = progress_bar(
        total=round(total, 1),
        unit="s",
        unit_scale=False,
        desc="sed infer",
        disable=args.no_progress,
    )
    with bar:
        for rid, path in files:
            if path not in infos:
                continue
            bar.set_postfix_str(path.name, refresh=False)
            try:
                res = predictor.predict_file(path, progress=bar.update)
            except AudioError as e:
                log.warning("skipped: %s", e)
                skipped.append((str(path), str(e)))
                continue
            writer.add(rid, path, res, infos[path][1])
            done += 1
            seconds += res.duration
    return done, skipped, seconds


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    if args.threads:
        # the front end (and the torch backend) run in this process's torch thread pool
        torch.set_num_threads(args.threads)
    try:
        loaded = load_model(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"sed infer: {e}", file=sys.stderr)
        return 1
    files, skipped = collect_files(args.inputs)
    for item, reason in skipped:
        log.warning("skipped: %s: %s", item, reason)
    outdir = Path(args.outdir)
    writer = OutputWriter(
        outdir,
        loaded.classes,
        args.threshold,
        args.median_frames,
        args.min_duration,
        args.merge_gap,
    )
    start = time.perf_counter()
    done, failed, seconds = run(loaded, files, writer, args)
    elapsed = time.perf_counter() - start
    skipped += failed
    writer.close(skipped)
    write_json(
        outdir / "summary.json",
        {
            "model": loaded.source,
            "backend": type(loaded.scorer).__name__,
            "classes": loaded.classes,
            "n_files": done,
            "n_skipped": len(skipped),
            "audio_seconds": round(seconds, 3),
            "elapsed_seconds": round(elapsed, 3),
            "real_time_factor": round(seconds / elapsed, 1) if elapsed > 0 else None,
            "argv": list(argv) if argv is not None else sys.argv[1:],
        },
    )
    log.info(
        "%d file(s) predicted (%.0f s of audio in %.1f s), %d skipped -> %s",
        done,
        seconds,
        elapsed,
        len(skipped),
        outdir,
    )
    if done == 0:
        print("sed infer: no file could be processed (see skipped.csv)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run a trained experiment (its folds averaged) or an exported ONNX model on audio files.

Usage::

    sedkit infer exp/<recipe>/eff/v022 recordings/ more.flac --outdir out/   # torch, fold mean
    sedkit infer model.onnx recordings/ --outdir out/ --threads 2        # backend from the suffix

An experiment folder brings its own settings: window and hop, test-time augmentation views
(``infer.tta``), activity gating, and stage 4's post-processing (smoothing, event rules and the
per-class thresholds tuned on out-of-fold predictions, ``infer/<checkpoint>/thresholds.json``),
so a recording gets the scores and detections stages 3-4 give it. Options override them.

Files are streamed in blocks (any length, any sample rate or channel count; wav, flac, ogg, mp3),
scored with sliding windows and written into ``--outdir``:

- ``clip_scores.csv``: recording_id, file, duration, one column per class (recording scores).
- ``window_scores/<id>.csv``: onset, offset, one column per class (clip scores of each window).
- ``scores/<id>.tsv``: smoothed frame scores in the ``sed_scores_eval`` format (onset, offset,
  classes), the scores the detections come from.
- ``detections.csv``: recording_id, onset, offset, label, score (thresholded frame scores).
- ``raven/<id>.Table.1.selections.txt``: the detections as Raven selection tables.
- ``skipped.csv``: file, reason (files that could not be read); ``summary.json``: settings, counts,
  speed.
- ``report/<id>.txt``: the detections as HH:MM:SS spans with scores, merged spans and counts per
  hour, for a person to read; ``report/report.json`` and ``report/summary.csv`` over all files
  (``--no-report``: none).

``<id>`` is the file's path below the folder it was found in, without suffix, ``/`` -> ``__``.

An ``.onnx`` file runs on the lite path (:mod:`sed.infer.lite`: numpy log-mel and onnxruntime,
no torch or pandas imported, the same outputs) unless it needs the full path (test-time views
without ``--no_tta``); ``--no-lite`` forces the full path, ``--lite`` the lite one, and ``--nj N``
(lite only) shares the files among N worker processes.
Unreadable files are reported and skipped (``--strict``: the first one stops the run); the exit
status is non-zero only when no file could be processed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sed.bin.common import prog_name

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog_name("sed.bin.infer_files"),
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
    p.add_argument(
        "--checkpoint",
        default=None,
        help="torch: best | last | step<N> (default: the experiment's infer.checkpoint)",
    )
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
        action=argparse.BooleanOptionalAction,
        default=None,
        help="multiply frame scores by the activity head's probability "
        "(default: the experiment's infer.gate_activity)",
    )
    p.add_argument(
        "--no_tta",
        action="store_true",
        help="score the original signal only, without the experiment's infer.tta views",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="one detection threshold for every class (default: stage 4's thresholds.json, "
        "else 0.5)",
    )
    p.add_argument(
        "--median_frames",
        type=int,
        default=None,
        help="median filter over output frames before detection, odd; 1: none "
        "(default: the experiment's infer.median_frames)",
    )
    p.add_argument(
        "--min_duration",
        type=float,
        default=None,
        help="shortest detection in s (default: the experiment's infer.min_event_seconds)",
    )
    p.add_argument(
        "--merge_gap",
        type=float,
        default=None,
        help="merge detections of a class this close, in s (default: the experiment's "
        "infer.merge_gap_seconds)",
    )
    p.add_argument("--block_seconds", type=float, default=30.0, help="audio decoded per block")
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first missing or unreadable file instead of skipping it",
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--lite",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="onnx: the torch-free path (sed.infer.lite); default: it for a .onnx file unless "
        "the file needs the full path (test-time views)",
    )
    p.add_argument(
        "--nj",
        type=int,
        default=1,
        help="lite: worker processes over the files (0: one per core); --threads is shared "
        "among them",
    )
    p.add_argument(
        "--overlap",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="lite: decode and compute features in a second thread while the model runs",
    )
    p.add_argument(
        "--report",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="human reports in <outdir>/report/: <id>.txt (detections as HH:MM:SS, merged "
        "spans, counts per hour), report.json, summary.csv",
    )
    p.add_argument(
        "--report_gap",
        type=float,
        default=2.0,
        help="report: detections of a class at most this many seconds apart are merged",
    )
    return p


def _setup_logging() -> None:
    # sed.bin.common.setup_logging's format, without importing its config stack
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def _main_lite(args: argparse.Namespace, argv: list[str]) -> int | None:
    """The lite path; None when the model needs the full path and ``--lite`` was not given."""
    from sed.features.audio import AudioError
    from sed.infer.lite.model import LiteUnsupported
    from sed.infer.lite.run import Options, collect_files, infer_lite

    files, skipped = collect_files(args.inputs)
    for item, reason in skipped:
        if args.strict:
            print(f"sedkit infer: {item}: {reason} (--strict)", file=sys.stderr)
            return 1
        log.warning("skipped: %s: %s", item, reason)
    opts = Options(
        model=args.model,
        outdir=args.outdir,
        threads=args.threads,
        nj=args.nj,
        window_seconds=args.window_seconds,
        hop_seconds=args.hop_seconds,
        batch_size=args.batch_size,
        gate_activity=args.gate_activity,
        no_tta=args.no_tta,
        threshold=args.threshold,
        median_frames=args.median_frames,
        min_duration=args.min_duration,
        merge_gap=args.merge_gap,
        block_seconds=args.block_seconds,
        overlap=args.overlap,
        strict=args.strict,
        progress=not args.no_progress,
    )
    try:
        summary = infer_lite(opts, files, skipped, argv)
    except LiteUnsupported as e:
        if args.lite:
            print(f"sedkit infer: {e} (--lite)", file=sys.stderr)
            return 1
        log.info("%s: running the full path", e)
        return None
    except (FileNotFoundError, ValueError) as e:
        print(f"sedkit infer: {e}", file=sys.stderr)
        return 1
    except AudioError as e:
        print(f"sedkit infer: {e} (--strict)", file=sys.stderr)
        return 1
    if summary["n_files"] == 0:
        print("sedkit infer: no file could be processed (see skipped.csv)", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    _setup_logging()
    argv_list = list(argv) if argv is not None else sys.argv[1:]
    rc = _dispatch(args, argv_list)
    if rc == 0 and args.report:
        from sed.infer.report import reports_from_infer_outdir  # numpy only

        reports_from_infer_outdir(args.outdir, args.report_gap)
    return rc


def _dispatch(args: argparse.Namespace, argv_list: list[str]) -> int:
    """The lite path for an .onnx file when it can, else the full path."""
    onnx_file = Path(args.model).suffix == ".onnx" and args.backend in ("auto", "onnx")
    if args.lite and not onnx_file:
        print("sedkit infer: --lite runs .onnx files only", file=sys.stderr)
        return 2
    if onnx_file and args.lite is not False:
        rc = _main_lite(args, argv_list)
        if rc is not None:
            return rc
    if args.nj != 1:
        print("sedkit infer: --nj needs the lite path (an .onnx file)", file=sys.stderr)
        return 2
    return _main_full(args, argv_list)


def _main_full(args: argparse.Namespace, argv: list[str]) -> int:
    """The full path: torch (experiment folders) or the torch-loaded onnx backend."""
    import dataclasses

    import torch

    from sed.features.audio import AudioError
    from sed.infer.files import collect_files, infer_files, load_model
    from sed.infer.tta import View

    if args.threads:
        # the front end (and the torch backend) run in this process's torch thread pool
        torch.set_num_threads(args.threads)
    files, skipped = collect_files(args.inputs)
    for item, reason in skipped:
        if args.strict:
            print(f"sedkit infer: {item}: {reason} (--strict)", file=sys.stderr)
            return 1
        log.warning("skipped: %s: %s", item, reason)
    try:
        folds = [int(k) for k in args.folds.split(",")] if args.folds else None
        loaded = load_model(
            args.model,
            args.backend,
            args.checkpoint,
            folds,
            args.device,
            args.amp,
            args.threads,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"sedkit infer: {e}", file=sys.stderr)
        return 1
    rules = loaded.events
    overrides = {
        "thresholds": args.threshold,
        "median": args.median_frames,
        "min_duration": args.min_duration,
        "merge_gap": args.merge_gap,
    }
    rules = dataclasses.replace(rules, **{k: v for k, v in overrides.items() if v is not None})
    predictor = loaded.predictor(
        args.window_seconds,
        args.hop_seconds,
        args.batch_size,
        args.gate_activity,
        args.block_seconds,
        [View()] if args.no_tta else None,
    )
    try:
        summary = infer_files(
            loaded,
            predictor,
            files,
            args.outdir,
            rules,
            skipped,
            strict=args.strict,
            progress=not args.no_progress,
            argv=argv,
        )
    except AudioError as e:
        print(f"sedkit infer: {e} (--strict)", file=sys.stderr)
        return 1
    if summary.n_files == 0:
        print("sedkit infer: no file could be processed (see skipped.csv)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Export a trained fold model to ONNX, with what ``sedkit infer --backend onnx`` needs inside.

Usage::

    sedkit export --expdir exp/<recipe>/eff/v022 --fold 0 --out v022_fold0.onnx [--with-frontend]
    sedkit export --expdir exp/<recipe>/eff/v022 --fold 0 --out v022_int8.onnx --int8 \
        --calibration recordings/   # int8 weights and activations, calibrated on recordings

The graph maps log-mel features ``feats (B, n_mels, T)`` (dynamic batch and time) to
``clip_logits``, ``frame_logits`` (and ``activity_logits``); its metadata holds the classes, the
feature settings and the experiment's inference settings. ``--with-frontend`` also stores the
log-mel front end as a graph (see :mod:`sed.infer.onnx_backend`). The export is checked against
torch on a test input and the largest difference is printed; an int8 export is checked on the
probabilities of its calibration windows. The file reaches ``--out`` only after its check has
passed: a failing export exits 1 and leaves whatever was at ``--out`` untouched.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sed.bin.common import prog_name, setup_logging
from sed.fileio import atomic_path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog_name("sed.bin.export"),
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--expdir", required=True, help="experiment folder (holds fold<k>/)")
    p.add_argument("--fold", type=int, required=True, help="fold to export")
    p.add_argument("--checkpoint", default="best", help="best | last | step<N>")
    p.add_argument("--out", required=True, help="output .onnx file")
    p.add_argument(
        "--with-frontend",
        "--with_frontend",
        dest="with_frontend",
        action="store_true",
        help="also export the log-mel front end (ONNX STFT)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="fail when onnxruntime and torch logits differ by more",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="quantise to int8 (static, per-channel weights; needs --calibration): about 1.5x "
        "faster on CPUs with AVX512-VNNI, a quarter of the size",
    )
    p.add_argument(
        "--calibration",
        nargs="+",
        default=None,
        metavar="AUDIO",
        help="audio files or folders whose windows calibrate the int8 activation ranges "
        "(recordings like the ones you will score)",
    )
    p.add_argument(
        "--calibration_windows", type=int, default=64, help="windows used for calibration"
    )
    p.add_argument(
        "--int8_tolerance",
        type=float,
        default=0.05,
        help="fail when int8 and torch probabilities differ by more on the calibration windows",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.int8 != bool(args.calibration):
        parser.error("--int8 and --calibration go together")
    setup_logging()
    from sed.infer.experiment import load_fold_model
    from sed.infer.onnx_backend import export_onnx

    try:
        model, cfg, classes = load_fold_model(
            args.expdir, args.fold, args.checkpoint, torch.device("cpu")
        )
    except (FileNotFoundError, ValueError) as e:  # ValueError: a checkpoint refused as unsafe
        print(f"sedkit export: {e}", file=sys.stderr)
        return 1
    if cfg.features.kind != "logmel":
        print(
            f"sedkit export: {args.expdir}: features.kind '{cfg.features.kind}': ONNX export "
            "supports log-mel experiments only (run the experiment folder with sedkit infer)",
            file=sys.stderr,
        )
        return 1
    meta = {"sed.expdir": args.expdir, "sed.fold": args.fold, "sed.checkpoint": args.checkpoint}
    # stage 4's tuned thresholds travel with the model, so sedkit infer detects as stage 4 does
    tuned = Path(args.expdir) / "infer" / args.checkpoint / "thresholds.json"
    if tuned.exists():
        from sed.infer.events import EventRules

        meta["sed.thresholds"] = json.dumps(EventRules.read_thresholds(tuned, classes))
    calibration = None
    if args.int8:
        from sed.features.frontend import LogMel
        from sed.infer.files import collect_files
        from sed.infer.quantize import calibration_windows
        from sed.infer.stream import AudioError, StreamingPredictor, TorchScorer, infer_windows

        files, missing = collect_files(args.calibration)
        if missing or not files:
            print(
                f"sedkit export: no calibration audio in {missing or args.calibration}",
                file=sys.stderr,
            )
            return 1
        f, window = cfg.features, infer_windows(cfg)[0]
        # the windows inference will score, side by side (hop = window)
        predictor = StreamingPredictor(
            LogMel.from_config(f).eval(),
            TorchScorer([model]),
            f.sample_rate,
            f.n_fft,
            f.hop_length,
            window,
            window,
        )
        try:
            calibration = calibration_windows(
                [p for _, p in files], predictor, args.calibration_windows
            )
        except AudioError as e:
            print(f"sedkit export: calibration: {e}", file=sys.stderr)
            return 1
    # written beside --out and renamed onto it only once its check has passed: a failed export
    # never replaces a good file
    try:
        with atomic_path(args.out) as tmp:
            report = export_onnx(model, cfg, classes, tmp, args.with_frontend, meta, calibration)
            report["path"] = args.out
            print(json.dumps(report, indent=1))
            failure = _check(report, args)
            if failure:
                raise _Rejected(failure)
    except _Rejected as e:
        print(f"sedkit export: {e}; {args.out} was not written", file=sys.stderr)
        return 1
    return 0


class _Rejected(Exception):
    """An export that failed its check against torch."""


def _check(report: dict[str, Any], args: argparse.Namespace) -> str | None:
    """Why the export fails its tolerance check, or None when it passes."""
    if args.int8:
        if report["int8_max_prob_diff"] > args.int8_tolerance:
            return (
                f"int8 probabilities differ from torch by {report['int8_max_prob_diff']:.3f} > "
                f"{args.int8_tolerance:g} on the calibration windows"
            )
    elif report["max_abs_diff"] > args.tolerance:
        return (
            f"onnxruntime differs from torch by {report['max_abs_diff']:.2e} > {args.tolerance:g}"
        )
    return None


if __name__ == "__main__":
    sys.exit(main())

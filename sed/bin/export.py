"""Export a trained fold model to ONNX, with what ``sed infer --backend onnx`` needs inside.

Usage::

    sed export --expdir exp/rfcx/eff/v022 --fold 0 --out v022_fold0.onnx [--with-frontend]

The graph maps log-mel features ``feats (B, n_mels, T)`` (dynamic batch and time) to
``clip_logits``, ``frame_logits`` (and ``activity_logits``); its metadata holds the classes, the
feature settings and the experiment's inference settings. ``--with-frontend`` also stores the
log-mel front end as a graph (see :mod:`sed.infer.onnx_backend`). The export is checked against
torch on a test input and the largest difference is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch

from sed.bin.common import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sed export",
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    from sed.infer.experiment import load_fold_model
    from sed.infer.onnx_backend import export_onnx

    try:
        model, cfg, classes = load_fold_model(
            args.expdir, args.fold, args.checkpoint, torch.device("cpu")
        )
    except FileNotFoundError as e:
        print(f"sed export: {e}", file=sys.stderr)
        return 1
    meta = {"sed.expdir": args.expdir, "sed.fold": args.fold, "sed.checkpoint": args.checkpoint}
    report = export_onnx(model, cfg, classes, args.out, args.with_frontend, meta)
    print(json.dumps(report, indent=1))
    if report["max_abs_diff"] > args.tolerance:
        print(
            f"sed export: onnxruntime differs from torch by {report['max_abs_diff']:.2e} "
            f"> {args.tolerance:g}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

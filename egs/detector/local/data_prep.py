#!/usr/bin/env python3
"""Stage 0 of the detector recipe: clips/<label>/, clips/negative/, long/ (a user's folder or the
synthetic corpus) -> manifests.

Usage (from the repository root)::

    python egs/detector/local/data_prep.py --datadir /data/owls --outdir data/detector/owls_5fold

Exit status: 0 on success, 2 on a data problem (the message names the file, line and column).
"""

from __future__ import annotations

import argparse
import logging
import sys

from sed.bin.common import positive_int
from sed.data.detector import prepare_detector
from sed.data.manifest import ManifestError


def get_parser() -> argparse.ArgumentParser:
    """Command-line options of detector data preparation."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--datadir",
        default=None,
        help="corpus folder with clips/<label>/ (and clips/negative/), optionally long/ and "
        "reviewed.csv",
    )
    parser.add_argument(
        "--outdir",
        required=True,
        help="folder for the manifests (run.sh: data/detector/<tag>_<K>fold)",
    )
    parser.add_argument("--folds", type=int, default=5, help="number of cross-validation folds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on an unreadable audio file instead of skipping it",
    )
    parser.add_argument(
        "--nj", type=positive_int, default=1, help="threads probing the audio files"
    )
    parser.add_argument(
        "--negative",
        default="negative",
        help="the clip folder without the target species (not a class)",
    )
    parser.add_argument(
        "--long_truth",
        default="auto",
        help="answer key of the long files (file,onset,offset,label): auto (<datadir>/"
        "long_truth.csv when present), none, or a CSV path",
    )
    parser.add_argument(
        "--segment_seconds",
        type=float,
        default=5.0,
        help="stage 3 also scores the long files in windows of this many seconds (0: off)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run data preparation; returns the exit status."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        summary = prepare_detector(
            args.datadir,
            args.outdir,
            n_folds=args.folds,
            seed=args.seed,
            strict=args.strict,
            nj=args.nj,
            negative=args.negative,
            long_truth=args.long_truth,
            segment_seconds=args.segment_seconds,
        )
    except (ManifestError, ValueError) as e:
        print(f"data_prep.py: error: {e}", file=sys.stderr)
        return 2
    recs = summary["recordings"]
    clips = ", ".join(f"{k} {v}" for k, v in sorted(summary["clips"].items()))
    print(f"manifests written to {summary['outdir']}")
    print(f"classes: {' '.join(summary['classes'])}; folds: {summary['folds']}")
    print(f"clips (train): {recs['train']} ({clips}); long files (test): {recs['test']}")
    print(f"reviewed clips with provenance: {summary['reviewed']}")
    if not recs["test"]:
        print("long files: none (no audio under long/)")
    elif summary["long_truth"]:
        print(
            f"long files scored against {summary['long_truth']}: {summary['events']['test']} calls"
        )
    else:
        print("long files: no answer key, stage 5 leaves their score empty")
    if summary["skipped"]:
        print(
            f"skipped: {len(summary['skipped'])} audio file(s), listed in "
            f"{summary['outdir']}/skipped.csv"
        )
    else:
        print("skipped: none")
    return 0


if __name__ == "__main__":
    sys.exit(main())

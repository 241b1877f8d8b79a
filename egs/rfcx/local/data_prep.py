#!/usr/bin/env python3
"""Stage 0 of the rfcx recipe: Kaggle RFCX layout (or a synthetic corpus in it) -> manifests.

Usage (from the repository root)::

    python egs/rfcx/local/data_prep.py --datadir /data/rfcx --outdir data/rfcx/rfcx_5fold --folds 5

Exit status: 0 on success, 2 on a data problem (the message names the file, line and column).
"""

from __future__ import annotations

import argparse
import logging
import sys

from sed.bin.common import positive_int
from sed.data.manifest import ManifestError
from sed.data.rfcx import prepare_rfcx


def get_parser() -> argparse.ArgumentParser:
    """Command-line options of RFCX data preparation."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--datadir",
        default=None,
        help="corpus folder with train/, test/, train_tp.csv, train_fp.csv, sample_submission.csv "
        "(and optionally test_labels.csv)",
    )
    parser.add_argument(
        "--outdir", required=True, help="folder for the manifests (run.sh: data/rfcx/<tag>_<K>fold)"
    )
    parser.add_argument("--folds", type=int, default=5, help="number of cross-validation folds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on a missing or unreadable audio file instead of skipping it",
    )
    parser.add_argument(
        "--nj", type=positive_int, default=1, help="threads probing the audio files"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run data preparation; returns the exit status."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        summary = prepare_rfcx(
            args.datadir,
            args.outdir,
            n_folds=args.folds,
            seed=args.seed,
            strict=args.strict,
            nj=args.nj,
        )
    except ManifestError as e:
        print(f"data_prep.py: error: {e}", file=sys.stderr)
        return 2
    recs, events = summary["recordings"], summary["events"]
    print(f"manifests written to {summary['outdir']}")
    print(f"recordings: {recs['train']} train, {recs['test']} test")
    print(f"events: {events['tp']} tp, {events['fp']} fp")
    print(f"classes: {summary['classes']}; folds: {summary['folds']}")
    skipped = summary["skipped"]
    if skipped:
        print(
            f"skipped: {len(skipped)} audio file(s) and {summary['skipped_events']} annotation(s), "
            f"listed in {summary['outdir']}/skipped.csv"
        )
    else:
        print("skipped: none")
    return 0


if __name__ == "__main__":
    sys.exit(main())

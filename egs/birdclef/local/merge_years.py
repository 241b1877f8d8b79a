#!/usr/bin/env python3
"""Merge BirdCLEF manifests folders (older years, extra collections) into a target year's.

Usage (from the repository root)::

    python egs/birdclef/local/merge_years.py --target data/birdclef/birdclef-2024_5fold \\
        --extra data/birdclef/birdclef-2023_5fold --extra data/birdclef/birdclef-2021_5fold \\
        --outdir data/birdclef/birdclef-2024_merged_5fold --cap 500 --nj 8

Keeps the focal recordings of the target's species, drops duplicates (same xeno-canto / iNat id,
or the same audio bytes), caps each species at --cap recordings (the most recent kept) and
re-makes the folds; see sed/data/birdclef_merge.py. Writes merge_report.csv beside the
manifests. Exit status: 0 on success, 2 on a data problem.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_prep import add_fold_options

from sed.bin.common import positive_int
from sed.data.birdclef_merge import format_summary, merge_birdclef
from sed.data.manifest import ManifestError


def get_parser() -> argparse.ArgumentParser:
    """Command-line options of the BirdCLEF multi-year merge."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--target",
        required=True,
        help="manifests folder of the target year (its classes, test split and corpus.json)",
    )
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        help="manifests folder of another corpus whose focal recordings are added (repeatable)",
    )
    parser.add_argument("--outdir", required=True, help="folder for the merged manifests")
    parser.add_argument(
        "--cap",
        type=positive_int,
        default=None,
        help="most recordings kept per species, the most recent first (default: no cap)",
    )
    add_fold_options(parser)
    parser.add_argument("--nj", type=positive_int, default=1, help="threads hashing audio")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the merge; returns the exit status."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        summary = merge_birdclef(
            args.target,
            args.extra,
            args.outdir,
            cap=args.cap,
            n_folds=args.folds,
            seed=args.seed,
            fold_groups=args.fold_groups,
            cell_degrees=args.cell_degrees,
            season_months=args.season_months,
            min_block=args.min_block,
            nj=args.nj,
        )
    except (ManifestError, ValueError) as e:
        print(f"merge_years.py: error: {e}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

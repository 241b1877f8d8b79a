#!/usr/bin/env python3
"""Stage 0 of the birdclef recipe: a Kaggle BirdCLEF download (2021-2025) -> manifests.

Usage (from the repository root)::

    python egs/birdclef/local/data_prep.py --datadir /data/birdclef-2024 \\
        --outdir data/birdclef/birdclef-2024_5fold --folds 5 --nj 8

Exit status: 0 on success, 2 on a data problem (the message names the file, line and column).
"""

from __future__ import annotations

import argparse
import logging
import sys

from sed.bin.common import positive_int
from sed.data.birdclef import FOLD_GROUPS, GEO_DEFAULTS, YEARS, prepare_birdclef
from sed.data.manifest import ManifestError


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_fold_options(parser: argparse.ArgumentParser) -> None:
    """--folds, --seed, --fold_groups and the geo_temporal block options (shared with
    merge_years.py, which re-makes the folds of a merged corpus the same way)."""
    parser.add_argument("--folds", type=int, default=5, help="number of cross-validation folds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")
    parser.add_argument(
        "--fold_groups",
        choices=["none", *FOLD_GROUPS],
        default="none",
        help="keep recordings of one author (or soundscape site) in one fold; geo_temporal: "
        "keep each dense block of one grid cell and season in one fold (the others stratified)",
    )
    parser.add_argument(
        "--cell_degrees",
        type=_positive_float,
        default=GEO_DEFAULTS["cell_degrees"],
        help="geo_temporal: side of a latitude/longitude grid cell in degrees",
    )
    parser.add_argument(
        "--season_months",
        type=int,
        choices=[1, 2, 3, 4, 6, 12],
        default=GEO_DEFAULTS["season_months"],
        help="geo_temporal: months per season (seasons start in December)",
    )
    parser.add_argument(
        "--min_block",
        type=positive_int,
        default=GEO_DEFAULTS["min_block"],
        help="geo_temporal: recordings a cell x season block needs to be kept in one fold",
    )


def get_parser() -> argparse.ArgumentParser:
    """Command-line options of BirdCLEF data preparation."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--datadir",
        default=None,
        help="the unpacked Kaggle download (train_metadata.csv + train_audio/; 2021: "
        "train_short_audio/; 2025: train.csv + taxonomy.csv) or a synthetic corpus in its layout",
    )
    parser.add_argument(
        "--outdir",
        required=True,
        help="folder for the manifests (run.sh: data/birdclef/<tag>_<K>fold)",
    )
    add_fold_options(parser)
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on a missing or unreadable audio file instead of skipping it",
    )
    parser.add_argument(
        "--nj", type=positive_int, default=1, help="threads probing the audio files"
    )
    parser.add_argument(
        "--year",
        choices=["auto", *map(str, YEARS)],
        default="auto",
        help="the download's BirdCLEF year; auto tells it from the files (a 2024 download "
        "without unlabeled_soundscapes/ reads as 2023)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run data preparation; returns the exit status."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        summary = prepare_birdclef(
            args.datadir,
            args.outdir,
            n_folds=args.folds,
            seed=args.seed,
            strict=args.strict,
            nj=args.nj,
            year=args.year,
            fold_groups=args.fold_groups,
            cell_degrees=args.cell_degrees,
            season_months=args.season_months,
            min_block=args.min_block,
        )
    except ManifestError as e:
        print(f"data_prep.py: error: {e}", file=sys.stderr)
        return 2
    recs, kinds, events = summary["recordings"], summary["kinds"], summary["events"]
    how = "detected" if summary["year_detected"] else "given"
    print(f"BirdCLEF {summary['year']} ({how}): manifests written to {summary['outdir']}")
    print(
        f"recordings: {recs['train']} train, {recs['test']} test, {recs['unlabeled']} unlabeled "
        f"({kinds['focal']} focal, {kinds['soundscape']} soundscape)"
    )
    print(f"clips: {summary['clips']}; events: {events['train']} train, {events['test']} test")
    scored = summary["scored_classes"]
    print(
        f"classes: {summary['classes']} (from {summary['classes_source']})"
        + (f", {scored} scored" if scored is not None else "")
        + f"; folds: {summary['folds']}"
        + (f" grouped by {summary['fold_groups']}" if summary["fold_groups"] else "")
    )
    blocks = summary.get("fold_blocks")
    if blocks is not None:
        print(
            f"geo_temporal: {blocks['blocks']} dense block(s) of >= {args.min_block} recordings "
            f"({args.cell_degrees:g} degree cells x {args.season_months}-month seasons) hold "
            f"{blocks['recordings']} of {recs['train']} train recordings; the others are "
            "stratified one by one"
        )
    if summary["test_audio"] == 0:
        print(
            "test split: empty (test_soundscapes/ holds no audio; Kaggle's visible downloads "
            "hide the test soundscapes)"
        )
    if summary["dropped_secondary"]:
        labels = summary["dropped_secondary_labels"]
        shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
        print(
            f"secondary labels dropped (not classes): {summary['dropped_secondary']} "
            f"({len(labels)} distinct: {shown})"
        )
    skipped = summary["skipped"]
    if skipped:
        print(
            f"skipped: {len(skipped)} audio file(s) with {summary['skipped_clips']} clip(s) and "
            f"{summary['skipped_events']} window label row(s), listed in "
            f"{summary['outdir']}/skipped.csv"
        )
    else:
        print("skipped: none")
    return 0


if __name__ == "__main__":
    sys.exit(main())

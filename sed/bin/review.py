"""Assisted labelling: cut a detector's detections into review segments, review them in the
terminal, merge the decisions into a detector corpus.

Usage::

    python -m sed.bin.review cut out/detections.csv --outdir review/ --min_score 0.5
    python -m sed.bin.review review review/                      # y n u s | r b q ?
    python -m sed.bin.review merge review/ --root data/mydetector [--dry_run]

``cut`` reads ``detections.csv`` of ``sedkit infer --outdir`` (the audio files from
``clip_scores.csv`` beside it) or of stage 4 (give ``--sources <recordings.csv>``), writes
``<outdir>/segments/*.flac`` (each detection with ``--pad`` seconds of context, clipped to the
file), ``<outdir>/review.csv`` and ``<outdir>/skipped.csv``. ``review`` saves every decision to
``<outdir>/decisions.csv`` at once and continues where it stopped. ``merge`` writes ``yes`` clips
to ``<root>/clips/<label>/``, ``no`` clips to ``<root>/clips/negative/`` and their provenance to
``<root>/reviewed.csv``; merging again is a no-op, a changed decision moves the clip.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sed.bin.common import prog_name, setup_logging
from sed.review.cut import cut_segments
from sed.review.merge import merge
from sed.review.player import PLAYERS
from sed.review.reviewer import Reviewer, ReviewOptions
from sed.review.select import ORDERS, choose, merge_overlapping, read_detections
from sed.review.sources import find_checkpoint, resolve_sources
from sed.review.tables import DECISIONS, ReviewError

MODULE = "sed.bin.review"


def _review_csv(path: str) -> Path:
    """A review folder or its review.csv."""
    p = Path(path)
    return p / "review.csv" if p.is_dir() else p


def _default_reviewer() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # getpass raises when no user name can be found (containers)
        return "unknown"


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only when there is one worth reading (not None, False, "" or [])."""

    def _get_help_string(self, action: argparse.Action) -> str:
        d = action.default
        # identity for None/False: 0.0 == False, and a zero default is worth showing
        if (
            d is None
            or d is False
            or d is argparse.SUPPRESS
            or (isinstance(d, str | list) and not d)
        ):
            return action.help or ""
        return super()._get_help_string(action) or ""


def get_parser() -> argparse.ArgumentParser:
    fmt = _Defaults
    p = argparse.ArgumentParser(
        prog=prog_name(MODULE),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{cut,review,merge}")

    c = sub.add_parser(
        "cut", help="detections -> review segments (FLAC) + review.csv", formatter_class=fmt
    )
    c.add_argument("detections", help="detections.csv (recording_id, onset, offset, label, score)")
    c.add_argument("--outdir", required=True, help="review folder to write")
    c.add_argument(
        "--audio",
        nargs="+",
        default=[],
        help="audio folders/files as given to sedkit infer (recording ids made the same way)",
    )
    c.add_argument(
        "--sources",
        nargs="+",
        default=[],
        help="tables recording_id,file|path (clip_scores.csv, a corpus's recordings.csv); "
        "default: clip_scores.csv beside the detections",
    )
    c.add_argument("--pad", type=float, default=1.0, help="context seconds on each side")
    c.add_argument("--min_score", type=float, default=None, help="drop detections scoring below")
    c.add_argument(
        "--labels", default=None, help="comma-separated labels to keep (none given: all)"
    )
    c.add_argument(
        "--max_segments", type=int, default=None, help="keep at most this many (none given: all)"
    )
    c.add_argument(
        "--max_per_label", type=int, default=None, help="keep at most this many per label"
    )
    c.add_argument(
        "--order",
        choices=ORDERS,
        default="top",
        help="with a maximum: top = highest scores; spread = evenly over the score ranks "
        "(borderline detections too)",
    )
    c.add_argument(
        "--merge_overlaps",
        action="store_true",
        help="first join detections of one recording and label that overlap",
    )
    c.add_argument(
        "--merge_gap",
        type=float,
        default=0.0,
        help="with --merge_overlaps: also join detections this many seconds apart",
    )
    c.add_argument(
        "--checkpoint",
        default=None,
        help="model recorded in review.csv (default: summary.json's, or the stage-4 path's)",
    )
    c.add_argument("--strict", action="store_true", help="stop at the first unusable source")

    r = sub.add_parser(
        "review",
        help="review segments in the terminal (decisions.csv, resumable)",
        formatter_class=fmt,
        description="Keys: y yes, n no, u unsure, s skip, r replay, b undo (back one, its "
        "decision removed), q quit, ? help. One keypress on a terminal; one key (or word) per "
        "line when stdin is not one. Every decision is saved at once; a new run continues at the "
        "first undecided segment.",
    )
    r.add_argument("review", help="review folder (or its review.csv)")
    r.add_argument("--reviewer", default=_default_reviewer(), help="name saved with decisions")
    r.add_argument("--decisions", default=None, help="decisions CSV (default: beside review.csv)")
    r.add_argument(
        "--player",
        choices=["auto", *PLAYERS, "none"],
        default="auto",
        help="audio player (auto: the first of play, aplay, afplay on PATH)",
    )
    r.add_argument(
        "--revisit",
        default="",
        help=f"comma-separated decisions to review again ({','.join(DECISIONS)}), e.g. "
        "unsure,skip for a second pass, or no to change 'no' decisions",
    )
    r.add_argument("--rows", type=int, default=16, help="spectrogram height in lines")
    r.add_argument("--width", type=int, default=None, help="line width (default: the terminal's)")
    r.add_argument("--ascii", action="store_true", help="ASCII shades instead of unicode blocks")
    r.add_argument("--png", action="store_true", help="also write <review>/png/<segment>.png")
    r.add_argument("--open_png", action="store_true", help="with --png: open it (xdg-open/open)")

    m = sub.add_parser(
        "merge", help="decisions -> <root>/clips/<label>/ + reviewed.csv", formatter_class=fmt
    )
    m.add_argument("review", help="review folder (or its review.csv)")
    m.add_argument("--root", required=True, help="detector corpus root (--datadir of the recipe)")
    m.add_argument("--decisions", default=None, help="decisions CSV (default: beside review.csv)")
    m.add_argument("--negative", default="negative", help="folder under clips/ for 'no' clips")
    m.add_argument(
        "--keep_padding",
        action="store_true",
        help="write the whole segment (context included) instead of the detection span",
    )
    m.add_argument("--dry_run", action="store_true", help="print what would change, write nothing")
    return p


def _cut(args: argparse.Namespace) -> int:
    dets = read_detections(args.detections)
    sources = resolve_sources(args.detections, args.audio, args.sources)
    if args.merge_overlaps:
        dets = merge_overlapping(dets, args.merge_gap)
    labels = set(args.labels.split(",")) if args.labels else None
    chosen = choose(dets, args.min_score, labels, args.max_segments, args.order, args.max_per_label)
    checkpoint = (
        args.checkpoint if args.checkpoint is not None else find_checkpoint(args.detections)
    )
    res = cut_segments(chosen, sources, args.outdir, args.pad, checkpoint, args.strict)
    print(
        f"{len(res.rows)} segments of {len(dets)} detections -> {Path(args.outdir) / 'review.csv'}"
        + (f"; {len(res.skipped)} skipped (skipped.csv)" if res.skipped else "")
    )
    return 0 if res.rows or not chosen else 1


def _review(args: argparse.Namespace) -> int:
    revisit = [x for x in args.revisit.split(",") if x]
    options = ReviewOptions(
        player=args.player,
        rows=args.rows,
        width=args.width,
        ascii_only=True if args.ascii else None,
        png=args.png,
        open_png=args.open_png,
    )
    Reviewer(_review_csv(args.review), args.reviewer, options, revisit, args.decisions).run()
    return 0


def _merge(args: argparse.Namespace) -> int:
    merge(
        _review_csv(args.review),
        args.root,
        args.decisions,
        args.negative,
        args.keep_padding,
        args.dry_run,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        return {"cut": _cut, "review": _review, "merge": _merge}[args.command](args)
    except (ReviewError, ValueError) as e:
        print(f"{prog_name(MODULE)} {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

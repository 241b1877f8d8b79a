"""Motif mining: the recurring calls (motifs) and odd ones out (discords) of every recording.

Each recording is decoded at --sample_rate, turned into chroma CENS features at --frame_rate
frames/s and self-joined with a matrix profile (stumpy) over windows of --subsequence_seconds;
the --top_k closest non-overlapping window pairs are its motifs. With --ab_join each recording is
also joined with another recording of its species (clips.csv primary label).

Writes <outdir>/motifs.csv (recording_id, kind, rank, onset, offset, partner_recording,
partner_onset, partner_offset, distance; seconds), skipped.csv (unreadable audio files),
parts/ (one CSV per recording: a rerun skips finished recordings), config.json, and with
--clips / --tracks clips/<id>/*.wav and tracks/<id>.wav.

Exit status: 0 on success, 2 on a bad manifest, bad option, an output folder mined with other
settings or, with --strict, at the first unreadable audio file.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sed.bin.common import setup_logging
from sed.data.manifest import ManifestError
from sed.features.audio import AudioError
from sed.motifs.mining import MiningError, MotifConfig, mine_corpus

log = logging.getLogger("sed.motifs")
DEFAULTS = MotifConfig()


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and the default of each option that has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_Formatter)
    p.add_argument("--datadir", required=True, help="manifests of stage 0 (data/<recipe>/...)")
    p.add_argument("--outdir", required=True, help="output folder (created; reruns resume)")
    p.add_argument("--split", default="train", help="recordings.csv split to mine")
    p.add_argument("--top_k", type=int, default=DEFAULTS.top_k, help="motifs per recording")
    p.add_argument(
        "--n_discords", type=int, default=DEFAULTS.n_discords, help="discords per recording"
    )
    p.add_argument(
        "--frame_rate", type=float, default=DEFAULTS.frame_rate, help="CENS frames per second"
    )
    p.add_argument(
        "--subsequence_seconds",
        type=float,
        default=DEFAULTS.subsequence_seconds,
        help="motif window length in seconds",
    )
    p.add_argument(
        "--sample_rate",
        type=int,
        default=DEFAULTS.sample_rate,
        help="Hz audio is decoded and resampled to",
    )
    p.add_argument(
        "--fmin", type=float, default=DEFAULTS.fmin, help="lowest frequency of the chroma (Hz)"
    )
    p.add_argument("--nj", type=int, default=1, help="worker processes")
    p.add_argument("--clips", action="store_true", help="write clips/<id>/*.wav of each motif")
    p.add_argument(
        "--tracks", action="store_true", help="write tracks/<id>.wav: the motifs one after another"
    )
    p.add_argument(
        "--ab_join",
        action="store_true",
        help="also join each recording with another of its species (needs clips.csv)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first missing or undecodable audio file (exit 2) instead of listing "
        "it in skipped.csv",
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    from sed.data.corpus import Corpus

    try:
        cfg = MotifConfig(
            sample_rate=args.sample_rate,
            frame_rate=args.frame_rate,
            subsequence_seconds=args.subsequence_seconds,
            top_k=args.top_k,
            n_discords=args.n_discords,
            fmin=args.fmin,
        )
        corpus = Corpus.load(args.datadir)
        summary = mine_corpus(
            corpus,
            args.outdir,
            cfg,
            split=args.split,
            nj=args.nj,
            clips=args.clips,
            tracks=args.tracks,
            ab_join=args.ab_join,
            strict=args.strict,
            progress=not args.no_progress,
        )
    except (ManifestError, MiningError, FileNotFoundError, ValueError) as e:
        print(f"motifs: error: {e}", file=sys.stderr)
        return 2
    except AudioError as e:
        print(f"motifs: error: {e} (--strict: stopped at the first bad file)", file=sys.stderr)
        return 2
    log.info(
        "%d recordings: %d mined, %d done before, %d skipped (see skipped.csv); %d rows",
        summary["recordings"],
        summary["mined"],
        summary["resumed"],
        len(summary["skipped"]),
        summary["rows"],
    )
    print(summary["motifs_csv"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

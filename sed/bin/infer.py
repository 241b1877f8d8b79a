"""Stage 3: out-of-fold and test predictions of every fold over whole recordings.

One job predicts everything; or ``--nparts N`` jobs (``--part 1..N``, e.g. a Slurm job array)
each predict every N-th recording into ``infer/<checkpoint>/parts/part<J>.h5`` and
``--merge N`` joins them into the same outputs. ``--fold k`` predicts with fold k's model only
(out-of-fold: its held-out recordings; test: that model alone); the files record the folds used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sed.bin.common import setup_logging
from sed.data.corpus import Corpus
from sed.infer.experiment import (
    merge_parts,
    part_inputs,
    part_is_current,
    predict_experiment,
    save_part,
    write_predictions,
)
from sed.models.loading import default_checkpoint


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--expdir", required=True, help="experiment folder (holds fold<k>/)")
    p.add_argument("--datadir", required=True, help="manifests of stage 0 (data/<recipe>/...)")
    p.add_argument("--dumpdir", required=True, help="root of the feature dumps (dump/<recipe>/...)")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="best | last | step<N> (default: the experiment's infer.checkpoint)",
    )
    p.add_argument(
        "--fold",
        default="all",
        help="all, or the fold(s) whose models predict (k or k1,k2)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--part", type=int, default=None, help="this job's share, 1..nparts")
    p.add_argument(
        "--overwrite", action="store_true", help="predict a share again even if it is complete"
    )
    p.add_argument("--nparts", type=int, default=1, help="jobs the recordings are split over")
    p.add_argument(
        "--merge", type=int, default=None, metavar="N", help="join parts 1..N into the outputs"
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.part is not None and not 1 <= args.part <= args.nparts:
        parser.error(f"--part must be in 1..{args.nparts} (--nparts), got {args.part}")
    if args.merge is not None and args.part is not None:
        parser.error("--merge and --part exclude each other")
    if args.nparts > 1 and args.part is None:
        parser.error(f"--nparts {args.nparts} needs --part (which share this job predicts)")
    try:
        folds = None if args.fold == "all" else [int(k) for k in args.fold.split(",")]
    except ValueError:
        parser.error(f"--fold must be 'all' or fold indices like 0 or 0,2, got '{args.fold}'")
    setup_logging()
    checkpoint = args.checkpoint or default_checkpoint(args.expdir)
    corpus = Corpus.load(args.datadir)
    outdir = Path(args.expdir) / "infer" / checkpoint
    parts = outdir / "parts"
    if args.merge is not None:
        paths = [parts / f"part{j}.h5" for j in range(1, args.merge + 1)]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            print(f"sed.bin.infer: missing parts: {', '.join(missing)}", file=sys.stderr)
            return 1
        print(write_predictions(merge_parts(paths), corpus, outdir))
        for p in paths:
            p.unlink()
        if not any(parts.iterdir()):
            parts.rmdir()
        return 0
    inputs = None
    if args.part is not None:
        inputs = part_inputs(
            args.expdir, corpus, args.dumpdir, checkpoint, args.part, args.nparts, folds
        )
        if not args.overwrite and part_is_current(parts / f"part{args.part}.h5", inputs):
            # a rerun after other tasks of the array failed: this share is done
            print(f"part {args.part} of {args.nparts} is complete (same models and data): reused")
            return 0
    try:
        pred = predict_experiment(
            args.expdir,
            corpus,
            args.dumpdir,
            checkpoint,
            args.device,
            not args.no_progress,
            args.part or 1,
            args.nparts,
            folds,
        )
    except FileNotFoundError as e:
        print(f"sed.bin.infer: {e}", file=sys.stderr)
        return 1
    if args.part is None:
        print(write_predictions(pred, corpus, outdir))
    else:
        parts.mkdir(parents=True, exist_ok=True)
        save_part(pred, parts / f"part{args.part}.h5", inputs)
        print(parts / f"part{args.part}.h5")
    return 0


if __name__ == "__main__":
    sys.exit(main())

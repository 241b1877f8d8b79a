"""Stage 3: out-of-fold and test predictions of every fold over whole recordings.

One job predicts everything; or ``--nparts N`` jobs (``--part 1..N``, e.g. a Slurm job array)
each predict every N-th recording into ``infer/<checkpoint>/parts/part<J>.h5`` and
``--merge N`` joins them into the same outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sed.bin.common import setup_logging
from sed.data.corpus import Corpus
from sed.infer.experiment import (
    merge_parts,
    predict_experiment,
    save_part,
    write_predictions,
)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--expdir", required=True, help="experiment folder (holds fold<k>/)")
    p.add_argument("--datadir", default="data/rfcx", help="manifests of stage 0")
    p.add_argument("--dumpdir", default="dump/rfcx", help="root of the feature dumps")
    p.add_argument("--checkpoint", default="best", help="best | last | step<N>")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--part", type=int, default=None, help="this job's share, 1..nparts")
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
    setup_logging()
    corpus = Corpus.load(args.datadir)
    outdir = Path(args.expdir) / "infer" / args.checkpoint
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
    pred = predict_experiment(
        args.expdir,
        corpus,
        args.dumpdir,
        args.checkpoint,
        args.device,
        not args.no_progress,
        args.part or 1,
        args.nparts,
    )
    if args.part is None:
        print(write_predictions(pred, corpus, outdir))
    else:
        parts.mkdir(parents=True, exist_ok=True)
        save_part(pred, parts / f"part{args.part}.h5")
        print(parts / f"part{args.part}.h5")
    return 0


if __name__ == "__main__":
    sys.exit(main())

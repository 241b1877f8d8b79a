"""Stage 3: out-of-fold and test predictions of every fold over whole recordings."""

from __future__ import annotations

import argparse
import sys

from sed.bin.common import setup_logging
from sed.data.corpus import Corpus
from sed.infer.experiment import infer_experiment


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--expdir", required=True, help="experiment folder (holds fold<k>/)")
    p.add_argument("--datadir", default="data/rfcx", help="manifests of stage 0")
    p.add_argument("--dumpdir", default="dump/rfcx", help="root of the feature dumps")
    p.add_argument("--checkpoint", default="best", help="best | last | step<N>")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    corpus = Corpus.load(args.datadir)
    out = infer_experiment(
        args.expdir, corpus, args.dumpdir, args.checkpoint, args.device, not args.no_progress
    )
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

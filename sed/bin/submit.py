"""Stage 4: write the Kaggle submission from the fold-averaged test predictions."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from sed.bin.common import setup_logging
from sed.data.corpus import Corpus
from sed.infer.writers import write_kaggle_submission

log = logging.getLogger("sed.submit")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--expdir", required=True, help="experiment folder")
    p.add_argument("--datadir", default="data/rfcx", help="manifests of stage 0")
    p.add_argument("--checkpoint", default="best", help="which stage-3 predictions to use")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    corpus = Corpus.load(args.datadir)
    inf = Path(args.expdir) / "infer" / args.checkpoint
    test = pd.read_csv(inf / "test.csv", dtype={"recording_id": str})
    out = write_kaggle_submission(test, corpus.classes, corpus.ids("test"), inf / "submission.csv")
    log.info(
        "wrote %s (%d rows, %d classes)", inf / "submission.csv", len(out), len(corpus.classes)
    )
    print(inf / "submission.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage 4: the recipe's submission from the fold-averaged test predictions, and event outputs.

The submission writer is chosen by name (``--writer``, the recipe's ``submission`` key; see
``sed.infer.submissions.WRITERS``) and writes ``<infer>/submission.csv``. A writer of segment
rows (fixed windows of the test recordings) gets stage 3's ``test_segments.csv``; a writer that
answers yes / no gets a global threshold tuned for its metric on the out-of-fold predictions
(``submission_threshold.json``).

Event outputs (``infer.events``): per-class thresholds are tuned for F-beta on the out-of-fold
predictions (a recording is detected when its frame maximum passes), written to
``thresholds.json``, then for the test and the out-of-fold recordings the frame scores are
smoothed and written as sed_scores_eval TSVs, and the detected events as Raven selection tables
and one ``detections.csv`` (``events_test/`` and ``events_oof/``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from sed.bin.common import setup_logging
from sed.config import ConfigError, load_resolved
from sed.data.corpus import Corpus
from sed.infer.outputs import write_stage4_events
from sed.infer.submission_inputs import submission_context
from sed.infer.submissions import WRITERS

log = logging.getLogger("sed.submit")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--expdir", required=True, help="experiment folder")
    p.add_argument("--datadir", required=True, help="manifests of stage 0")
    p.add_argument("--checkpoint", default="best", help="which stage-3 predictions to use")
    p.add_argument(
        "--writer", required=True, help=f"submission writer, one of: {', '.join(WRITERS)}"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        writer = WRITERS.get(args.writer, "--writer")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    corpus = Corpus.load(args.datadir)
    inf = Path(args.expdir) / "infer" / args.checkpoint
    test = pd.read_csv(inf / "test.csv", dtype={"recording_id": str})
    try:
        context = submission_context(WRITERS.attrs(args.writer), corpus, inf)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = writer(test, corpus.classes, corpus.ids("test"), inf / "submission.csv", context)
    log.info(
        "%s: wrote %s (%d rows, %d classes)",
        args.writer,
        inf / "submission.csv",
        len(out),
        len(corpus.classes),
    )
    print(inf / "submission.csv")
    cfg = load_resolved(Path(args.expdir) / "config.yaml")
    if cfg.infer.events:
        write_stage4_events(cfg, corpus, inf)
        log.info("event outputs: %s, %s", inf / "events_test", inf / "events_oof")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage 4: the Kaggle submission from the fold-averaged test predictions, and event outputs.

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
from sed.config import Config, load_resolved
from sed.data.corpus import Corpus
from sed.fileio import write_json
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
    cfg = load_resolved(Path(args.expdir) / "config.yaml")
    if cfg.infer.events:
        write_events(cfg, corpus, inf)
    return 0


def write_events(cfg: Config, corpus: Corpus, inf: Path) -> None:
    """Thresholds from the OOF predictions, then event outputs for test and OOF recordings."""
    from sed.infer.events import score_dataframes_from_h5
    from sed.infer.postprocess import tune_thresholds
    from sed.infer.writers import class_bands_from_events, write_event_outputs
    from sed.metrics.scoring import frame_max

    oof = pd.read_csv(inf / "oof.csv", dtype={"recording_id": str})
    ids = oof["recording_id"].tolist()
    tuned = tune_thresholds(
        frame_max(inf / "oof.h5", ids), corpus.clip_truth(ids), beta=cfg.infer.threshold_beta
    )
    thresholds = tuned.as_dict(corpus.classes)
    write_json(inf / "thresholds.json", thresholds)
    bands = class_bands_from_events(corpus.events)
    for kind in ("test", "oof"):
        _, events = write_event_outputs(
            score_dataframes_from_h5(inf / f"{kind}.h5"),
            inf / f"events_{kind}",
            {c: thresholds[c]["threshold"] for c in corpus.classes},
            cfg.features.sample_rate,
            median=cfg.infer.median_frames,
            kernel=cfg.infer.smooth_kernel or None,
            score=cfg.infer.event_score,
            min_duration=cfg.infer.min_event_seconds,
            merge_gap=cfg.infer.merge_gap_seconds,
            bands=bands,
        )
        log.info(
            "%s: %d detections in %d recordings -> %s",
            kind,
            sum(len(e) for e in events.values()),
            len(events),
            inf / f"events_{kind}",
        )


if __name__ == "__main__":
    sys.exit(main())

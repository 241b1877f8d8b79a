"""Stage 4's event outputs as one library call: thresholds tuned on out-of-fold predictions,
then smoothed score tables, Raven tables and ``detections.csv`` for test and OOF recordings.

The post-processing is :class:`sed.infer.events.EventRules` built from the experiment's
``infer`` section, the same object ``sedkit infer`` applies to audio files
(:func:`sed.infer.stream.load_experiment` reads the ``thresholds.json`` written here).
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from sed.config import Config
from sed.data.corpus import Corpus
from sed.fileio import write_json
from sed.infer.events import EventRules, score_dataframes_from_h5
from sed.infer.postprocess import tune_thresholds
from sed.infer.writers import class_bands_from_events, write_event_outputs

log = logging.getLogger(__name__)


def oof_frame_max(h5_path: str | Path, ids: list[str]) -> np.ndarray:
    """(N, C) maximum over time of each recording's frame scores in a stage-3 ``.h5``."""
    with h5py.File(h5_path, "r") as h5:
        return np.stack([np.asarray(h5[r]["frame"]).max(axis=0) for r in ids])


def write_stage4_events(cfg: Config, corpus: Corpus, inf: str | Path) -> EventRules:
    """Tune per-class thresholds on the OOF predictions and write the event outputs.

    A class's threshold maximises F-beta (``infer.threshold_beta``) of "the recording's frame
    maximum passes it" against the recording labels.

    Writes into ``inf`` (``<expdir>/infer/<checkpoint>``): ``thresholds.json`` and, for ``test``
    and ``oof``, ``events_<kind>/{scores/*.tsv, raven/*.selections.txt, detections.csv}``.

    Args:
        cfg: the experiment config (``infer`` section: smoothing, event rules, beta).
        corpus: the manifests (recording labels, strong labels for the Raven bands).
        inf: the folder of stage 3's outputs.

    Returns:
        The rules applied (thresholds included).
    """
    inf = Path(inf)
    oof = pd.read_csv(inf / "oof.csv", dtype={"recording_id": str})
    ids = oof["recording_id"].tolist()
    tuned = tune_thresholds(
        oof_frame_max(inf / "oof.h5", ids), corpus.clip_truth(ids), beta=cfg.infer.threshold_beta
    )
    table = tuned.as_dict(corpus.classes)
    write_json(inf / "thresholds.json", table)
    rules = EventRules.from_infer(
        cfg.infer, EventRules.read_thresholds(inf / "thresholds.json", corpus.classes)
    )
    bands = class_bands_from_events(corpus.events)
    for kind in ("test", "oof"):
        _, events = write_event_outputs(
            score_dataframes_from_h5(inf / f"{kind}.h5"),
            inf / f"events_{kind}",
            rules,
            cfg.features.sample_rate,
            bands=bands,
        )
        log.info(
            "%s: %d detections in %d recordings -> %s",
            kind,
            sum(len(e) for e in events.values()),
            len(events),
            inf / f"events_{kind}",
        )
    return rules

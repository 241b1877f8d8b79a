"""Output writers: the Kaggle submission (more formats come with the inference issue)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sed.fileio import write_csv

log = logging.getLogger(__name__)


def write_kaggle_submission(
    scores: pd.DataFrame, classes: Sequence[str], test_ids: Sequence[str], path: str | Path
) -> pd.DataFrame:
    """Write ``recording_id,<class 0>,...,<class C-1>`` with one row per test recording.

    Args:
        scores: recording_id plus one probability column per class.
        classes: output order (classes.txt), e.g. ``s0 .. s23`` for RFCX.
        test_ids: every recording the competition expects, in its order; one without a prediction
            (e.g. an unreadable file) gets zeros and a warning, since Kaggle rejects missing rows.
        path: output CSV.

    Returns:
        The written table.
    """
    missing_cols = [c for c in classes if c not in scores.columns]
    if missing_cols:
        raise ValueError(f"scores lack class columns {missing_cols[:5]}")
    table = scores.set_index("recording_id").reindex(list(test_ids))[list(classes)]
    absent = table.index[table.isna().all(axis=1)].tolist()
    if absent:
        log.warning(
            "%d test recordings have no prediction and get zeros: %s",
            len(absent),
            ", ".join(absent[:10]),
        )
    table = table.fillna(0.0).astype(np.float64)
    table.index.name = "recording_id"
    out = table.reset_index()
    write_csv(path, out, float_format="%.6f")
    return out

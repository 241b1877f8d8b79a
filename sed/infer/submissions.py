"""Registry of submission writers, chosen by name in a recipe's ``submission`` key.

A writer turns the fold-averaged clip scores of the test recordings into the file a competition or
a user expects, ``<infer>/submission.csv``::

    writer(scores, classes, test_ids, path, context=None) -> pd.DataFrame  # the table written

``scores`` holds ``recording_id`` plus one probability column per class; ``test_ids`` lists every
recording the output must cover, in order (one without a prediction gets zeros and a warning). The
file is written atomically (temporary file, then rename). ``context``
(:class:`~sed.infer.birdclef_submissions.SubmissionContext`) carries what some writers need
besides: segment scores, a decision threshold, the scored classes. Registration attributes say
which: ``segments=True`` (rows are the segments of ``test_segments.csv``), ``threshold=<metric>``
(stage 4 tunes a global threshold for that metric on the out-of-fold predictions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from sed.fileio import write_csv
from sed.infer.birdclef_submissions import (
    write_birdclef2021,
    write_birdclef2022,
    write_birdclef_probabilities,
)
from sed.infer.submission_inputs import SubmissionContext
from sed.infer.writers import clip_table, write_kaggle_submission
from sed.registry import Registry

Writer = Callable[..., pd.DataFrame]

WRITERS: Registry[Writer] = Registry("submission writer")


@WRITERS.register("kaggle")
def write_kaggle(
    scores: pd.DataFrame,
    classes: Sequence[str],
    test_ids: Sequence[str],
    path: str | Path,
    context: SubmissionContext | None = None,
) -> pd.DataFrame:
    """``recording_id,<class 0>,...,<class C-1>``: one row per recording, a column per class."""
    return write_kaggle_submission(scores, classes, test_ids, path)


# the BirdCLEF years (shared/BIRDCLEF_FORMATS.md): rows are 5 s segments named by their end second
WRITERS.register("birdclef2021", write_birdclef2021, segments=True, threshold="birdclef2021")
WRITERS.register("birdclef2022", write_birdclef2022, segments=True, threshold="birdclef2022")
for _year in (2023, 2024, 2025):
    WRITERS.register(f"birdclef{_year}", write_birdclef_probabilities, segments=True)


@WRITERS.register("long_csv")
def write_long_csv(
    scores: pd.DataFrame,
    classes: Sequence[str],
    test_ids: Sequence[str],
    path: str | Path,
    context: SubmissionContext | None = None,
) -> pd.DataFrame:
    """``recording_id,label,score``: one row per (recording, class), recordings in ``test_ids``
    order and classes in ``classes`` order (a table for spreadsheets and databases)."""
    wide = clip_table(scores, classes, test_ids)
    out = pd.DataFrame(
        {
            "recording_id": [r for r in test_ids for _ in classes],
            "label": [c for _ in test_ids for c in classes],
            "score": wide.to_numpy(dtype=float).reshape(-1),
        }
    )
    write_csv(path, out, float_format="%.6f")
    return out

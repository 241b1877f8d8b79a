"""Registry of submission writers, chosen by name in a recipe's ``submission`` key.

A writer turns the fold-averaged clip scores of the test recordings into the file a competition or
a user expects, ``<infer>/submission.csv``::

    writer(scores, classes, test_ids, path) -> pd.DataFrame  # the table written

``scores`` holds ``recording_id`` plus one probability column per class; ``test_ids`` lists every
recording the output must cover, in order (one without a prediction gets zeros and a warning). The
file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from sed.fileio import write_csv
from sed.infer.writers import clip_table, write_kaggle_submission
from sed.registry import Registry

Writer = Callable[[pd.DataFrame, Sequence[str], Sequence[str], Path], pd.DataFrame]

WRITERS: Registry[Writer] = Registry("submission writer")

# recording_id,<class 0>,...,<class C-1>: one row per recording, a column per class
WRITERS.register("kaggle", write_kaggle_submission)


@WRITERS.register("long_csv")
def write_long_csv(
    scores: pd.DataFrame, classes: Sequence[str], test_ids: Sequence[str], path: str | Path
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

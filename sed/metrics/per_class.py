"""Per-class scores, for the tables stage 5 writes beside its overall metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["per_class_ap"]


def per_class_ap(truth: np.ndarray, scores: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """Average precision (scikit-learn) and positives of each class; NaN without a positive."""
    from sklearn.metrics import average_precision_score

    ap = [
        float(average_precision_score(truth[:, j], scores[:, j])) if truth[:, j].any() else np.nan
        for j in range(truth.shape[1])
    ]
    return pd.DataFrame(
        {"class": list(classes), "ap": ap, "positives": truth.sum(axis=0).astype(int)}
    )

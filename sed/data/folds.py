"""Cross-validation folds over recordings, made once per corpus and stored in ``folds.csv``.

The default splitter is multilabel iterative stratification (Sechidis et al., 2011, via the
``iterative-stratification`` package), which keeps every species' recordings spread over the folds
even when a recording carries several species; ``kfold`` (plain shuffled K-fold) is the
alternative when labels should not steer the split.

With ``groups`` (one key per recording, e.g. the author or site of a BirdCLEF recording), every
group lands in one fold, so a validation fold never holds a recorder or place that training has
heard: the splitter then runs over the groups, each carrying the union of its recordings' labels.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
from sklearn.model_selection import KFold

__all__ = ["FOLD_METHODS", "make_folds"]

#: Splitters accepted by :func:`make_folds`.
FOLD_METHODS = ("iterative", "kfold")


def make_folds(
    recording_ids: Sequence[str],
    label_sets: Sequence[Iterable[str]],
    n_folds: int,
    seed: int,
    method: str = "iterative",
    groups: Sequence[Hashable | None] | None = None,
) -> pd.DataFrame:
    """Assign every recording to one of ``n_folds`` folds.

    The assignment depends only on the set of (recording, labels, group) triples and the seed, not
    on the order they are given in: recordings (and groups) are sorted before splitting, so
    listing files in a different order on another machine gives the same folds.

    Args:
        recording_ids: Unique recording ids.
        label_sets: For each recording, the labels it carries (may be empty: such recordings are
            still assigned, spread evenly over the folds).
        n_folds: Number of folds, 2 <= n_folds <= number of recordings.
        seed: Seed of the shuffling and tie breaking.
        method: ``"iterative"`` (multilabel iterative stratification) or ``"kfold"`` (shuffled
            K-fold that ignores the labels).
        groups: One group key per recording (compared as strings), or None. Recordings of a
            group share a fold; the split is made over the groups (stratified over their label
            sets with ``iterative``), so folds balance the number of groups per label, not of
            recordings. An empty key (None, NaN, "") makes the recording a group of its own.

    Returns:
        DataFrame with columns ``recording_id`` (str) and ``fold`` (int64, 0 .. n_folds - 1), one
        row per recording, in the order of ``recording_ids``.

    Raises:
        ValueError: Unknown method, lengths that differ, duplicate ids, or ``n_folds`` out of range
            (more folds than recordings, or than groups).
    """
    if method not in FOLD_METHODS:
        raise ValueError(
            f"unknown fold method {method!r}; expected one of {', '.join(FOLD_METHODS)}"
        )
    ids = [str(r) for r in recording_ids]
    label_sets = [set(map(str, labels)) for labels in label_sets]
    if len(ids) != len(label_sets):
        raise ValueError(
            f"got {len(ids)} recording ids but {len(label_sets)} label sets; expected one per id"
        )
    dup = pd.Series(ids)[pd.Series(ids).duplicated()]
    if len(dup):
        raise ValueError(f"duplicate recording id {dup.iloc[0]!r}")
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)):
        raise ValueError(f"n_folds must be an integer, got {n_folds!r}")
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    if n_folds > len(ids):
        raise ValueError(
            f"n_folds ({n_folds}) is larger than the number of recordings ({len(ids)}); "
            "every fold needs at least one recording"
        )
    if groups is None:
        return _frame(ids, _split(ids, label_sets, n_folds, seed, method))

    groups = list(groups)
    if len(groups) != len(ids):
        raise ValueError(
            f"got {len(ids)} recording ids but {len(groups)} group keys; expected one per id"
        )
    # a recording without a group key is a group of its own; the tuples keep such a group apart
    # from a named group that happens to be spelt like a recording id
    keys = [("g", str(g)) if _named(g) else ("r", r) for r, g in zip(ids, groups, strict=True)]
    members: dict[tuple[str, str], set[str]] = {}
    for key, labels in zip(keys, label_sets, strict=True):
        members.setdefault(key, set()).update(labels)
    if n_folds > len(members):
        raise ValueError(
            f"n_folds ({n_folds}) is larger than the number of groups ({len(members)} among "
            f"{len(ids)} recordings); every fold needs at least one group: use fewer folds or "
            "finer groups"
        )
    names = ["\0".join(k) for k in members]  # a unique string per group, for the sort in _split
    group_fold = dict(
        zip(members, _split(names, list(members.values()), n_folds, seed, method), strict=True)
    )
    return _frame(ids, np.array([group_fold[k] for k in keys], dtype=np.int64))


def _named(group: Hashable | None) -> bool:
    """Whether ``group`` is a real group key (not None, NaN, pandas' NA or blank)."""
    missing = group is None or pd.isna(group)  # pd.isna is an array for a tuple key: not missing
    if isinstance(missing, (bool, np.bool_)) and missing:
        return False
    return bool(str(group).strip())


def _split(
    ids: Sequence[str], label_sets: Sequence[set[str]], n_folds: int, seed: int, method: str
) -> np.ndarray:
    """Fold of each of ``ids`` (unique strings) by ``method``, independent of their order."""
    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    sorted_labels = [label_sets[i] for i in order]
    folds_sorted = np.empty(len(ids), dtype=np.int64)
    placeholder = np.zeros(len(ids))
    if method == "iterative":
        classes = sorted(set().union(*sorted_labels))
        index = {c: j for j, c in enumerate(classes)}
        # Two columns at least: with a single label sklearn would see a "binary" target, which the
        # multilabel splitter refuses; an all-zero column changes nothing in the algorithm.
        y = np.zeros((len(ids), max(len(classes), 2)), dtype=np.int64)
        for row, labels in enumerate(sorted_labels):
            for label in labels:
                y[row, index[label]] = 1
        splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(placeholder, y)
    else:
        splits = KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(placeholder)
    for fold, (_, test_index) in enumerate(splits):
        folds_sorted[test_index] = fold

    folds = np.empty(len(ids), dtype=np.int64)
    folds[order] = folds_sorted
    return folds


def _frame(ids: Sequence[str], folds: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {"recording_id": pd.Series(ids, dtype="str"), "fold": pd.Series(folds, dtype="int64")}
    )

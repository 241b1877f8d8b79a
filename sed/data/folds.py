"""Cross-validation folds over recordings, made once per corpus and stored in ``folds.csv``.

The default splitter is multilabel iterative stratification (Sechidis et al., 2011, via the
``iterative-stratification`` package), which keeps every species' recordings spread over the folds
even when a recording carries several species; ``kfold`` (plain shuffled K-fold) is the
alternative when labels should not steer the split.

With ``groups`` (one key per recording, e.g. the author or site of a BirdCLEF recording), every
group lands in one fold, so a validation fold never holds a recorder or place that training has
heard: the splitter then runs over the groups, each carrying the union of its recordings' labels.

:func:`geo_temporal_groups` makes such keys from where and when a recording was made (geo-temporal
block cross-validation, as BirdCLEF winners validated): recordings in a dense block of one grid
cell and one season share a fold, so no fold is validated on a place and season it trained on;
recordings of sparse blocks (and those without coordinates or date) are stratified one by one.
"""

from __future__ import annotations

import datetime
import math
import re
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
from sklearn.model_selection import KFold

__all__ = ["FOLD_METHODS", "geo_temporal_groups", "make_folds"]

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


# --------------------------------------------------------------------------------------------
# Geo-temporal blocks
# --------------------------------------------------------------------------------------------

_MONTH = re.compile(r"^\s*\d{4}(?:[-/](\d{1,2})(?:[-/ T].*)?|(\d{2})\d{2})\s*$")


def geo_temporal_groups(
    latitudes: Sequence[object],
    longitudes: Sequence[object],
    dates: Sequence[object],
    cell_degrees: float = 5.0,
    season_months: int = 3,
    min_block: int = 5,
) -> list[str | None]:
    """Group keys of geo-temporal blocks, for :func:`make_folds` ``groups``.

    A block is one cell of a ``cell_degrees`` x ``cell_degrees`` latitude/longitude grid in one
    season of ``season_months`` months, whatever the year (the same place in the same season of
    another year is as leaky as the same year). Seasons start in December, so 3-month seasons are
    the meteorological ones (Dec-Feb, Mar-May, ...). A recording in a block of at least
    ``min_block`` recordings gets the key ``<cell>_<season>``, e.g. ``35,-85_m12-02`` (the cell's
    south-west corner in degrees, the season's first and last month); any other recording gets
    None, which :func:`make_folds` makes a group of its own, so sparse recordings are still
    spread by label stratification. With ``season_months=12`` the season is the whole year and
    the date is not needed: spatial blocks, for metadata without dates (BirdCLEF 2022-2024).

    Args:
        latitudes: Degrees north per recording (numbers or text; blank, unparsable or outside
            [-90, 90] is unknown).
        longitudes: Degrees east per recording (outside [-180, 180] is unknown).
        dates: Recording dates: ``YYYY-MM-DD`` text (also ``YYYY/M/D``, ``YYYYMMDD``), or
            date / datetime objects; blank, month 0 or unparsable is unknown.
        cell_degrees: Side of a grid cell in degrees, 0 < cell_degrees <= 180.
        season_months: Months per season; a divisor of 12 (1, 2, 3, 4, 6 or 12).
        min_block: Recordings a block needs to be kept together (>= 1).

    Returns:
        One key per recording, in input order; None for a recording with an unknown latitude,
        longitude or month (month only when ``season_months < 12``), or in a block of fewer
        than ``min_block`` recordings.

    Raises:
        ValueError: Sequences of different lengths or a parameter out of range.
    """
    _check_geo_parameters(cell_degrees, season_months, min_block)
    if not len(latitudes) == len(longitudes) == len(dates):
        raise ValueError(
            f"got {len(latitudes)} latitudes, {len(longitudes)} longitudes and {len(dates)} "
            "dates; expected one of each per recording"
        )
    n_lat = math.ceil(180.0 / cell_degrees)
    n_lon = math.ceil(360.0 / cell_degrees)
    blocks: list[str | None] = []
    for lat_value, lon_value, date in zip(latitudes, longitudes, dates, strict=True):
        lat = _degrees(lat_value, 90.0)
        lon = _degrees(lon_value, 180.0)
        # a whole-year season needs no month: any date (or none) is in it
        month = 1 if season_months == 12 else _month(date)
        if lat is None or lon is None or month is None:
            blocks.append(None)
            continue
        # min(): the north pole and the antimeridian belong to the last cell, not a new one
        i = min(int((lat + 90.0) // cell_degrees), n_lat - 1)
        j = min(int((lon + 180.0) // cell_degrees), n_lon - 1)
        season = (month % 12) // season_months  # December opens season 0
        first = (season * season_months - 1) % 12 + 1
        last = (first + season_months - 2) % 12 + 1
        cell = f"{i * cell_degrees - 90.0:g},{j * cell_degrees - 180.0:g}"
        blocks.append(f"{cell}_" + ("year" if season_months == 12 else f"m{first:02d}-{last:02d}"))
    sizes = Counter(b for b in blocks if b is not None)
    return [b if b is not None and sizes[b] >= min_block else None for b in blocks]


def _check_geo_parameters(cell_degrees: float, season_months: int, min_block: int) -> None:
    """Raise ValueError naming the parameter that is out of range."""
    if (
        isinstance(cell_degrees, bool)
        or not isinstance(cell_degrees, (int, float, np.integer, np.floating))
        or not math.isfinite(cell_degrees)
        or not 0 < cell_degrees <= 180
    ):
        raise ValueError(f"cell_degrees must be a number in (0, 180], got {cell_degrees!r}")
    if (
        isinstance(season_months, bool)
        or not isinstance(season_months, (int, np.integer))
        or season_months < 1
        or 12 % season_months
    ):
        raise ValueError(
            f"season_months must divide the year: 1, 2, 3, 4, 6 or 12, got {season_months!r}"
        )
    if isinstance(min_block, bool) or not isinstance(min_block, (int, np.integer)) or min_block < 1:
        raise ValueError(f"min_block must be an integer >= 1, got {min_block!r}")


def _degrees(value: object, limit: float) -> float | None:
    """``value`` as degrees within [-limit, limit], or None when unknown."""
    try:
        number = float(str(value).strip()) if not isinstance(value, (int, float)) else value
    except ValueError:
        return None
    if isinstance(number, bool) or not math.isfinite(number) or abs(number) > limit:
        return None
    return float(number)


def _month(date: object) -> int | None:
    """Month (1-12) of a date object or ``YYYY-MM-DD`` / ``YYYY/M/D`` / ``YYYYMMDD`` text."""
    if isinstance(date, (datetime.date, pd.Timestamp)):
        return None if pd.isna(date) else int(date.month)
    if date is None or not isinstance(date, str):
        return None
    m = _MONTH.match(date)
    if not m:
        return None
    month = int(m[1] or m[2])
    return month if 1 <= month <= 12 else None

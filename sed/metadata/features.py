"""Metadata features of recordings: where (latitude, longitude, site, elevation) and when (day of
the year, as a point on the unit circle).

Every value comes from ``recordings.csv`` (stage 0), read as text; anything missing or unreadable
(an empty cell, ``2012-00-00``, a latitude of 95) is NaN, which the gradient-boosted trees route
on their own (LightGBM's missing-value branch), so no value is imputed.

The day of the year is encoded as ``sin`` / ``cos`` of ``2 pi (doy - 1) / days_in_year``: 31
December and 1 January are neighbours on the circle, as they are for a migrating bird, while a
plain 1..366 would put them at opposite ends of the axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "BASE_FEATURES",
    "CATEGORICAL",
    "OPTIONAL_FEATURES",
    "MetadataFeatures",
    "build_features",
    "day_of_year_circle",
]

#: always present (NaN where unknown)
BASE_FEATURES = ("latitude", "longitude", "doy_sin", "doy_cos")
#: used when recordings.csv has the column with at least one value
OPTIONAL_FEATURES = ("site", "elevation")
#: features LightGBM treats as categories (integer codes; NaN = unknown)
CATEGORICAL = ("site",)

_RANGES = {"latitude": (-90.0, 90.0), "longitude": (-180.0, 180.0)}


@dataclass
class MetadataFeatures:
    """The feature matrix of every recording.

    Attributes:
        table: one row per recording (index ``recording_id``), one float column per feature in
            ``names`` order; NaN = missing.
        names: the feature names.
        categorical: the names of the categorical features (site codes).
        sites: the site vocabulary, code ``i`` = ``sites[i]`` (empty without a site feature).
    """

    table: pd.DataFrame
    names: list[str]
    categorical: list[str]
    sites: list[str]

    def matrix(self, ids: Sequence[str]) -> np.ndarray:
        """(N, F) float64 features of ``ids``, in their order.

        Raises:
            KeyError: an id that is not a recording of the manifests.
        """
        missing = [r for r in ids if r not in self.table.index]
        if missing:
            raise KeyError(f"recording(s) {missing[:3]} are not in recordings.csv")
        return self.table.loc[list(ids), self.names].to_numpy(dtype=np.float64)


def day_of_year_circle(dates: Sequence[str] | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(sin, cos)`` of the day of the year of ISO dates (``YYYY-MM-DD``), (N,) each.

    Day 1 is angle 0; a leap year's 366 days and a common year's 365 each go once round the
    circle. A date that is empty or not a date gives NaN in both.
    """
    parsed = pd.to_datetime(pd.Series(list(dates), dtype="str"), format="%Y-%m-%d", errors="coerce")
    doy = parsed.dt.day_of_year.to_numpy(dtype=np.float64, na_value=np.nan)
    days = np.where(parsed.dt.is_leap_year.to_numpy(dtype=bool, na_value=False), 366.0, 365.0)
    angle = 2.0 * np.pi * (doy - 1.0) / days
    return np.sin(angle), np.cos(angle)


def _numbers(values: pd.Series, name: str) -> np.ndarray:
    """Floats of a text column; empty, unparsable or out-of-range values are NaN."""
    out = np.array(
        pd.to_numeric(values.astype("str").str.strip(), errors="coerce"),
        dtype=np.float64,
    )
    out[~np.isfinite(out)] = np.nan
    if name in _RANGES:
        lo, hi = _RANGES[name]
        out[(out < lo) | (out > hi)] = np.nan
    return out


def _present(recordings: pd.DataFrame, column: str) -> bool:
    if column not in recordings.columns:
        return False
    text = recordings[column].fillna("").astype("str").str.strip()
    return bool((text != "").any())


def build_features(recordings: pd.DataFrame) -> MetadataFeatures:
    """The metadata features of every row of a ``recordings.csv`` table.

    Args:
        recordings: the manifest (``recording_id`` plus whichever of ``latitude``, ``longitude``,
            ``date``, ``site``, ``elevation`` it has; absent columns give NaN features).

    Returns:
        :class:`MetadataFeatures`; ``site`` is coded over the sorted site names of all
        recordings (names only, no labels: the same codes for every fold and the test set).

    Raises:
        ValueError: the table has no ``recording_id`` column or repeats an id.
    """
    if "recording_id" not in recordings.columns:
        raise ValueError("recordings table has no 'recording_id' column")
    ids = recordings["recording_id"].astype("str")
    if ids.duplicated().any():
        raise ValueError(f"recordings table repeats recording id {ids[ids.duplicated()].iloc[0]!r}")
    n = len(recordings)
    cols: dict[str, np.ndarray] = {}
    for name in ("latitude", "longitude"):
        cols[name] = _numbers(recordings[name], name) if name in recordings else np.full(n, np.nan)
    if "date" in recordings:
        cols["doy_sin"], cols["doy_cos"] = day_of_year_circle(
            recordings["date"].fillna("").astype("str").str.strip()
        )
    else:
        cols["doy_sin"] = cols["doy_cos"] = np.full(n, np.nan)
    names = list(BASE_FEATURES)
    sites: list[str] = []
    if _present(recordings, "site"):
        text = recordings["site"].fillna("").astype("str").str.strip()
        sites = sorted(set(text) - {""})
        code = {s: float(i) for i, s in enumerate(sites)}
        cols["site"] = np.array([code.get(s, np.nan) for s in text], dtype=np.float64)
        names.append("site")
    if _present(recordings, "elevation"):
        cols["elevation"] = _numbers(recordings["elevation"], "elevation")
        names.append("elevation")
    table = pd.DataFrame({k: cols[k] for k in names}, index=pd.Index(ids, name="recording_id"))
    return MetadataFeatures(table, names, [c for c in names if c in CATEGORICAL], sites)

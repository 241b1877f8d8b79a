"""Matrix profiles of multidimensional CENS features: self-joins, AB-joins, motifs and discords.

Distance between two windows of ``m`` frames of a ``(d, T)`` feature series (d = 12 pitch
classes): the mSTAMP distance of ``stumpy.mstump`` over all ``d`` dimensions, i.e. the MEAN over
pitch classes of the z-normalised Euclidean distance between the two windows of that pitch class,
reported divided by ``sqrt(m)`` (:data:`MatrixProfile.distance`; 0 = identical shapes, about
``sqrt(2)`` = unrelated, 2 = opposite) so that windows of any length compare.

Why ``stumpy.mstump`` with z-normalisation and its last (all-dimension) row:

* ``stumpy.stump`` is for one-dimensional series; CENS is twelve series that move together.
* Row ``k`` of ``mstump`` keeps, for every pair of windows, the ``k`` best-agreeing pitch classes.
  With ``k < 12`` a pair may match on a few pitch classes (the flat ones of a background) and
  ignore the rest; the whole pitch-class profile (``k = 12``) is what identifies a call.
* Z-normalising each pitch class inside a window compares the shape of its contour. CENS of a
  stationary background is nearly flat, and without normalisation two background windows are the
  closest pair of a recording. On two synthetic RFCX corpora (30 recordings of 20 s, 2 s
  windows) the top non-normalised motif windows overlapped a call less often than a random
  window did (0.38-0.43 against 0.50-0.59), the z-normalised ones more often (0.60-0.73).
  A pitch class that is flat to the last bit in both windows (``stumpy``'s constant rule) agrees
  (distance 0); flat against moving counts as ``sqrt(m)``.

Silence, NaN and inf: a window holding a non-finite frame (the miner marks silent frames NaN)
gets an infinite distance and is nobody's neighbour; a window that is constant in every pitch
class carries no pattern and is treated the same way (profile ``inf``, index ``-1``).

Active windows: z-normalisation makes the distance blind to loudness, so a faint recurring
background pattern (an insect's pulsed buzz, rain) is as good a motif as a call. A call adds
energy in the band of the chroma, so motif and discord candidates can be limited to windows
louder than the recording's median window (:func:`active_windows`). On 7 synthetic RFCX corpora
(8 recordings of 30 s, one species each, 2 s windows) that raised the share of top-motif
windows on a call from 0.25-0.81 (mean 0.48) to 0.44-0.81 (mean 0.59); chance is 0.21-0.30.

Exclusion zone: the two windows of a motif never overlap, i.e. their starts are more than ``m``
frames apart (a window overlapping itself is not a recurrence), so a self-join needs at least
``2m + 1`` frames; shorter series get an all-``inf`` profile and no motifs.

``stumpy.mstump`` only self-joins; :func:`ab_join` computes the same distance between two series
with numpy matrix products (``stumpy.mass`` per window and pitch class costs ~2 ms a call: ~15 s
for two one-minute recordings). Tests check both joins against a brute-force reference.

With ``normalize=False`` the per-pitch-class distance is the plain Euclidean one (stumpy's
``maamp``), reported on the same ``/ sqrt(m)`` scale (0-1 for CENS).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MatrixProfile",
    "Pair",
    "ab_join",
    "active_windows",
    "self_join",
    "top_discords",
    "top_motifs",
]

#: Cells of one block of the AB distance matrix (rows x columns): bounds the memory of a join of
#: two long recordings to a few hundred MB whatever their length.
_BLOCK_CELLS = 1 << 22


@dataclass(frozen=True)
class MatrixProfile:
    """Nearest neighbour of every window of a series.

    Attributes:
        distance: (L,) float64, ``L = T - m + 1``; distance (module docstring) of window ``i``
            to its nearest neighbour, ``inf`` where it has none.
        index: (L,) int64; start frame of that neighbour (in the other series for an AB-join),
            ``-1`` where it has none.
        m: window length in frames.
        self_join: whether neighbours come from the same series (then never overlapping).
    """

    distance: np.ndarray
    index: np.ndarray
    m: int
    self_join: bool


@dataclass(frozen=True)
class Pair:
    """A window and its nearest neighbour, in frames.

    Attributes:
        start: first frame of the window.
        partner: first frame of its nearest neighbour (in the other series of an AB-join).
        distance: their distance (module docstring).
    """

    start: int
    partner: int
    distance: float


def _check(series: np.ndarray, m: int, name: str) -> np.ndarray:
    series = np.asarray(series, dtype=np.float64)
    if series.ndim != 2:
        raise ValueError(f"{name} must be (d, T) features, got shape {series.shape}")
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 3:
        raise ValueError(f"window length m must be an integer >= 3 frames, got {m!r}")
    return np.ascontiguousarray(series)


def _window_stats(series: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per dimension and window: finite (d, L), constant (d, L) (stumpy: peak-to-peak == 0)."""
    win = np.lib.stride_tricks.sliding_window_view(series, m, axis=1)  # (d, L, m)
    finite = np.isfinite(win).all(axis=2)
    with np.errstate(invalid="ignore"):
        constant = (np.ptp(win, axis=2) == 0) & finite
    return win, finite, constant


def _empty(n_windows: int, m: int, self_join: bool) -> MatrixProfile:
    n = max(n_windows, 0)
    return MatrixProfile(np.full(n, np.inf), np.full(n, -1, dtype=np.int64), m, self_join)


@contextlib.contextmanager
def _exclusion_zone_of(m: int) -> Iterator[None]:
    """stumpy's self-join exclusion zone is ``ceil(m / STUMPY_EXCL_ZONE_DENOM)`` frames around
    each window (default m/4: the neighbour may overlap the window by 3/4). Denominator 1 makes
    it ``m``: neighbours never overlap. The global is restored afterwards."""
    import stumpy

    old = stumpy.config.STUMPY_EXCL_ZONE_DENOM
    stumpy.config.STUMPY_EXCL_ZONE_DENOM = 1
    try:
        yield
    finally:
        stumpy.config.STUMPY_EXCL_ZONE_DENOM = old


@contextlib.contextmanager
def _numba_threads(n: int) -> Iterator[None]:
    """numba's thread count set to ``n`` for the block (restored afterwards)."""
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(old)


def self_join(
    series: np.ndarray, m: int, normalize: bool = True, threads: int = 1
) -> MatrixProfile:
    """Matrix profile of a series against itself (``stumpy.mstump``, all dimensions).

    Args:
        series: features (d, T); NaN / inf frames are allowed (their windows are left out).
        m: window length in frames (>= 3).
        normalize: z-normalise each dimension inside each window (module docstring).
        threads: numba threads of stumpy. One by default: parallelise over recordings instead.
            numba's parallel loops spin-wait for each other, and on a machine whose cores are
            busy one 5-minute self-join took 40 s on 2 threads instead of 2 s on one.

    Returns:
        The profile over ``L = T - m + 1`` windows (empty when ``T < m``); all ``inf`` when no
        two non-overlapping valid windows exist (``T < 2m + 1``).
    """
    series = _check(series, m, "series")
    n_windows = series.shape[1] - m + 1
    if n_windows < m + 2:
        # no window has a non-overlapping partner; stumpy would also refuse T < m
        return _empty(n_windows, m, True)
    _, finite, constant = _window_stats(series, m)
    valid = finite.all(axis=0) & ~constant.all(axis=0)
    if valid.sum() < 2:
        return _empty(n_windows, m, True)

    import stumpy

    with _exclusion_zone_of(m), _numba_threads(threads):
        p, i = stumpy.mstump(series, m, normalize=normalize)
    dist = p[-1] / math.sqrt(m)
    index = i[-1].astype(np.int64)
    # an all-constant window matches every other all-constant window at distance 0: no pattern
    has = (index >= 0) & np.isfinite(dist)
    keep = valid & has
    keep[has] &= valid[index[has]]
    dist = np.where(keep, dist, np.inf)
    index = np.where(keep, index, -1)
    return MatrixProfile(dist, index, m, True)


def ab_join(
    series_a: np.ndarray, series_b: np.ndarray, m: int, normalize: bool = True
) -> MatrixProfile:
    """Nearest window of ``series_b`` for every window of ``series_a`` (same distance as
    :func:`self_join`, no exclusion zone).

    Args:
        series_a: features (d, T_A).
        series_b: features (d, T_B), same ``d``.
        m: window length in frames.
        normalize: as in :func:`self_join`.

    Returns:
        The profile over ``T_A - m + 1`` windows; ``index`` holds start frames in ``series_b``.
    """
    a = _check(series_a, m, "series_a")
    b = _check(series_b, m, "series_b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"series have {a.shape[0]} and {b.shape[0]} dimensions")
    la, lb = a.shape[1] - m + 1, b.shape[1] - m + 1
    if la < 1 or lb < 1:
        return _empty(la, m, False)
    win_a, fin_a, con_a = _window_stats(a, m)
    win_b, fin_b, con_b = _window_stats(b, m)
    valid_a = fin_a.all(axis=0) & ~con_a.all(axis=0)
    valid_b = fin_b.all(axis=0) & ~con_b.all(axis=0)
    za, zb = _prepare(win_a, fin_a, con_a, normalize), _prepare(win_b, fin_b, con_b, normalize)
    if not normalize:
        norm_a, norm_b = (za**2).sum(axis=2), (zb**2).sum(axis=2)  # (d, L)

    best = np.full(la, np.inf)
    arg = np.full(la, -1, dtype=np.int64)
    rows = max(1, _BLOCK_CELLS // max(lb, 1))
    for s in range(0, la, rows):
        e = min(la, s + rows)
        total = np.zeros((e - s, lb))
        for k in range(a.shape[0]):
            dot = za[k, s:e] @ zb[k].T  # (R, L_B)
            if normalize:
                # stumpy's 2m(1 - min(rho, 1)) with rho = dot / m of z-normalised windows
                sq = np.maximum(2.0 * m - 2.0 * dot, 0.0)
                ca, cb = con_a[k, s:e], con_b[k]
                if ca.any() or cb.any():
                    # stumpy's constant rules: both flat agree (0), one flat counts m
                    sq[ca, :] = m
                    sq[:, cb] = m
                    sq[np.ix_(ca, cb)] = 0.0
            else:
                sq = np.maximum(norm_a[k, s:e, None] + norm_b[k, None, :] - 2.0 * dot, 0.0)
            total += np.sqrt(sq)
        total[~valid_a[s:e]] = np.inf
        total[:, ~valid_b] = np.inf
        j = np.argmin(total, axis=1)
        d = total[np.arange(e - s), j]
        ok = np.isfinite(d)
        best[s:e] = np.where(ok, d, np.inf)
        arg[s:e] = np.where(ok, j, -1)
    # mean over dimensions, per-frame scale (as self_join)
    best = best / a.shape[0] / math.sqrt(m)
    return MatrixProfile(best, arg, m, False)


def _prepare(
    win: np.ndarray, finite: np.ndarray, constant: np.ndarray, normalize: bool
) -> np.ndarray:
    """Windows (d, L, m) ready for dot products: z-normalised (constant ones all zero) or raw;
    windows holding a non-finite value are zeroed (they are masked out afterwards)."""
    if normalize:
        mu = win.mean(axis=2, keepdims=True)
        sd = win.std(axis=2, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (win - mu) / sd
        out[constant | ~finite] = 0.0
        return out
    return np.where(finite[..., None], win, 0.0)


def active_windows(power: np.ndarray, m: int, above_median_db: float = 0.0) -> np.ndarray:
    """Windows whose mean frame power is at least ``above_median_db`` dB above the median window.

    Args:
        power: frame power (T,) (``sed.motifs.cens.band_power``); NaN frames count as 0.
        m: window length in frames.
        above_median_db: 0 keeps the louder half of the windows (and those tied with the median).

    Returns:
        ``active (L,)`` bool, ``L = T - m + 1`` (empty when ``T < m``).
    """
    power = np.asarray(power, dtype=np.float64)
    if len(power) < m:
        return np.zeros(0, dtype=bool)
    win = np.lib.stride_tricks.sliding_window_view(np.nan_to_num(power), m).mean(axis=1)
    with np.errstate(divide="ignore"):
        db = 10 * np.log10(win)
    finite = np.isfinite(db)
    if not finite.any():
        return np.zeros(len(win), dtype=bool)
    return finite & (db >= np.median(db[finite]) + above_median_db)


def _overlaps(start: int, taken: list[int], m: int) -> bool:
    return any(abs(start - t) < m for t in taken)


def top_motifs(
    profile: MatrixProfile,
    k: int,
    allowed: np.ndarray | None = None,
    allowed_partner: np.ndarray | None = None,
) -> list[Pair]:
    """The ``k`` closest pairs of windows, no window overlapping a window of an earlier pair.

    Windows are taken in increasing profile distance; a window is skipped when it or its
    partner overlaps a window already taken (in an AB-join: its partner overlaps a partner
    already taken, since partners lie in the other series).

    Args:
        profile: a self-join or AB-join.
        k: pairs wanted.
        allowed: (L,) bool, windows that may start a pair (e.g. :func:`active_windows`);
            None: all.
        allowed_partner: bool over the partner series' windows, which may end a pair; None:
            ``allowed`` for a self-join, all for an AB-join.

    Returns:
        At most ``k`` pairs, closest first (fewer when the series runs out of valid windows).
    """
    taken_a: list[int] = []
    taken_b: list[int] = []
    out: list[Pair] = []
    m = profile.m
    if allowed_partner is None and profile.self_join:
        allowed_partner = allowed
    for i in np.argsort(profile.distance, kind="stable"):
        if len(out) >= k or not np.isfinite(profile.distance[i]):
            break
        j = int(profile.index[i])
        i = int(i)
        if (allowed is not None and not allowed[i]) or (
            allowed_partner is not None and not allowed_partner[j]
        ):
            continue
        if profile.self_join:
            if _overlaps(i, taken_a, m) or _overlaps(j, taken_a, m):
                continue
            taken_a += [i, j]
        else:
            if _overlaps(i, taken_a, m) or _overlaps(j, taken_b, m):
                continue
            taken_a.append(i)
            taken_b.append(j)
        out.append(Pair(i, j, float(profile.distance[i])))
    return out


def top_discords(profile: MatrixProfile, k: int, allowed: np.ndarray | None = None) -> list[Pair]:
    """The ``k`` windows farthest from their nearest neighbour, not overlapping each other
    (windows without any neighbour, e.g. silent ones, are not discords; with ``allowed`` (L,)
    bool, only those windows are candidates).

    Returns:
        At most ``k`` pairs (window, its nearest neighbour), farthest first.
    """
    taken: list[int] = []
    out: list[Pair] = []
    finite = np.isfinite(profile.distance)
    if allowed is not None:
        finite = finite & allowed
    order = np.argsort(np.where(finite, -profile.distance, np.inf), kind="stable")
    for i in order:
        if len(out) >= k or not finite[i]:
            break
        i = int(i)
        if _overlaps(i, taken, profile.m):
            continue
        taken.append(i)
        out.append(Pair(i, int(profile.index[i]), float(profile.distance[i])))
    return out

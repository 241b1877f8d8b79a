"""Event-level metrics of frame scores against strong labels, through ``sed_scores_eval``.

:func:`event_report` computes, from one score table per recording (``sed_scores_eval`` format:
onset, offset, one column per class) and the strong labels:

- ``psds1`` / ``psds2``: Polyphonic Sound Detection Score with the DCASE 2021-2023 task 4
  settings (:data:`PSDS1`, :data:`PSDS2`), threshold-independent (exact PSD-ROC, Ebbers 2022).
- ``collar_f1``: collar-based F1 (onset collar 200 ms, offset collar max(200 ms, 20 % of the
  event)) at each class's best threshold, macro-averaged over classes.
- ``intersection_f1``: intersection-based F1 (DTC = GTC = 0.5) at each class's best threshold,
  macro-averaged.
- ``collar_f1_fixed`` / ``intersection_f1_fixed``: the same at one fixed threshold (0.5 by
  default), the number a deployed detector with that threshold would get.
- ``clip_map`` / ``clip_auc`` / ``clip_lwlrap``: per-class average precision and ROC-AUC
  (scikit-learn) and lwlrap of clip scores (each recording's frame maximum; a recording is
  positive for a class if it holds an event of the class), macro-averaged over the classes where
  they are defined.

The best-threshold F1 values choose thresholds on the data they score, so they are optimistic;
compare them between systems, and use the fixed-threshold values for what to expect in use.

Classes without any ground-truth event in the evaluated set have no event-level metric
(``sed_scores_eval`` cannot define their true positive rate): they are left out of PSDS and the
event F1 macro averages (their rows in the per-class table are NaN) and counted in
``n_classes_without_events``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from sed.metrics.lwlrap import lwlrap

with warnings.catch_warnings():
    # sed_scores_eval imports dcase_util, which warns that pkg_resources is deprecated
    warnings.filterwarnings("ignore", message=".*pkg_resources", category=UserWarning)
    from sed_scores_eval import collar_based, intersection_based
    from sed_scores_eval.base_modules.scores import validate_score_dataframe

log = logging.getLogger(__name__)

__all__ = [
    "COLLAR",
    "INTERSECTION_F1",
    "PSDS1",
    "PSDS2",
    "event_metrics",
    "event_report",
    "ground_truth_from_events",
    "merge_overlapping",
]

# DCASE 2021-2023 task 4 scenarios (alpha_st = 1 in both, max eFPR 100 per hour).
PSDS1: dict[str, Any] = {
    "dtc_threshold": 0.7,
    "gtc_threshold": 0.7,
    "cttc_threshold": None,
    "alpha_ct": 0.0,
    "alpha_st": 1.0,
    "max_efpr": 100.0,
}
PSDS2: dict[str, Any] = {
    "dtc_threshold": 0.1,
    "gtc_threshold": 0.1,
    "cttc_threshold": 0.3,
    "alpha_ct": 0.5,
    "alpha_st": 1.0,
    "max_efpr": 100.0,
}
# DCASE collar-based F1 (sed_eval's defaults) and the intersection-based F1 of the DESED baseline
COLLAR: dict[str, float] = {"onset_collar": 0.2, "offset_collar": 0.2, "offset_collar_rate": 0.2}
INTERSECTION_F1: dict[str, float] = {"dtc_threshold": 0.5, "gtc_threshold": 0.5}

GroundTruth = Mapping[str, Sequence[tuple[float, float, str]]]


class _WritableFrame(pd.DataFrame):
    """A DataFrame whose ``to_numpy()`` returns a writable copy.

    With pandas >= 3 (copy-on-write), ``to_numpy()`` returns a read-only view, and the Cython
    detection code of sed_scores_eval 0.0.4 rejects read-only buffers ("buffer source array is
    read-only"). sed_scores_eval calls ``df[classes].to_numpy()``; ``_constructor`` keeps that
    selection of this class.
    """

    @property
    def _constructor(self) -> type[_WritableFrame]:
        return _WritableFrame

    def to_numpy(self, *args: Any, **kwargs: Any) -> np.ndarray:  # type: ignore[override]
        return np.array(super().to_numpy(*args, **kwargs))


def merge_overlapping(
    events: Sequence[tuple[float, float, str]],
) -> list[tuple[float, float, str]]:
    """Merge overlapping or touching events of the same class (sorted by onset, then label).

    ``sed_scores_eval`` refuses such ground truth; annotators do produce it, and
    two overlapping calls of one species are one active stretch for frame-level detection.
    """
    out: list[tuple[float, float, str]] = []
    last: dict[str, int] = {}
    for on, off, lab in sorted(events, key=lambda e: (e[0], e[1])):
        i = last.get(lab)
        if i is not None and on <= out[i][1]:
            out[i] = (out[i][0], max(out[i][1], off), lab)
        else:
            last[lab] = len(out)
            out.append((on, off, lab))
    return sorted(out, key=lambda e: (e[0], e[2]))


def ground_truth_from_events(
    events: pd.DataFrame, ids: Sequence[str]
) -> dict[str, list[tuple[float, float, str]]]:
    """Strong labels of ``ids`` from an ``events.csv`` table (``Corpus.events``).

    Only ``tp`` rows count (``fp`` rows mark species known to be absent); every id gets a list,
    empty when it has no event.
    """
    gt: dict[str, list[tuple[float, float, str]]] = {str(r): [] for r in ids}
    ev = events if "kind" not in events.columns else events[events["kind"] == "tp"]
    ev = ev[ev["recording_id"].astype(str).isin(gt)]
    for rid, on, off, lab in zip(
        ev["recording_id"], ev["onset"], ev["offset"], ev["label"], strict=True
    ):
        gt[str(rid)].append((float(on), float(off), str(lab)))
    return gt


def _prepare(
    scores: Mapping[str, pd.DataFrame],
    ground_truth: GroundTruth,
    durations: Mapping[str, float],
    classes: Sequence[str],
) -> tuple[dict[str, pd.DataFrame], dict[str, list[tuple[float, float, str]]], dict[str, float]]:
    """Check inputs; restrict to the scored recordings; clip and merge ground truth."""
    if not scores:
        raise ValueError("no score tables given")
    classes = list(classes)
    known = set(classes)
    ids = sorted(scores)
    no_dur = [r for r in ids if r not in durations]
    if no_dur:
        raise ValueError(f"{len(no_dur)} scored recordings have no duration: {no_dur[:5]}")
    sc, gt, dur = {}, {}, {}
    for rid in ids:
        df = scores[rid]
        _, cols = validate_score_dataframe(df)
        missing = [c for c in classes if c not in cols]
        if missing:
            raise ValueError(f"score table of {rid} lacks class columns {missing[:5]}")
        d = float(durations[rid])
        events = []
        for on, off, lab in ground_truth.get(rid, []):
            if lab not in known:
                raise ValueError(f"ground truth of {rid} has label {lab!r}, not in classes")
            on, off = max(float(on), 0.0), min(float(off), d)
            if off > on:  # an event entirely past the end of the audio cannot be detected
                events.append((on, off, str(lab)))
        sc[rid] = df
        gt[rid] = merge_overlapping(events)
        dur[rid] = d
    return sc, gt, dur


def _clip_table(
    scores: Mapping[str, pd.DataFrame],
    ground_truth: Mapping[str, Sequence[tuple[float, float, str]]],
    classes: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Clip truth (N, C) int and clip scores (N, C) = frame maximum, rows in sorted id order."""
    ids = sorted(scores)
    index = {c: i for i, c in enumerate(classes)}
    truth = np.zeros((len(ids), len(classes)), dtype=np.int8)
    clip = np.zeros((len(ids), len(classes)))
    for n, rid in enumerate(ids):
        clip[n] = scores[rid][list(classes)].to_numpy(dtype=np.float64).max(axis=0)
        for _, _, lab in ground_truth[rid]:
            truth[n, index[lab]] = 1
    return truth, clip


def _clip_metrics(truth: np.ndarray, clip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class AP (NaN without positives) and ROC-AUC (NaN without both labels), each (C,)."""
    n_cls = truth.shape[1]
    ap = np.full(n_cls, np.nan)
    auc = np.full(n_cls, np.nan)
    for c in range(n_cls):
        y = truth[:, c]
        if y.any():
            ap[c] = average_precision_score(y, clip[:, c])
            if not y.all():
                auc[c] = roc_auc_score(y, clip[:, c])
    return ap, auc


def _nanmean(x: np.ndarray | Sequence[float]) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def event_report(
    scores: Mapping[str, pd.DataFrame],
    ground_truth: GroundTruth,
    durations: Mapping[str, float],
    classes: Sequence[str],
    *,
    fixed_threshold: float = 0.5,
    time_decimals: int = 6,
    num_jobs: int = 1,
) -> tuple[dict[str, float], pd.DataFrame]:
    """All event and clip metrics, overall and per class.

    Args:
        scores: ``{recording_id: DataFrame}`` in the ``sed_scores_eval`` format (onset, offset,
            one column per class; see ``sed.infer.events.score_dataframe``); the evaluated set
            is exactly these recordings.
        ground_truth: ``{recording_id: [(onset, offset, label), ...]}`` in seconds. A scored
            recording missing here has no event; extra recordings are ignored. Events are
            clipped to the recording and same-class overlaps merged (:func:`merge_overlapping`).
        durations: ``{recording_id: seconds}`` for every scored recording (PSDS counts false
            positives per hour of audio).
        classes: class names (C,) to evaluate; score columns beyond them are ignored.
        fixed_threshold: threshold of ``collar_f1_fixed`` / ``intersection_f1_fixed``.
        time_decimals: time rounding of ``sed_scores_eval`` (boundary cases of the collars).
        num_jobs: processes ``sed_scores_eval`` may use.

    Returns:
        ``(overall, per_class)``. ``overall`` maps psds1, psds2, collar_f1, intersection_f1,
        collar_f1_fixed, intersection_f1_fixed, clip_map, clip_auc, clip_lwlrap (NaN where
        undefined), n_recordings, n_events, n_classes_without_events to floats. ``per_class``
        is indexed by class with columns n_events, psds1, psds2, collar_f1, collar_threshold,
        intersection_f1, intersection_threshold, collar_f1_fixed, intersection_f1_fixed, ap, auc.
    """
    classes = list(classes)
    sc, gt, dur = _prepare(scores, ground_truth, durations, classes)
    n_events = pd.Series(0, index=classes, dtype=np.int64)
    for events in gt.values():
        for _, _, lab in events:
            n_events[lab] += 1
    evaluated = [c for c in classes if n_events[c] > 0]
    table = pd.DataFrame(index=pd.Index(classes, name="class"))
    table["n_events"] = n_events
    overall: dict[str, float] = {
        "n_recordings": float(len(sc)),
        "n_events": float(n_events.sum()),
        "n_classes_without_events": float(len(classes) - len(evaluated)),
    }
    nan_cols = [
        "psds1",
        "psds2",
        "collar_f1",
        "collar_threshold",
        "intersection_f1",
        "intersection_threshold",
        "collar_f1_fixed",
        "intersection_f1_fixed",
    ]
    for col in nan_cols:
        table[col] = np.nan
    if evaluated:
        # only the evaluated classes' columns, as writable frames (see _WritableFrame)
        ev_scores = {r: _WritableFrame(df[["onset", "offset", *evaluated]]) for r, df in sc.items()}
        for name, setting in (("psds1", PSDS1), ("psds2", PSDS2)):
            if len(evaluated) == 1 and setting["alpha_ct"]:
                # no other class, so no cross-trigger: the same value without the cttc term, and
                # sed_scores_eval 0.0.4 fails on the empty cross-trigger dict of one class
                setting = {**setting, "cttc_threshold": None, "alpha_ct": 0.0}
            value, per_class, _, _ = intersection_based.psds(
                ev_scores, gt, dur, time_decimals=time_decimals, num_jobs=num_jobs, **setting
            )
            overall[name] = float(value)
            for c, v in per_class.items():
                table.loc[c, name] = float(v)
        # the statistics over all thresholds, computed once for the best and the fixed threshold
        common = {"time_decimals": time_decimals, "num_jobs": num_jobs}
        collar_deltas = collar_based.intermediate_statistics_deltas(
            ev_scores, gt, **COLLAR, **common
        )
        f, _, _, thr, _ = collar_based.best_fscore(
            ev_scores, gt, deltas=collar_deltas, **COLLAR, **common
        )
        overall["collar_f1"] = float(f["macro_average"])
        for c in evaluated:
            table.loc[c, ["collar_f1", "collar_threshold"]] = [float(f[c]), float(thr[c])]
        inter_deltas = intersection_based.intermediate_statistics_deltas(
            ev_scores, gt, **INTERSECTION_F1, **common
        )
        f, _, _, thr, _ = intersection_based.best_fscore(
            ev_scores, gt, deltas=inter_deltas, **INTERSECTION_F1, **common
        )
        overall["intersection_f1"] = float(f["macro_average"])
        for c in evaluated:
            table.loc[c, ["intersection_f1", "intersection_threshold"]] = [
                float(f[c]),
                float(thr[c]),
            ]
        f, _, _, _ = collar_based.fscore(
            ev_scores, gt, fixed_threshold, deltas=collar_deltas, **COLLAR, **common
        )
        overall["collar_f1_fixed"] = float(f["macro_average"])
        for c in evaluated:
            table.loc[c, "collar_f1_fixed"] = float(f[c])
        f, _, _, _ = intersection_based.fscore(
            ev_scores, gt, fixed_threshold, deltas=inter_deltas, **INTERSECTION_F1, **common
        )
        overall["intersection_f1_fixed"] = float(f["macro_average"])
        for c in evaluated:
            table.loc[c, "intersection_f1_fixed"] = float(f[c])
    else:
        log.warning("no ground-truth event in the evaluated recordings: event metrics are NaN")
        for name in ("psds1", "psds2", "collar_f1", "intersection_f1"):
            overall[name] = float("nan")
        overall["collar_f1_fixed"] = overall["intersection_f1_fixed"] = float("nan")

    truth, clip = _clip_table(sc, gt, classes)
    ap, auc = _clip_metrics(truth, clip)
    table["ap"] = ap
    table["auc"] = auc
    overall["clip_map"] = _nanmean(ap)
    overall["clip_auc"] = _nanmean(auc)
    overall["clip_lwlrap"] = lwlrap(truth, clip) if truth.any() else float("nan")
    return overall, table


def event_metrics(
    scores: Mapping[str, pd.DataFrame],
    ground_truth: GroundTruth,
    durations: Mapping[str, float],
    classes: Sequence[str],
    **kwargs: Any,
) -> dict[str, float]:
    """The overall numbers of :func:`event_report` (same arguments); see its docstring."""
    return event_report(scores, ground_truth, durations, classes, **kwargs)[0]

"""Tests for sed.metrics.events on small hand-made cases with known values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sed.infer.events import score_dataframe
from sed.metrics.events import (
    event_metrics,
    event_report,
    ground_truth_from_events,
    merge_overlapping,
)

CLASSES = ["a", "b", "c"]
FPS = 10  # 0.1 s frames
DURATION = 10.0
TS = np.round(np.arange(int(DURATION * FPS) + 1) / FPS, 6)

GT = {
    "r1": [(1.0, 2.0, "a"), (5.0, 6.5, "b")],
    "r2": [(2.0, 4.0, "a"), (7.0, 8.0, "c")],
    "r3": [(0.5, 1.5, "b")],
    "r4": [],
}
DUR = dict.fromkeys(GT, DURATION)


def _table(events: list[tuple[float, float, str]], value: float = 0.9) -> pd.DataFrame:
    """Score table that is ``value`` inside the given events and 0 elsewhere."""
    s = np.zeros((len(TS) - 1, len(CLASSES)))
    for on, off, lab in events:
        s[int(round(on * FPS)) : int(round(off * FPS)), CLASSES.index(lab)] = value
    return score_dataframe(s, TS, CLASSES)


def test_perfect_predictions_reach_the_maximum() -> None:
    scores = {r: _table(ev) for r, ev in GT.items()}
    overall, per_class = event_report(scores, GT, DUR, CLASSES)
    for key in ("psds1", "psds2", "collar_f1", "intersection_f1", "clip_map", "clip_auc"):
        assert overall[key] == pytest.approx(1.0), key
    assert overall["collar_f1_fixed"] == 1.0  # 0.9 > 0.5
    assert overall["clip_lwlrap"] == 1.0
    assert overall["n_events"] == 5 and overall["n_recordings"] == 4
    assert per_class["n_events"].tolist() == [2, 2, 1]
    assert per_class["collar_f1"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert event_metrics(scores, GT, DUR, CLASSES) == overall


def test_shuffled_predictions_score_worse() -> None:
    ids = list(GT)
    perfect = {r: _table(GT[r]) for r in ids}
    # every recording gets the predictions of the next one
    shuffled = {r: _table(GT[ids[(i + 1) % len(ids)]]) for i, r in enumerate(ids)}
    good = event_metrics(perfect, GT, DUR, CLASSES)
    bad = event_metrics(shuffled, GT, DUR, CLASSES)
    for key in ("psds1", "psds2", "collar_f1", "intersection_f1", "clip_map"):
        assert bad[key] < good[key] - 0.2, key


def test_half_detected_class_hand_values() -> None:
    # class a: the event of r1 is found, the one of r2 is missed (scores 0 there); b and c perfect.
    # At a's best threshold: tp 1, fp 0, fn 1 -> P 1, R 1/2, F1 2/3; macro over a, b, c = 8/9.
    pred = {r: [e for e in ev if (r, e[2]) != ("r2", "a")] for r, ev in GT.items()}
    scores = {r: _table(ev) for r, ev in pred.items()}
    overall, per_class = event_report(scores, GT, DUR, CLASSES)
    assert per_class.loc["a", "collar_f1"] == pytest.approx(2 / 3)
    assert per_class.loc["a", "intersection_f1"] == pytest.approx(2 / 3)
    assert overall["collar_f1"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    # PSDS of class a: TPR 1/2 at zero false positives and never more -> 1/2 (area / max eFPR)
    assert per_class.loc["a", "psds1"] == pytest.approx(0.5)
    assert overall["psds1"] < 1.0


def test_clip_ap_and_auc_hand_values() -> None:
    # class a positive in r1 and r3; clip maxima r1 .9, r2 .8, r3 .7, r4 .1
    gt = {"r1": [(1.0, 2.0, "a")], "r2": [], "r3": [(3.0, 4.0, "a")], "r4": []}
    peak = {"r1": 0.9, "r2": 0.8, "r3": 0.7, "r4": 0.1}
    scores = {r: _table([(5.0, 5.5, "a")], value=v) for r, v in peak.items()}
    _, per_class = event_report(scores, gt, dict.fromkeys(gt, DURATION), CLASSES)
    # AP: positives at ranks 1 and 3 -> (1/1 + 2/3) / 2;  AUC: 3 of 4 (pos, neg) pairs in order
    assert per_class.loc["a", "ap"] == pytest.approx(5 / 6)
    assert per_class.loc["a", "auc"] == pytest.approx(3 / 4)
    # b and c have no positive recording: AP and AUC undefined
    assert per_class.loc[["b", "c"], ["ap", "auc"]].isna().all().all()


def test_class_without_events_is_left_out() -> None:
    gt = {r: [e for e in ev if e[2] != "c"] for r, ev in GT.items()}
    scores = {r: _table(ev) for r, ev in GT.items()}  # c still predicted somewhere
    overall, per_class = event_report(scores, gt, DUR, CLASSES)
    assert overall["n_classes_without_events"] == 1
    assert np.isnan(per_class.loc["c", "psds1"]) and np.isnan(per_class.loc["c", "collar_f1"])
    assert overall["collar_f1"] == pytest.approx(1.0)  # macro over a and b


def test_merge_overlapping_same_class_only() -> None:
    ev = [(1.0, 3.0, "a"), (2.0, 4.0, "a"), (4.0, 5.0, "a"), (2.5, 3.5, "b"), (6.0, 7.0, "a")]
    # touching (4.0) merges as well: sed_scores_eval rejects connected events
    assert merge_overlapping(ev) == [(1.0, 5.0, "a"), (2.5, 3.5, "b"), (6.0, 7.0, "a")]


def test_overlapping_ground_truth_and_events_past_the_end() -> None:
    gt = {
        "r1": [(1.0, 2.0, "a"), (1.5, 2.0, "a"), (9.5, 12.0, "b"), (11.0, 12.0, "c")],
        "r2": [(2.0, 3.0, "c")],
    }
    # predictions of the merged / clipped truth: a 1-2, b 9.5-10 (the file is 10 s); the c event
    # entirely past the end is dropped
    scores = {"r1": _table([(1.0, 2.0, "a"), (9.5, 10.0, "b")]), "r2": _table([(2.0, 3.0, "c")])}
    overall, per_class = event_report(scores, gt, {"r1": 10.0, "r2": 10.0}, CLASSES)
    assert per_class["n_events"].tolist() == [1, 1, 1]
    assert overall["collar_f1"] == pytest.approx(1.0)


def test_input_errors() -> None:
    scores = {r: _table(ev) for r, ev in GT.items()}
    with pytest.raises(ValueError, match="duration"):
        event_metrics(scores, GT, {"r1": 10.0}, CLASSES)
    with pytest.raises(ValueError, match="not in classes"):
        event_metrics(scores, {"r1": [(1.0, 2.0, "zz")]}, DUR, CLASSES)
    with pytest.raises(ValueError, match="lacks class columns"):
        event_metrics(scores, GT, DUR, [*CLASSES, "d"])
    with pytest.raises(ValueError, match="no score tables"):
        event_metrics({}, GT, DUR, CLASSES)


def test_ground_truth_from_events_keeps_tp_rows() -> None:
    ev = pd.DataFrame(
        {
            "recording_id": ["r1", "r1", "r2", "r9"],
            "label": ["a", "b", "a", "a"],
            "onset": [1.0, 2.0, 3.0, 0.0],
            "offset": [2.0, 3.0, 4.0, 1.0],
            "kind": ["tp", "fp", "tp", "tp"],
        }
    )
    gt = ground_truth_from_events(ev, ["r1", "r2", "r3"])
    assert gt == {"r1": [(1.0, 2.0, "a")], "r2": [(3.0, 4.0, "a")], "r3": []}


def test_collar_and_intersection_criteria_differ() -> None:
    # detection 1.3-2.0 s of a 1.0-2.0 s event: the onset is 0.3 s late, beyond the 0.2 s collar,
    # but it lies wholly inside the event (DTC 1) and covers 70 % of it (GTC 0.7 >= 0.5)
    gt = {"r1": [(1.0, 2.0, "a")]}
    scores = {"r1": _table([(1.3, 2.0, "a")])}
    overall = event_metrics(scores, gt, {"r1": DURATION}, CLASSES)
    assert overall["collar_f1_fixed"] == 0.0 and overall["collar_f1"] == 0.0
    assert overall["intersection_f1_fixed"] == 1.0 and overall["intersection_f1"] == 1.0
    # PSDS1 needs GTC 0.7: met exactly; PSDS2 (0.1) too
    assert overall["psds1"] == pytest.approx(1.0) and overall["psds2"] == pytest.approx(1.0)
    # below the fixed threshold nothing is detected, while the best threshold still finds it
    low = {"r1": _table([(1.3, 2.0, "a")], value=0.4)}
    overall = event_metrics(low, gt, {"r1": DURATION}, CLASSES)
    assert overall["intersection_f1_fixed"] == 0.0 and overall["intersection_f1"] == 1.0

"""Tests for sed.infer.events (frame scores -> events) and sed.infer.writers (output files)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from sed_scores_eval.base_modules.detection import scores_to_event_list
from sed_scores_eval.base_modules.io import read_sed_scores

from sed.frames import FrameGrid, output_frame_times
from sed.infer.events import (
    Event,
    EventRules,
    detect_events,
    detect_events_df,
    score_dataframe,
    score_dataframes_from_frame_table,
    score_dataframes_from_h5,
)
from sed.infer.writers import (
    RAVEN_COLUMNS,
    class_bands_from_events,
    write_detections_csv,
    write_event_outputs,
    write_kaggle_submission,
    write_raven_table,
    write_raven_tables,
    write_score_tsv,
    write_score_tsvs,
)

TS = np.round(np.linspace(0.0, 1.0, 11), 6)  # 10 frames of 0.1 s
CLASSES = ["a", "b"]


def _scores() -> np.ndarray:
    s = np.zeros((10, 2))
    s[:, 0] = [0, 0.6, 0.7, 0, 0.8, 0, 0, 0, 0.9, 0]
    s[5:8, 1] = [0.55, 0.65, 0.75]
    return s


def _key(events: list[Event]) -> list[tuple[float, float, str]]:
    return [(round(e.onset, 6), round(e.offset, 6), e.label) for e in events]


# ---------------------------------------------------------------------------------------------
# event detection
# ---------------------------------------------------------------------------------------------


def test_detect_events_hand_case() -> None:
    ev = detect_events(_scores(), TS, CLASSES, 0.5)
    # a: frames 1-2, 4, 8 above 0.5; b: frames 5-7; sorted by onset
    assert _key(ev) == [(0.1, 0.3, "a"), (0.4, 0.5, "a"), (0.5, 0.8, "b"), (0.8, 0.9, "a")]
    assert [e.score for e in ev] == [0.7, 0.8, 0.75, 0.9]
    mean = detect_events(_scores(), TS, CLASSES, 0.5, score="mean")
    assert [e.score for e in mean] == pytest.approx([0.65, 0.8, 0.65, 0.9])


def test_detect_events_matches_sed_scores_eval() -> None:
    df = score_dataframe(_scores(), TS, CLASSES)
    thr = {"a": 0.65, "b": 0.6}
    theirs = sorted((round(a, 6), round(b, 6), c) for a, b, c in scores_to_event_list(df, thr))
    assert sorted(_key(detect_events_df(df, thr))) == theirs


def test_merge_gap_then_min_duration() -> None:
    ev = detect_events(_scores(), TS, CLASSES, [0.5, 0.5], merge_gap=0.1, score="mean")
    a = [e for e in ev if e.label == "a"]
    # the one-frame gap at 0.3-0.4 is bridged; the mean counts the gap frame: (.6+.7+0+.8)/4
    assert _key(a) == [(0.1, 0.5, "a"), (0.8, 0.9, "a")]
    assert a[0].score == pytest.approx(0.525)
    ev = detect_events(_scores(), TS, CLASSES, 0.5, min_duration=0.15)
    assert _key(ev) == [(0.1, 0.3, "a"), (0.5, 0.8, "b")]
    # per-class min duration: b needs 0.35 s
    ev = detect_events(_scores(), TS, CLASSES, 0.5, min_duration=[0.0, 0.35])
    assert [e.label for e in ev] == ["a", "a", "a"]


def test_mean_is_weighted_by_frame_length() -> None:
    s = np.array([[1.0], [0.5]])
    ts = np.array([0.0, 0.1, 0.4])  # the first frame is a third of the second's length
    (e,) = detect_events(s, ts, ["a"], 0.0, score="mean")
    assert e.score == pytest.approx((1.0 * 0.1 + 0.5 * 0.3) / 0.4)


def test_detect_events_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="T \\+ 1"):
        detect_events(_scores(), TS[:-1], CLASSES, 0.5)
    with pytest.raises(ValueError, match="increase"):
        detect_events(_scores(), np.r_[TS[:-1], 0.5], CLASSES, 0.5)
    with pytest.raises(ValueError, match="score"):
        detect_events(_scores(), TS, CLASSES, 0.5, score="median")


def test_score_tables_from_stage3_h5_and_frame_table(tmp_path: Path) -> None:
    grid = FrameGrid(32000, 320)
    r = 4
    frame = np.random.default_rng(0).random((7, 2)).astype(np.float32)
    path = tmp_path / "oof.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs.update(
            {"classes": CLASSES, "sample_rate": 32000, "hop_length": 320, "time_reduction": r}
        )
        h5.create_group("rec1").create_dataset("frame", data=frame)
        h5.create_group("rec0").create_dataset("frame", data=np.zeros((0, 2)))
    dfs = score_dataframes_from_h5(path)
    assert list(dfs) == ["rec1"]  # the frameless recording is left out
    on, off = output_frame_times(7, grid, r)
    np.testing.assert_allclose(dfs["rec1"]["onset"], on)
    np.testing.assert_allclose(dfs["rec1"]["offset"], off)
    np.testing.assert_allclose(dfs["rec1"][CLASSES], frame)

    table = pd.DataFrame(frame, columns=CLASSES)
    table.insert(0, "offset", np.round(off, 4))
    table.insert(0, "onset", np.round(on, 4))
    table.insert(0, "recording_id", "rec1")
    from_csv = score_dataframes_from_frame_table(table.iloc[::-1], CLASSES)  # any row order
    np.testing.assert_allclose(from_csv["rec1"][CLASSES], frame)
    table.loc[3, "onset"] += 0.05
    with pytest.raises(ValueError, match="contiguous"):
        score_dataframes_from_frame_table(table, CLASSES)


# ---------------------------------------------------------------------------------------------
# sed_scores_eval TSVs
# ---------------------------------------------------------------------------------------------


def test_score_tsvs_load_back_with_sed_scores_eval(tmp_path: Path) -> None:
    # frame boundaries that are not short decimals (1/3 s frames) must survive the round trip
    ts = np.arange(8) / 3.0
    scores = {
        "r1": score_dataframe(np.random.default_rng(1).random((7, 2)), ts, CLASSES),
        "r2": score_dataframe(np.zeros((7, 2)), ts + 0.5, CLASSES),
    }
    out = tmp_path / "scores"
    paths = write_score_tsvs(out, scores)
    assert [p.name for p in paths] == ["r1.tsv", "r2.tsv"]
    assert sorted(p.name for p in out.iterdir()) == ["r1.tsv", "r2.tsv"]  # no temp files left
    back = read_sed_scores(out)  # validates every file
    assert sorted(back) == ["r1", "r2"]
    for rid, df in scores.items():
        pd.testing.assert_frame_equal(back[rid], df)


def test_invalid_score_table_is_not_written(tmp_path: Path) -> None:
    df = score_dataframe(np.zeros((3, 2)), np.array([0.0, 1.0, 2.0, 3.0]), CLASSES)
    df.loc[1, "onset"] = 1.5  # gap between frames 0 and 1
    with pytest.raises(ValueError):
        write_score_tsv(tmp_path / "bad.tsv", df)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="file name"):
        write_score_tsvs(
            tmp_path, {"../escape": score_dataframe(np.zeros((1, 2)), [0, 1], CLASSES)}
        )


# ---------------------------------------------------------------------------------------------
# Raven tables and the detections CSV
# ---------------------------------------------------------------------------------------------

EVENTS = {
    "rec1": [Event(2.0, 3.5, "s1", 0.8), Event(0.5, 1.0, "s0", 0.9)],
    "rec2": [],
}


def test_raven_table_format(tmp_path: Path) -> None:
    path = tmp_path / "rec1.txt"
    write_raven_table(path, EVENTS["rec1"], sample_rate=48000, bands={"s1": (1000.0, 4000.0)})
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == RAVEN_COLUMNS
    back = pd.read_csv(path, sep="\t")
    assert back["Selection"].tolist() == [1, 2]  # numbered in onset order
    assert back["View"].tolist() == ["Spectrogram 1"] * 2
    assert back["Channel"].tolist() == [1, 1]
    assert back["Species"].tolist() == ["s0", "s1"]
    assert back["Begin Time (s)"].tolist() == [0.5, 2.0]
    assert back["End Time (s)"].tolist() == [1.0, 3.5]
    # s0 has no band: the whole spectrum 0 .. 24 kHz; s1 its band
    assert back["Low Freq (Hz)"].tolist() == [0.0, 1000.0]
    assert back["High Freq (Hz)"].tolist() == [24000.0, 4000.0]
    assert back["Score"].tolist() == [0.9, 0.8]


def test_raven_tables_one_per_recording(tmp_path: Path) -> None:
    paths = write_raven_tables(tmp_path, EVENTS, sample_rate=32000)
    assert [p.name for p in paths] == ["rec1.Table.1.selections.txt", "rec2.Table.1.selections.txt"]
    empty = pd.read_csv(paths[1], sep="\t")
    assert list(empty.columns) == RAVEN_COLUMNS and empty.empty
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_detections_csv(tmp_path: Path) -> None:
    df = write_detections_csv(tmp_path / "det.csv", EVENTS, id_column="file")
    back = pd.read_csv(tmp_path / "det.csv")
    assert list(back.columns) == ["file", "onset", "offset", "label", "score"]
    assert back.values.tolist() == [["rec1", 2.0, 3.5, "s1", 0.8], ["rec1", 0.5, 1.0, "s0", 0.9]]
    assert len(df) == 2


def test_class_bands_from_events() -> None:
    ev = pd.DataFrame(
        {
            "label": ["s0", "s0", "s1", "s2"],
            "fmin": [500.0, 300.0, np.nan, 100.0],
            "fmax": [2000.0, 1500.0, np.nan, 900.0],
            "kind": ["tp", "tp", "tp", "fp"],
        }
    )
    # s1 has no band, s2 only a false-positive annotation
    assert class_bands_from_events(ev) == {"s0": (300.0, 2000.0)}


def test_kaggle_submission_fills_missing_rows(tmp_path: Path) -> None:
    scores = pd.DataFrame({"recording_id": ["b", "a"], "s0": [0.2, 0.1], "s1": [0.9, 0.8]})
    out = write_kaggle_submission(scores, ["s0", "s1"], ["a", "b", "c"], tmp_path / "sub.csv")
    back = pd.read_csv(tmp_path / "sub.csv")
    assert back.values.tolist() == [["a", 0.1, 0.8], ["b", 0.2, 0.9], ["c", 0.0, 0.0]]
    assert out["recording_id"].tolist() == ["a", "b", "c"]


def test_write_event_outputs_smooths_then_detects(tmp_path: Path) -> None:
    s = np.zeros((10, 2))
    s[2:6, 0] = 0.9
    s[8, 0] = 0.9  # a one-frame spike the median filter removes
    s[3, 1] = 0.7
    scores = {"r1": score_dataframe(s, TS, CLASSES), "r2": score_dataframe(s * 0, TS, CLASSES)}
    rules = EventRules(thresholds={"a": 0.5, "b": 0.6}, median=3)
    smoothed, events = write_event_outputs(
        scores, tmp_path / "ev", rules, 32000, bands={"a": (1e3, 2e3)}
    )
    # median 3: class a keeps 0.2-0.6 and loses the spike; b's single frame is removed
    assert _key(events["r1"]) == [(0.2, 0.6, "a")] and events["r2"] == []
    np.testing.assert_allclose(smoothed["r1"]["b"], 0.0)
    assert sorted(read_sed_scores(tmp_path / "ev/scores")) == ["r1", "r2"]
    pd.testing.assert_frame_equal(read_sed_scores(tmp_path / "ev/scores/r1.tsv"), smoothed["r1"])
    det = pd.read_csv(tmp_path / "ev/detections.csv")
    assert det.values.tolist() == [["r1", 0.2, 0.6, "a", 0.9]]
    raven = pd.read_csv(tmp_path / "ev/raven/r1.Table.1.selections.txt", sep="\t")
    assert raven[["Low Freq (Hz)", "High Freq (Hz)"]].values.tolist() == [[1000.0, 2000.0]]
    assert (tmp_path / "ev/raven/r2.Table.1.selections.txt").is_file()


def test_score_dataframe_equals_sed_scores_eval() -> None:
    from sed_scores_eval.base_modules.scores import create_score_dataframe, validate_score_dataframe

    ours = score_dataframe(_scores(), TS, CLASSES)
    pd.testing.assert_frame_equal(ours, create_score_dataframe(_scores(), TS, CLASSES))
    validate_score_dataframe(ours)
    with pytest.raises(ValueError, match="scores must be"):
        score_dataframe(_scores()[:, :1], TS, CLASSES)
    with pytest.raises(ValueError, match="T \\+ 1"):
        score_dataframe(_scores(), TS[:-1], CLASSES)

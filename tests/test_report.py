"""Human reports of long recordings (``sed.infer.report``): times, merging, hours, files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sed.infer.events import Event
from sed.infer.report import (
    Span,
    file_report,
    file_summary,
    format_hms,
    hour_counts,
    merge_spans,
    n_hours,
    reports_from_infer_outdir,
    write_reports,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("seconds", "decimals", "text"),
    [
        (0.0, 1, "00:00:00.0"),
        (59.94, 1, "00:00:59.9"),
        (59.95, 1, "00:01:00.0"),  # half up, and the carry reaches the minutes
        (59.96, 1, "00:01:00.0"),  # never 00:00:60.0
        (3599.96, 1, "01:00:00.0"),  # ... nor 00:59:60.0
        (3723.25, 1, "01:02:03.3"),
        (0.05, 1, "00:00:00.1"),
        (7199.5, 0, "02:00:00"),
        (7199.49, 0, "01:59:59"),
        (30 * 3600 + 5.0, 1, "30:00:05.0"),  # hours do not wrap at a day
        (100 * 3600.0, 0, "100:00:00"),
        (1.23456, 3, "00:00:01.235"),
    ],
)
def test_format_hms_rounds_before_splitting(seconds: float, decimals: int, text: str) -> None:
    assert format_hms(seconds, decimals) == text


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_format_hms_refuses_bad_times(bad: float) -> None:
    with pytest.raises(ValueError, match="seconds >= 0"):
        format_hms(bad)


def test_merge_gap_edges() -> None:
    rows = [
        (10.0, 11.0, "owl", 0.6),
        (13.0, 14.0, "owl", 0.9),  # gap exactly 2.0: joined (at most gap)
        (16.01, 17.0, "owl", 0.7),  # gap 2.01: a new span
        (16.5, 16.8, "owl", 0.8),  # inside the previous one: joined, offset unchanged
        (12.0, 12.5, "wren", 0.99),  # another label inside the owl's span: never joined
    ]
    merged = merge_spans(rows, gap=2.0)
    assert merged == [
        Span(10.0, 14.0, "owl", 0.9, 2),
        Span(16.01, 17.0, "owl", 0.8, 2),
        Span(12.0, 12.5, "wren", 0.99, 1),
    ]
    # gap 0: only touching or overlapping detections join
    assert [s.n for s in merge_spans(rows, gap=0.0)] == [1, 1, 2, 1]
    assert [(s.onset, s.offset) for s in merge_spans(rows, gap=5.0) if s.label == "owl"] == [
        (10.0, 17.0)
    ]
    # order of the input does not matter; a span's end is the latest offset, not the last one's
    assert merge_spans(rows[::-1], gap=2.0) == merged
    assert merge_spans([(0, 10, "a", 0.5), (1, 2, "a", 0.6)], gap=0) == [Span(0, 10, "a", 0.6, 2)]
    assert merge_spans([], gap=2.0) == []
    with pytest.raises(ValueError, match="merge gap"):
        merge_spans(rows, gap=-1.0)


def test_detections_in_any_form_and_bad_rows() -> None:
    forms = [
        [{"onset": "1.5", "offset": "2.0", "label": "owl", "score": "0.7"}],  # a csv row
        [Event(1.5, 2.0, "owl", 0.7)],
        [(1.5, 2.0, "owl", 0.7)],
    ]
    for rows in forms:
        assert merge_spans(rows) == [Span(1.5, 2.0, "owl", 0.7, 1)]
    with pytest.raises(ValueError, match="onset <= offset"):
        merge_spans([(3.0, 2.0, "owl", 0.7)])
    with pytest.raises(ValueError, match="needs onset, offset, label and score"):
        merge_spans([{"onset": 1.0, "offset": 2.0, "label": "owl"}])
    # the file is named when its detections are bad
    with pytest.raises(ValueError, match=r"night\.flac: detection"):
        file_summary("night.flac", [(-1.0, 2.0, "owl", 0.7)], 10.0)
    with pytest.raises(ValueError, match=r"night\.flac: duration"):
        file_summary("night.flac", [], float("nan"))


def test_hour_boundaries() -> None:
    assert n_hours(0.0) == 1 and n_hours(3600.0) == 1 and n_hours(3600.1) == 2
    assert n_hours(25 * 3600 - 1) == 25
    # an onset at exactly 3600 s is hour 01; one past the end (duration rounded) stays in the last
    assert hour_counts([0.0, 3599.99, 3600.0, 7199.9, 7300.0], 7200.0) == [2, 3]
    assert hour_counts([], 3 * 3600.0 + 1) == [0, 0, 0, 0]


def test_report_of_a_long_file_with_hours_and_merges() -> None:
    duration = 26 * 3600 + 12.34  # over a day: 27 hours, hours do not wrap
    rows = [
        (3599.0, 3600.5, "strix_aluco", 0.81),  # starts in hour 00, ends in 01
        (3601.0, 3602.0, "strix_aluco", 0.93),  # 0.5 s later: merged, counted in hour 01
        (25 * 3600 + 7.25, 25 * 3600 + 8.0, "strix_aluco", 0.55),
        (100.0, 101.0, "bubo_bubo", 0.6),
    ]
    s = file_summary(
        "site3/night.flac", rows, duration, gap=2.0, labels=["strix_aluco", "negative"]
    )
    assert list(s["labels"]) == ["strix_aluco", "negative", "bubo_bubo"]
    owl = s["labels"]["strix_aluco"]
    assert owl["n_detections"] == 3 and owl["n_merged"] == 2
    assert owl["first_seconds"] == 3599.0 and owl["last_seconds"] == 25 * 3600 + 8.0
    hours = owl["per_hour"]
    assert len(hours["detections"]) == 27 and sum(hours["detections"]) == 3
    assert hours["detections"][0] == 1 and hours["detections"][1] == 1
    assert hours["merged"][0] == 1 and hours["merged"][1] == 0  # the merged span starts in 00
    assert hours["detections"][25] == 1 and hours["merged"][25] == 1
    assert s["labels"]["negative"]["n_detections"] == 0

    text = file_report("site3/night.flac", rows, duration, gap=2.0, labels=["strix_aluco"])
    assert "Recording: site3/night.flac" in text
    assert "Duration:  26:00:12 (93612.3 s, 27 hour(s))" in text
    assert "  00:59:59.0 - 01:00:00.5  score 0.81" in text
    assert "  00:59:59.0 - 01:00:02.0  score 0.93  (2 detections)" in text
    assert "  25:00:07.3 - 25:00:08.0  score 0.55" in text  # 7.25 is exact in binary: half up
    assert "  hour 26           0       0" in text
    assert "== bubo_bubo: 1 detection(s), 1 merged span(s)" in text


def test_empty_detections() -> None:
    text = file_report("quiet.wav", [], 125.0)
    assert "Duration:  00:02:05" in text and "No detections." in text
    text = file_report("quiet.wav", [], 125.0, labels=["owl"])
    assert "== owl: no detections" in text
    s = file_summary("quiet.wav", [], 0.0, labels=["owl"])
    assert s["labels"]["owl"]["per_hour"]["detections"] == [0]


def test_write_reports(tmp_path: Path) -> None:
    rows = {
        "a": [(1.0, 2.0, "owl", 0.9), (2.5, 3.0, "owl", 0.6), (4000.0, 4001.0, "owl", 0.7)],
        "dir/b": [],
    }
    durations = {"a": 7200.5, "dir/b": 60.0, "c": 10.0}
    summaries = write_reports(tmp_path / "rep", rows, durations, gap=1.0, labels=["owl"])
    assert [s["file"] for s in summaries] == ["a", "dir/b", "c"]
    assert {p.name for p in (tmp_path / "rep").iterdir()} == {
        "a.txt",
        "dir_b.txt",
        "c.txt",
        "report.json",
        "summary.csv",
    }
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["gap_seconds"] == 1.0 and report["files"] == summaries
    with open(tmp_path / "rep" / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    a = table[0]
    assert (a["file"], a["label"], a["n_detections"], a["n_merged"]) == ("a", "owl", "3", "2")
    assert (a["first"], a["last"], a["duration"]) == ("00:00:01.0", "01:06:41.0", "02:00:01")
    # a has 3 hours (7200.5 s); the hour columns go to the longest file's last hour
    assert (a["hour_00"], a["hour_01"], a["hour_02"]) == ("2", "1", "0")
    b = table[1]
    assert (b["n_detections"], b["first"], b["hour_00"], b["hour_01"]) == ("0", "", "0", "")
    # detections of a file without a duration, and names that collide, are refused
    with pytest.raises(ValueError, match="without a duration"):
        write_reports(tmp_path / "x", {"zz": []}, {"a": 1.0})
    with pytest.raises(ValueError, match=r"dir_b\.txt"):
        write_reports(tmp_path / "x", {}, {"dir/b": 1.0, "dir_b": 1.0})
    # no file is left half-written: only the finished names are in the folder
    assert not [p for p in (tmp_path / "rep").iterdir() if p.name.startswith(".")]
    # without labels, a file without detections is still one row
    write_reports(tmp_path / "y", {}, {"c": 10.0})
    with open(tmp_path / "y" / "summary.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["file"], row["label"], row["n_detections"]) == ("c", "", "0")


def test_reports_from_sedkit_infer_outputs(tmp_path: Path) -> None:
    (tmp_path / "detections.csv").write_text(
        "recording_id,onset,offset,label,score\nnight,3.0,4.5,owl,0.91\nnight,5.0,6.0,owl,0.5\n"
    )
    (tmp_path / "clip_scores.csv").write_text(
        "recording_id,file,duration,owl\nnight,/x/night.flac,3700.0,0.9\nday,/x/day.wav,30.0,0.1\n"
    )
    summaries = reports_from_infer_outdir(tmp_path, gap=2.0)
    assert [s["file"] for s in summaries] == ["night", "day"]
    assert summaries[0]["labels"]["owl"]["n_merged"] == 1
    # the model's classes (clip_scores.csv's columns) are listed for a file without detections
    assert "== owl: no detections" in (tmp_path / "report" / "day.txt").read_text()
    assert (
        "00:00:03.0 - 00:00:06.0  score 0.91  (2 detections)"
        in (tmp_path / "report" / "night.txt").read_text()
    )


def test_report_imports_neither_torch_nor_pandas() -> None:
    code = (
        "import sys, sed.infer.report\n"
        "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"

"""Tests of the manifest contract: round trips and every validation error (file, line, column)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sed.data.manifest import (
    ManifestError,
    read_classes,
    read_clips,
    read_events,
    read_folds,
    read_recordings,
    read_table,
    validate_events,
    validate_recordings,
    write_classes,
    write_clips,
    write_events,
    write_folds,
    write_recordings,
)

CLASSES = ["s0", "s1", "NA"]


def _recordings() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "recording_id": ["00204008d", "0123", "abc"],
            "path": ["/x/00204008d.flac", "/x/0123.flac", "/x/abc.flac"],
            "split": ["train", "train", "test"],
            "duration": [60.0, 10.5, 3.25],
            "sample_rate": [48000, 48000, 32000],
            "channels": [1, 1, 2],
            "site": ["0042", "", "north"],
        }
    )


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "recording_id": ["00204008d", "0123", "abc"],
            "label": ["s0", "NA", "s1"],
            "onset": [1.5, 0.0, 0.1],
            "offset": [3.2, 10.52, 3.0],
            "fmin": [100.0, np.nan, 500.0],
            "fmax": [2000.5, np.nan, 9000.0],
            "songtype": ["1", None, "call"],
            "kind": ["tp", "fp", "tp"],
        }
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _expect(exc: pytest.ExceptionInfo, path: Path | str, line: int | None, column: str | None):
    """The message starts with the file and line, and the error carries the column."""
    msg = str(exc.value)
    prefix = f"{path} line {line}: " if line is not None else f"{path}: "
    assert msg.startswith(prefix), msg
    assert exc.value.line == line
    assert exc.value.column == column
    if column is not None:
        assert column in exc.value.reason, msg


# ------------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------------


def test_recordings_round_trip_keeps_ids_and_types(tmp_path: Path) -> None:
    path = tmp_path / "recordings.csv"
    write_recordings(_recordings(), path)
    back = read_recordings(path)
    assert back["recording_id"].tolist() == ["00204008d", "0123", "abc"]
    assert back["site"].tolist()[0] == "0042"  # extra columns stay text: no "42"
    assert back["duration"].dtype == np.float64
    assert back["sample_rate"].dtype == np.int64
    assert back["channels"].tolist() == [1, 1, 2]
    assert list(back.columns[:6]) == [
        "recording_id",
        "path",
        "split",
        "duration",
        "sample_rate",
        "channels",
    ]
    before = path.read_bytes()
    write_recordings(back, path)
    assert path.read_bytes() == before


def test_events_round_trip_with_optional_columns(tmp_path: Path) -> None:
    recs = _recordings()
    path = tmp_path / "events.csv"
    write_events(_events(), path, recordings=recs, classes=CLASSES)
    back = read_events(path, recordings=recs, classes=CLASSES)
    assert back["label"].tolist() == ["s0", "NA", "s1"]  # "NA" is a label, not missing
    assert back["offset"].tolist() == [3.2, 10.52, 3.0]
    assert np.isnan(back["fmin"].iloc[1]) and back["fmax"].iloc[2] == 9000.0
    assert back["songtype"].isna().tolist() == [False, True, False]
    assert back["songtype"].iloc[0] == "1"
    before = path.read_bytes()
    write_events(back, path)
    assert path.read_bytes() == before


def test_events_without_optional_columns_get_them(tmp_path: Path) -> None:
    path = _write(tmp_path / "events.csv", "recording_id,label,onset,offset,kind\n0123,s0,1,2,tp\n")
    back = read_events(path)
    assert list(back.columns) == [
        "recording_id",
        "label",
        "onset",
        "offset",
        "fmin",
        "fmax",
        "songtype",
        "kind",
    ]
    assert back["recording_id"].iloc[0] == "0123"
    assert np.isnan(back["fmin"].iloc[0])


def test_classes_clips_folds_round_trip(tmp_path: Path) -> None:
    write_classes(CLASSES, tmp_path / "classes.txt")
    assert read_classes(tmp_path / "classes.txt") == CLASSES

    clips = pd.DataFrame(
        {"recording_id": ["0123", "abc"], "primary": ["s0", "s1"], "secondary": ["s1 NA", ""]}
    )
    write_clips(clips, tmp_path / "clips.csv", recordings=_recordings(), classes=CLASSES)
    back = read_clips(tmp_path / "clips.csv", classes=CLASSES)
    assert back["secondary"].tolist() == ["s1 NA", ""]
    assert [s.split() for s in back["secondary"]] == [["s1", "NA"], []]

    folds = pd.DataFrame({"recording_id": ["00204008d", "0123"], "fold": [1, 0]})
    write_folds(folds, tmp_path / "folds.csv", recordings=_recordings())
    back = read_folds(tmp_path / "folds.csv")
    assert back["recording_id"].tolist() == ["00204008d", "0123"]
    assert back["fold"].dtype == np.int64


def test_blank_lines_keep_true_line_numbers(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "folds.csv", "recording_id,fold\n\n0123,0\n\nabc,x\n"
    )  # the bad row is on line 5
    with pytest.raises(ManifestError) as exc:
        read_folds(path)
    _expect(exc, path, 5, "fold")


def test_read_table_keeps_extra_columns_as_text(tmp_path: Path) -> None:
    from sed.data.manifest import Column

    path = _write(tmp_path / "x.csv", "recording_id,n,note\n007,3,0.50\n")
    table, lines = read_table(path, (Column("recording_id", "str"), Column("n", "int")))
    assert table["recording_id"].iloc[0] == "007" and table["note"].iloc[0] == "0.50"
    assert lines.tolist() == [2]


# ------------------------------------------------------------------------------------------------
# Validation errors
# ------------------------------------------------------------------------------------------------

REC_HEADER = "recording_id,path,split,duration,sample_rate,channels\n"
EV_HEADER = "recording_id,label,onset,offset,fmin,fmax,songtype,kind\n"


def test_missing_columns_are_named_with_the_expected_list(tmp_path: Path) -> None:
    path = _write(tmp_path / "recordings.csv", "recording_id,path,split\na,/a.flac,train\n")
    with pytest.raises(ManifestError) as exc:
        read_recordings(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path} line 1: missing column(s) duration, sample_rate, channels")
    assert "expected columns: recording_id, path, split, duration, sample_rate, channels" in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="file not found") as exc:
        read_events(tmp_path / "nope.csv")
    _expect(exc, tmp_path / "nope.csv", None, None)


@pytest.mark.parametrize(
    ("row", "column", "pattern"),
    [
        ("a,/a.flac,train,sixty,48000,1", "duration", r"duration \('sixty'\) is not a finite"),
        ("a,/a.flac,train,nan,48000,1", "duration", r"duration \('nan'\) is not a finite"),
        ("a,/a.flac,train,60,48000.5,1", "sample_rate", r"sample_rate .* is not an integer"),
        ("a,/a.flac,train,60,,1", "sample_rate", r"sample_rate is empty"),
        ("a,/a.flac,train,0,48000,1", "duration", r"duration \(0.0\) must be positive"),
        ("a,/a.flac,train,60,48000,0", "channels", r"channels \(0\) must be positive"),
        (",/a.flac,train,60,48000,1", "recording_id", r"recording_id is empty"),
    ],
)
def test_recordings_bad_fields(tmp_path: Path, row: str, column: str, pattern: str) -> None:
    path = _write(tmp_path / "recordings.csv", REC_HEADER + "ok,/ok.flac,test,5,48000,1\n" + row)
    with pytest.raises(ManifestError, match=pattern) as exc:
        read_recordings(path)
    _expect(exc, path, 3, column)


def test_duplicate_recording_ids(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "recordings.csv",
        REC_HEADER + "0123,/a.flac,train,5,48000,1\nb,/b.flac,train,5,48000,1\n"
        "0123,/c.flac,test,5,48000,1\n",
    )
    with pytest.raises(ManifestError, match=r"'0123' is a duplicate \(first seen at line 2\)") as e:
        read_recordings(path)
    _expect(e, path, 4, "recording_id")


def test_validate_in_memory_uses_written_line_numbers() -> None:
    recs = _recordings()
    recs.loc[2, "duration"] = -1.0
    with pytest.raises(ManifestError) as exc:
        validate_recordings(recs, path="data/rfcx/recordings.csv")
    _expect(exc, "data/rfcx/recordings.csv", 4, "duration")


@pytest.mark.parametrize(
    ("row", "column", "pattern"),
    [
        ("0123,s0,4.0,3.2,,,,tp", "offset", r"offset \(3.2\) must be greater than onset \(4.0\)"),
        ("0123,s0,2.0,2.0,,,,tp", "offset", r"offset \(2.0\) must be greater than onset"),
        ("0123,s0,-0.5,2.0,,,,tp", "onset", r"onset \(-0.5\) must be >= 0"),
        ("0123,s0,1.0,10.6,,,,tp", "offset", r"offset \(10.6\) is beyond the end of recording"),
        ("0123,s9,1.0,2.0,,,,tp", "label", r"label 's9' is not in classes.txt"),
        ("0123,s0,1.0,2.0,,,,TP", "kind", r"kind 'TP' must be one of tp, fp"),
        ("0123,s0,1.0,2.0,500,400,,tp", "fmax", r"fmax \(400.0\) must be greater than fmin"),
        ("0123,s0,1.0,2.0,500,500,,tp", "fmax", r"fmax \(500.0\) must be greater than fmin"),
        ("0123,s0,1.0,2.0,500,,,tp", "fmax", r"fmin is given but fmax is empty"),
        ("0123,s0,1.0,2.0,-5,400,,tp", "fmin", r"fmin \(-5.0\) must be >= 0"),
        ("zzz,s0,1.0,2.0,,,,tp", "recording_id", r"recording_id 'zzz' is not in recordings.csv"),
        ("0123,s0,1.0,inf,,,,tp", "offset", r"offset \('inf'\) is not a finite number"),
        ("0123,s0,x,2.0,,,,tp", "onset", r"onset \('x'\) is not a finite number"),
        ("0123,s0,1.0,2.0,,,,", "kind", r"kind is empty"),
    ],
)
def test_events_bad_rows(tmp_path: Path, row: str, column: str, pattern: str) -> None:
    # 10.5 s recording: an offset of 10.52 is within the 0.05 s tolerance, 10.6 is not.
    path = _write(
        tmp_path / "events.csv",
        EV_HEADER + "0123,s0,0.0,10.52,,,,tp\n00204008d,s1,1,2,100,200,4,fp\n" + row + "\n",
    )
    with pytest.raises(ManifestError, match=pattern) as exc:
        read_events(path, recordings=_recordings(), classes=CLASSES)
    _expect(exc, path, 4, column)


def test_events_unknown_recording_with_ids_only() -> None:
    events = _events()
    with pytest.raises(ManifestError, match=r"'abc' is not in recordings\.csv") as exc:
        validate_events(events, recordings=["00204008d", "0123"], path="ev.csv")
    _expect(exc, "ev.csv", 4, "recording_id")


def test_events_checks_are_skipped_without_context() -> None:
    events = _events()
    events.loc[0, "label"] = "unknown"
    events.loc[0, "offset"] = 1000.0
    validate_events(events)  # no recordings, no classes: only self-contained checks
    # each context turns its own check on, and the row is really at fault for each
    with pytest.raises(ManifestError, match="'unknown' is not in classes") as exc:
        validate_events(events, classes=CLASSES, path="ev.csv")
    _expect(exc, "ev.csv", 2, "label")
    with pytest.raises(ManifestError, match="duration") as exc:
        validate_events(events, recordings=_recordings(), path="ev.csv")
    _expect(exc, "ev.csv", 2, "offset")
    # ids alone enable the unknown-recording check, not the duration check
    validate_events(events, recordings=["00204008d", "0123", "abc"])
    # the self-contained checks still run without context
    events.loc[1, "offset"] = -1.0
    with pytest.raises(ManifestError, match="offset") as exc:
        validate_events(events, path="ev.csv")
    _expect(exc, "ev.csv", 3, "offset")


def test_classes_errors(tmp_path: Path) -> None:
    path = _write(tmp_path / "classes.txt", "s0\ns1\ns0\n")
    with pytest.raises(ManifestError, match=r"'s0' is a duplicate \(first seen at line 1\)") as e:
        read_classes(path)
    assert str(e.value).startswith(f"{path} line 3: ")
    path = _write(tmp_path / "classes.txt", "s0\n\ns1\n")
    with pytest.raises(ManifestError, match="empty label") as e:
        read_classes(path)
    assert e.value.line == 2
    path = _write(tmp_path / "classes.txt", "s0\nbig bird\n")
    with pytest.raises(ManifestError, match="whitespace"):
        read_classes(path)
    path = _write(tmp_path / "classes.txt", "s0\r\ns1\r\n\n")  # CRLF and a trailing blank line
    assert read_classes(path) == ["s0", "s1"]


def test_clips_errors(tmp_path: Path) -> None:
    path = _write(tmp_path / "clips.csv", "recording_id,primary,secondary\na,s0,s1 zz\n")
    with pytest.raises(ManifestError, match=r"secondary label 'zz' is not in classes\.txt") as e:
        read_clips(path, classes=CLASSES)
    _expect(e, path, 2, "secondary")
    path = _write(tmp_path / "clips.csv", "recording_id,primary\na,\n")
    with pytest.raises(ManifestError, match="primary is empty"):
        read_clips(path)


def test_folds_errors(tmp_path: Path) -> None:
    path = _write(tmp_path / "folds.csv", "recording_id,fold\na,0\nb,-1\n")
    with pytest.raises(ManifestError, match=r"fold \(-1\) must be >= 0") as e:
        read_folds(path)
    _expect(e, path, 3, "fold")
    path = _write(tmp_path / "folds.csv", "recording_id,fold\na,0\nb,1\nb,2\n")
    with pytest.raises(ManifestError, match="duplicate") as e:
        read_folds(path)
    _expect(e, path, 4, "recording_id")
    path = _write(tmp_path / "folds.csv", "recording_id,fold\na,0\nq,1\n")
    with pytest.raises(ManifestError, match=r"'q' is not in recordings\.csv"):
        read_folds(path, recordings=["a"])


def test_write_refuses_invalid_and_leaves_old_file(tmp_path: Path) -> None:
    path = tmp_path / "recordings.csv"
    write_recordings(_recordings(), path)
    before = path.read_bytes()
    bad = _recordings()
    bad.loc[1, "sample_rate"] = 0
    with pytest.raises(ManifestError, match=re.escape("line 3: sample_rate (0) must be positive")):
        write_recordings(bad, path)
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


_ID = st.one_of(
    st.sampled_from(["NA", "nan", "None", "null", "1e5", "0x1F", "007", "-0", "True", "#1"]),
    st.text(alphabet="0123456789abcdefXYZ_-.", min_size=1, max_size=12),
)


@settings(max_examples=40, deadline=None)
@given(ids=st.lists(_ID, min_size=1, max_size=8, unique=True))
def test_ids_survive_a_round_trip(tmp_path_factory: pytest.TempPathFactory, ids: list[str]) -> None:
    path = tmp_path_factory.mktemp("ids") / "recordings.csv"
    n = len(ids)
    recs = pd.DataFrame(
        {
            "recording_id": ids,
            "path": [f"/x/{i}.flac" for i in ids],
            "split": ["train"] * n,
            "duration": [1.0] * n,
            "sample_rate": [8000] * n,
            "channels": [1] * n,
            "site": ids,
        }
    )
    write_recordings(recs, path)
    back = read_recordings(path)
    assert back["recording_id"].tolist() == ids
    assert back["site"].tolist() == ids

"""Tests of RFCX stage 0 on tiny fake corpora built here (sine + noise FLAC files)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sed.data.manifest import (
    ManifestError,
    read_classes,
    read_events,
    read_folds,
    read_recordings,
)
from sed.data.rfcx import prepare_rfcx

ROOT = Path(__file__).resolve().parents[1]
SR = 8000  # small rate keeps the fake corpus tiny; the code never assumes 48 kHz
DURATION = 3.0
TRAIN = ["00204008d", "0123", "a1", "b2", "c3", "d4"]
TEST = ["000test", "t2"]
HEADER = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max\n"
# Row i of train_tp.csv is on line i + 2.
TP_ROWS = [
    "00204008d,0,1,0.5,100.0,1.5,900.0",
    "0123,1,1,1.0,200.0,2.0,1200.5",
    "0123,0,4,2.1,100.0,2.9,800.0",
    "a1,2,1,0.1,300.0,0.9,1000.0",
    "b2,1,1,0.2,200.0,1.2,1100.0",
    "c3,0,1,0.3,100.0,2.99,900.0",
]
FP_ROWS = [
    "d4,3,1,0.0,50.0,1.0,500.0",
    "a1,0,1,1.0,100.0,2.0,900.0",
]


def _flac(path: Path, seed: int, duration: float = DURATION) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration * SR)) / SR
    wave = 0.3 * np.sin(2 * np.pi * (300 + 50 * seed) * t) + 0.01 * rng.standard_normal(t.size)
    sf.write(path, wave.astype(np.float32), SR, format="FLAC", subtype="PCM_16")


def _corpus(
    root: Path,
    tp_rows: list[str] | None = None,
    fp_rows: list[str] | None = None,
    submission: bool = True,
    test_labels: list[str] | None = None,
) -> Path:
    """A corpus in the Kaggle layout; returns its folder."""
    root.mkdir(parents=True, exist_ok=True)
    for split, ids in (("train", TRAIN), ("test", TEST)):
        (root / split).mkdir(exist_ok=True)
        for i, rid in enumerate(ids):
            _flac(root / split / f"{rid}.flac", seed=i)
    (root / "train_tp.csv").write_text(HEADER + "\n".join(tp_rows or TP_ROWS) + "\n")
    (root / "train_fp.csv").write_text(HEADER + "\n".join(fp_rows or FP_ROWS) + "\n")
    if submission:
        cols = ",".join(f"s{k}" for k in range(4))
        zeros = ",".join("0" for _ in range(4))
        lines = [f"recording_id,{cols}"] + [f"{rid},{zeros}" for rid in TEST]
        (root / "sample_submission.csv").write_text("\n".join(lines) + "\n")
    if test_labels is not None:
        (root / "test_labels.csv").write_text(HEADER + "\n".join(test_labels) + "\n")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _corpus(tmp_path_factory.mktemp("rfcx") / "raw")


@pytest.fixture(scope="module")
def prepared(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("out") / "data" / "rfcx"
    return out, prepare_rfcx(corpus, out, n_folds=2, seed=0)


def _outputs(outdir: Path) -> dict[str, bytes]:
    names = ["recordings.csv", "events.csv", "classes.txt", "folds.csv", "skipped.csv", ".done"]
    return {name: (outdir / name).read_bytes() for name in names}


def test_recordings_manifest(corpus: Path, prepared: tuple[Path, dict]) -> None:
    out, summary = prepared
    recs = read_recordings(out / "recordings.csv")
    assert recs["recording_id"].tolist() == sorted(TRAIN) + sorted(TEST)
    assert recs["split"].tolist() == ["train"] * len(TRAIN) + ["test"] * len(TEST)
    first = recs.iloc[0]
    assert first["recording_id"] == "00204008d"  # leading zeros kept
    assert Path(first["path"]).is_absolute()
    assert Path(first["path"]) == corpus.resolve() / "train" / "00204008d.flac"
    assert recs["duration"].tolist() == [DURATION] * len(recs)
    assert set(recs["sample_rate"]) == {SR} and set(recs["channels"]) == {1}
    assert summary["recordings"] == {"train": 6, "test": 2}
    assert summary["skipped"] == [] and summary["skipped_events"] == 0
    assert (out / ".done").exists()
    assert pd.read_csv(out / "skipped.csv").columns.tolist() == ["path", "reason"]


def test_events_manifest(prepared: tuple[Path, dict]) -> None:
    out, summary = prepared
    classes = read_classes(out / "classes.txt")
    assert classes == ["s0", "s1", "s2", "s3"]
    recs = read_recordings(out / "recordings.csv")
    events = read_events(out / "events.csv", recordings=recs, classes=classes)
    assert len(events) == len(TP_ROWS) + len(FP_ROWS)
    assert summary["events"] == {"tp": 6, "fp": 2} and summary["classes"] == 4
    row = events[(events["recording_id"] == "0123") & (events["label"] == "s0")].iloc[0]
    assert (row["onset"], row["offset"], row["fmin"], row["fmax"]) == (2.1, 2.9, 100.0, 800.0)
    assert row["songtype"] == "4" and row["kind"] == "tp"
    fp = events[events["kind"] == "fp"]
    assert sorted(zip(fp["recording_id"], fp["label"], strict=True)) == [("a1", "s0"), ("d4", "s3")]
    # Sorted by recording, then time.
    assert events["recording_id"].tolist() == sorted(events["recording_id"])


def test_folds_manifest(prepared: tuple[Path, dict]) -> None:
    out, _ = prepared
    folds = read_folds(out / "folds.csv")
    assert folds["recording_id"].tolist() == sorted(TRAIN)  # train only, each once
    assert set(folds["fold"]) == {0, 1}
    # s0 (tp on 00204008d, 0123, c3) and s1 (0123, b2) must land in both folds.
    fold = dict(zip(folds["recording_id"], folds["fold"], strict=True))
    assert {fold["00204008d"], fold["0123"], fold["c3"]} == {0, 1}
    assert {fold["0123"], fold["b2"]} == {0, 1}


def test_idempotent_and_parallel_identical(
    corpus: Path, prepared: tuple[Path, dict], tmp_path: Path
) -> None:
    out, _ = prepared
    before = _outputs(out)
    prepare_rfcx(corpus, out, n_folds=2, seed=0)
    assert _outputs(out) == before
    prepare_rfcx(corpus, tmp_path / "par", n_folds=2, seed=0, nj=3)
    assert _outputs(tmp_path / "par") == before


def test_corrupt_flac_is_skipped_and_listed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _corpus(tmp_path / "raw")
    bad = root / "train" / "0123.flac"
    bad.write_bytes(np.random.default_rng(0).bytes(4000))
    with caplog.at_level(logging.WARNING, logger="sed.data.rfcx"):
        summary = prepare_rfcx(root, tmp_path / "out", n_folds=2)
    assert any(
        str(bad) in r.getMessage() and "unreadable" in r.getMessage() for r in caplog.records
    )
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert skipped["path"].tolist() == [str(bad.resolve())]
    assert "unreadable audio" in skipped["reason"].iloc[0]
    assert summary["skipped_events"] == 2  # both tp rows of 0123
    recs = read_recordings(tmp_path / "out" / "recordings.csv")
    assert "0123" not in set(recs["recording_id"])
    events = read_events(tmp_path / "out" / "events.csv", recordings=recs)
    assert "0123" not in set(events["recording_id"])
    assert "0123" not in set(read_folds(tmp_path / "out" / "folds.csv")["recording_id"])

    with pytest.raises(ManifestError, match="unreadable audio") as exc:
        prepare_rfcx(root, tmp_path / "strict", n_folds=2, strict=True)
    # Points at the first CSV line naming the recording, and at the file.
    assert str(exc.value).startswith(f"{root.resolve() / 'train_tp.csv'} line 3: ")
    assert str(bad.resolve()) in str(exc.value)
    assert not (tmp_path / "strict" / ".done").exists()


def test_truncated_flac_is_skipped(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "raw")
    path = root / "test" / "t2.flac"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    summary = prepare_rfcx(root, tmp_path / "out", n_folds=2)
    assert [s["path"] for s in summary["skipped"]] == [str(path.resolve())]
    assert summary["skipped"][0]["reason"].startswith("truncated")
    assert summary["recordings"] == {"train": 6, "test": 1}


def test_missing_audio_for_csv_id(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "raw", tp_rows=[*TP_ROWS, "ghost,1,1,0.5,100,1.5,900"])
    summary = prepare_rfcx(root, tmp_path / "out", n_folds=2)
    assert summary["skipped"] == [
        {"path": str(root.resolve() / "train" / "ghost.flac"), "reason": "missing audio file"}
    ]
    assert summary["skipped_events"] == 1
    with pytest.raises(ManifestError, match="'ghost': missing audio file") as exc:
        prepare_rfcx(root, tmp_path / "strict", n_folds=2, strict=True)
    assert exc.value.line == len(TP_ROWS) + 2 and exc.value.column == "recording_id"
    assert exc.value.path.endswith("train_tp.csv")


@pytest.mark.parametrize(
    ("tp_rows", "line", "column", "pattern"),
    [
        (["0123,1,1,2.0,100,1.0,900"], 2, "t_max", r"t_max \(1.0\) must be greater than t_min"),
        (["0123,1,1,1.0,100,1.0,900"], 2, "t_max", r"t_max \(1.0\) must be greater than t_min"),
        (["0123,1,1,-1.0,100,1.0,900"], 2, "t_min", r"t_min \(-1.0\) must be >= 0"),
        (["0123,1,1,1.0,900,2.0,100"], 2, "f_max", r"f_max \(100.0\) must be greater than f_min"),
        (
            ["0123,1,1,1.0,100,2.0,900", "a1,7,1,1.0,100,2.0,900"],
            3,
            "species_id",
            r"species_id 7 is not a class of sample_submission.csv \(its columns are s0..s3\)",
        ),
        (
            ["0123,1,1,1.0,100,3.2,900"],
            2,
            "t_max",
            r"t_max \(3.2\) is beyond the end of recording '0123' \(duration 3.0 s",
        ),
        (["0123,one,1,1.0,100,2.0,900"], 2, "species_id", r"species_id \('one'\) is not an int"),
    ],
)
def test_bad_annotation_rows(
    tmp_path: Path, tp_rows: list[str], line: int, column: str, pattern: str
) -> None:
    root = _corpus(tmp_path / "raw", tp_rows=tp_rows)
    with pytest.raises(ManifestError, match=pattern) as exc:
        prepare_rfcx(root, tmp_path / "out", n_folds=2)
    assert str(exc.value).startswith(f"{root.resolve() / 'train_tp.csv'} line {line}: ")
    assert exc.value.column == column


def test_annotation_end_within_tolerance_is_kept(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "raw", tp_rows=[*TP_ROWS, "d4,1,1,2.0,100,3.04,900"])
    prepare_rfcx(root, tmp_path / "out", n_folds=2)
    events = read_events(tmp_path / "out" / "events.csv")
    assert 3.04 in events["offset"].tolist()


def test_missing_column_and_missing_files(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "raw")
    (root / "train_fp.csv").write_text("recording_id,species_id,t_min,t_max\na1,0,1,2\n")
    with pytest.raises(ManifestError, match=r"missing column.*songtype_id, f_min, f_max") as exc:
        prepare_rfcx(root, tmp_path / "out")
    assert str(exc.value).startswith(f"{root.resolve() / 'train_fp.csv'} line 1: ")
    (root / "train_fp.csv").unlink()
    with pytest.raises(ManifestError, match=r"train_fp\.csv: file not found; pass --datadir"):
        prepare_rfcx(root, tmp_path / "out")
    with pytest.raises(ManifestError, match="data folder does not exist; pass --datadir"):
        prepare_rfcx(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(ManifestError, match="no data folder given; pass --datadir"):
        prepare_rfcx(None, tmp_path / "out")


def test_without_submission_classes_are_species_in_numeric_order(tmp_path: Path) -> None:
    tp = ["0123,10,1,1.0,100,2.0,900", "a1,2,1,1.0,100,2.0,900", "b2,10,1,0.5,100,2.0,900"]
    root = _corpus(tmp_path / "raw", tp_rows=tp, submission=False)
    summary = prepare_rfcx(root, tmp_path / "out", n_folds=2)
    # FP_ROWS add s0 and s3.
    assert read_classes(tmp_path / "out" / "classes.txt") == ["s0", "s2", "s3", "s10"]
    assert summary["recordings"] == {"train": 6, "test": 2}  # test set from test/*.flac


def test_test_labels_become_tp_events_of_test_recordings(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "raw", test_labels=["000test,2,1,0.5,100,1.5,900"])
    prepare_rfcx(root, tmp_path / "out", n_folds=2)
    events = read_events(tmp_path / "out" / "events.csv")
    row = events[events["recording_id"] == "000test"]
    assert row[["label", "kind"]].values.tolist() == [["s2", "tp"]]
    assert "000test" not in set(read_folds(tmp_path / "out" / "folds.csv")["recording_id"])

    root = _corpus(tmp_path / "raw2", test_labels=["a1,2,1,0.5,100,1.5,900"])
    with pytest.raises(ManifestError, match="'a1' is not a test recording") as exc:
        prepare_rfcx(root, tmp_path / "out2", n_folds=2)
    assert exc.value.line == 2 and exc.value.path.endswith("test_labels.csv")


def test_too_few_recordings_for_folds(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "raw")
    with pytest.raises(ManifestError, match=r"cannot make 7 folds .* \(6\)"):
        prepare_rfcx(root, tmp_path / "out", n_folds=7)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "egs/rfcx/local/data_prep.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_missing_datadir_exits_2(tmp_path: Path) -> None:
    proc = _cli("--datadir", str(tmp_path / "nowhere"), "--outdir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "data folder does not exist; pass --datadir" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_runs_and_prints_summary(corpus: Path, tmp_path: Path) -> None:
    proc = _cli("--datadir", str(corpus), "--outdir", str(tmp_path / "out"), "--folds", "2")
    assert proc.returncode == 0, proc.stderr
    assert "recordings: 6 train, 2 test" in proc.stdout
    assert "events: 6 tp, 2 fp" in proc.stdout
    assert "skipped: none" in proc.stdout
    assert (tmp_path / "out" / ".done").exists()

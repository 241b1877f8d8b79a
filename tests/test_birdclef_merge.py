"""Tests of the BirdCLEF multi-year merge on small manifests folders written here: each rule
(non-target species, duplicate id, duplicate content, cap), id clashes, the report, determinism,
and that the merged folder loads as a corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sed.data.birdclef_merge import MERGE_REPORT, merge_birdclef, source_id
from sed.data.corpus import Corpus
from sed.data.manifest import (
    read_clips,
    read_recordings,
    write_classes,
    write_clips,
    write_events,
    write_recordings,
)
from sed.fileio import write_json, write_text

ROOT = Path(__file__).resolve().parents[1]
SR = 8000


def _folder(
    root: Path,
    classes: list[str],
    recs: list[tuple[str, str, str, str, str, int]],
    events: list[tuple[str, str, float, float]] = (),
    info: dict | None = None,
) -> Path:
    """A manifests folder as stage 0 writes it. ``recs``: (recording id, split, primary ("" for a
    soundscape), secondary, date, audio seed: equal seeds give equal bytes); the url names the
    xeno-canto id of an ``XC`` stem."""
    rows, clips = [], []
    for rid, split, primary, secondary, date, seed in recs:
        stem = rid.split("-", 1)[-1]
        path = root / "audio" / f"{rid}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        seconds = 10.0 if not primary else 2.0
        wave = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))
        sf.write(path, wave.astype(np.float32), SR, subtype="PCM_16")
        url = f"https://www.xeno-canto.org/{stem[2:]}" if stem.startswith("XC") else ""
        rows.append(
            {
                "recording_id": rid,
                "path": str(path),
                "split": split,
                "duration": seconds,
                "sample_rate": SR,
                "channels": 1,
                "kind": "focal" if primary else "soundscape",
                "date": date,
                "url": url,
                "author": "A",
            }
        )
        if primary:
            clips.append((rid, primary, secondary))
    recordings = pd.DataFrame(rows)
    write_recordings(recordings, root / "recordings.csv")
    write_classes(classes, root / "classes.txt")
    write_clips(
        pd.DataFrame(clips, columns=["recording_id", "primary", "secondary"]),
        root / "clips.csv",
    )
    frame = pd.DataFrame(list(events), columns=["recording_id", "label", "onset", "offset"])
    frame["kind"] = "tp"
    write_events(frame, root / "events.csv", recordings=recordings, classes=classes)
    if info is not None:
        write_json(root / "corpus.json", info)
    return root


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path, Path]:
    target = _folder(
        tmp_path / "t2024",
        ["a", "b", "c"],
        [
            ("a-XC100", "train", "a", "", "2020-01-01", 1),
            ("a-XC101", "train", "a", "c", "2021-05-01", 2),
            ("b-XC200", "train", "b", "", "", 3),
            ("ts1", "test", "", "", "", 20),
            ("u1", "unlabeled", "", "", "", 21),
        ],
        events=[("ts1", "a", 0.0, 5.0), ("ts1", "c", 5.0, 10.0)],
        info={"variant": "2024", "year": 2024, "segment_seconds": 5.0, "source": "/x"},
    )
    write_text(target / "scored_classes.txt", "a\nc\n")
    extra1 = _folder(
        tmp_path / "e2023",
        ["a", "b", "d"],
        [
            ("a-XC100", "train", "a", "", "2020-01-01", 10),  # the target's XC100: same id
            ("d-XC300", "train", "d", "", "2020-01-01", 11),  # not a target species
            ("b-XC201", "train", "b", "", "2018-01-01", 3),  # the bytes of b-XC200
            ("a-XC102", "train", "a", "b d", "2019-01-01", 4),  # d: not a target class
            ("b-rec1", "train", "b", "", "", 5),
            ("ts1", "test", "", "", "", 22),  # an extra's soundscape: not focal
        ],
        events=[("ts1", "d", 0.0, 5.0)],
    )
    extra2 = _folder(
        tmp_path / "local",
        ["a", "b"],
        [
            ("b-rec1", "train", "b", "", "", 6),  # clashes with extra 1's id, other bytes
            ("a-XC0100", "train", "a", "", "", 7),  # XC100 again (leading zero)
        ],
    )
    return target, extra1, extra2


def _report(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / MERGE_REPORT, dtype=str, keep_default_na=False)


def test_source_ids_from_stem_or_url() -> None:
    assert source_id("/d/a/XC134896.ogg") == ("XC134896", 134896)
    assert source_id("/d/a/xc-0134896.mp3") == ("XC134896", 134896)
    assert source_id("/d/1139490/iNat327629.ogg") == ("iNat327629", 327629)
    assert source_id("CSA1234.ogg") == ("CSA1234", 1234)
    assert source_id("/d/rec001.wav", "https://xeno-canto.org/42") == ("XC42", 42)
    assert source_id("/d/rec001.wav", "https://www.inaturalist.org/observations/7") == ("iNat7", 7)
    assert source_id("/d/rec001.wav") == ("", -1)


def test_each_rule_and_the_report(sources: tuple[Path, Path, Path], tmp_path: Path) -> None:
    target, extra1, extra2 = sources
    out = tmp_path / "merged"
    summary = merge_birdclef(target, [extra1, extra2], out, n_folds=2, progress=False)
    report = _report(out)
    why = {(Path(s).name, r): (st, reason, dup) for s, r, st, reason, dup in zip(
        report["source"], report["source_recording_id"], report["status"], report["reason"],
        report["duplicate_of"], strict=True)}  # fmt: skip
    assert why[("e2023", "a-XC100")] == ("dropped", "duplicate_id", f"{target}:a-XC100")
    assert why[("local", "a-XC0100")][:2] == ("dropped", "duplicate_id")
    assert why[("e2023", "d-XC300")][:2] == ("dropped", "not_target_class")
    assert why[("e2023", "b-XC201")] == ("dropped", "duplicate_content", f"{target}:b-XC200")
    assert why[("e2023", "ts1")][:2] == ("dropped", "not_focal")
    for kept in [("t2024", r) for r in ("a-XC100", "a-XC101", "b-XC200", "ts1", "u1")] + [
        ("e2023", "a-XC102"), ("e2023", "b-rec1"), ("local", "b-rec1"),
    ]:  # fmt: skip
        assert why[kept] == ("kept", "", ""), kept
    assert len(report) == 5 + 6 + 2
    assert summary["dropped"] == {
        "not_focal": 1, "not_target_class": 1, "duplicate_id": 2, "duplicate_content": 1, "cap": 0,
    }  # fmt: skip
    # the clash: extra 2's b-rec1 is renamed with its prefix, and the report says so
    assert summary["sources"][2]["prefix"] == "x2-" and summary["renamed"] == 1
    assert report.loc[report["source"].str.endswith("local"), "recording_id"].tolist() == [
        "x2-b-rec1",
        "a-XC0100",
    ]
    recordings = read_recordings(out / "recordings.csv")
    assert recordings["recording_id"].tolist() == [
        "a-XC100", "a-XC101", "b-XC200", "ts1", "u1", "a-XC102", "b-rec1", "x2-b-rec1",
    ]  # fmt: skip
    assert summary["recordings"] == {"train": 6, "test": 1, "unlabeled": 1}
    clips = read_clips(out / "clips.csv").set_index("recording_id")
    assert clips.loc["a-XC102", "secondary"] == "b"  # d is no target class
    assert clips.loc["a-XC101", "secondary"] == "c"
    assert summary["secondary_dropped"] == 1
    # the target's classes, scored classes, events and variant; the merge recorded
    corpus = Corpus.load(out)
    assert corpus.classes == ["a", "b", "c"]
    assert (out / "scored_classes.txt").read_text() == "a\nc\n"
    assert corpus.events[["recording_id", "label"]].values.tolist() == [["ts1", "a"], ["ts1", "c"]]
    info = json.loads((out / "corpus.json").read_text())
    assert info["variant"] == "2024" and info["segment_seconds"] == 5.0
    assert info["merged"]["prefixes"] == {str(extra2): "x2-"}
    assert (out / ".done").is_file()
    # folds: exactly the merged train recordings
    assert sorted(corpus.folds["recording_id"]) == sorted(corpus.ids("train"))
    assert set(corpus.folds["fold"]) == {0, 1}


def test_cap_keeps_the_most_recent(sources: tuple[Path, Path, Path], tmp_path: Path) -> None:
    target, extra1, extra2 = sources
    out = tmp_path / "capped"
    summary = merge_birdclef(target, [extra1, extra2], out, cap=2, n_folds=2, progress=False)
    report = _report(out).set_index(["source_recording_id", "source"])
    # species a: 2021-05 and 2020-01 kept, 2019-01 (extra 1) dropped
    assert report.loc[("a-XC102", str(extra1)), "reason"] == "cap"
    # species b, all undated: XC200 (a source id number) first; then the tie of two local
    # recordings without a number goes by source order: extra 1's kept, extra 2's dropped
    assert report.loc[("b-rec1", str(extra1)), "status"] == "kept"
    assert report.loc[("b-rec1", str(extra2)), "reason"] == "cap"
    assert summary["dropped"]["cap"] == 2 and summary["capped_species"] == 2
    assert summary["renamed"] == 0  # the clashing id was capped away
    train = Corpus.load(out).ids("train")
    assert sorted(train) == ["a-XC100", "a-XC101", "b-XC200", "b-rec1"]


def test_deterministic(sources: tuple[Path, Path, Path], tmp_path: Path) -> None:
    target, extra1, extra2 = sources
    a, b = tmp_path / "a", tmp_path / "b"
    merge_birdclef(target, [extra1, extra2], a, cap=3, n_folds=2, seed=1, progress=False)
    merge_birdclef(target, [extra1, extra2], b, cap=3, n_folds=2, seed=1, nj=3, progress=False)
    for name in ("recordings.csv", "clips.csv", "events.csv", "folds.csv", MERGE_REPORT):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_errors(sources: tuple[Path, Path, Path], tmp_path: Path) -> None:
    target, extra1, _ = sources
    with pytest.raises(ValueError, match=r"outdir .* is a source folder"):
        merge_birdclef(target, [extra1], extra1, progress=False)
    with pytest.raises(ValueError, match="given twice"):
        merge_birdclef(target, [target], tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="cap must be"):
        merge_birdclef(target, [extra1], tmp_path / "o", cap=0, progress=False)
    with pytest.raises(ValueError, match="fold_groups"):
        merge_birdclef(target, [extra1], tmp_path / "o", fold_groups="country", progress=False)
    with pytest.raises(ValueError, match=r"no recordings\.csv: extra 1 must be a manifests folder"):
        merge_birdclef(target, [tmp_path], tmp_path / "o", progress=False)
    os.remove(extra1 / "audio" / "a-XC102.wav")
    with pytest.raises(ValueError, match="recording 'a-XC102': cannot read its audio"):
        merge_birdclef(target, [extra1], tmp_path / "o", n_folds=2, progress=False)
    assert not (tmp_path / "o").exists()  # nothing written before the inputs were good


def test_cli(sources: tuple[Path, Path, Path], tmp_path: Path) -> None:
    target, extra1, extra2 = sources

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "egs/birdclef/local/merge_years.py", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )

    out = tmp_path / "cli"
    proc = run("--target", str(target), "--extra", str(extra1), "--extra", str(extra2),
               "--outdir", str(out), "--folds", "2", "--cap", "2", "--nj", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        "dropped: 7: 1 not_focal, 1 not_target_class, 2 duplicate_id, 1 duplicate_content, 2 cap"
        in proc.stdout
    )
    assert (
        "species capped: 2" in proc.stdout and "folds: 2; report: merge_report.csv" in proc.stdout
    )
    assert f"{extra1}: 1 of 6 kept" in proc.stdout
    assert "recordings: 4 train, 1 test, 1 unlabeled" in proc.stdout
    bad = run("--target", str(tmp_path / "none"), "--outdir", str(out))
    assert bad.returncode == 2 and "merge_years.py: error:" in bad.stderr
    assert "Traceback" not in bad.stderr

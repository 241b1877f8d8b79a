"""Assisted labelling (sed.review, python -m sed.bin.review): cut detections into padded
segments, review them in a real pseudo-terminal and through a pipe, merge the decisions into a
detector corpus (idempotent; a changed decision moves the clip)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pty_process import PtyProcess

from sed.bin.review import main
from sed.review.merge import clip_name
from sed.review.reviewer import PROMPT, hms
from sed.review.select import Detection, choose, merge_overlapping
from sed.review.session import ReviewSession
from sed.review.sources import audio_ids
from sed.review.spectrogram import log_mel, render_text
from sed.review.tables import read_decisions, read_review, write_decisions

ROOT = Path(__file__).resolve().parents[1]
SR = 8000
DURATION = 30.0
# (recording_id, onset, offset, label, score): review order is by score
DETECTIONS = [
    ("bad", 1.0, 2.0, "bird", 0.99),  # an unreadable file
    ("rec", 0.4, 1.4, "bird", 0.95),  # 0.4 s from the start: pad_before 0.4
    ("rec", 10.0, 12.0, "bird", 0.90),
    ("rec", 29.5, 30.0, "frog", 0.85),  # ends at the end of the file: pad_after 0
    ("rec", 29.2, 31.0, "frog", 0.80),  # past the end: offset clipped to 30 s
    ("rec", 15.0, 16.0, "bird", 0.70),
    ("rec", 20.0, 21.0, "frog", 0.60),
    ("gone", 3.0, 4.0, "bird", 0.50),  # listed in clip_scores.csv, file missing
]
N_GOOD = 6


def _table(path: Path, header: list[str], rows: list[tuple]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def infer_out(tmp_path: Path) -> Path:
    """A ``sedkit infer --outdir`` folder: detections.csv, clip_scores.csv, summary.json, over a
    30 s 16-bit FLAC with a tone in each detection and an unreadable file."""
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    wave = 0.01 * rng.standard_normal(int(DURATION * SR))
    t = np.arange(len(wave)) / SR
    for _, on, off, _, _ in DETECTIONS:
        m = (t >= on) & (t < off)
        wave[m] += 0.3 * np.sin(2 * np.pi * 2000 * t[m])
    sf.write(audio / "rec.flac", wave.astype(np.float32), SR, subtype="PCM_16")
    (audio / "bad.wav").write_bytes(b"not audio at all")
    out = tmp_path / "infer"
    out.mkdir()
    _table(
        out / "detections.csv", ["recording_id", "onset", "offset", "label", "score"], DETECTIONS
    )
    files = {"rec": audio / "rec.flac", "bad": audio / "bad.wav", "gone": audio / "gone.flac"}
    _table(
        out / "clip_scores.csv",
        ["recording_id", "file", "duration", "bird", "frog"],
        [(k, str(v), DURATION, 0.5, 0.5) for k, v in files.items()],
    )
    (out / "summary.json").write_text(json.dumps({"model": "exp/x/cnn/v1 (best.pt, folds 0)"}))
    return out


def _cut(infer_out: Path, *extra: str) -> Path:
    review = infer_out.parent / "review"
    argv = ["cut", str(infer_out / "detections.csv"), "--outdir", str(review), *extra]
    assert main(argv) == 0
    return review


# ------------------------------------------------------------------------------------------ cut


def test_cut_pads_and_clips_segments_at_file_edges_sample_exactly(infer_out: Path) -> None:
    review = _cut(infer_out, "--pad", "1.0")
    rows = read_review(review / "review.csv")
    source, _ = sf.read(infer_out.parent / "audio" / "rec.flac", dtype="int16")
    assert len(rows) == N_GOOD
    assert [(r.onset, r.offset) for r in rows] == [
        (0.4, 1.4),
        (10.0, 12.0),
        (29.5, 30.0),
        (29.2, 30.0),  # offset clipped to the end of the file
        (15.0, 16.0),
        (20.0, 21.0),
    ]
    for r in rows:
        assert r.pad_before == pytest.approx(min(1.0, r.onset))
        assert r.pad_after == pytest.approx(min(1.0, DURATION - r.offset))
        seg, sr = sf.read(review / r.segment, dtype="int16")
        assert sr == SR and sf.info(review / r.segment).format == "FLAC"
        a, b = round((r.onset - r.pad_before) * SR), round((r.offset + r.pad_after) * SR)
        assert len(seg) == b - a
        np.testing.assert_array_equal(seg, source[a:b])
        assert r.checkpoint == "exp/x/cnn/v1 (best.pt, folds 0)"
        assert r.source == str(infer_out.parent / "audio" / "rec.flac")
    assert (rows[0].pad_before, rows[2].pad_after, rows[1].pad_before) == (0.4, 0.0, 1.0)


def test_unreadable_and_missing_sources_are_reported_and_skipped(
    infer_out: Path, capsys: pytest.CaptureFixture
) -> None:
    review = _cut(infer_out)
    with open(review / "skipped.csv", newline="") as f:
        skipped = {Path(r["source"]).name: r["reason"] for r in csv.DictReader(f)}
    assert skipped["bad.wav"].startswith("cannot read audio")
    assert skipped["gone.flac"] == "not found"
    captured = capsys.readouterr()
    assert re.search(r"skipped: \S*bad\.wav: cannot read audio", captured.err)
    assert "6 segments of 8 detections" in captured.out
    assert "2 skipped (skipped.csv)" in captured.out
    # --strict: the first unusable source (the highest-scored detection) stops the run
    argv = ["cut", str(infer_out / "detections.csv"), "--outdir", str(review), "--strict"]
    assert main(argv) == 1
    assert re.search(
        r"review cut: \S*bad\.wav: cannot read audio .*\(--strict\)", capsys.readouterr().err
    )


def test_cut_options_filter_order_and_merge(infer_out: Path) -> None:
    review = _cut(
        infer_out, "--labels", "frog", "--merge_overlaps", "--min_score", "0.55", "--pad", "0"
    )
    rows = read_review(review / "review.csv")
    # 29.5-30 and 29.2-30 overlap: one segment 29.2-30 with the higher score
    assert [(r.onset, r.offset, r.score) for r in rows] == [(29.2, 30.0, 0.85), (20.0, 21.0, 0.6)]
    assert all(r.pad_before == r.pad_after == 0 for r in rows)

    dets = [
        Detection("a", i, i + 1.0, "x" if i % 2 else "y", s)
        for i, s in enumerate([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    ]
    assert [d.score for d in choose(dets, max_segments=3)] == [0.9, 0.8, 0.7]
    assert [d.score for d in choose(dets, max_segments=3, order="spread")] == [0.9, 0.6, 0.3]
    assert [d.score for d in choose(dets, max_per_label=1)] == [0.9, 0.8]
    assert choose(dets, min_score=0.85) == dets[:1]
    merged = merge_overlapping(
        [Detection("a", 0, 1, "x", 0.2), Detection("a", 1.5, 2, "x", 0.9)], gap=0.5
    )
    assert merged == [Detection("a", 0, 2, "x", 0.9)]


def test_recording_ids_match_sedkit_infer(tmp_path: Path) -> None:
    """--audio makes the ids sedkit infer made (its rule is mirrored, not imported: torch)."""
    from sed.infer.files import collect_files

    for rel in ("a/x.flac", "a/x.wav", "b/c/y.ogg", "z.mp3"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    inputs = [str(tmp_path), str(tmp_path / "z.mp3")]
    files, _ = collect_files(inputs)
    assert audio_ids(inputs) == dict(files)
    assert set(audio_ids(inputs)) == {"a__x", "a__x_wav", "b__c__y", "z", "z_mp3"}


def test_stage4_detections_take_files_from_recordings_csv_and_the_model_from_the_path(
    infer_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    events = tmp_path / "exp" / "r" / "cnn" / "v1" / "infer" / "best" / "events_test"
    events.mkdir(parents=True)
    dets = events / "detections.csv"
    dets.write_text((infer_out / "detections.csv").read_text())
    out = tmp_path / "rev4"
    assert main(["cut", str(dets), "--outdir", str(out)]) == 1  # no clip_scores.csv beside
    assert "give --audio" in capsys.readouterr().err
    recordings = tmp_path / "recordings.csv"
    _table(
        recordings,
        ["recording_id", "path", "split"],
        [("rec", infer_out.parent / "audio" / "rec.flac", "test")],
    )
    assert main(["cut", str(dets), "--outdir", str(out), "--sources", str(recordings)]) == 0
    rows = read_review(out / "review.csv")
    assert len(rows) == N_GOOD
    assert {r.checkpoint for r in rows} == {f"{tmp_path.resolve()}/exp/r/cnn/v1/best"}
    # --audio: ids made from the folder as sedkit infer makes them
    assert (
        main(["cut", str(dets), "--outdir", str(out), "--audio", str(infer_out.parent / "audio")])
        == 0
    )
    assert len(read_review(out / "review.csv")) == N_GOOD


# ------------------------------------------------------------------------------ the reviewer


def _wait(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _decisions(review: Path) -> list[tuple[str, str, str]]:
    with open(review / "decisions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        assert datetime.fromisoformat(r["date"]).tzinfo is not None  # ISO 8601 with offset
    return [(r["segment"], r["decision"], r["reviewer"]) for r in rows]


def test_reviewer_in_a_pseudo_terminal_saves_each_key_and_resumes(
    infer_out: Path, tmp_path: Path
) -> None:
    review = _cut(infer_out)
    segs = [r.segment for r in read_review(review / "review.csv")]
    # a fake SoX "play" that logs what it is asked to play and keeps playing until stopped
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "plays.txt"
    (bindir / "play").write_text(f'#!/bin/sh\necho "$2" >> {log}\nexec sleep 30\n')
    (bindir / "play").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PATH"] = f"{bindir}:/usr/bin:/bin"
    argv = [sys.executable, "-m", "sed.bin.review", "review", str(review), "--reviewer", "ann"]

    def plays() -> list[str]:
        return [Path(x).name for x in log.read_text().split()] if log.exists() else []

    def step(key: str, *patterns: str, n_plays: int) -> None:
        p.send(key)
        for pat in patterns:
            p.expect(pat)
        p.expect(re.escape(PROMPT))
        # the player must have started before the next key stops it
        _wait(lambda: len(plays()) == n_plays, f"{n_plays} plays")

    p = PtyProcess(argv, env, cols=60)
    p.expect(r"6 segments, 0 already decided; starting at 1 of 6")
    p.expect(r"\[1 of 6\]  0 decided  label bird  score 0\.950")
    p.expect(r"00:00:00\.4 - 00:00:01\.4")
    p.expect(re.escape(PROMPT))
    _wait(lambda: len(plays()) == 1, "the first play")
    step("y", r"yes", r"\[2 of 6\]  1 decided", n_plays=2)  # single keys, no Enter
    step("n", r"no", r"\[3 of 6\]", n_plays=3)
    step("u", r"unsure", r"\[4 of 6\]", n_plays=4)
    step("b", r"undo: back to 3 of 6, 'unsure' removed", r"\[3 of 6\]  2 decided", n_plays=5)
    step("n", r"\[4 of 6\]", n_plays=6)
    step("r", r"replay", n_plays=7)
    step("s", r"skip", r"\[5 of 6\]", n_plays=8)
    # saved at once, before quitting
    assert _decisions(review) == [
        (segs[0], "yes", "ann"),
        (segs[1], "no", "ann"),
        (segs[2], "no", "ann"),
        (segs[3], "skip", "ann"),
    ]
    p.send("q")
    p.expect(r"4 of 6 decided")
    assert p.finish() == 0
    names = [Path(s).name for s in segs]
    assert plays() == [names[i] for i in (0, 1, 2, 3, 2, 3, 3, 4)]
    # the spectrogram fits the 60-column terminal and shows the detection ruler
    lines = p.text.replace("\r", "").split("\n")
    art = [ln for ln in lines if "│" in ln]
    assert art and max(len(ln) for ln in art) <= 60
    assert any("━" in ln for ln in art)

    p = PtyProcess(argv, env, cols=60)
    p.expect(r"6 segments, 4 already decided; starting at 5 of 6")
    p.expect(r"\[5 of 6\]  4 decided")
    p.expect(re.escape(PROMPT))
    p.send("y")
    p.expect(r"\[6 of 6\]")
    p.expect(re.escape(PROMPT))
    p.send("n")
    p.expect(r"6 of 6 decided \(yes 2, no 3, skip 1\)")
    assert p.finish() == 0
    assert _decisions(review) == [
        (segs[0], "yes", "ann"),
        (segs[1], "no", "ann"),
        (segs[2], "no", "ann"),
        (segs[3], "skip", "ann"),
        (segs[4], "yes", "ann"),
        (segs[5], "no", "ann"),
    ]


def test_reviewer_reads_lines_from_a_pipe_without_a_player(infer_out: Path, tmp_path: Path) -> None:
    review = _cut(infer_out)
    segs = [r.segment for r in read_review(review / "review.csv")]
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty), "USER": "piped"}
    argv = [sys.executable, "-m", "sed.bin.review", "review", str(review), "--ascii"]
    keys = "yes\nx\nn\nundo\nu\n\nr\nquit\n"
    res = subprocess.run(argv, input=keys, text=True, capture_output=True, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("no audio player found (tried play, aplay, afplay)") == 1
    assert "(input is not a terminal: one key per line)" in res.stdout
    assert "'x': unknown key" in res.stdout
    assert "replay: no audio player" in res.stdout
    assert re.search(r"^ +\d+\.\dk\|[ .:=+*#%@-]+$", res.stdout, re.MULTILINE)  # --ascii
    assert _decisions(review) == [(segs[0], "yes", "piped"), (segs[1], "unsure", "piped")]
    # end of input quits like q; the next run resumes
    res = subprocess.run(
        [*argv, "--png"], input="s\n", text=True, capture_output=True, env=env, cwd=ROOT
    )
    assert "2 already decided; starting at 3 of 6" in res.stdout
    assert _decisions(review)[-1] == (segs[2], "skip", "piped")
    png = review / "png" / f"{Path(segs[2]).stem}.png"
    assert f"png {png}" in res.stdout and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_session_revisit_and_undo_before_the_first_decision(tmp_path: Path) -> None:
    from sed.review.tables import ReviewRow

    rows = [
        ReviewRow(f"s{i}.flac", "src.wav", "src", i, i + 1.0, 0.0, 0.0, "x", 0.5) for i in range(3)
    ]
    path = tmp_path / "decisions.csv"
    s = ReviewSession(rows, path, "ann", clock=lambda: "2026-01-01T00:00:00+00:00")
    assert s.undo() is None  # nothing before the first segment
    s.decide("unsure")
    s.decide("yes")
    s.decide("skip")
    assert s.done and s.counts() == {"yes": 1, "no": 0, "unsure": 1, "skip": 1, "undecided": 0}
    again = ReviewSession(rows, path, "bob", revisit={"unsure", "skip"})
    assert (again.index, again.n_decided) == (0, 1)
    again.decide("no")
    assert again.index == 2
    again.decide("yes")
    assert {k: d.decision for k, d in read_decisions(path).items()} == {
        "s0.flac": "no",
        "s1.flac": "yes",
        "s2.flac": "yes",
    }
    assert read_decisions(path)["s1.flac"].reviewer == "ann"


def test_text_spectrogram_fits_the_width_and_shows_the_tone() -> None:
    t = np.arange(2 * SR) / SR
    wave = 0.001 * np.random.default_rng(1).standard_normal(len(t))
    wave[SR // 2 : SR] += np.sin(2 * np.pi * 2000 * t[SR // 2 : SR])
    spec, centres, _ = log_mel(wave, SR, n_mels=12)
    lines = render_text(spec, centres, 50, span=(0.25, 0.5), ascii_only=True)
    assert len(lines) == 13 and all(len(ln) <= 50 for ln in lines)
    band = 11 - int(np.argmin(np.abs(centres - 2000)))  # row of the 2 kHz band (top row first)
    cols = lines[band][7:]
    assert cols[15:20] == "@@@@@" and cols[35:] == " " * len(cols[35:])
    assert lines[-1][7:].startswith("-" * 10) and "=" * 10 in lines[-1]
    assert hms(3725.3) == "01:02:05.3" and hms(0.04) == "00:00:00.0"


# ------------------------------------------------------------------------------------- merge


def _decide(review: Path, decisions: dict[int, str]) -> list[str]:
    segs = [r.segment for r in read_review(review / "review.csv")]
    from sed.review.tables import Decision

    write_decisions(
        review / "decisions.csv",
        {
            segs[i]: Decision(segs[i], d, "ann", f"2026-11-30T10:00:0{i}+00:00")
            for i, d in decisions.items()
        },
        segs,
    )
    return segs


def _reviewed(root: Path) -> list[dict[str, str]]:
    with open(root / "reviewed.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_merge_writes_clips_and_provenance_idempotently_and_moves_changed_clips(
    infer_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    review = _cut(infer_out)
    rows = read_review(review / "review.csv")
    _decide(review, {0: "yes", 1: "no", 2: "unsure", 3: "skip", 4: "yes"})
    root = tmp_path / "corpus"
    merge_argv = ["merge", str(review), "--root", str(root)]

    assert main([*merge_argv, "--dry_run"]) == 0
    assert "dry run: added 3, unsure 1, skip 1, undecided 1" in capsys.readouterr().out
    assert not root.exists()

    assert main(merge_argv) == 0
    assert "added 3, unsure 1, skip 1, undecided 1" in capsys.readouterr().out
    source, _ = sf.read(infer_out.parent / "audio" / "rec.flac", dtype="int16")
    expect = {0: "bird", 1: "negative", 4: "bird"}
    clips = sorted(str(p.relative_to(root)) for p in root.rglob("*.flac"))
    assert clips == sorted(f"clips/{lab}/{clip_name(rows[i])}.flac" for i, lab in expect.items())
    for i, lab in expect.items():
        clip, _ = sf.read(root / "clips" / lab / f"{clip_name(rows[i])}.flac", dtype="int16")
        # the detection span itself, not the context padding
        np.testing.assert_array_equal(
            clip, source[round(rows[i].onset * SR) : round(rows[i].offset * SR)]
        )
    reviewed = _reviewed(root)
    assert [(r["clip"], r["decision"], r["label"]) for r in reviewed] == [
        (f"clips/bird/{clip_name(rows[0])}.flac", "yes", "bird"),
        (f"clips/negative/{clip_name(rows[1])}.flac", "no", "negative"),
        (f"clips/bird/{clip_name(rows[4])}.flac", "yes", "bird"),
    ]
    assert reviewed[0] == {
        "clip": f"clips/bird/{clip_name(rows[0])}.flac",
        "source": rows[0].source,
        "onset": "0.400000",
        "offset": "1.400000",
        "decision": "yes",
        "label": "bird",
        "score": "0.950000",
        "reviewer": "ann",
        "date": "2026-11-30T10:00:00+00:00",
        "checkpoint": "exp/x/cnn/v1 (best.pt, folds 0)",
    }

    # the same decisions again: nothing changes
    before = (root / "reviewed.csv").read_bytes()
    assert main(merge_argv) == 0
    assert "unchanged 3, unsure 1" in capsys.readouterr().out
    assert (root / "reviewed.csv").read_bytes() == before
    assert len(list(root.rglob("*.flac"))) == 3

    # changed decisions: yes -> no moves the clip, yes -> unsure withdraws it
    _decide(review, {0: "no", 1: "no", 2: "unsure", 3: "skip", 4: "unsure"})
    assert main([*merge_argv, "--dry_run"]) == 0
    assert "would move clips/bird/" in capsys.readouterr().out
    assert (root / "reviewed.csv").read_bytes() == before
    assert main(merge_argv) == 0
    assert "moved 1, removed 1, unchanged 1, unsure 2, skip 1" in capsys.readouterr().out
    clips = sorted(str(p.relative_to(root)) for p in root.rglob("*.flac"))
    assert clips == sorted(f"clips/negative/{clip_name(rows[i])}.flac" for i in (0, 1))
    assert [(r["clip"], r["decision"]) for r in _reviewed(root)] == [
        (f"clips/negative/{clip_name(rows[1])}.flac", "no"),
        (f"clips/negative/{clip_name(rows[0])}.flac", "no"),
    ]


def test_merge_keep_padding_and_a_named_negative_folder(infer_out: Path, tmp_path: Path) -> None:
    review = _cut(infer_out)
    rows = read_review(review / "review.csv")
    _decide(review, {0: "no"})
    root = tmp_path / "corpus"
    argv = ["merge", str(review), "--root", str(root), "--keep_padding", "--negative", "noise"]
    assert main(argv) == 0
    clip, _ = sf.read(root / "clips" / "noise" / f"{clip_name(rows[0])}.flac", dtype="int16")
    seg, _ = sf.read(review / rows[0].segment, dtype="int16")
    np.testing.assert_array_equal(clip, seg)
    (row,) = _reviewed(root)
    assert (row["onset"], row["offset"], row["label"]) == ("0.000000", "2.400000", "noise")
    # without the padding the same clip is rewritten in place, not duplicated
    assert main(["merge", str(review), "--root", str(root), "--negative", "noise"]) == 0
    (row,) = _reviewed(root)
    assert (row["onset"], row["offset"]) == ("0.400000", "1.400000")
    assert len(list(root.rglob("*.flac"))) == 1

"""Bad input gets a clear error or a reported skip, and nothing is corrupted (issue 12).

One test (or a few) per class of bad input, each building its bad input in ``tmp_path`` in the
layout of the Kaggle RFCX download (``train/*.flac``, ``test/*.flac``, ``train_tp.csv``,
``train_fp.csv``, ``sample_submission.csv``). Classes 1, 8 and 14 go through the real entry points
(``egs/rfcx/local/data_prep.py`` and ``python -m sed.bin.dump``) as subprocesses, in both the
default (skip and list) and ``--strict`` (stop at the first bad file) modes.

 1 corrupt audio            2 truncated FLAC          3 zero-length file       4 NaN/Inf samples
 5 wrong sample rate        6 multichannel            7 shorter than a window  8 missing audio
 9 CSV missing a column    10 inverted/out-of-range times                      11 unknown label
12 config key typo         13 config value of the wrong type                   14 wrong layout
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from sed.config import ConfigError, load_config
from sed.data.manifest import ManifestError, read_events, read_recordings, write_recordings
from sed.data.rfcx import prepare_rfcx
from sed.features.audio import AudioError, load_audio
from sed.features.dump import dump_features, dump_path, feature_name
from sed.frames import FrameGrid
from sed.infer.sliding import predict_recording
from sed.models import build_model

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "conf" / "cnn" / "tiny.yaml"
SR = 16000  # the rate of conf/cnn/tiny.yaml's features, so stage-1 tests need no resampling
DURATION = 3.0
TRAIN = ["00204008d", "0123", "a1", "b2", "c3", "d4"]
TEST = ["000test", "t2"]
HEADER = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max\n"
# Row i of train_tp.csv is on line i + 2; "0123" is first named on line 3.
TP_ROWS = [
    "00204008d,0,1,0.5,100.0,1.5,900.0",
    "0123,1,1,1.0,200.0,2.0,1200.5",
    "0123,0,4,2.1,100.0,2.9,800.0",
    "a1,2,1,0.1,300.0,0.9,1000.0",
    "b2,1,1,0.2,200.0,1.2,1100.0",
    "c3,0,1,0.3,100.0,2.99,900.0",
]
FP_ROWS = ["d4,3,1,0.0,50.0,1.0,500.0", "a1,0,1,1.0,100.0,2.0,900.0"]


# ------------------------------------------------------------------------------------------------
# builders
# ------------------------------------------------------------------------------------------------


def _wave(seed: int, duration: float = DURATION, sr: int = SR, freq: float | None = None):
    """A tone plus a little noise, float32 (N,)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(duration * sr))) / sr
    f = freq if freq is not None else 300 + 150 * seed
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _flac(path: Path, seed: int) -> None:
    sf.write(path, _wave(seed), SR, format="FLAC", subtype="PCM_16")


def _corpus(root: Path, tp_rows: list[str] | None = None) -> Path:
    """A corpus laid out like the Kaggle download; returns its folder."""
    for split, ids in (("train", TRAIN), ("test", TEST)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i, rid in enumerate(ids):
            _flac(root / split / f"{rid}.flac", seed=i)
    (root / "train_tp.csv").write_text(HEADER + "\n".join(tp_rows or TP_ROWS) + "\n")
    (root / "train_fp.csv").write_text(HEADER + "\n".join(FP_ROWS) + "\n")
    cols, zeros = ",".join(f"s{k}" for k in range(4)), ",".join("0" * 4)
    lines = [f"recording_id,{cols}"] + [f"{rid},{zeros}" for rid in TEST]
    (root / "sample_submission.csv").write_text("\n".join(lines) + "\n")
    return root


def _recordings(datadir: Path, files: dict[str, Path]) -> pd.DataFrame:
    """Write a recordings.csv (what stage 0 would have written) for arbitrary files, as stage 1
    sees them: a file may have changed, vanished or been written by another tool since."""
    rows = []
    for rid, path in files.items():
        try:
            info = sf.info(str(path))
            fmt = (info.frames / info.samplerate, info.samplerate, info.channels)
        except (RuntimeError, OSError):
            fmt = (DURATION, SR, 1)
        rows.append((rid, str(path), "train", *fmt))
    cols = ["recording_id", "path", "split", "duration", "sample_rate", "channels"]
    recs = pd.DataFrame(rows, columns=cols)
    datadir.mkdir(parents=True, exist_ok=True)
    write_recordings(recs, datadir / "recordings.csv")
    return recs


def _features():
    return load_config(TINY)[0].features


def _dump(recs: pd.DataFrame, feat_dir: Path, strict: bool = False) -> dict:
    return dump_features(recs, _features(), feat_dir, strict=strict, progress=False)


def _read_dump(feat_dir: Path) -> dict[str, np.ndarray]:
    with h5py.File(dump_path(feat_dir), "r") as h5:
        return {k: h5[k][...].astype(np.float32) for k in h5}


def _skipped(feat_dir: Path) -> pd.DataFrame:
    return pd.read_csv(feat_dir / "skipped.csv", dtype=str)


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _prep_cli(datadir: Path, outdir: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run(
        "egs/rfcx/local/data_prep.py", "--datadir", str(datadir), "--outdir", str(outdir),
        "--folds", "2", *extra,
    )  # fmt: skip


def _dump_cli(datadir: Path, dumpdir: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run(
        "-m", "sed.bin.dump", "--conf", str(TINY), "--datadir", str(datadir),
        "--dumpdir", str(dumpdir), "--no_progress", *extra,
    )  # fmt: skip


def _no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------------
# 1 corrupt audio
# ------------------------------------------------------------------------------------------------


def test_corrupt_audio_stage0_cli_skips_and_lists_or_strict_fails(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "raw")
    bad = root / "train" / "0123.flac"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    out = tmp_path / "data"
    proc = _prep_cli(root, out)
    assert proc.returncode == 0, proc.stderr
    assert f"skipping {bad.resolve()}: unreadable audio" in proc.stderr  # reported, by path
    assert "skipped: 1 audio file(s) and 2 annotation(s)" in proc.stdout
    skipped = pd.read_csv(out / "skipped.csv", dtype=str)
    assert skipped["path"].tolist() == [str(bad.resolve())]
    assert skipped["reason"].iloc[0].startswith("unreadable audio")
    recs = read_recordings(out / "recordings.csv")
    assert "0123" not in set(recs["recording_id"]) and len(recs) == len(TRAIN) + len(TEST) - 1
    assert "0123" not in set(read_events(out / "events.csv")["recording_id"])
    assert (out / ".done").exists()

    strict = tmp_path / "strict"
    proc = _prep_cli(root, strict, "--strict")
    assert proc.returncode == 2
    _no_traceback(proc)
    # names the CSV line that lists the recording, and the file
    assert f"{root.resolve() / 'train_tp.csv'} line 3: recording_id '0123'" in proc.stderr
    assert str(bad.resolve()) in proc.stderr
    assert not (strict / ".done").exists() and not (strict / "recordings.csv").exists()


def _corrupt_middle(path: Path) -> None:
    """Overwrite bytes in the middle of a FLAC: its header and last frames stay valid, so only a
    full decode (stage 1) finds the damage."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 2000] = np.random.default_rng(1).bytes(2000)
    path.write_bytes(bytes(data))


def test_corrupt_audio_stage1_cli_skips_and_lists_or_strict_fails(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "raw")
    bad = root / "train" / "a1.flac"
    _corrupt_middle(bad)
    data = tmp_path / "data"
    summary = prepare_rfcx(root, data, n_folds=2)
    assert summary["skipped"] == []  # stage 0 only probes the header and the last samples

    dump = tmp_path / "dump"
    feat_dir = dump / feature_name(_features())
    proc = _dump_cli(data, dump)
    assert proc.returncode == 0, proc.stderr
    assert f"{bad.resolve()}: cannot decode audio" in proc.stderr
    skipped = _skipped(feat_dir)
    assert skipped["recording_id"].tolist() == ["a1"]
    assert skipped["path"].tolist() == [str(bad.resolve())]
    feats = _read_dump(feat_dir)
    assert set(feats) == set(TRAIN + TEST) - {"a1"}
    assert all(np.isfinite(f).all() for f in feats.values())
    assert (feat_dir / ".done").exists()

    # strict, over the complete dump: exit 2 naming the file, and the good dump is not replaced
    before = dump_path(feat_dir).read_bytes()
    proc = _dump_cli(data, dump, "--strict", "--overwrite")
    assert proc.returncode == 2
    _no_traceback(proc)
    assert "dump: error:" in proc.stderr and f"{bad.resolve()}: cannot decode" in proc.stderr
    assert dump_path(feat_dir).read_bytes() == before
    assert not list(feat_dir.glob("sp*/.feats.h5.*.tmp"))  # no temporary file left behind
    assert not (feat_dir / ".done").exists()

    # strict into a fresh folder: nothing that looks complete is written
    fresh = tmp_path / "dump_strict"
    proc = _dump_cli(data, fresh, "--strict", "--nj", "2")  # worker processes: same answer
    assert proc.returncode == 2
    _no_traceback(proc)
    assert f"{bad.resolve()}: cannot decode" in proc.stderr
    assert not dump_path(fresh / feat_dir.name).exists()
    assert not (fresh / feat_dir.name / ".done").exists()


# ------------------------------------------------------------------------------------------------
# 2 truncated FLAC: a decode failure in both stages (never a silently shorter recording)
# ------------------------------------------------------------------------------------------------


def test_truncated_flac_is_skipped_in_stage0_and_stage1(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "raw")
    path = root / "test" / "t2.flac"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    summary = prepare_rfcx(root, tmp_path / "data", n_folds=2)
    assert [s["path"] for s in summary["skipped"]] == [str(path.resolve())]
    assert summary["skipped"][0]["reason"].startswith("truncated")
    assert summary["recordings"] == {"train": len(TRAIN), "test": len(TEST) - 1}

    # stage 1 (a file cut after stage 0 probed it): libsndfile loses sync, the file is skipped
    with pytest.raises(AudioError, match="cannot decode audio"):
        load_audio(path)
    good = root / "test" / "000test.flac"
    recs = _recordings(tmp_path / "data1", {"t2": path, "000test": good})
    feat_dir = tmp_path / "dump"
    result = _dump(recs, feat_dir)
    assert result["n_skipped"] == 1 and result["n_done"] == 1
    assert _skipped(feat_dir)["recording_id"].tolist() == ["t2"]
    assert set(_read_dump(feat_dir)) == {"000test"}


# ------------------------------------------------------------------------------------------------
# 3 zero-length file
# ------------------------------------------------------------------------------------------------


def test_zero_length_file_is_skipped_and_listed(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "raw")
    empty = root / "train" / "b2.flac"
    empty.write_bytes(b"")
    summary = prepare_rfcx(root, tmp_path / "data", n_folds=2)
    assert [s["path"] for s in summary["skipped"]] == [str(empty.resolve())]
    assert summary["skipped"][0]["reason"].startswith("unreadable audio")
    assert summary["skipped_events"] == 1
    with pytest.raises(ManifestError, match=r"'b2': unreadable audio"):
        prepare_rfcx(root, tmp_path / "strict", n_folds=2, strict=True)

    recs = _recordings(tmp_path / "data1", {"b2": empty, "a1": root / "train" / "a1.flac"})
    feat_dir = tmp_path / "dump"
    _dump(recs, feat_dir)
    skipped = _skipped(feat_dir)
    assert skipped["recording_id"].tolist() == ["b2"]
    assert str(empty) in skipped["reason"].iloc[0]
    assert set(_read_dump(feat_dir)) == {"a1"}


# ------------------------------------------------------------------------------------------------
# 4 NaN / Inf samples: refused with a warning naming the file; never in a dump
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, 1e30])
def test_non_finite_audio_is_refused_and_dumps_stay_finite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad_value: float
) -> None:
    wave = _wave(0)
    if np.isfinite(bad_value):
        wave = wave * np.float32(bad_value)  # finite samples whose power spectrum overflows
    else:
        wave[1000:1010] = bad_value
    bad = tmp_path / "nan.wav"
    sf.write(bad, wave, SR, subtype="FLOAT")
    good = tmp_path / "good.wav"
    sf.write(good, _wave(1), SR, subtype="FLOAT")
    recs = _recordings(tmp_path / "data", {"bad": bad, "good": good})
    feat_dir = tmp_path / "dump"
    with caplog.at_level(logging.WARNING, logger="sed.features.dump"):
        result = _dump(recs, feat_dir)
    assert result["n_skipped"] == 1
    assert any(str(bad) in r.getMessage() for r in caplog.records)
    reason = _skipped(feat_dir)["reason"].iloc[0]
    assert str(bad) in reason
    assert ("not finite" if np.isfinite(bad_value) else "NaN or infinite") in reason
    feats = _read_dump(feat_dir)
    assert set(feats) == {"good"} and np.isfinite(feats["good"]).all()
    with pytest.raises(AudioError, match=str(bad)):
        _dump(recs, tmp_path / "strict", strict=True)
    assert not dump_path(tmp_path / "strict").exists()


# ------------------------------------------------------------------------------------------------
# 5 wrong sample rate: resampled to features.sample_rate
# ------------------------------------------------------------------------------------------------


def test_other_sample_rate_is_resampled_to_the_feature_rate(tmp_path: Path) -> None:
    other = 22050
    root = _corpus(tmp_path / "raw")
    path = root / "train" / "c3.flac"
    sf.write(path, _wave(0, sr=other, freq=1000.0), other, format="FLAC", subtype="PCM_16")
    data = tmp_path / "data"
    prepare_rfcx(root, data, n_folds=2)
    recs = read_recordings(data / "recordings.csv")
    row = recs.set_index("recording_id").loc["c3"]
    assert row["sample_rate"] == other and row["duration"] == pytest.approx(DURATION)

    ref = tmp_path / "ref.flac"  # the same tone recorded at the corpus rate
    sf.write(ref, _wave(0, freq=1000.0), SR, format="FLAC", subtype="PCM_16")
    feat_dir = tmp_path / "dump"
    _dump(pd.concat([recs, _recordings(tmp_path / "r", {"ref": ref})]), feat_dir)
    feats = _read_dump(feat_dir)
    grid = FrameGrid(SR, _features().hop_length)
    # 3 s at 16 kHz: the frame count of the corpus rate, not of 22.05 kHz
    assert feats["c3"].shape == feats["ref"].shape == (64, grid.n_frames(int(DURATION * SR)))
    # and the tone sits in the same mel band
    mid = slice(10, -10)
    band = feats["ref"][:, mid].argmax(0)
    assert (feats["c3"][:, mid].argmax(0) == band).all()
    # with the same level there (the noise floors differ: 22.05 kHz noise is wider band)
    np.testing.assert_allclose(feats["c3"][band[0], mid], feats["ref"][band[0], mid], atol=0.1)


# ------------------------------------------------------------------------------------------------
# 6 multichannel: averaged to mono
# ------------------------------------------------------------------------------------------------


def test_multichannel_is_downmixed_to_the_channel_mean(tmp_path: Path) -> None:
    left, right = _wave(0), _wave(3)
    root = _corpus(tmp_path / "raw")
    stereo = root / "train" / "d4.flac"
    sf.write(stereo, np.stack([left, right], axis=1), SR, format="FLAC", subtype="PCM_24")
    data = tmp_path / "data"
    prepare_rfcx(root, data, n_folds=2)
    recs = read_recordings(data / "recordings.csv")
    assert recs.set_index("recording_id").loc["d4", "channels"] == 2

    mono = tmp_path / "mono.wav"
    sf.write(mono, (left + right) / 2, SR, subtype="FLOAT")
    wave, _ = load_audio(stereo)
    assert wave.ndim == 1
    np.testing.assert_allclose(wave, (left + right) / 2, atol=1e-5)
    feat_dir = tmp_path / "dump"
    _dump(pd.concat([recs, _recordings(tmp_path / "r", {"mono": mono})]), feat_dir)
    feats = _read_dump(feat_dir)
    assert feats["d4"].shape == feats["mono"].shape
    # float16 storage: equal to its rounding
    np.testing.assert_allclose(feats["d4"], feats["mono"], atol=0.05)


# ------------------------------------------------------------------------------------------------
# 7 audio shorter than one window: dumped (zero-padded for the STFT) and scored
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_samples", [1, 100, 256, 8000])
def test_short_audio_is_dumped_and_scored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, n_samples: int
) -> None:
    """8000 samples (0.5 s) is shorter than the 2 s inference window; 1, 100 and 256 are shorter
    than half the 512-sample FFT window, which torch.stft's reflect padding cannot take."""
    cfg = load_config(TINY)[0]
    root = _corpus(tmp_path / "raw")
    short = root / "test" / "t2.flac"
    sf.write(short, _wave(5)[:n_samples], SR, format="FLAC", subtype="PCM_16")
    data = tmp_path / "data"
    prepare_rfcx(root, data, n_folds=2)
    recs = read_recordings(data / "recordings.csv")
    assert recs.set_index("recording_id").loc["t2", "duration"] == pytest.approx(n_samples / SR)

    feat_dir = tmp_path / "dump"
    with caplog.at_level(logging.WARNING, logger="sed.features.dump"):
        result = _dump(recs, feat_dir)
    assert result["n_skipped"] == 0
    padded = [r.getMessage() for r in caplog.records if "zero-padded" in r.getMessage()]
    # only what torch.stft cannot take is padded, and the warning names the file
    assert padded == (
        []
        if n_samples > 256
        else [
            f"{short.resolve()}: {n_samples} samples at "
            "speed 1, shorter than half an FFT window (512); zero-padded for the STFT"
        ]
    )
    grid = FrameGrid(SR, cfg.features.hop_length)
    feats = _read_dump(feat_dir)["t2"]
    assert feats.shape == (cfg.features.n_mels, grid.n_frames(n_samples))  # the true length's
    assert np.isfinite(feats).all()

    # stage 3's sliding windows over it: a window of the config, the recording repeated to fill it
    torch.manual_seed(0)
    model = build_model(cfg.model.name, 4, cfg.features.n_mels, cfg.model.params).eval()
    window = grid.n_frames(grid.seconds_to_samples(cfg.infer.window_seconds))
    assert feats.shape[1] < window
    clip, frame = predict_recording(model, feats, window, grid.seconds_to_frames(1.0))
    assert clip.shape == (4,) and np.isfinite(clip).all() and ((clip > 0) & (clip < 1)).all()
    assert frame.shape == (feats.shape[1] // model.time_reduction, 4)
    assert np.isfinite(frame).all()


# ------------------------------------------------------------------------------------------------
# 8 missing audio file
# ------------------------------------------------------------------------------------------------


def test_missing_audio_stage0_cli_skips_and_lists_or_strict_fails(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "raw", tp_rows=[*TP_ROWS, "ghost,1,1,0.5,100,1.5,900"])
    out = tmp_path / "data"
    proc = _prep_cli(root, out)
    assert proc.returncode == 0, proc.stderr
    ghost = root.resolve() / "train" / "ghost.flac"
    line = len(TP_ROWS) + 2
    assert f"skipping {ghost}: missing audio file (listed in" in proc.stderr
    assert f"train_tp.csv line {line})" in proc.stderr
    assert "skipped: 1 audio file(s) and 1 annotation(s)" in proc.stdout
    skipped = pd.read_csv(out / "skipped.csv", dtype=str)
    assert skipped.to_dict("records") == [{"path": str(ghost), "reason": "missing audio file"}]
    assert "ghost" not in set(read_recordings(out / "recordings.csv")["recording_id"])

    strict = tmp_path / "strict"
    proc = _prep_cli(root, strict, "--strict")
    assert proc.returncode == 2
    _no_traceback(proc)
    assert (
        f"{root.resolve() / 'train_tp.csv'} line {line}: recording_id 'ghost': missing audio file"
        in proc.stderr
    )
    assert not (strict / ".done").exists()


def test_missing_audio_stage1_cli_skips_and_lists_or_strict_fails(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "raw")
    data = tmp_path / "data"
    prepare_rfcx(root, data, n_folds=2)
    gone = root.resolve() / "train" / "b2.flac"
    gone.unlink()  # removed between stage 0 and stage 1
    dump = tmp_path / "dump"
    feat_dir = dump / feature_name(_features())
    proc = _dump_cli(data, dump)
    assert proc.returncode == 0, proc.stderr
    assert f"skipping {gone}: file not found" in proc.stderr
    assert _skipped(feat_dir)[["recording_id", "path"]].values.tolist() == [["b2", str(gone)]]
    assert set(_read_dump(feat_dir)) == set(TRAIN + TEST) - {"b2"}

    fresh = tmp_path / "dump_strict"
    proc = _dump_cli(data, fresh, "--strict")
    assert proc.returncode == 2
    _no_traceback(proc)
    assert f"dump: error: {gone}: file not found" in proc.stderr
    assert not dump_path(fresh / feat_dir.name).exists()


# ------------------------------------------------------------------------------------------------
# 9 CSV with a missing column
# ------------------------------------------------------------------------------------------------


def test_annotation_csv_missing_a_column_names_file_and_column(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "raw")
    fp = root / "train_fp.csv"
    table = pd.read_csv(fp, dtype=str).drop(columns=["t_max"])
    table.to_csv(fp, index=False)
    with pytest.raises(ManifestError) as exc:
        prepare_rfcx(root, tmp_path / "data", n_folds=2)
    assert exc.value.path == str(fp.resolve()) and exc.value.column == "t_max"
    assert str(exc.value).startswith(f"{fp.resolve()} line 1: missing column(s) t_max;")
    assert not (tmp_path / "data" / ".done").exists()


def test_manifest_missing_a_column_stops_stage1_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "recordings.csv").write_text("recording_id,path,split,duration,sample_rate\n")
    proc = _dump_cli(data, tmp_path / "dump")
    assert proc.returncode == 2
    _no_traceback(proc)
    assert f"{data / 'recordings.csv'} line 1: missing column(s) channels" in proc.stderr


# ------------------------------------------------------------------------------------------------
# 10 inverted or out-of-range times
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "column", "pattern"),
    [
        ("a1,2,1,1.5,100,1.0,900", "t_max", r"t_max \(1\.0\) must be greater than t_min \(1\.5\)"),
        ("a1,2,1,1.0,100,1.0,900", "t_max", r"t_max \(1\.0\) must be greater than t_min"),
        ("a1,2,1,-0.5,100,1.0,900", "t_min", r"t_min \(-0\.5\) must be >= 0"),
        ("a1,2,1,1.0,100,7.5,900", "t_max", r"t_max \(7\.5\) is beyond the end of recording 'a1'"),
        ("a1,2,1,5.0,100,6.0,900", "t_max", r"is beyond the end of recording 'a1' \(duration 3"),
        ("a1,2,1,nan,100,1.0,900", "t_min", r"t_min \('nan'\) is not a finite number"),
    ],
)
def test_bad_times_name_file_line_and_column(
    tmp_path: Path, row: str, column: str, pattern: str
) -> None:
    root = _corpus(tmp_path / "raw", tp_rows=[*TP_ROWS, row])
    with pytest.raises(ManifestError, match=pattern) as exc:
        prepare_rfcx(root, tmp_path / "data", n_folds=2)
    line = len(TP_ROWS) + 2
    assert str(exc.value).startswith(f"{root.resolve() / 'train_tp.csv'} line {line}: ")
    assert exc.value.column == column
    assert not (tmp_path / "data" / ".done").exists()


# ------------------------------------------------------------------------------------------------
# 11 unknown label
# ------------------------------------------------------------------------------------------------


def test_unknown_species_names_file_line_and_value(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "raw", tp_rows=[*TP_ROWS[:2], "b2,23,1,0.2,200,1.2,1100"])
    with pytest.raises(ManifestError) as exc:
        prepare_rfcx(root, tmp_path / "data", n_folds=2)
    assert str(exc.value) == (
        f"{root.resolve() / 'train_tp.csv'} line 4: species_id 23 is not a class of "
        "sample_submission.csv (its columns are s0..s3)"
    )
    assert exc.value.column == "species_id"


def test_unknown_label_in_events_manifest_names_file_line_and_value(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text("recording_id,label,onset,offset,kind\na1,s0,0.1,0.5,tp\na1,s9,0.2,0.8,tp\n")
    with pytest.raises(ManifestError, match=r"'s9'") as exc:
        read_events(events, classes=["s0", "s1"])
    assert exc.value.line == 3 and exc.value.column == "label"
    assert str(exc.value).startswith(f"{events} line 3: ")


# ------------------------------------------------------------------------------------------------
# 12 config key typo, 13 config value of the wrong type
# ------------------------------------------------------------------------------------------------


def _conf(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(f"base: {TINY}\n{body}")
    return path


def test_config_key_typo_names_key_file_and_closest_key(tmp_path: Path) -> None:
    path = _conf(tmp_path, "train:\n  max_step: 10\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value) == (
        f"{path}: unknown config key 'train.max_step' (did you mean 'train.max_steps'?)"
    )
    # the same through a stage entry point: exit 2, no traceback
    proc = _dump_cli(tmp_path, tmp_path / "dump", "--conf", str(path))  # the last --conf wins
    assert proc.returncode == 2
    _no_traceback(proc)
    assert "config error:" in proc.stderr and "did you mean 'train.max_steps'" in proc.stderr


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        ("train:\n  max_steps: ten\n", "train.max_steps", "int"),
        ("features:\n  sample_rate: 16000.5\n", "features.sample_rate", "int"),
        ("data:\n  crop_seconds: [2]\n", "data.crop_seconds", "float"),
        ("train: 5\n", "train", "section"),
    ],
)
def test_config_value_of_wrong_type_names_key_file_and_type(
    tmp_path: Path, body: str, key: str, expected: str
) -> None:
    path = _conf(tmp_path, body)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and f"'{key}'" in message
    assert f"must be {expected}" in message or f"must be a {expected}" in message


# ------------------------------------------------------------------------------------------------
# 14 a --datadir in the wrong layout
# ------------------------------------------------------------------------------------------------


def test_wrong_layout_cli_names_what_is_missing(tmp_path: Path) -> None:
    # the folder above the unpacked download: everything is missing, and the hint finds it
    root = _corpus(tmp_path / "downloads" / "rfcx-species-audio-detection")
    proc = _prep_cli(root.parent, tmp_path / "out")
    assert proc.returncode == 2
    _no_traceback(proc)
    assert f"{root.parent}: no train/, test/, train_tp.csv, train_fp.csv in it;" in proc.stderr
    assert "train/, test/, train_tp.csv, train_fp.csv and sample_submission.csv" in proc.stderr
    assert f"(did you mean {root}?)" in proc.stderr
    assert not (tmp_path / "out").exists()


def _no_tp(root: Path) -> Path:
    (root / "train_tp.csv").unlink()
    return root


def _no_test_dir(root: Path) -> Path:
    for f in (root / "test").iterdir():
        f.unlink()
    (root / "test").rmdir()
    return root


def _wav_audio(root: Path) -> Path:
    for f in (root / "train").glob("*.flac"):
        f.rename(f.with_suffix(".wav"))
    return root


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_no_tp, "{root}/train_tp.csv: file not found; pass --datadir"),
        (_no_test_dir, "{root}: no test/ folder; pass --datadir"),
        (_wav_audio, "{root}: no .flac files in train/ (it holds .wav files)"),
        (lambda root: root / "train", "(did you mean {root}?)"),
        (lambda root: root / "nowhere", "{root}/nowhere: data folder does not exist; pass"),
    ],
)
def test_wrong_layout_names_what_is_missing(
    tmp_path: Path, damage: Callable[[Path], Path], message: str
) -> None:
    root = _corpus(tmp_path / "rfcx").resolve()
    datadir = damage(root)
    with pytest.raises(ManifestError) as exc:
        prepare_rfcx(datadir, tmp_path / "out", n_folds=2)
    assert message.format(root=root) in str(exc.value)
    assert not (tmp_path / "out").exists()

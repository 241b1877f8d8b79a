"""Decoding, the log-mel front end and the HDF5 dumps of stage 1."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from sed.config import FeaturesConf
from sed.features.audio import AudioError, load_audio, speed_perturb
from sed.features.dump import FeatureStore, dump_features, dump_path, feature_name
from sed.features.frontend import LogMel

FEATS = FeaturesConf(
    sample_rate=16000,
    n_fft=512,
    hop_length=160,
    n_mels=32,
    fmin=50.0,
    fmax=8000.0,
    speed_perturb=[0.9, 1.1],
)


def tone(path: Path, sr: int, seconds: float, freq: float, channels: int = 1) -> Path:
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    sf.write(path, np.stack([x] * channels, axis=1) if channels > 1 else x, sr)
    return path


def test_load_audio_resamples_and_downmixes(tmp_path: Path) -> None:
    p = tone(tmp_path / "a.flac", 44100, 1.0, 1000.0, channels=2)
    wave, sr = load_audio(p, 16000)
    assert sr == 16000 and wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) <= 1
    # the tone survives resampling: its spectrum peaks at 1 kHz
    spec = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spec) * 16000 / len(wave) - 1000) < 5


def test_load_audio_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio at all" * 100)
    with pytest.raises(AudioError, match=r"bad\.flac"):
        load_audio(bad)
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "missing.wav")


def test_speed_perturb_changes_length_and_pitch() -> None:
    sr = 16000
    t = np.arange(sr) / sr
    x = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    y = speed_perturb(x, sr, 1.25)
    assert abs(len(y) - sr / 1.25) <= 2
    peak = np.argmax(np.abs(np.fft.rfft(y))) * sr / len(y)
    assert abs(peak - 1250) < 10


def test_logmel_tone_lands_in_the_right_band() -> None:
    fe = LogMel(16000, 512, 160, 32, 50, 8000)
    t = torch.arange(16000) / 16000
    low = fe(torch.sin(2 * np.pi * 300 * t)).mean(dim=1)
    high = fe(torch.sin(2 * np.pi * 5000 * t)).mean(dim=1)
    assert int(low.argmax()) < int(high.argmax())
    with pytest.raises(ValueError, match="fmax"):
        LogMel(16000, 512, 160, 32, 50, 9000)


def recordings(tmp_path: Path, n: int = 3, corrupt: bool = False) -> pd.DataFrame:
    rows = []
    for i in range(n):
        p = tone(tmp_path / f"r{i}.wav", 22050, 1.0 + i * 0.5, 500.0 * (i + 1))
        rows.append({"recording_id": f"r{i}", "path": str(p)})
    if corrupt:
        bad = tmp_path / "broken.flac"
        bad.write_bytes(b"\x00" * 1000)
        rows.append({"recording_id": "broken", "path": str(bad)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("nj", [1, 2])
def test_dump_features_writes_every_speed(tmp_path: Path, nj: int) -> None:
    recs = recordings(tmp_path)
    out = tmp_path / "dump" / feature_name(FEATS)
    summary = dump_features(recs, FEATS, out, nj=nj, progress=False)
    assert summary["n_done"] == 3 and summary["n_skipped"] == 0
    store = FeatureStore(out, (0.9, 1.1))
    for i in range(3):
        n = int(22050 * (1.0 + i * 0.5) * 16000 / 22050)
        assert store.n_frames(f"r{i}") == n // 160 + 1
        # 1.1x faster is shorter, 0.9x is longer
        assert store.n_frames(f"r{i}", 1.1) < store.n_frames(f"r{i}") < store.n_frames(f"r{i}", 0.9)
    feats = store.read("r1", 10, 20)
    assert feats.shape == (32, 10) and feats.dtype == np.float32
    # the dump equals the front end applied directly
    wave, _ = load_audio(recs.path[1], 16000)
    ref = LogMel.from_config(FEATS)(torch.from_numpy(wave)).numpy()
    np.testing.assert_allclose(store.read("r1"), ref, atol=2e-2)  # float16 storage


def test_corrupt_file_is_skipped_and_listed(tmp_path: Path) -> None:
    recs = recordings(tmp_path, n=2, corrupt=True)
    out = tmp_path / "dump" / "x"
    summary = dump_features(recs, FEATS, out, progress=False)
    assert summary["n_done"] == 2 and summary["n_skipped"] == 1
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped.recording_id.tolist() == ["broken"] and "broken.flac" in skipped.reason[0]
    with h5py.File(dump_path(out), "r") as h5:
        assert sorted(h5) == ["r0", "r1"]


def test_strict_mode_stops_and_leaves_no_partial_dump(tmp_path: Path) -> None:
    recs = recordings(tmp_path, n=2, corrupt=True)
    out = tmp_path / "dump" / "x"
    with pytest.raises(AudioError, match="broken"):
        dump_features(recs, FEATS, out, strict=True, progress=False)
    assert not dump_path(out).exists()
    assert not list(out.rglob("*.tmp"))


def test_complete_dumps_are_not_redone(tmp_path: Path) -> None:
    recs = recordings(tmp_path, n=1)
    out = tmp_path / "dump" / "x"
    dump_features(recs, FEATS, out, progress=False)
    mtime = dump_path(out).stat().st_mtime_ns
    assert dump_features(recs, FEATS, out, progress=False)["n_done"] == 0
    assert dump_path(out).stat().st_mtime_ns == mtime
    assert dump_features(recs, FEATS, out, overwrite=True, progress=False)["n_done"] == 1


def test_feature_name_changes_with_settings() -> None:
    other = FeaturesConf(**{**FEATS.__dict__, "n_fft": 1024})
    assert feature_name(other) != feature_name(FEATS)
    # speed factors are separate files, not a new folder
    same = FeaturesConf(**{**FEATS.__dict__, "speed_perturb": []})
    assert feature_name(same) == feature_name(FEATS)


def test_dump_is_redone_when_the_recordings_change(tmp_path: Path) -> None:
    recs = recordings(tmp_path, n=2)
    out = tmp_path / "dump" / "x"
    dump_features(recs, FEATS, out, progress=False)
    assert dump_features(recs.iloc[:1], FEATS, out, progress=False)["n_done"] == 1
    with h5py.File(dump_path(out), "r") as h5:
        assert sorted(h5) == ["r0"]

"""``sedkit infer``: an experiment folder (folds averaged) on folders of audio files, any format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import REALDATA

from sed.bin.cli import main as sed_main
from sed.config import Config, FeaturesConf, to_dict
from sed.infer.stream import load_experiment
from sed.models import TINY, build_model
from sed.train.checkpoint import save_checkpoint

CLASSES = ["s0", "s1", "s2"]
FEATS = FeaturesConf(sample_rate=16000, n_fft=512, hop_length=160, n_mels=32, fmax=8000.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config() -> Config:
    cfg = Config()
    cfg.features = FEATS
    cfg.model.name = "efficientnet_att"
    cfg.model.params = {**TINY["efficientnet_att"], "activity_head": True}
    cfg.data.crop_seconds = 2.0
    cfg.infer.hop_seconds = 1.0
    cfg.infer.batch_size = 5
    return cfg


def make_experiment(root: Path, folds: tuple[int, ...] = (0, 1)) -> Path:
    """A trained-looking experiment folder: ``fold<k>/checkpoints/{best,last}.pt`` holding what
    the trainer stores for inference (model, config, classes, fold, step)."""
    cfg = tiny_config()
    expdir = root / "exp" / "rfcx" / "eff" / "tiny"
    for k in folds:
        torch.manual_seed(10 + k)
        model = build_model(cfg.model.name, len(CLASSES), FEATS.n_mels, cfg.model.params)
        # real BatchNorm statistics: at random init eval-mode outputs are nearly constant
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(4, FEATS.n_mels, 201) * 3 - 4)
        state = {
            "model": model.state_dict(),
            "config": to_dict(cfg),
            "classes": CLASSES,
            "fold": k,
            "step": 100,
        }
        for name in ("best", "last"):
            save_checkpoint(expdir / f"fold{k}" / "checkpoints" / f"{name}.pt", state)
    return expdir


def chirps(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.05 * rng.normal(size=len(t)) + 0.3 * np.sin(2 * np.pi * (500 + 300 * t) * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_experiment(tmp_path_factory.mktemp("exp"))


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Formats, rates and channel counts of field recordings, nested, plus broken files."""
    root = tmp_path_factory.mktemp("audio")
    (root / "site_a").mkdir()
    sf.write(root / "site_a" / "long.wav", chirps(7.3, 16000), 16000)
    sf.write(root / "stereo.flac", chirps(3.3, 44100, channels=2, seed=1), 44100)
    sf.write(root / "site_a" / "quiet.ogg", chirps(2.5, 22050, seed=2) * 0.1, 22050)
    sf.write(root / "short.wav", chirps(0.6, 48000, seed=3), 48000)
    (root / "broken.wav").write_bytes(b"RIFF not really a wave file" * 20)
    (root / "notes.txt").write_text("not audio: ignored by suffix")
    return root


def read_clip_scores(outdir: Path) -> pd.DataFrame:
    return pd.read_csv(outdir / "clip_scores.csv").set_index("recording_id")


def test_infer_experiment_writes_every_output(experiment: Path, audio: Path, tmp_path: Path):
    out = tmp_path / "out"
    rc = sed_main(["infer", str(experiment), str(audio), "--outdir", str(out), "--no_progress"])
    assert rc == 0
    clips = read_clip_scores(out)
    ids = {"site_a__long", "stereo", "site_a__quiet", "short"}
    assert set(clips.index) == ids
    assert clips.loc["site_a__long", "duration"] == pytest.approx(7.3, abs=1e-3)
    assert clips.loc["stereo", "duration"] == pytest.approx(3.3, abs=1e-3)
    assert ((clips[CLASSES] > 0) & (clips[CLASSES] < 1)).all().all()
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped["file"].tolist() == [str(audio / "broken.wav")]
    assert "cannot decode" in skipped["reason"][0]

    # the CLI's numbers are the library's: both folds, experiment settings, streamed
    loaded = load_experiment(experiment, "best")
    res = loaded.predictor().predict_file(audio / "site_a" / "long.wav")
    np.testing.assert_allclose(clips.loc["site_a__long", CLASSES], res.clip, atol=2e-6)

    # frame scores: sed_scores_eval tables on the model's output grid
    from sed_scores_eval.base_modules.io import read_sed_scores

    scores = read_sed_scores(out / "scores")
    assert set(scores) == ids
    long = scores["site_a__long"]
    assert list(long.columns) == ["onset", "offset", *CLASSES]
    assert len(long) == (int(7.3 * 16000) // 160 + 1) // 32
    np.testing.assert_allclose(long[CLASSES].to_numpy(), res.frame, atol=1e-6)
    assert long["onset"].iloc[0] == 0 and long["offset"].iloc[-1] <= 7.3

    # per-window clip scores: 2 s windows every 1 s, the last one ending at the end
    win = pd.read_csv(out / "window_scores" / "site_a__long.csv")
    assert len(win) == len(res.window_starts) and win["onset"].is_monotonic_increasing
    np.testing.assert_allclose(win[CLASSES].max().to_numpy(), res.clip, atol=2e-6)

    det = pd.read_csv(out / "detections.csv")
    assert list(det.columns) == ["recording_id", "onset", "offset", "label", "score"]
    assert (det["score"] > 0.5).all() and (det["offset"] > det["onset"]).all()
    for rid in ids:
        table = out / "raven" / f"{rid}.Table.1.selections.txt"
        raven = pd.read_csv(table, sep="\t")
        assert "Begin Time (s)" in raven.columns
        assert len(raven) == (det["recording_id"] == rid).sum()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_files"] == 4 and summary["n_skipped"] == 1
    assert summary["backend"] == "TorchScorer"


def test_folds_checkpoint_and_window_options(experiment: Path, audio: Path, tmp_path: Path):
    wav = audio / "site_a" / "long.wav"
    runs = {}
    for name, extra in {
        "both": [],
        "fold0": ["--folds", "0"],
        "fold1": ["--folds", "1", "--checkpoint", "last"],
        "long_win": ["--window_seconds", "3.0", "--hop_seconds", "3.0", "--batch_size", "1"],
    }.items():
        out = tmp_path / name
        assert sed_main(["infer", str(experiment), str(wav), "--outdir", str(out),
                         "--no_progress", "--threads", "1", *extra]) == 0  # fmt: skip
        runs[name] = read_clip_scores(out).loc["long", CLASSES].to_numpy(float)
    assert not np.allclose(runs["fold0"], runs["fold1"], atol=1e-4)
    # folds are averaged after each took its maximum over windows, as stage 3 averages them
    np.testing.assert_allclose(runs["both"], (runs["fold0"] + runs["fold1"]) / 2, atol=2e-6)
    win = pd.read_csv(tmp_path / "long_win" / "window_scores" / "long.csv")
    assert win["onset"].tolist() == pytest.approx([0.0, 2.88, 4.16], abs=1e-6)
    # 3 s windows are 288 frames: whole output frames of the 32x reducing model


def test_activity_gating_lowers_frame_scores(experiment: Path, audio: Path, tmp_path: Path):
    wav = str(audio / "stereo.flac")
    for name, extra in {"plain": [], "gated": ["--gate_activity"]}.items():
        argv = ["infer", str(experiment), wav, "--outdir", str(tmp_path / name), "--no_progress"]
        assert sed_main(argv + extra) == 0
    plain = pd.read_csv(tmp_path / "plain" / "scores" / "stereo.tsv", sep="\t")[CLASSES]
    gated = pd.read_csv(tmp_path / "gated" / "scores" / "stereo.tsv", sep="\t")[CLASSES]
    assert (gated.to_numpy() <= plain.to_numpy() + 1e-7).all()
    assert (gated.to_numpy() < plain.to_numpy() - 1e-3).any()


def test_nothing_readable_exits_nonzero(experiment: Path, audio: Path, tmp_path: Path):
    out = tmp_path / "out"
    argv = ["infer", str(experiment), str(audio / "broken.wav"), str(tmp_path / "nope.flac")]
    assert sed_main([*argv, "--outdir", str(out), "--no_progress"]) == 1
    skipped = pd.read_csv(out / "skipped.csv")
    assert len(skipped) == 2 and "not found" in skipped["reason"].tolist()
    assert len(pd.read_csv(out / "clip_scores.csv")) == 0


def test_strict_stops_at_the_first_unreadable_file(
    experiment: Path, audio: Path, tmp_path: Path, capsys
):
    good, bad = str(audio / "short.wav"), str(audio / "broken.wav")
    base = ["infer", str(experiment), "--no_progress"]
    # without --strict: reported, skipped, the rest done
    out = tmp_path / "lenient"
    assert sed_main([*base, good, bad, "--outdir", str(out)]) == 0
    assert pd.read_csv(out / "skipped.csv")["file"].tolist() == [bad]
    assert len(read_clip_scores(out)) == 1
    # --strict: an unreadable file stops the run with its name, and no tables claim completion
    out = tmp_path / "strict"
    assert sed_main([*base, good, bad, "--outdir", str(out), "--strict"]) == 1
    err = capsys.readouterr().err
    assert "broken.wav" in err and "cannot decode" in err
    assert not (out / "clip_scores.csv").exists() and not (out / "summary.json").exists()
    # a missing input too, before any model is loaded
    out = tmp_path / "missing"
    missing = str(tmp_path / "nope.flac")
    assert sed_main([*base, good, missing, "--outdir", str(out), "--strict"]) == 1
    assert "nope.flac: not found" in capsys.readouterr().err
    # and readable inputs pass as without it
    out = tmp_path / "fine"
    assert sed_main([*base, good, "--outdir", str(out), "--strict"]) == 0
    assert len(read_clip_scores(out)) == 1


def test_bad_model_arguments_fail_clearly(experiment: Path, audio: Path, tmp_path: Path, capsys):
    wav = str(audio / "short.wav")
    out = ["--outdir", str(tmp_path / "o"), "--no_progress"]
    assert sed_main(["infer", str(experiment), wav, "--folds", "7", *out]) == 1
    assert "fold(s) [7]" in capsys.readouterr().err
    assert sed_main(["infer", str(tmp_path / "none"), wav, *out]) == 1
    assert "not found" in capsys.readouterr().err


@pytest.mark.skipif(not REALDATA.is_dir(), reason=f"no real recordings in {REALDATA}")
def test_real_recordings_of_every_format(experiment: Path, tmp_path: Path):
    """FLAC, Ogg Vorbis, MP3 and WAV field recordings at 44.1 and 48 kHz."""
    out = tmp_path / "out"
    assert sed_main(["infer", str(experiment), str(REALDATA), "--outdir", str(out),
                     "--no_progress", "--threads", "1"]) == 0  # fmt: skip
    clips = read_clip_scores(out)
    suffixes = {Path(f).suffix for f in clips["file"]}
    assert {".flac", ".ogg", ".mp3", ".wav"} <= suffixes
    for rid, row in clips.iterrows():
        # the decoded length: for MP3 libsndfile's header estimate (sf.info) can be 0.6 s off
        decoded, sr = sf.read(row["file"], dtype="float32")
        assert row["duration"] == pytest.approx(len(decoded) / sr, abs=0.03), rid
    flac = clips.loc["birdnet_soundscape__soundscape", CLASSES].to_numpy(float)
    ogg = clips.loc["birdnet_soundscape__soundscape_ogg", CLASSES].to_numpy(float)
    # the same audio in a lossy format scores nearly the same
    assert np.abs(flac - ogg).max() < 0.05

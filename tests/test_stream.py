"""Streaming inference: block-wise decode, features, windows and stitching equal the whole file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from sed.features.audio import AudioError, load_audio, speed_perturb
from sed.features.frontend import LogMel
from sed.frames import FrameGrid, window_starts
from sed.infer.engine import TorchScorer, Windower
from sed.infer.sliding import predict_recording
from sed.infer.stream import FeatureStream, FrameSkip, StreamingPredictor, iter_audio_blocks
from sed.infer.tta import View, merge_views, predict_dump_views
from sed.models import TINY, build_model

SR, N_FFT, HOP, N_MELS = 16000, 512, 160, 32  # n_fft/2 is not a whole number of hops on purpose


pytestmark = pytest.mark.usefixtures("one_thread")


def frontend() -> LogMel:
    return LogMel(SR, N_FFT, HOP, N_MELS, fmin=50.0, fmax=8000.0).eval()


def noise(seconds: float, sr: int = SR, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Chirps in noise: features vary over time, so misplaced frames would show."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    x = 0.05 * rng.normal(size=n) + 0.3 * np.sin(2 * np.pi * (300 + 200 * t) * t)
    x *= 1 + 0.5 * np.sin(2 * np.pi * 0.3 * t)
    if channels > 1:
        x = np.stack([x * (1 + 0.1 * c) for c in range(channels)], axis=1)
    return x.astype(np.float32)


class EnergyModel(nn.Module):
    """Frame logit of class 0 = mean feature of each group of 4 frames; class 1 its negative.
    Activity logit = frame-wise mean of the first 4 mels (checkable, fast)."""

    time_reduction = 4

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, t = feats.shape
        g = feats[:, :, : t // 4 * 4].reshape(b, feats.shape[1], t // 4, 4).mean(-1)
        e = g.mean(dim=1) / 10
        frame = torch.stack([e, -e], dim=-1)  # (B, T', 2)
        act = g[:, :4].mean(dim=1, keepdim=True).transpose(1, 2) / 10  # (B, T', 1)
        return {"clip_logits": frame.mean(dim=1), "frame_logits": frame, "activity_logits": act}


class Flipped(EnergyModel):
    """EnergyModel with its classes swapped: high scores where EnergyModel's are low."""

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward(feats)
        return {k: v.flip(-1) if k != "activity_logits" else v for k, v in out.items()}


def tiny_effnet(seed: int = 0, activity_head: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(
        "efficientnet_att", 3, N_MELS, {**TINY["efficientnet_att"], "activity_head": activity_head}
    )
    # real BatchNorm statistics: at random init eval-mode outputs shrink towards constants
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(frontend()(torch.from_numpy(noise(3.0, seed=seed + 7)))[None].repeat(2, 1, 1))
    return model.eval()


def predictor(model: nn.Module, **kwargs) -> StreamingPredictor:
    opts = {"window_seconds": 2.0, "hop_seconds": 1.5, "batch_size": 3, "block_seconds": 1.3}
    opts.update(kwargs)
    return StreamingPredictor(frontend(), TorchScorer([model]), SR, N_FFT, HOP, **opts)


def whole_file(model: nn.Module, wave: np.ndarray, p: StreamingPredictor, combine: str = "max"):
    with torch.no_grad():
        feats = frontend()(torch.from_numpy(wave))
    return predict_recording(model, feats, p.window, p.hop, 4, frame_combine=combine)


# --------------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", [97, 256, 1000, 4321, 100000])
def test_feature_stream_equals_whole_signal(block: int) -> None:
    wave = noise(3.07)
    fe = frontend()
    with torch.no_grad():
        ref = fe(torch.from_numpy(wave)).numpy()
    fs = FeatureStream(fe, N_FFT, HOP)
    parts = []
    for i in range(0, len(wave), block):
        parts.append(fs.push(wave[i : i + block], last=i + block >= len(wave)))
    got = np.concatenate([p for p in parts if p.size], axis=1)
    assert got.shape == ref.shape == (N_MELS, len(wave) // HOP + 1)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-5)


def test_feature_stream_very_short_signal_is_padded() -> None:
    fs = FeatureStream(frontend(), N_FFT, HOP)
    out = fs.push(noise(0.01)[:200], last=True)  # fewer samples than n_fft / 2
    assert out.shape == (N_MELS, 200 // HOP + 1) and np.all(np.isfinite(out))


@pytest.mark.parametrize(
    ("n", "window", "hop", "align"),
    [(203, 40, 20, 4), (100, 32, 8, 1), (40, 40, 20, 4), (61, 20, 20, 8)],
)
def test_windower_matches_window_starts(n: int, window: int, hop: int, align: int) -> None:
    frames = np.arange(n, dtype=np.float32)[None].repeat(2, axis=0)
    w = Windower(window, hop, align)
    got = []
    for i in range(0, n, 7):
        got += w.push(frames[:, i : i + 7], last=i + 7 >= n)
    assert [s for s, _ in got] == window_starts(n, window, hop, align)
    for s, x in got:
        np.testing.assert_array_equal(x, frames[:, s : s + window])


def test_windower_repeats_a_short_signal() -> None:
    frames = np.arange(5, dtype=np.float32)[None]
    [(start, x)] = Windower(12, 6, 4).push(frames, last=True)
    assert start == 0
    np.testing.assert_array_equal(x[0], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])


def test_buffers_stay_bounded_on_a_long_stream() -> None:
    """Memory does not grow with the recording: the sample and frame buffers stay small."""
    p = predictor(EnergyModel(), block_seconds=0.5)
    fs = FeatureStream(frontend(), N_FFT, HOP)
    win = Windower(p.window, p.hop, 4)
    rng = np.random.default_rng(0)
    max_samples = max_frames = 0
    for _ in range(400):  # 200 s of audio in 0.5 s blocks
        win.push(fs.push(rng.normal(size=SR // 2).astype(np.float32)))
        max_samples = max(max_samples, len(fs.buf))
        max_frames = max(max_frames, win.buf.shape[1])
    assert max_samples <= SR // 2 + N_FFT
    assert max_frames <= p.window + p.hop + SR // 2 // HOP + 8


# --------------------------------------------------------------------------------------------------
# Whole recordings
# --------------------------------------------------------------------------------------------------


def test_streamed_scores_equal_whole_file_scores(tmp_path: Path) -> None:
    """A file of many blocks (1.3 s blocks, 2 s windows) gives the whole-file results."""
    model = tiny_effnet()
    path = tmp_path / "long.flac"
    sf.write(path, noise(11.3, seed=3), SR, subtype="PCM_24")
    wave, _ = load_audio(path, SR)
    p = predictor(model)
    res = p.predict_file(path)
    clip, frame = whole_file(model, wave, p)
    assert frame.shape == res.frame.shape == ((len(wave) // HOP + 1) // 32, 3)
    assert frame.std() > 1e-3  # the comparison is not one of constants
    np.testing.assert_allclose(res.frame, frame, atol=1e-5)
    np.testing.assert_allclose(res.clip, clip, atol=1e-5)
    # per-window clip scores: one row per window of sed.frames.window_starts
    n_frames = len(wave) // HOP + 1
    starts = window_starts(n_frames, p.window, p.hop, 32)
    np.testing.assert_allclose(res.window_starts, np.array(starts) * HOP / SR)
    assert res.window_clip.shape == (len(starts), 3)
    np.testing.assert_allclose(res.window_clip.max(axis=0), res.clip)
    assert res.duration == pytest.approx(11.3, abs=1e-3)


def test_resampled_stereo_file_equals_whole_file_decoding(tmp_path: Path) -> None:
    """Any input rate and channel count: block-wise downmix + soxr stream = load_audio."""
    model = EnergyModel()
    path = tmp_path / "stereo44k.wav"
    sf.write(path, noise(6.2, sr=44100, seed=5, channels=2), 44100, subtype="FLOAT")
    streamed = np.concatenate(list(iter_audio_blocks(path, SR, block_seconds=0.7)))
    wave, _ = load_audio(path, SR)
    np.testing.assert_allclose(streamed, wave, atol=1e-6)
    p = predictor(model, hop_seconds=0.5)
    res = p.predict_file(path)
    clip, frame = whole_file(model, wave, p)
    np.testing.assert_allclose(res.frame, frame, atol=1e-5)
    np.testing.assert_allclose(res.clip, clip, atol=1e-5)


def test_mean_combine_and_frame_max_clip_score() -> None:
    model = tiny_effnet(seed=1)
    wave = noise(7.7, seed=9)
    p = predictor(model, frame_combine="mean", hop_seconds=0.6, clip_score="frame_max")
    res = p.predict_wave(wave)
    _, frame = whole_file(model, wave, p, combine="mean")
    np.testing.assert_allclose(res.frame, frame, atol=1e-5)
    np.testing.assert_allclose(res.clip, frame.max(axis=0), atol=1e-6)


def test_shorter_than_a_window_is_padded_like_predict_recording() -> None:
    model = tiny_effnet(seed=2)
    wave = noise(0.9, seed=4)
    p = predictor(model, window_seconds=3.0, hop_seconds=1.0)
    res = p.predict_wave(wave)
    clip, frame = whole_file(model, wave, p)
    assert len(res.window_starts) == 1 and res.frame.shape == frame.shape
    np.testing.assert_allclose(res.frame, frame, atol=1e-5)
    np.testing.assert_allclose(res.clip, clip, atol=1e-5)


def test_activity_gating_multiplies_frame_scores() -> None:
    wave = noise(5.0, seed=2)
    plain = predictor(EnergyModel()).predict_wave(wave)
    gated = predictor(EnergyModel(), gate_activity=True).predict_wave(wave)
    assert plain.activity is not None and plain.activity.shape == (len(plain.frame),)
    assert plain.activity.std() > 1e-3
    # EnergyModel's output frames depend on their own input frames only, so overlapping windows
    # agree and gating per window equals the product of the stitched outputs
    np.testing.assert_allclose(gated.frame, plain.frame * plain.activity[:, None], rtol=1e-5)
    assert gated.frame.shape == ((len(wave) // HOP + 1) // 4, 2)
    np.testing.assert_allclose(gated.clip, plain.clip)  # clip scores are not gated


def test_fold_scores_are_kept_apart_then_averaged() -> None:
    """Each fold is a member: window scores per fold, recording scores averaged at the end (the
    fold mean of each fold's window maximum, as stage 3 averages folds)."""
    a, b = tiny_effnet(seed=3), tiny_effnet(seed=4)
    x = frontend()(torch.from_numpy(noise(2.0, seed=1)))[None].repeat(2, 1, 1).numpy()
    sa, sb = TorchScorer([a])(x), TorchScorer([b])(x)
    both = TorchScorer([a, b])(x)
    assert both.clip.shape == (2, 2, 3) and sa.clip.shape == (1, 2, 3)
    np.testing.assert_allclose(both.clip, np.concatenate([sa.clip, sb.clip]), atol=1e-6)
    np.testing.assert_allclose(both.frame, np.concatenate([sa.frame, sb.frame]), atol=1e-6)
    assert both.activity is None
    # two folds whose best windows differ: one scores loud frames high, the other quiet ones
    a, b = EnergyModel(), Flipped()
    wave = noise(6.1, seed=8)
    ra, rb = predictor(a).predict_wave(wave), predictor(b).predict_wave(wave)
    p = StreamingPredictor(frontend(), TorchScorer([a, b]), SR, N_FFT, HOP, 2.0, 1.5, 3)
    r = p.predict_wave(wave)
    np.testing.assert_allclose(r.clip, (ra.clip + rb.clip) / 2, atol=1e-6)
    np.testing.assert_allclose(r.frame, (ra.frame + rb.frame) / 2, atol=1e-6)
    np.testing.assert_allclose(r.window_clip, (ra.window_clip + rb.window_clip) / 2, atol=1e-6)
    # not the max over windows of the fold-mean window scores: the two differ on this input
    assert np.abs(r.clip - r.window_clip.max(axis=0)).max() > 1e-4


@pytest.mark.parametrize("seconds", [7.3, 1.1])
def test_streamed_views_equal_dump_views(seconds: float) -> None:
    """Speed and shift views streamed from audio give stage 3's view scores on the features of
    the speed-perturbed whole signal (stage 1's dumps), merged by the same rule; 1.1 s is shorter
    than the 2.5 s shift."""
    model = EnergyModel()
    wave = noise(seconds, seed=6)
    views = [View(), View(0.9), View(1.0, 2.5), View(1.1, 0.5)]
    p = predictor(model, block_seconds=0.9, views=views, clip_score="frame_max")
    res = p.predict_wave(wave)
    fe, grid = frontend(), FrameGrid(SR, HOP)

    def read(speed: float) -> np.ndarray:
        with torch.no_grad():
            return fe(torch.from_numpy(speed_perturb(wave, SR, speed))).numpy()

    items = predict_dump_views(p.engine, read, views, grid)
    merged = merge_views(items, read(1.0).shape[1], p.reduction, "frame_max")
    assert res.views == ["orig", "speed0.9", "shift2.5", "speed1.1_shift0.5"]
    np.testing.assert_allclose(res.clip_views, merged.clip_views[0], atol=1e-4)
    np.testing.assert_allclose(res.clip, merged.clip[0], atol=1e-4)
    np.testing.assert_allclose(res.frame, merged.frame[0], atol=1e-4)
    if seconds > 3:  # the views differ, so the comparison is not of one view four times
        orig, slow = merged.frame_views[0][0], merged.frame_views[0][1]
        ok = ~np.isnan(slow)
        assert np.abs(orig[ok] - slow[ok]).max() > 1e-3


def test_frame_skip_drops_the_shift_or_keeps_the_last_output_frame() -> None:
    frames = np.arange(40, dtype=np.float32)[None]
    skip = FrameSkip(8, 4)
    got = [skip.push(frames[:, i : i + 3], last=i + 3 >= 40) for i in range(0, 40, 3)]
    np.testing.assert_array_equal(np.concatenate([g for g in got if g.size], axis=1), frames[:, 8:])
    assert skip.applied == 8
    short = FrameSkip(8, 4)
    assert short.push(frames[:, :5]).size == 0
    np.testing.assert_array_equal(short.push(frames[:, 5:10], last=True), frames[:, 6:10])
    assert short.applied == 6  # 10 frames: all but the last r = 4


def test_unreadable_and_empty_files_raise_audio_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio" * 50)
    p = predictor(EnergyModel())
    with pytest.raises(AudioError, match=r"bad\.flac"):
        p.predict_file(bad)
    with pytest.raises(AudioError, match="not found"):
        p.predict_file(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    with pytest.raises(AudioError, match="no audio"):
        p.predict_file(empty)


def test_a_ten_minute_file_streams_through(tmp_path: Path) -> None:
    """A 10-minute 48 kHz FLAC streamed in 30 s blocks: every frame is scored, and the scores of
    a stretch in the middle equal those of that stretch predicted on its own (the memory bound
    itself is measured by bench/infer_speed.py, not here)."""
    path = tmp_path / "ten_minutes.flac"
    sr = 48000
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16", format="FLAC") as f:
        for k in range(20):  # written 30 s at a time: the test itself stays small too
            f.write(noise(30.0, sr, seed=k))
    p = predictor(
        EnergyModel(), window_seconds=10.0, hop_seconds=10.0, batch_size=8, block_seconds=30.0
    )
    res = p.predict_file(path)
    n_frames = 600 * SR // HOP + 1
    assert res.duration == pytest.approx(600.0, abs=1e-3)
    assert res.frame.shape == (n_frames // 4, 2)
    assert res.window_clip.shape[0] == len(window_starts(n_frames, p.window, p.hop, 4))
    # the model's frame score is the mean log-mel: finite and varying over the whole file
    assert np.isfinite(res.frame).all() and res.frame[:, 0].std() > 0
    # a window-aligned stretch in the middle, predicted alone, gives the same scores there
    wave, _ = load_audio(path, SR)
    a, b = 300 * SR, 320 * SR
    _, part = whole_file(EnergyModel(), wave[a:b], p)
    inner = slice(a // HOP // 4 + 1, a // HOP // 4 + len(part) - 1)
    np.testing.assert_allclose(res.frame[inner], part[1:-1], atol=1e-4)

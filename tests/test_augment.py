"""Augmentations: every registered one applies at its probability and changes what it selects;
targets move and mix with the audio; seeds and resumes reproduce; config mistakes are errors."""

from __future__ import annotations

import math

import pytest
import torch

from sed.augment import AUGMENTATIONS, AugmentPipeline, build_augment
from sed.config import ConfigError

SR, HOP = 8000, 80  # 100 feature frames per second
N = 2000  # 0.25 s
L = N // HOP + 1  # feature frames of a crop
F = 16  # mel bins
C = 3

# per-name settings for the generic tests; mixup's default alpha leaves a few weights at exactly 1
# in float32 (an unchanged sample), alpha 1 does not
PARAMS = {"mixup": {"alpha": 1.0}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # clips here are tiny: a second intra-op thread only adds waiting on a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_batch(b: int, seed: int = 0, frame_mask: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {
        "clip_target": (torch.rand(b, C, generator=g) < 0.5).float(),
        "frame_target": (torch.rand(b, L, C, generator=g) < 0.3).float(),
    }
    if frame_mask:
        batch["frame_mask"] = (torch.rand(b, L, C, generator=g) < 0.8).float()
    return batch


def make_input(name: str, b: int, seed: int = 0) -> torch.Tensor:
    """Waveforms for waveform and batch augmentations, log-mel-like features otherwise."""
    g = torch.Generator().manual_seed(seed)
    if AUGMENTATIONS[name].stage in ("wave", "mix"):
        return torch.randn(b, N, generator=g)
    return torch.randn(b, F, L, generator=g) - 5.0


def run(pipe: AugmentPipeline, x: torch.Tensor, batch: dict) -> torch.Tensor:
    """The trainer's order (waveform models: wave -> mix; features: spec -> mix)."""
    if x.dim() == 2:
        return pipe.mix(pipe.wave(x, batch), batch)
    return pipe.mix(pipe.spec(x, batch), batch)


def one(name: str, p: float = 1.0, seed: int = 0, **params) -> AugmentPipeline:
    return build_augment([{"name": name, "p": p, **params}], SR, HOP, seed=seed)


# --------------------------------------------------------------------------------------------------
# Every registered augmentation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_applied_at_its_probability_and_changes_exactly_the_selected(name):
    b, p = 200, 0.5
    pipe = one(name, p=p, seed=3, **PARAMS.get(name, {}))
    x = make_input(name, b)
    batch = make_batch(b)
    y = run(pipe, x.clone(), batch)

    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()
    changed = (y != x).flatten(1).any(dim=1)
    frac = pipe.applied_fraction()[name]
    # every selected sample changed, no other one did (white box: an entry's first draw from
    # the pipeline's generator is its per-sample selection)
    selected = torch.rand(b, generator=torch.Generator().manual_seed(3)) < p
    assert torch.equal(changed, selected)
    assert changed.sum().item() == round(frac * b)
    tol = 4 * math.sqrt(p * (1 - p) / b)  # 4 binomial standard deviations
    assert abs(frac - p) <= tol
    assert pipe.applied_fraction()[name] == 0.0  # reset by the call


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_half_precision_input_keeps_dtype_and_leaves_the_input_alone(name):
    pipe = one(name, **PARAMS.get(name, {}))
    x = make_input(name, 6).half()
    before = x.clone()
    y = run(pipe, x, make_batch(6))
    assert y.dtype == torch.float16 and y.shape == x.shape
    assert torch.isfinite(y).all()
    assert torch.equal(x, before)


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_same_seed_same_output(name):
    x = make_input(name, 12)
    outs = [
        run(one(name, p=0.7, seed=s, **PARAMS.get(name, {})), x, make_batch(12)) for s in (5, 5, 6)
    ]
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


# --------------------------------------------------------------------------------------------------
# Time moves: targets follow the audio
# --------------------------------------------------------------------------------------------------


def burst_batch(b: int, start: int, stop: int) -> tuple[torch.Tensor, dict]:
    """Waveforms with a burst over frames [start, stop) and matching frame targets (class 0)."""
    x = torch.zeros(b, N)
    x[:, start * HOP : stop * HOP] = torch.sin(torch.arange((stop - start) * HOP) * 0.8) + 1.5
    target = torch.zeros(b, L, C)
    target[:, start:stop, 0] = 1.0
    return x, {"clip_target": target.amax(dim=1), "frame_target": target}


@pytest.mark.parametrize("mode", ["roll", "pad"])
def test_time_shift_on_waveforms_moves_targets_by_samples_over_hop(mode):
    # with a waveform augmentation configured (here never applied) the shift runs on waveforms
    items = [
        {"name": "time_shift", "max_seconds": 0.08, "mode": mode},
        {"name": "volume", "p": 0.0},
    ]
    pipe = build_augment(items, SR, HOP, seed=1)
    assert pipe.needs_wave
    x, batch = burst_batch(40, 10, 14)
    y = pipe.wave(x, batch)
    shifts = set()
    for i in range(len(y)):
        onset = int(y[i].nonzero()[0])
        frames = batch["frame_target"][i, :, 0].nonzero().squeeze(1)
        assert onset == frames[0].item() * HOP  # the audio moved by frames * hop samples
        assert len(frames) == 4
        shifts.add(frames[0].item() - 10)
    assert 0 not in shifts and min(shifts) < 0 < max(shifts) and max(map(abs, shifts)) <= 8


def test_time_shift_on_features_moves_targets_by_frames():
    pipe = one("time_shift", max_seconds=0.05, mode="roll")
    assert not pipe.needs_wave
    x = torch.zeros(30, F, L)
    x[:, :, 3:6] = 1.0
    target = torch.zeros(30, L, C)
    target[:, 3:6, 1] = 1.0
    batch = {"frame_target": target, "frame_mask": target.clone()}
    y = pipe.spec(x, batch)
    for i in range(30):
        cols = y[i, 0].nonzero().squeeze(1)
        assert torch.equal(batch["frame_target"][i, :, 1].nonzero().squeeze(1), cols)
        assert torch.equal(batch["frame_mask"][i, :, 1].nonzero().squeeze(1), cols)
        shift = (cols[0].item() - 3) % L
        assert shift != 0 and min(shift, L - shift) <= 5
    # a roll past the start wraps around the end
    assert any(y[i, 0, -1] == 1 for i in range(30))


def test_shifted_out_event_drops_its_clip_label_but_a_weak_label_stays():
    pipe = one("time_shift", max_seconds=0.2, mode="pad")
    x = torch.randn(60, F, L)
    target = torch.zeros(60, L, C)
    target[:, 0:3, 0] = 1.0  # a strong label at the start
    mask = torch.zeros(60, L, C)
    clip = torch.tensor([1.0, 1.0, 0.0]).repeat(60, 1)  # class 1: weak, no frame activity
    batch = {"clip_target": clip, "frame_target": target, "frame_mask": mask}
    pipe.spec(x, batch)
    remains = batch["frame_target"][:, :, 0].amax(dim=1)
    assert 0 < remains.sum() < 60  # some shifts pushed the event out, some did not
    assert torch.equal(batch["clip_target"][:, 0], remains)
    assert (batch["clip_target"][:, 1] == 1).all() and (batch["clip_target"][:, 2] == 0).all()
    # padded frames are known silence: they count in the loss
    assert (batch["frame_mask"].amax(dim=(1, 2)) == 1).all()


@pytest.mark.parametrize("name", ["speed", "time_stretch"])
def test_tempo_changes_move_targets_with_the_audio(name):
    factor = 1.25
    pipe = one(name, factor=[factor, factor])
    x, batch = burst_batch(2, 10, 14)
    y = pipe.wave(x, batch)
    frames = batch["frame_target"][0, :, 0].nonzero().squeeze(1)
    # frames 10..13 (0.10 s to 0.14 s) played 1.25 times faster: 0.08 s to 0.112 s
    assert 3 <= len(frames) <= 4 and frames.min() == 8 and frames.max() <= 11
    energy = y[0] ** 2
    centre = (energy * torch.arange(N)).sum() / energy.sum() / HOP
    # the burst's centre, in frames; the phase vocoder smears a short burst over its hop
    # (128 samples, 1.6 frames here), resampling does not
    assert abs(centre.item() - 12 / factor) < (1.5 if name == "time_stretch" else 0.1)


def peak_hz(x: torch.Tensor) -> float:
    spec = torch.fft.rfft(x * torch.hann_window(len(x))).abs()
    return spec.argmax().item() * SR / len(x)


@pytest.mark.parametrize(
    ("name", "params", "ratio"),
    [
        ("pitch_shift", {"semitones": [3, 3]}, 2 ** (3 / 12)),
        ("pitch_shift", {"semitones": [-5, -5]}, 2 ** (-5 / 12)),
        ("speed", {"factor": [0.8, 0.8]}, 0.8),
        ("time_stretch", {"factor": [0.8, 0.8]}, 1.0),
    ],
)
def test_pitch_moves_only_where_it_should(name, params, ratio):
    t = torch.arange(4 * N) / SR
    x = torch.sin(2 * math.pi * 1000 * t)[None]
    batch = {"frame_target": torch.zeros(1, 4 * N // HOP + 1, C)}
    y = one(name, **params).wave(x, batch)[0]
    assert y.shape == x[0].shape
    # compare over the part that holds audio (a slowed clip is cut, a sped-up one padded)
    n = int(4 * N * min(1.0, 1 / ratio if name == "speed" else 1.0)) - 400
    assert peak_hz(y[:n]) == pytest.approx(1000 * ratio, abs=8)
    assert batch["frame_target"].shape == (1, 4 * N // HOP + 1, C)


# --------------------------------------------------------------------------------------------------
# Waveform and spectrogram details
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gaussian_noise", "pink_noise"])
def test_noise_is_at_the_drawn_snr_of_each_clip(name):
    x = torch.randn(20, N) * torch.logspace(-3, 0, 20)[:, None]  # very different levels
    y = one(name, snr_db=[12, 12]).wave(x, {})
    snr = 10 * torch.log10(x.pow(2).sum(1) / (y - x).pow(2).sum(1))
    assert torch.allclose(snr, torch.full_like(snr, 12.0), atol=1e-3)
    snr = 10 * torch.log10(
        x.pow(2).sum(1) / (one(name, snr_db=[3, 30]).wave(x, {}) - x).pow(2).sum(1)
    )
    assert snr.min() >= 3 - 1e-3 and snr.max() <= 30 + 1e-3 and snr.std() > 3


def test_pink_noise_has_falling_spectrum_and_white_noise_flat():
    x = torch.randn(50, 8 * N)
    bands = {}
    for name in ("pink_noise", "gaussian_noise"):
        noise = one(name, snr_db=[0, 0]).wave(x, {}) - x
        power = torch.fft.rfft(noise).abs().pow(2).mean(0)
        hz = torch.fft.rfftfreq(8 * N, 1 / SR)
        low, high = power[(hz > 100) & (hz < 200)].mean(), power[(hz > 2000) & (hz < 4000)].mean()
        bands[name] = (low / high).item()
    assert 8 < bands["pink_noise"] < 40  # 1/f: 16x more power per Hz at 150 Hz than at 2.4 kHz
    assert 0.8 < bands["gaussian_noise"] < 1.25


def test_volume_envelopes():
    x = torch.ones(400, N)
    y = one("volume", gain_db=[-6, 6], mode=["uniform", "fade", "cosine", "sine"]).wave(x, {})
    db = 20 * torch.log10(y)
    start, end = db[:, 0], db[:, -1]
    assert db.abs().max() <= 6 + 1e-4
    uniform = (db.max(1).values - db.min(1).values) < 1e-4
    fade = ~uniform & (end.abs() < 0.01) & (start.abs() > 0.01)
    cosine = ~uniform & (start - end).abs().lt(0.01) & (start.abs() > 0.01)
    sine = ~uniform & (start.abs() < 1e-4)
    # each mode drawn for about a quarter of the clips, and every clip is one of them
    for kind in (uniform, fade, cosine, sine):
        assert 60 < kind.sum() < 140
    assert (uniform | fade | cosine | sine).all()


def test_time_mask_fills_whole_frames_with_the_clip_mean():
    x = torch.randn(50, F, L)
    y = one("time_mask", max_seconds=0.04, n_masks=2).spec(x, {})
    mean = x.mean(dim=(1, 2))
    for i in range(50):
        hit = (y[i] != x[i]).any(dim=0)  # frames touched
        assert 1 <= hit.sum() <= 8
        assert torch.allclose(y[i][:, hit], mean[i].expand(F, int(hit.sum())))


def test_freq_mask_and_drop_stripes_axes():
    x = torch.randn(50, F, L)
    y = one("freq_mask", max_bins=3, n_masks=1, fill="zero").spec(x, {})
    rows = (y != x).any(dim=2)  # (B, F) bins touched
    assert (rows.sum(1) >= 1).all() and (rows.sum(1) <= 3).all()
    assert (y.masked_select(y != x) == 0).all()
    y = one(
        "drop_stripes", time_stripes=1, time_seconds=0.05, freq_stripes=1, freq_bins=2, fill="min"
    ).spec(x, {})
    hit = y != x
    assert (hit.any(dim=2).sum(1) >= 1).all() and (hit.any(dim=1).sum(1) >= 1).all()
    assert torch.equal(y[hit], x.amin(dim=(1, 2), keepdim=True).expand_as(x)[hit])


def test_power_keeps_range_and_order_and_changes_contrast():
    x = torch.randn(100, F, L) * 3 - 8
    y = one("power", exponent=[0.5, 2.0]).spec(x, {})
    flat_x, flat_y = x.flatten(1), y.flatten(1)
    assert torch.allclose(flat_y.amin(1), flat_x.amin(1))
    assert torch.allclose(flat_y.amax(1), flat_x.amax(1), atol=1e-5)
    order = flat_x.argsort(dim=1)
    assert (flat_y.gather(1, order).diff(dim=1) >= -1e-5).all()  # monotone map
    # both darker (p > 1: middle pushed down) and brighter clips occur
    shift = (flat_y - flat_x).mean(1)
    assert (shift < -0.1).any() and (shift > 0.1).any()


# --------------------------------------------------------------------------------------------------
# Batch augmentations
# --------------------------------------------------------------------------------------------------


def identity_batch(b: int) -> dict:
    """Clip i has class i only: mixed labels show who was mixed with whom."""
    eye = torch.eye(b)
    g = torch.Generator().manual_seed(1)
    return {
        "clip_target": eye.clone(),
        "frame_target": eye[:, None, :].repeat(1, L, 1),
        "frame_mask": (torch.rand(b, L, 1, generator=g) < 0.7).float().repeat(1, 1, b),
    }


def test_mixup_mixed_labels_carry_the_weight():
    b = 48
    x = torch.randn(b, N)
    batch = identity_batch(b)
    mask = batch["frame_mask"].clone()
    y = one("mixup", alpha=0.4, labels="mix").mix(x, batch)
    clip = batch["clip_target"]
    assert torch.allclose(clip.sum(1), torch.ones(b))
    for i in range(b):
        lam = clip[i, i].item()
        others = [j for j in clip[i].nonzero().squeeze(1).tolist() if j != i]
        assert 0.0 <= lam <= 1.0 and len(others) <= 1
        j = others[0] if others else (i + 1) % b  # lam == 1: partner invisible
        assert torch.allclose(y[i], lam * x[i] + (1 - lam) * x[j], atol=1e-6)
        assert torch.allclose(batch["frame_target"][i], clip[i].expand(L, b))
        if others:
            assert torch.equal(batch["frame_mask"][i], mask[i] * mask[j])
    lams = clip.diagonal()
    assert lams.std() > 0.2  # Beta(0.4, 0.4): weights spread towards 0 and 1


@pytest.mark.parametrize("dims", [2, 3])
def test_mixup_max_labels_are_the_union(dims):
    b = 32
    x = torch.randn(b, N) if dims == 2 else torch.randn(b, F, L)
    batch = identity_batch(b)
    y = one("mixup", alpha=1.0, labels="max").mix(x, batch)
    clip = batch["clip_target"]
    assert (clip.sum(1) == 2).all() and (clip.diagonal() == 1).all()
    for i in range(b):
        j = next(k for k in clip[i].nonzero().squeeze(1).tolist() if k != i)
        d = (x[i] - x[j]).flatten()
        lam = torch.dot((y[i] - x[j]).flatten(), d) / torch.dot(d, d)
        assert 0.0 <= lam.item() <= 1.0
        assert torch.allclose(y[i], lam * x[i] + (1 - lam) * x[j], atol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_additive_mixup_adds_up_to_k_clips_with_max_labels(dims):
    b, k = 40, 3
    x = torch.randn(b, N) if dims == 2 else torch.randn(b, F, L)
    batch = identity_batch(b)
    mask = batch["frame_mask"].clone()
    y = one("additive_mixup", max_clips=k).mix(x, batch)
    clip = batch["clip_target"]
    assert set(clip.unique().tolist()) == {0.0, 1.0}  # max, never a weighted mix
    counts = clip.sum(1) - 1
    assert counts.min() == 1 and counts.max() == k
    for i in range(b):
        added = [j for j in clip[i].nonzero().squeeze(1).tolist() if j != i]
        expect = x[i]
        for j in added:
            expect = expect + x[j] if dims == 2 else torch.logaddexp(expect, x[j])
        assert torch.allclose(y[i], expect, atol=1e-5)
        assert torch.equal(
            batch["frame_mask"][i], torch.stack([mask[j] for j in [i, *added]]).prod(0)
        )


def test_mix_on_a_single_sample_does_nothing():
    pipe = one("mixup")
    x = torch.randn(1, N)
    assert torch.equal(pipe.mix(x, make_batch(1)), x)
    assert pipe.applied_fraction() == {"mixup": 0.0}


# --------------------------------------------------------------------------------------------------
# Pipeline: stages, order, resume
# --------------------------------------------------------------------------------------------------

ALL = [
    {"name": "time_shift", "p": 0.5, "max_seconds": 0.05},
    {"name": "pink_noise", "p": 0.5},
    {"name": "volume", "p": 0.5, "mode": ["fade", "sine"]},
    {"name": "time_mask", "p": 0.5},
    {"name": "freq_mask", "p": 0.5},
    {"name": "mixup", "p": 0.5, "labels": "max"},
    {"name": "volume", "p": 0.3},
]


def trainer_step(pipe: AugmentPipeline, seed: int) -> tuple[torch.Tensor, dict]:
    """A waveform model's step; the front end is a stand-in (frames of the waveform)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, N, generator=g)
    batch = make_batch(16, seed)
    x = pipe.mix(pipe.wave(x, batch), batch)
    feats = x[:, : (L - 1) * HOP].reshape(16, L - 1, HOP)[:, :, :F].transpose(1, 2)
    return pipe.spec(feats, batch), batch


def test_state_dict_resumes_the_exact_sequence():
    pipe = build_augment(ALL, SR, HOP, seed=11)
    trainer_step(pipe, 0)
    state = pipe.state_dict()
    want = [trainer_step(pipe, s) for s in (1, 2)]
    resumed = build_augment(ALL, SR, HOP, seed=999)
    resumed.load_state_dict(state)
    got = [trainer_step(resumed, s) for s in (1, 2)]
    for (y0, b0), (y1, b1) in zip(want, got, strict=True):
        assert torch.equal(y0, y1)
        assert all(torch.equal(b0[k], b1[k]) for k in b0)
    fresh = build_augment(ALL, SR, HOP, seed=999)
    assert not torch.equal(trainer_step(fresh, 1)[0], want[0][0])


def test_stages_and_applied_fractions_of_a_list():
    pipe = build_augment(ALL, SR, HOP, seed=2)
    assert pipe.needs_wave
    stages = [e.stage for e in pipe.entries]
    assert stages == ["wave", "wave", "wave", "spec", "spec", "mix", "wave"]
    for s in range(20):
        trainer_step(pipe, s)
    frac = pipe.applied_fraction()
    assert list(frac) == [
        "time_shift",
        "pink_noise",
        "volume_2",
        "time_mask",
        "freq_mask",
        "mixup",
        "volume_6",
    ]
    for entry in pipe.entries:
        assert abs(frac[entry.key] - entry.p) < 4 * math.sqrt(entry.p * (1 - entry.p) / 320)


def test_time_shift_runs_on_features_without_waveform_augmentations():
    pipe = build_augment([{"name": "time_shift"}, {"name": "time_mask", "p": 0.0}], SR, HOP)
    assert not pipe.needs_wave
    x = torch.randn(4, N)
    assert torch.equal(pipe.wave(x, make_batch(4)), x)
    feats = torch.randn(4, F, L)
    assert not torch.equal(pipe.spec(feats, make_batch(4)), feats)


def test_waveform_augmentations_with_a_feature_model_are_an_error():
    pipe = build_augment([{"name": "pink_noise"}, {"name": "time_mask"}], SR, HOP)
    with pytest.raises(RuntimeError, match=r"pink_noise.*model takes features"):
        pipe.spec(torch.randn(2, F, L), make_batch(2))


def test_wrong_shapes_are_errors():
    pipe = build_augment([{"name": "time_mask"}], SR, HOP)
    with pytest.raises(ValueError, match=r"\(B, F, T\)"):
        pipe.spec(torch.randn(2, N), {})
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        pipe.wave(torch.randn(2, F, L), {})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_result():
    items = [
        {"name": n, "p": 0.5, **PARAMS.get(n, {})}
        for n in sorted(AUGMENTATIONS)
        if AUGMENTATIONS[n].stage in ("wave", "time", "mix")
    ]
    out = {}
    for dev in ("cpu", "cuda"):
        pipe = build_augment(items, SR, HOP, seed=4)
        batch = {k: v.to(dev) for k, v in make_batch(16).items()}
        x = pipe.mix(
            pipe.wave(
                torch.randn(16, N, generator=torch.Generator().manual_seed(0)).to(dev), batch
            ),
            batch,
        )
        out[dev] = (x.cpu(), {k: v.cpu() for k, v in batch.items()})
    assert torch.allclose(out["cpu"][0], out["cuda"][0], atol=1e-3)
    for k in out["cpu"][1]:
        assert torch.allclose(out["cpu"][1][k], out["cuda"][1][k], atol=1e-5)


# --------------------------------------------------------------------------------------------------
# Config errors
# --------------------------------------------------------------------------------------------------

SOURCES = {"augment": "conf/eff/v030.yaml"}


def test_unknown_name_names_the_entry_the_file_and_the_closest():
    items = [{"name": "mixup"}, {"name": "pink_nosie", "p": 0.3}]
    with pytest.raises(ConfigError) as e:
        build_augment(items, SR, HOP, sources=SOURCES)
    msg = str(e.value)
    assert "conf/eff/v030.yaml" in msg and "augment[1].name" in msg
    assert "did you mean 'pink_noise'" in msg


def test_unknown_key_names_the_entry_the_file_and_the_closest():
    with pytest.raises(ConfigError) as e:
        build_augment([{"name": "time_mask", "max_second": 0.5}], SR, HOP, sources=SOURCES)
    msg = str(e.value)
    assert "conf/eff/v030.yaml" in msg and "augment[0].max_second" in msg
    assert "did you mean 'augment[0].max_seconds'" in msg
    with pytest.raises(ConfigError, match=r"command line: .*augment\[0\]\.prob.*'augment\[0\]\.p'"):
        build_augment([{"name": "mixup", "prob": 0.5}], SR, HOP)


@pytest.mark.parametrize("p", [1.5, -0.1, "0.5", True, None])
def test_p_outside_zero_one_is_an_error(p):
    with pytest.raises(ConfigError, match=r"augment\[0\]\.p.*\[0, 1\]"):
        build_augment([{"name": "mixup", "p": p}], SR, HOP)


@pytest.mark.parametrize(
    "item",
    [
        {"name": "pink_noise", "snr_db": [30, 3]},
        {"name": "volume", "mode": "fade_in"},
        {"name": "mixup", "labels": "union"},
        {"name": "time_shift", "mode": "wrap"},
        {"name": "pitch_shift", "semitones": [0, 0]},
        {"name": "speed", "factor": [0, 1.1]},
        {"name": "time_mask", "n_masks": 1.5},
        {"name": "power", "exponent": [1, 1]},
        {"noname": "mixup"},
        "mixup",
    ],
)
def test_bad_values_are_config_errors(item):
    with pytest.raises(ConfigError, match=r"v030\.yaml: .*augment\[0\]"):
        build_augment([item], SR, HOP, sources=SOURCES)


def test_augment_must_be_a_list():
    with pytest.raises(ConfigError, match=r"v030\.yaml: 'augment' must be a list"):
        build_augment({"name": "mixup"}, SR, HOP, sources=SOURCES)


def test_defaults_build_and_p_defaults_to_one():
    pipe = build_augment([{"name": n} for n in sorted(AUGMENTATIONS)], SR, HOP)
    assert [e.p for e in pipe.entries] == [1.0] * len(AUGMENTATIONS)
    assert len(pipe) == len(AUGMENTATIONS) and "mixup" in repr(pipe)


@pytest.mark.parametrize("name", ["mixup", "additive_mixup"])
def test_a_masked_class_stays_masked_unless_a_partner_holds_it(name):
    """clip_mask of a mix: the product of the clips' masks, except where one clip of the mix has
    a counted positive (its call is in the mix for sure)."""
    b = 16
    batch = identity_batch(b)  # clip i holds class i only
    cmask = torch.ones(b, b)
    for i in range(b):
        cmask[i, (i + 1) % b] = 0.0  # clip i's secondary label: its neighbour's class, unknown
    batch["clip_mask"] = cmask.clone()
    params = {"alpha": 1.0, "labels": "max"} if name == "mixup" else {"max_clips": 1}
    one(name, **params).mix(torch.randn(b, N), batch)
    clip = batch["clip_target"]
    for i in range(b):
        partner = next(k for k in clip[i].nonzero().squeeze(1).tolist() if k != i)
        got = batch["clip_mask"][i]
        expect = cmask[i] * cmask[partner]
        expect[[i, partner]] = 1.0  # both calls are in the mix: present for sure
        assert torch.equal(got, expect), (i, partner)

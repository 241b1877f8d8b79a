"""Sequence families (transformer_sed, conformer_sed): any length, CLS sees the whole clip, gated
frames, length-agnostic positions, and a toy task they learn (the generic contract is in
test_models.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sed.config import ConfigError
from sed.models import TINY, build_model
from sed.models.conformer_sed import GATE_EPS, gated_frame_logits
from sed.models.positional import SinusoidalPositionalEncoding, sinusoidal_positions

N_MELS, N_CLASSES = 32, 5
SEQUENCE_MODELS = ["transformer_sed", "conformer_sed"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(name: str, n_mels: int = N_MELS, n_classes: int = N_CLASSES, **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, n_classes, n_mels, {**TINY[name], **extra})


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
@pytest.mark.parametrize("t", [17, 64, 1000, 3001])
def test_any_length(name: str, t: int) -> None:
    """No layer is sized to a sequence length: a 60 s recording runs like a 2 s crop."""
    model = make(name, activity_head=True).eval()
    with torch.no_grad():
        out = model(torch.randn(1, N_MELS, t))
    t_out = t // model.time_reduction
    assert out["clip_logits"].shape == (1, N_CLASSES)
    assert out["frame_logits"].shape == (1, t_out, N_CLASSES)
    assert out["activity_logits"].shape == (1, t_out, 1)
    for v in out.values():
        assert torch.isfinite(v).all()


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
@pytest.mark.parametrize("subsample", [1, 2, 4])
def test_subsample_sets_time_reduction(name: str, subsample: int) -> None:
    model = make(name, subsample=subsample).eval()
    assert model.time_reduction == subsample
    for t in (subsample, 2 * subsample + 1, 37):
        with torch.no_grad():
            out = model(torch.randn(2, N_MELS, t))
        assert out["frame_logits"].shape == (2, t // subsample, N_CLASSES)


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_too_short_input_raises(name: str) -> None:
    model = make(name, subsample=4).eval()
    with pytest.raises(ValueError, match="at least 4"):
        model(torch.randn(1, N_MELS, 3))


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
@pytest.mark.parametrize("positional", ["sinusoidal", "none"])
def test_cls_sees_every_frame(name: str, positional: str) -> None:
    """Changing only the last frame moves the clip logits: attention reaches it from the CLS
    token (the conformer's convolution kernel alone could not, 64 frames away)."""
    model = make(name, positional=positional).eval()
    x = torch.randn(1, N_MELS, 256)
    y = x.clone()
    y[..., -1] += 3.0
    with torch.no_grad():
        a, b = model(x), model(y)
    assert not torch.allclose(a["clip_logits"], b["clip_logits"], atol=1e-6)
    assert not torch.allclose(a["embedding"], b["embedding"], atol=1e-6)


def test_gated_frames_are_the_product_of_probabilities() -> None:
    gated = make("conformer_sed", activity_head=True, gate_frames=True).eval()
    plain = make("conformer_sed", activity_head=True).eval()
    # the gate adds no parameter: both models hold the same weights
    plain.load_state_dict(gated.state_dict())
    x = torch.randn(2, N_MELS, 64)
    with torch.no_grad():
        g, p = gated(x), plain(x)
    torch.testing.assert_close(g["activity_logits"], p["activity_logits"])
    torch.testing.assert_close(g["clip_logits"], p["clip_logits"])  # the clip is not gated
    expected = torch.sigmoid(p["frame_logits"]) * torch.sigmoid(p["activity_logits"])
    torch.testing.assert_close(torch.sigmoid(g["frame_logits"]), expected, rtol=1e-5, atol=1e-6)
    assert (g["frame_logits"] <= p["frame_logits"] + 1e-5).all()  # a gate only lowers


def test_gated_logits_by_hand() -> None:
    f = torch.tensor([[[0.0, 2.0, -40.0, 60.0, -3.0]]])  # (1, 1, 5)
    a = torch.tensor([[[0.0]]])  # activity probability 0.5
    out = gated_frame_logits(f, a)
    p = torch.tensor([0.5 * 0.5, torch.sigmoid(torch.tensor(2.0)) * 0.5, 0.0, 0.5, 0.0])
    p[2] = torch.sigmoid(torch.tensor(-40.0, dtype=torch.float64)).item() * 0.5
    p[4] = torch.sigmoid(torch.tensor(-3.0)) * 0.5
    torch.testing.assert_close(torch.sigmoid(out[0, 0]), p, rtol=1e-5, atol=1e-12)
    # a tiny product keeps its precision: logit(p) ~ log(p) = -40 + log(0.5)
    assert out[0, 0, 2].item() == pytest.approx(-40.0 - 0.6931472, abs=1e-3)
    # both sure: clamped below 1, so the logit stays finite
    top = gated_frame_logits(torch.tensor([80.0]), torch.tensor([80.0]))
    assert torch.isfinite(top).all()
    assert torch.sigmoid(top.double()).item() == pytest.approx(1 - GATE_EPS, rel=1e-6)
    # reduced-precision inputs give float32 logits
    assert gated_frame_logits(f.bfloat16(), a.bfloat16()).dtype == torch.float32


def test_gate_without_activity_head_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="gate_frames needs activity_head"):
        build_model("conformer_sed", 3, N_MELS, {**TINY["conformer_sed"], "gate_frames": True})


def test_bad_params_raise() -> None:
    with pytest.raises(ConfigError, match="subsample"):
        build_model("transformer_sed", 3, N_MELS, {**TINY["transformer_sed"], "subsample": 3})
    with pytest.raises(ConfigError, match="positional"):
        build_model("conformer_sed", 3, N_MELS, {**TINY["conformer_sed"], "positional": "rope"})
    with pytest.raises(ConfigError, match="must divide"):
        build_model("transformer_sed", 3, N_MELS, {**TINY["transformer_sed"], "n_heads": 3})


def test_no_bottleneck_and_no_decoder() -> None:
    for name in SEQUENCE_MODELS:
        model = make(name, bottleneck_dim=0, n_decoder_layers=0).eval()
        assert model.bottleneck is None
        with torch.no_grad():
            out = model(torch.randn(2, N_MELS, 40))
        assert out["frame_logits"].shape == (2, 40 // model.time_reduction, N_CLASSES)


def test_positions_deterministic_and_length_agnostic() -> None:
    long = sinusoidal_positions(1000, 16)
    # the first rows do not depend on how long the table is, and recomputing gives the same
    torch.testing.assert_close(sinusoidal_positions(37, 16), long[:37], rtol=0, atol=0)
    torch.testing.assert_close(sinusoidal_positions(1000, 16), long, rtol=0, atol=0)
    # pe[0] = (sin 0, cos 0, ...) and pe[t, 0] = sin(t) (the fastest frequency is 1)
    torch.testing.assert_close(long[0], torch.tensor([0.0, 1.0] * 8))
    torch.testing.assert_close(long[:, 0], torch.arange(1000.0).sin(), rtol=0, atol=1e-4)
    assert sinusoidal_positions(5, 7).shape == (5, 7)  # odd widths are allowed
    # rows differ from each other: positions are distinguishable
    assert torch.cdist(long[:100], long[:100]).fill_diagonal_(1.0).min() > 0.1
    module = SinusoidalPositionalEncoding(16)
    assert not list(module.parameters()) and not list(module.buffers())  # nothing length-sized
    x = torch.zeros(2, 50, 16)
    torch.testing.assert_close(module(x), long[:50].expand(2, -1, -1))


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_state_dict_has_no_length(name: str) -> None:
    """A checkpoint made on short crops loads into a model that then reads any length."""
    model = make(name, positional="sinusoidal").eval()
    torch.manual_seed(1)  # other weights than make()'s seed 0: loading has to change them
    other = build_model(name, N_CLASSES, N_MELS, {**TINY[name], "positional": "sinusoidal"}).eval()
    short, long = torch.randn(2, N_MELS, 64), torch.randn(1, N_MELS, 500)
    with torch.no_grad():
        model(short)  # used on short crops first, as in training
        a = model(long)
        before = other(long)
        other.load_state_dict(model.state_dict())
        b = other(long)
    assert a["frame_logits"].shape[1] == 500 // model.time_reduction
    assert not torch.allclose(before["clip_logits"], a["clip_logits"], atol=1e-4)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


def toy_batch(gen: torch.Generator, n_mels: int, n_classes: int, batch: int, t: int):
    """Noise log-mels; class k is active iff mel bands [4k, 4k + 4) are loud, over t / 4 frames.

    Returns:
        (feats (B, n_mels, T), clip targets (B, C), frame targets (B, T, C)).
    """
    feats = torch.randn(batch, n_mels, t, generator=gen)
    frame = torch.zeros(batch, t, n_classes)
    active = torch.rand(batch, n_classes, generator=gen) < 0.4
    span = t // 4
    for b, k in active.nonzero().tolist():
        start = int(torch.randint(0, t - span + 1, (1,), generator=gen))
        feats[b, 4 * k : 4 * k + 4, start : start + span] += 6.0
        frame[b, start : start + span, k] = 1.0
    return feats, active.float(), frame


def constant_loss(target: torch.Tensor) -> float:
    """BCE of the best input-blind prediction (the positive rate): what a model that ignores its
    input reaches at best."""
    return F.binary_cross_entropy(target.mean().expand_as(target), target).item()


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_learns_toy_task(name: str) -> None:
    """30 Adam steps on "class k iff band k is loud": the clip + frame loss falls well below both
    its start and what any input-blind predictor can reach."""
    n_mels, n_classes, t, batch = 16, 4, 64, 16
    model = make(name, n_mels=n_mels, n_classes=n_classes, activity_head=True).train()
    r = model.time_reduction
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    losses, blind = [], []
    for _ in range(30):
        feats, clip, frame = toy_batch(gen, n_mels, n_classes, batch, t)
        frame = frame.reshape(batch, t // r, r, n_classes).amax(dim=2)  # the model's frame rate
        out = model(feats)
        loss = F.binary_cross_entropy_with_logits(
            out["clip_logits"], clip
        ) + F.binary_cross_entropy_with_logits(out["frame_logits"], frame)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        blind.append(constant_loss(clip) + constant_loss(frame))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.75 * first, f"loss {first:.3f} -> {last:.3f}"
    assert last < 0.9 * sum(blind[-5:]) / 5, f"loss {last:.3f}, input-blind {blind[-1]:.3f}"


@pytest.mark.parametrize("n", [1, 7, 600])
def test_fast_relative_attention_matches_the_package(n: int) -> None:
    """Same numbers and gradients as the conformer package's attention, beyond max_pos_emb too."""
    from conformer.conformer import Attention

    from sed.models.conformer_sed import RelPosSelfAttention

    torch.manual_seed(0)
    ref = Attention(dim=16, heads=2, dim_head=8, max_pos_emb=256).eval()
    fast = RelPosSelfAttention(ref)
    x = torch.randn(2, n, 16, requires_grad=True)
    a, b = ref(x), fast(x)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    (ga,) = torch.autograd.grad(a.square().sum(), ref.rel_pos_emb.weight)
    (gb,) = torch.autograd.grad(b.square().sum(), fast.rel_pos_emb.weight)
    torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-5)
    assert set(dict(fast.named_parameters())) == set(dict(ref.named_parameters()))

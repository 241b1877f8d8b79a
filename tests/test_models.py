"""Every registered model honours the contract of DESIGN §5 (tests generated from the registry)."""

from __future__ import annotations

import pytest
import torch

from sed.models import MODELS, TINY, build_model

N_MELS, N_CLASSES = 32, 5


@pytest.fixture(params=sorted(MODELS))
def name(request) -> str:
    assert TINY.get(request.param), f"register {request.param} with a tiny variant"
    return request.param


def make(name: str, **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, N_CLASSES, N_MELS, {**TINY[name], **extra})


@pytest.mark.parametrize("t", [64, 101, 257])
def test_output_keys_and_shapes(name: str, t: int) -> None:
    model = make(name).eval()
    out = model(torch.randn(3, N_MELS, t))
    r = model.time_reduction
    assert out["clip_logits"].shape == (3, N_CLASSES)
    # the declared time reduction is the real one
    assert out["frame_logits"].shape == (3, t // r, N_CLASSES)
    assert out["embedding"].shape[0] == 3 and out["embedding"].ndim == 2
    assert "activity_logits" not in out
    for v in out.values():
        assert torch.isfinite(v).all()


def test_activity_head(name: str) -> None:
    model = make(name, activity_head=True).eval()
    out = model(torch.randn(2, N_MELS, 80))
    assert out["activity_logits"].shape == (2, 80 // model.time_reduction, 1)


def test_gradients_reach_every_parameter(name: str) -> None:
    model = make(name, activity_head=True).train()
    out = model(torch.randn(4, N_MELS, 64))
    loss = sum(v.float().pow(2).mean() for v in out.values())
    loss.backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, f"no gradient for {missing}"


def test_eval_is_deterministic(name: str) -> None:
    """Dropout must be off at inference (the seed had it on)."""
    model = make(name).eval()
    x = torch.randn(2, N_MELS, 64)
    with torch.no_grad():
        a, b = model(x), model(x)
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    model.train()
    assert not torch.equal(model(x)["clip_logits"], model(x)["clip_logits"])


def test_batch_of_one(name: str) -> None:
    model = make(name).eval()
    out = model(torch.randn(1, N_MELS, 64))
    assert out["clip_logits"].shape == (1, N_CLASSES)


@pytest.mark.parametrize("pooling", ["attention", "max", "mean"])
def test_clip_pooling_relations(pooling: str) -> None:
    model = make("cnn14_att", clip_pooling=pooling).eval()
    with torch.no_grad():
        out = model(torch.randn(2, N_MELS, 64))
    frame_max = out["frame_logits"].amax(dim=1)
    frame_min = out["frame_logits"].amin(dim=1)
    clip = out["clip_logits"]
    # every pooling is a weighted average or the max: it lies between min and max over time
    assert (clip <= frame_max + 1e-5).all() and (clip >= frame_min - 1e-5).all()
    if pooling == "max":
        torch.testing.assert_close(clip, frame_max)
    if pooling == "mean":
        torch.testing.assert_close(clip, out["frame_logits"].mean(dim=1))


def test_mean_frequency_reduction() -> None:
    model = make("cnn14_att", freq_reduce="mean").eval()
    assert model(torch.randn(2, N_MELS, 64))["clip_logits"].shape == (2, N_CLASSES)


def test_bad_params_raise() -> None:
    from sed.config import ConfigError

    with pytest.raises(ConfigError, match="one entry per block"):
        build_model("cnn14_att", 3, 32, {"widths": [4, 8], "time_pools": [2]})
    with pytest.raises(ConfigError, match="clip_pooling"):
        build_model("cnn14_att", 3, 32, {"widths": [4], "clip_pooling": "sum"})


def test_registry_imports_only_the_needed_module() -> None:
    """Building one model imports its own file only: timm and torchvision stay unloaded."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from sed.models import TINY, build_model\n"
        "build_model('efficientnet_att', 3, 32, TINY['efficientnet_att'])\n"
        "assert 'timm' not in sys.modules and 'torchvision' not in sys.modules, 'eager import'\n"
        "from sed.models import MODELS\n"
        "assert 'timm_sed' in sorted(MODELS) and 'timm' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_model_registered_outside_the_package() -> None:
    from torch import nn

    from sed.models import register_model

    @register_model("outside_test_model", tiny={})
    class Outside(nn.Module):
        def __init__(self, n_classes: int, n_mels: int) -> None:
            super().__init__()
            self.n_classes = n_classes

    try:
        assert "outside_test_model" in MODELS
        assert isinstance(build_model("outside_test_model", 4, 8), Outside)
    finally:
        MODELS.unregister("outside_test_model")

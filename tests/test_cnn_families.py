"""CNN families on image backbones: ONNX export, local weight files and converters.

The generic model contract (shapes, time reduction, gradients, determinism) is tested for every
registered model in tests/test_models.py; this file covers what is specific to these families.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnxruntime as ort
import pytest
import torch
from torch import nn

from sed.models import TINY, build_model
from sed.models.weights import (
    apply_key_map,
    convert_efficientnet_imagenet,
    convert_panns_cnn14,
    sum_input_channels,
)

N_MELS, N_CLASSES = 32, 5
FAMILIES = [
    "efficientnet_att",
    "efficientnet_simple",
    "resnext50_att",
    "mobilenetv2_att",
    "timm_sed",
    "cnn14_att",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def make(name: str, seed: int = 0, n_classes: int = N_CLASSES, **extra) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, n_classes, N_MELS, {**TINY[name], **extra})


def calibrate(model: nn.Module) -> nn.Module:
    """Give BatchNorm real running statistics: at random init deep nets in eval mode shrink their
    activations towards zero, which would make output comparisons vacuous."""
    model.train()
    with torch.no_grad():
        for t in (64, 96, 128):
            model(torch.randn(4, N_MELS, t) * 3 + 1)
    return model.eval()


def outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model(x)


# --------------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------------


class _Outputs(nn.Module):
    """ONNX graphs return tuples, not dicts."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(feats)
        return out["clip_logits"], out["frame_logits"], out["embedding"], out["activity_logits"]


def export_and_compare(model: nn.Module, path: Path, ts: tuple[int, ...] = (101, 257)) -> None:
    wrapper = _Outputs(calibrate(model)).eval()  # a wrapper left in training mode would train it
    x = torch.randn(2, N_MELS, 160)
    # the TorchScript exporter: torch.export (dynamo=True) specialises T on these models
    with warnings.catch_warnings():  # its deprecation and constant-folding notes
        warnings.simplefilter("ignore")
        _export(wrapper, x, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, t in zip((1, 3), ts, strict=False):
        x = torch.randn(batch, N_MELS, t) * 2
        with torch.no_grad():
            ref = wrapper(x)
        got = session.run(None, {"feats": x.numpy()})
        assert got[1].shape == (batch, t // model.time_reduction, N_CLASSES)
        for g, r in zip(got, ref, strict=True):
            assert r.abs().max() > 1e-3  # a meaningful comparison, not of two zeros
            torch.testing.assert_close(torch.from_numpy(g), r, atol=1e-4, rtol=1e-4)


def _export(wrapper: nn.Module, x: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        wrapper,
        (x,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["feats"],
        output_names=["clip_logits", "frame_logits", "embedding", "activity_logits"],
        dynamic_axes={"feats": {0: "batch", 2: "time"}},
    )


@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_export_dynamic_time(name: str, tmp_path: Path) -> None:
    export_and_compare(make(name, activity_head=True), tmp_path / f"{name}.onnx")


# --------------------------------------------------------------------------------------------------
# Local weight files
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_init_checkpoint_round_trip(name: str, tmp_path: Path) -> None:
    src = calibrate(make(name, seed=1))
    # a trainer's checkpoint of a DataParallel model: {"model": {"module.<key>": ...}}
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {f"module.{k}": v for k, v in src.state_dict().items()}, "step": 3}, path)
    dst = make(name, seed=2, init_checkpoint=str(path), init_key_map={"module.": ""}).eval()
    report = dst.init_report
    assert not report.missing and not report.unexpected and not report.mismatched
    x = torch.randn(2, N_MELS, 96)
    a, b = outputs(src, x), outputs(dst, x)
    for k in a:
        torch.testing.assert_close(a[k], b[k])


@pytest.mark.parametrize("name", ["efficientnet_att", "timm_sed"])
def test_init_checkpoint_other_classes_keeps_backbone(name: str, tmp_path: Path) -> None:
    src = make(name, seed=1, n_classes=7)
    path = tmp_path / "plain.pt"
    torch.save(src.state_dict(), path)
    dst = make(name, seed=2, init_checkpoint=str(path))
    report = dst.init_report
    # the head's class convolutions differ in shape: dropped and reported, the rest loaded
    assert set(report.mismatched) == {
        "head.cla.weight",
        "head.cla.bias",
        "head.att.weight",
        "head.att.bias",
    }
    assert report.missing == sorted(report.mismatched)
    for key, value in src.state_dict().items():
        if key.startswith("backbone."):
            torch.testing.assert_close(dst.state_dict()[key], value)


def test_init_checkpoint_errors(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"encoder.w": torch.zeros(3)}}, path)
    with pytest.raises(Exception, match=r"other\.pt"):
        make("efficientnet_att", init_checkpoint=str(path))
    with pytest.raises(Exception, match="not found"):
        make("resnext50_att", init_checkpoint=str(tmp_path / "missing.pt"))


def test_apply_key_map_prefixes_in_order() -> None:
    sd = {
        "module.conv.weight": torch.zeros(1),
        "module.fc.bias": torch.zeros(1),
        "x": torch.ones(1),
    }
    out = apply_key_map(sd, {"module.": "", "": "backbone."})
    assert sorted(out) == ["backbone.conv.weight", "backbone.fc.bias", "backbone.x"]
    assert apply_key_map(sd, None) == sd


def test_sum_input_channels() -> None:
    w = torch.randn(4, 3, 3, 3)
    torch.testing.assert_close(sum_input_channels(w, 1), w.sum(1, keepdim=True))
    assert sum_input_channels(w, 3) is w
    assert sum_input_channels(w, 5).shape == (4, 5, 3, 3)


# --------------------------------------------------------------------------------------------------
# Converters
# --------------------------------------------------------------------------------------------------


def to_panns(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our cnn14_att keys -> the official PANNs Cnn14 layout (plus its extra entries)."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("head."):
            continue
        if key.startswith("blocks."):
            _, i, rest = key.split(".", 2)
            key = f"conv_block{int(i) + 1}.{rest}"
        elif key.startswith("fc."):
            key = "fc1." + key[3:]
        out[key] = value
    out["fc_audioset.weight"] = torch.randn(527, 8)
    out["fc_audioset.bias"] = torch.randn(527)
    out["spectrogram_extractor.stft.conv_real.weight"] = torch.randn(513, 1, 1024)
    out["logmel_extractor.melW"] = torch.randn(513, 64)
    return out


def test_convert_panns_cnn14(tmp_path: Path) -> None:
    src = calibrate(make("cnn14_att", seed=1, freq_reduce="mean"))
    panns = to_panns(src.state_dict())
    converted = convert_panns_cnn14(panns)
    assert "blocks.0.conv1.weight" in converted and "fc.weight" in converted
    assert not any(
        k.startswith(("conv_block", "fc1.", "fc_audioset", "spectrogram", "logmel"))
        for k in converted
    )
    # a state dict already in our layout passes unchanged
    assert convert_panns_cnn14(src.state_dict()).keys() == src.state_dict().keys()

    path = tmp_path / "Cnn14_mAP=0.431.pth"
    torch.save({"iteration": 1, "model": panns}, path)
    dst = make("cnn14_att", seed=2, freq_reduce="mean", init_checkpoint=str(path)).eval()
    report = dst.init_report
    assert all(k.startswith("head.") for k in report.missing) and report.missing
    assert not report.unexpected and not report.mismatched
    # with the (untrained) head copied too, the two models are the same function
    dst.head.load_state_dict(src.head.state_dict())
    x = torch.randn(2, N_MELS, 64)
    a, b = outputs(src, x), outputs(dst, x)
    for k in a:
        torch.testing.assert_close(a[k], b[k])


@pytest.mark.parametrize("in_chans", [1, 3])
def test_convert_efficientnet_imagenet(in_chans: int, tmp_path: Path) -> None:
    from efficientnet_pytorch import EfficientNet

    torch.manual_seed(1)
    tiny = {"width_coefficient": 0.1, "depth_coefficient": 0.1}
    imagenet = EfficientNet.from_name("efficientnet-b0", num_classes=1000, **tiny)
    imagenet.set_swish(memory_efficient=False)
    imagenet.train()
    with torch.no_grad():
        imagenet.extract_features(torch.randn(4, 3, 64, 64))
    imagenet.eval()
    path = tmp_path / "efficientnet-b0-355c32eb.pth"
    torch.save(imagenet.state_dict(), path)

    converted = convert_efficientnet_imagenet(imagenet.state_dict(), in_channels=in_chans)
    assert not any(k.startswith("backbone._fc") for k in converted)
    assert converted["backbone._conv_stem.weight"].shape[1] == in_chans

    model = make("efficientnet_att", in_chans=in_chans, init_checkpoint=str(path)).eval()
    report = model.init_report
    assert not report.mismatched and not report.unexpected
    assert not any(k.startswith("backbone.") for k in report.missing)
    # a spectrogram through the adapted stem == the same grey image through the RGB network
    image = torch.randn(2, 1, N_MELS, 64)
    with torch.no_grad():
        ref = imagenet.extract_features(image.expand(-1, 3, -1, -1))
        got = model.backbone.extract_features(image.expand(-1, in_chans, -1, -1))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_resnext_matches_torchvision_layout() -> None:
    from torchvision.models import resnext50_32x4d

    from sed.models.resnext import ResNeXtFeatures

    with torch.device("meta"):
        ref = resnext50_32x4d(weights=None).state_dict()
        ours = ResNeXtFeatures(in_chans=3).state_dict()
    expected = {k: v.shape for k, v in ref.items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in ours.items()} == expected


# --------------------------------------------------------------------------------------------------
# timm backbones
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["efficientvit_b0", "mnasnet_100"])
def test_timm_backbones(backbone: str, tmp_path: Path) -> None:
    model = make("timm_sed", backbone=backbone, activity_head=True).eval()
    assert model.time_reduction == 32
    for t in (64, 101):
        out = outputs(model, torch.randn(2, N_MELS, t))
        assert out["frame_logits"].shape == (2, t // 32, N_CLASSES)
        assert out["activity_logits"].shape == (2, t // 32, 1)
    if backbone == "efficientvit_b0":
        export_and_compare(model, tmp_path / "efficientvit.onnx", ts=(64, 130))


def test_timm_unknown_backbone() -> None:
    from sed.config import ConfigError

    with pytest.raises(ConfigError, match="unknown timm backbone"):
        make("timm_sed", backbone="efficientnet_b99")

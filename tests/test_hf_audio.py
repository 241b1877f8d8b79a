"""Hugging Face audio encoders as SED models (sed/models/hf_audio.py), on tiny random configs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("transformers")

from sed.config import ConfigError
from sed.models import MODELS, build_model
from sed.models.hf_audio import HFAudioSED, WaveFrames

N_CLASSES = 3
# conv stack of total stride 32 samples, receptive field 80
CONV = {"conv_dim": [16, 16, 16], "conv_kernel": [8, 4, 4], "conv_stride": [8, 2, 2]}
SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
CONFIGS = {
    "wav2vec2": {
        **SMALL,
        **CONV,
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4,
        "mask_time_length": 2,
    },
    "hubert": {
        **SMALL,
        **CONV,
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4,
        "mask_time_length": 2,
    },
    "sew-d": {
        **SMALL,
        **CONV,
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4,
        "squeeze_factor": 2,
        "mask_time_length": 2,
    },
    "ast": {**SMALL, "max_length": 64, "hidden_dropout_prob": 0.1},
}
WAVE_ARCHS = ["wav2vec2", "hubert", "sew-d"]
N_MELS = 24  # AST input bands


def make(arch: str, hop: int = 32, **kw) -> HFAudioSED:
    torch.manual_seed(0)
    n_mels = N_MELS if arch == "ast" else hop
    return HFAudioSED(N_CLASSES, n_mels, arch=arch, config=CONFIGS[arch], **kw)


def test_wave_frames_round_trip_and_centres() -> None:
    fr = WaveFrames(4)
    wave = torch.arange(1, 11, dtype=torch.float32)[None]  # samples 0..9 hold 1..10
    frames = fr(wave)
    assert frames.shape == (1, 4, 10 // 4 + 1)
    # column i is centred on sample i * hop: samples [i*4 - 2, i*4 + 2)
    assert frames[0, :, 1].tolist() == [3.0, 4.0, 5.0, 6.0]
    assert frames[0, :, 0].tolist() == [0.0, 0.0, 1.0, 2.0]
    flat = WaveFrames.unframe(frames)[0]
    assert flat[2:12].tolist() == wave[0].tolist()


@pytest.mark.parametrize("arch", [*WAVE_ARCHS, "ast"])
@pytest.mark.parametrize("t", [40, 64, 101, 150])
def test_shapes_and_declared_reduction(arch: str, t: int) -> None:
    model = make(arch).eval()
    x = torch.randn(2, model.hop if arch != "ast" else N_MELS, t)
    with torch.no_grad():
        out = model(x)
    r = model.time_reduction
    assert r == (1 if arch != "ast" else 10)
    assert out["clip_logits"].shape == (2, N_CLASSES)
    assert out["frame_logits"].shape == (2, t // r, N_CLASSES)
    assert out["embedding"].shape == (2, 32)
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("arch", WAVE_ARCHS)
@pytest.mark.parametrize("n", [1000, 3200, 4799])
def test_raw_waveforms_and_a_coarser_grid(arch: str, n: int) -> None:
    """(B, N) counts N // hop + 1 frames; a hop of half the stride gives r = 2."""
    model = make(arch, hop=16).eval()
    assert model.time_reduction == 2
    wave = torch.randn(2, n)
    with torch.no_grad():
        out = model(wave)
        framed = model(WaveFrames(16)(wave))
    assert out["frame_logits"].shape == (2, (n // 16 + 1) // 2, N_CLASSES)
    torch.testing.assert_close(out["frame_logits"], framed["frame_logits"])


def test_frames_follow_the_signal_in_time() -> None:
    """A burst in one place moves the frame features there (the conv field is centred)."""
    model = make("wav2vec2", normalize=False).eval()
    quiet = torch.zeros(1, 32 * 60)
    loud = quiet.clone()
    loud[0, 32 * 30 - 16 : 32 * 30 + 16] = 1.0  # one feature frame (30) worth of signal
    from sed.models.hf_audio import _fit

    def conv(x: torch.Tensor) -> torch.Tensor:
        """The conv features (C, 60), before the transformer mixes all positions."""
        w = _fit(WaveFrames.unframe(model.frames(x)), model.left_pad, 59 * 32 + model.field)
        return model.encoder.feature_extractor(w)[0]

    with torch.no_grad():
        diff = (conv(loud) - conv(quiet)).abs().sum(0)
    assert int(diff.argmax()) == 30
    # the first conv layer's GroupNorm spreads a little everywhere; the burst stays local
    far = torch.cat([diff[:28], diff[33:]])
    assert diff[30] > 10 * far.max()


@pytest.mark.parametrize("arch", [*WAVE_ARCHS, "ast"])
def test_gradients_flow_and_feature_encoder_freezes(arch: str) -> None:
    model = make(arch).train()
    x = torch.randn(2, model.hop if arch != "ast" else N_MELS, 60)
    out = model(x)
    (out["clip_logits"].pow(2).mean() + out["frame_logits"].pow(2).mean()).backward()
    assert model.head.cla.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    if arch == "ast":
        return
    frozen = make(arch, freeze_feature_encoder=True).train()
    frozen(x)["clip_logits"].sum().backward()
    conv = list(frozen.encoder.feature_extractor.parameters())
    assert conv and all(not p.requires_grad and p.grad is None for p in conv)
    assert any(p.grad is not None for p in frozen.encoder.encoder.parameters())


@pytest.mark.parametrize("arch", [*WAVE_ARCHS, "ast"])
def test_pretrained_folder_loads_the_saved_encoder(arch: str, tmp_path) -> None:
    source = make(arch).eval()
    source.encoder.save_pretrained(tmp_path / "enc")
    loaded = HFAudioSED(
        N_CLASSES, source.n_mels, arch=arch, pretrained=str(tmp_path / "enc")
    ).eval()
    for (k, a), (_, b) in zip(
        source.encoder.state_dict().items(), loaded.encoder.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=k)
    # config overrides apply on top of the saved config (dropouts, masking)
    tuned = HFAudioSED(
        N_CLASSES, source.n_mels, arch=arch, pretrained=str(tmp_path / "enc"),
        config={"hidden_dropout_prob" if arch == "ast" else "hidden_dropout": 0.25},
    )  # fmt: skip
    key = "hidden_dropout_prob" if arch == "ast" else "hidden_dropout"
    assert getattr(tuned.encoder.config, key) == 0.25
    x = torch.randn(2, 2000) if arch != "ast" else torch.randn(2, 64, N_MELS)
    with torch.no_grad():
        key = "input_values"
        torch.testing.assert_close(
            source.encoder(**{key: x}).last_hidden_state,
            loaded.encoder(**{key: x}).last_hidden_state,
        )


def test_ast_states_equal_the_library_forward_at_max_length() -> None:
    """The re-implemented AST forward (any length) is the library's at its own max_length."""
    model = make("ast", normalize=False).eval()
    length = model.encoder.config.max_length  # 64 frames: 5 patches of 16 frames every 10
    n_out = (length - model.patch) // model.time_reduction + 1
    # the model puts left_pad (3) frames of the clip's floor in front and keeps
    # (n_out - 1) * 10 + 16 = 56 frames: 53 input frames fill them exactly
    x = torch.randn(1, N_MELS, (n_out - 1) * model.time_reduction + model.patch - model.left_pad)
    floor = float(x.amin())
    z = torch.nn.functional.pad(x, (model.left_pad, 0), value=floor)
    # the library takes max_length frames; frames past the last patch change nothing
    z = torch.nn.functional.pad(z, (0, length - z.shape[-1]), value=floor)
    with torch.no_grad():
        ours, pooled = model._ast_states(x)
        hf = model.encoder(input_values=z.transpose(1, 2))
    ref = hf.last_hidden_state[:, 2:].reshape(1, -1, n_out, 32).mean(1)
    assert ours.shape == ref.shape == (1, n_out, 32)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(pooled, hf.pooler_output, atol=1e-5, rtol=1e-4)


def test_ast_longer_than_max_length_interpolates_positions() -> None:
    model = make("ast").eval()
    with torch.no_grad():
        out = model(torch.randn(1, N_MELS, 250))  # max_length 64
    assert out["frame_logits"].shape == (1, 25, N_CLASSES)


def test_clear_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"pretrained '.*nowhere' is not a Hugging Face model"):
        HFAudioSED(N_CLASSES, 32, pretrained=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no .*config.json"):
        HFAudioSED(N_CLASSES, 32, pretrained=str(tmp_path / "empty"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="holds a 'bert' model, arch 'hubert' needs 'hubert'"):
        HFAudioSED(N_CLASSES, 32, arch="hubert", pretrained=str(tmp_path / "other"))
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(ValueError, match="cannot load the model"):
        HFAudioSED(N_CLASSES, 32, pretrained=str(tmp_path / "noweights"))
    with pytest.raises(ValueError, match=r"features.sample_rate is 32000; set .*16000"):
        make("wav2vec2", sample_rate=32000)
    make("wav2vec2", sample_rate=16000)  # the right rate builds
    with pytest.raises(ValueError, match=r"features.n_mels is 40 but the AST config has num_mel"):
        HFAudioSED(N_CLASSES, 40, arch="ast", config={**CONFIGS["ast"], "num_mel_bins": 24})
    with pytest.raises(ValueError, match=r"features.hop_length 48 .* must divide .* 32 samples"):
        make("wav2vec2", hop=48)
    with pytest.raises(ValueError, match=r"unknown key 'config.hiden_size'.*'hidden_size'"):
        HFAudioSED(N_CLASSES, 32, config={"hiden_size": 8})
    with pytest.raises(ValueError, match=r"arch must be one of .*did you mean 'sew-d'"):
        HFAudioSED(N_CLASSES, 32, arch="sew_d")
    # through the registry the same errors are config errors naming model.params
    with pytest.raises(ConfigError, match=r"model.params for model 'hf_audio'.*sample_rate"):
        MODELS.build(
            "hf_audio",
            {"config": CONFIGS["wav2vec2"]},
            "model.params",
            n_classes=2,
            n_mels=32,
            sample_rate=22050,
        )


def test_training_separates_tones_from_noise() -> None:
    """A few steps on tone (class 1) vs noise (class 0) clips lower the loss."""
    torch.manual_seed(0)
    model = build_model("hf_audio", 1, 32, {"config": CONFIGS["wav2vec2"], "dropout": 0.0})
    gen = torch.Generator().manual_seed(1)
    t = torch.arange(3200) / 16000

    def batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 2
        freq = 500 + 1500 * torch.rand(n, 1, generator=gen)
        tone = torch.sin(2 * torch.pi * freq * t) + 0.1 * torch.randn(n, 3200, generator=gen)
        noise = torch.randn(n, 3200, generator=gen)
        return torch.where(y[:, None] > 0, tone, noise), y.float()[:, None]

    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses = []
    model.train()
    for _ in range(25):
        x, y = batch()
        loss = loss_fn(model(x)["clip_logits"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    x, y = batch(16)
    with torch.no_grad():
        final = float(loss_fn(model(x)["clip_logits"], y))
    assert sum(losses[:3]) / 3 > 0.6 and final < 0.3, (losses, final)


def test_transformers_is_imported_only_when_built() -> None:
    code = (
        "import sys\n"
        "from sed.models import MODELS, TINY, build_model\n"
        "assert 'hf_audio' in sorted(MODELS)\n"
        "build_model('cnn14_att', 3, 32, TINY['cnn14_att'])\n"
        "assert 'transformers' not in sys.modules, 'eager import'\n"
        "build_model('hf_audio', 3, 32, TINY['hf_audio'])\n"
        "assert 'transformers' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("frontend", [True, False])
def test_waveform_model_trains_and_validates_through_train_fold(
    prepared, tmp_path, frontend: bool
) -> None:
    """conf/hf/tiny (wav2vec2, ``features.kind: wave``) through sed.train.fold as configured:
    with ``frontend: true`` WaveStore crops and the trainer's front end / body split (frame
    targets reduced at the declared rate), without it crops of the dumped frames; validation on
    the stage-1 dump of the framed waveform either way."""
    from pathlib import Path

    import numpy as np

    from sed.config import load_config
    from sed.data.corpus import Corpus
    from sed.features.dump import dump_features, feature_name
    from sed.features.frontend import WaveFrames
    from sed.models.build import build_model_from_config
    from sed.train.checkpoint import load_checkpoint
    from sed.train.fold import train_fold

    data, _ = prepared
    corpus = Corpus.load(data)
    tiny = Path(__file__).resolve().parents[1] / "conf" / "hf" / "tiny.yaml"
    cfg, sources = load_config(
        tiny,
        "train.max_steps=4 train.eval_every_steps=2 train.log_every_steps=1 train.figures=false "
        f"data.crop_seconds=1.0 model.params.frontend={str(frontend).lower()}"
        # waveform augmentations need the front end inside the model
        + ("" if frontend else " augment=[]"),
    )
    assert (cfg.features.kind, cfg.features.n_mels) == ("wave", cfg.features.hop_length)
    dump = tmp_path / "dump"
    dump_features(
        corpus.recordings, cfg.features, dump / feature_name(cfg.features), progress=False
    )
    model = build_model_from_config(cfg, len(corpus.classes), sources)
    assert isinstance(getattr(model, "frontend", None), WaveFrames) == frontend
    result = train_fold(cfg, 0, corpus, dump, tmp_path / "exp", sources, progress=False)
    assert result["steps"] == 4 and len(result["history"]) == 2
    assert np.isfinite([h["lwlrap"] for h in result["history"]]).all()
    best = load_checkpoint(tmp_path / "exp" / "fold0" / "checkpoints" / "best.pt")
    prefix = "body." if frontend else ""
    assert any(k.startswith(prefix + "encoder.feature_extractor") for k in best["model"])

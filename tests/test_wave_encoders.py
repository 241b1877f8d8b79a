"""Waveform encoders through the recipe: ``features.kind: wave`` (the waveform framed on the feature
grid, :class:`sed.features.frontend.WaveFrames`) from config to stage 1, stage 3 and ``sedkit
infer``, which give a recording the same clip scores (the one inference path)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")

from sed.bin import infer as stage3
from sed.bin.cli import main as sed_main
from sed.config import ConfigError, dump_yaml, from_dict, load_config, to_dict
from sed.data.corpus import Corpus
from sed.data.rfcx import prepare_rfcx
from sed.data.synth import SynthConfig, generate
from sed.datasets.crop_dataset import read_crop
from sed.features.audio import load_audio, speed_perturb
from sed.features.dump import FeatureStore, dump_features, feature_name
from sed.features.frontend import LogMel, WaveFrames, build_frontend
from sed.infer.stream import FeatureStream, experiment_frontend
from sed.models import build_model
from sed.models.build import build_model_from_config, n_outputs
from sed.models.hf_audio import HFAudioSED
from sed.train.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "conf" / "hf" / "tiny.yaml"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("hop", [160, 7])
def test_wave_frames_streamed_in_blocks_equal_the_whole_signal(hop: int) -> None:
    """FeatureStream with WaveFrames (an odd hop too) emits exactly the frames of the whole
    signal: ``n_fft`` covers the samples a frame spans past its centre."""
    fe = WaveFrames(hop, 16000)
    assert fe.n_fft // 2 >= hop - hop // 2
    rng = np.random.default_rng(0)
    for n in (1, hop - 1, 5 * hop + 3, 4000):
        wave = rng.normal(size=n).astype(np.float32)
        whole = fe(torch.from_numpy(wave)).numpy()
        assert whole.shape == (hop, n // hop + 1)
        stream = FeatureStream(fe, fe.n_fft, hop)
        parts, pos = [], 0
        while pos < n:
            step = int(rng.integers(1, 700))
            parts.append(stream.push(wave[pos : pos + step]))
            pos += step
        parts.append(stream.push(np.zeros(0, np.float32), last=True))
        got = np.concatenate([p for p in parts if p.size], axis=1)
        np.testing.assert_array_equal(got, whole)


def test_kind_wave_config_derives_n_mels_and_refuses_logmel_keys() -> None:
    cfg, _ = load_config(TINY)
    f = cfg.features
    assert (f.kind, f.sample_rate, f.hop_length, f.n_mels) == ("wave", 16000, 320, 320)
    assert feature_name(f).startswith("wave_sr16000_hop320_")
    # a resolved config (checkpoints, config.yaml) keeps the derived value
    assert from_dict(to_dict(cfg)).features.n_mels == 320
    other, _ = load_config(TINY, "features.hop_length=160")
    assert other.features.n_mels == 160 and feature_name(other.features) != feature_name(f)
    with pytest.raises(ConfigError, match=r"'features.n_mels' is 64, but .*wave.*derived"):
        load_config(TINY, "features.n_mels=64")
    with pytest.raises(ConfigError, match=r"'features.fmin' is a log-mel setting.*kind: wave"):
        load_config(TINY, "features.fmin=100")
    with pytest.raises(ConfigError, match=r"features.kind.*logmel, embedding, wave|wave"):
        load_config(TINY, "features.kind=waves")


def test_build_model_pairs_waveform_encoders_with_wave_features() -> None:
    cfg, sources = load_config(TINY)
    model = build_model_from_config(cfg, 3, sources)
    # the features' rate and hop reach the encoder; the front end is the framed waveform
    assert isinstance(model.frontend, WaveFrames) and model.body.hop == 320
    assert model.body.time_reduction == 1 and model.hop_length == 320
    out = model.eval()(torch.randn(2, 16000))
    assert out["frame_logits"].shape == (2, 16000 // 320 + 1, 3)
    # log-mel in front of wav2vec2 (today's frontend: true on log-mel) is refused
    cnn, _ = load_config(ROOT / "conf" / "cnn" / "tiny.yaml")
    with pytest.raises(ConfigError, match=r"'features.kind' is 'logmel' but model 'hf_audio' "
                       r"is a waveform encoder: set features.kind: wave"):  # fmt: skip
        build_model("hf_audio", 3, 64, cfg.model.params, {}, cnn.features)
    # the hop must still divide the encoder's stride (320)
    with pytest.raises(ConfigError, match=r"features.hop_length 256 .* must divide"):
        build_model_from_config(load_config(TINY, "features.hop_length=256")[0], 3)
    # frames read as mel bands by a log-mel model, or by AST, are refused
    with pytest.raises(ConfigError, match=r"'features.kind' is 'wave' .* model 'cnn14_att'"):
        build_model("cnn14_att", 3, 320, {"widths": [4, 8]}, {}, cfg.features)
    ast = {"arch": "ast", "config": {"hidden_size": 16, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "intermediate_size": 32,
                                     "num_mel_bins": 320}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"'features.kind' is 'wave' .* model 'hf_audio'"):
        build_model("hf_audio", 3, 320, ast, {}, cfg.features)
    # the front end factory: one per kind, and the log-mel front end refuses wave features
    assert isinstance(build_frontend(cfg.features), WaveFrames)
    assert isinstance(experiment_frontend(cfg.features), WaveFrames)
    assert isinstance(build_frontend(cnn.features), LogMel)
    with pytest.raises(ValueError, match=r"kind is 'wave'.*ONNX export .* do not support"):
        LogMel.from_config(cfg.features)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 16 kHz synthetic corpus, its float32 wave dumps (with a 0.9 speed copy) and a two-fold
    experiment of random conf/hf/tiny wav2vec2s whose heads are scaled so scores differ."""
    root = tmp_path_factory.mktemp("wave")
    raw, data, dump = root / "raw", root / "data", root / "dump"
    generate(
        raw,
        SynthConfig(n_species=3, n_train=6, n_test=3, duration=5.0, sample_rate=16000, seed=5),
        progress=False,
    )
    prepare_rfcx(raw, data, n_folds=2)
    cfg, _ = load_config(
        TINY,
        "features.dtype=float32 features.speed_perturb=[0.9] model.params.activity_head=true "
        "infer.window_seconds=2.0 infer.hop_seconds=0.75 infer.cpu_batch_size=3 "
        "infer.tta=[{speed: 0.9}, {shift_seconds: 0.5}] infer.checkpoint=last",
    )
    corpus = Corpus.load(data)
    dump_features(
        corpus.recordings, cfg.features, dump / feature_name(cfg.features), progress=False
    )
    expdir = root / "exp" / "rfcx" / "hf" / "paths"
    expdir.mkdir(parents=True)
    (expdir / "config.yaml").write_text(dump_yaml(cfg))
    for k in (0, 1):
        torch.manual_seed(30 + k)
        model = build_model_from_config(cfg, n_outputs(cfg, len(corpus.classes)))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.startswith("body.head.") and name.endswith("weight"):
                    p.mul_(5)
        state = {"model": model.state_dict(), "config": to_dict(cfg)}
        state |= {"classes": corpus.classes, "fold": k, "step": 10}
        save_checkpoint(expdir / f"fold{k}" / "checkpoints" / "last.pt", state)
    return {"raw": raw, "data": data, "dump": dump, "expdir": expdir}


def test_stage1_dumps_the_framed_waveform(setup: dict[str, Path]) -> None:
    cfg, _ = load_config(setup["expdir"] / "config.yaml")
    store = FeatureStore(setup["dump"] / feature_name(cfg.features), (0.9,))
    assert store.kind == "wave_frames" and store.features["kind"] == "wave"
    corpus = Corpus.load(setup["data"])
    rid = sorted(store.ids)[0]
    path = corpus.recordings.set_index("recording_id").at[rid, "path"]
    wave, sr = load_audio(path, 16000)
    for speed in (1.0, 0.9):
        w = speed_perturb(wave, sr, speed)
        frames = store.read(rid, speed=speed)
        assert frames.shape == (320, len(w) // 320 + 1)
        # the samples, in order, from half a hop before sample 0 to half a hop after the last
        # frame's centre (a tail shorter than half a hop has no frame, as in log-mel)
        flat = WaveFrames.unframe(torch.from_numpy(frames)[None])[0].numpy()[160:]
        covered = min(len(w), len(flat))
        assert len(w) - covered < 160
        np.testing.assert_array_equal(flat[:covered], w[:covered])
        assert not flat[covered:].any()
    # a crop past the end is padded with silence, not with the most negative sample
    n = store.n_frames(rid)
    crop = read_crop(store, rid, n - 10, 50)
    assert crop.shape == (320, 50) and not crop[:, 10:].any()


def test_stage3_and_sedkit_infer_give_the_same_clip_scores(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    """Stage 3 over the wave dumps and sedkit infer over the audio files (WaveFrames streamed in
    blocks), with the experiment's speed and shift views, agree per recording."""
    expdir, data = setup["expdir"], setup["data"]
    argv = ["--expdir", str(expdir), "--datadir", str(data), "--dumpdir", str(setup["dump"])]
    assert stage3.main([*argv, "--device", "cpu", "--no_progress"]) == 0
    inf = expdir / "infer" / "last"
    test = pd.read_csv(inf / "test.csv", dtype={"recording_id": str}).set_index("recording_id")
    out = tmp_path / "out"
    assert sed_main(["infer", str(expdir), str(setup["raw"] / "test"), "--outdir", str(out),
                     "--no_progress", "--device", "cpu"]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["views"] == ["orig", "speed0.9", "shift0.5"]
    clips = pd.read_csv(out / "clip_scores.csv", dtype={"recording_id": str})
    clips = clips.set_index("recording_id").loc[test.index, list(test.columns)]
    assert test.to_numpy().std(axis=0).min() > 1e-3  # not a comparison of constants
    np.testing.assert_allclose(clips.to_numpy(), test.to_numpy(), atol=1e-4)
    # one recording, one fold: the fold's own scores of stage 3
    rid = test.index[0]
    one = tmp_path / "one"
    wav = setup["raw"] / "test" / f"{rid}.flac"
    assert sed_main(["infer", str(expdir), str(wav), "--outdir", str(one), "--folds", "1",
                     "--no_progress", "--device", "cpu"]) == 0  # fmt: skip
    import h5py

    with h5py.File(inf / "test.h5") as h5:
        fold1 = np.asarray(h5[rid]["clip_folds"])[list(h5.attrs["folds"]).index(1)]
    got = pd.read_csv(one / "clip_scores.csv", dtype={"recording_id": str})
    np.testing.assert_allclose(got.iloc[0][list(test.columns)].to_numpy(float), fold1, atol=1e-4)


def test_random_weights_really_differ_per_fold(setup: dict[str, Path]) -> None:
    """The two folds are different models (a fold mix-up would pass the comparison above)."""
    from sed.models.loading import load_fold_model

    a, _, _ = load_fold_model(setup["expdir"], 0, "last")
    b, _, _ = load_fold_model(setup["expdir"], 1, "last")
    assert isinstance(a.body, HFAudioSED)
    x = torch.randn(1, 32000)
    with torch.no_grad():
        assert (a(x)["clip_logits"] - b(x)["clip_logits"]).abs().max() > 1e-2

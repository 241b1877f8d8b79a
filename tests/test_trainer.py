"""The trainer on a tiny prepared corpus: exact resume, signals, phase 2, EMA, early stopping,
non-finite losses, noise class, waveform models, and what TensorBoard receives for every fold."""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sed.bin import train as train_bin
from sed.config import ConfigError, load_config
from sed.data.corpus import Corpus
from sed.infer.experiment import load_fold_model
from sed.train import fold as fold_mod
from sed.train.checkpoint import load_checkpoint
from sed.train.fold import build_model_from_config, train_fold
from sed.train.trainer import EXIT_PREEMPTED, NonFiniteLoss, Trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "conf" / "cnn" / "tiny.yaml"
AUGMENT = "augment=[{name: mixup, p: 0.5, alpha: 0.4}, {name: time_mask, p: 0.5, max_seconds: 0.2}]"


def config(*overrides: str):
    base = (
        "train.max_steps=8 train.eval_every_steps=4 train.log_every_steps=1 data.crop_seconds=1.0"
    )
    return load_config(TINY, " ".join([base, *overrides]))


def weights(path: Path, key: str = "model") -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[key]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def test_stop_and_resume_gives_identical_weights(
    prepared: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, dump = prepared
    corpus = Corpus.load(data)
    cfg, sources = config(AUGMENT, "train.ema_decay=0.9")
    straight = train_fold(cfg, 0, corpus, dump, tmp_path / "a", sources, progress=False)
    assert straight["steps"] == 8

    # the same run, stopped by SIGTERM after step 3 and started again with the same command
    orig = Trainer._train_step

    def term_at_step_3(self: Trainer, micro: list[dict]):
        out = orig(self, micro)
        if self.step == 2:  # the step being taken is the third
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    args = [
        "--conf",
        str(TINY),
        "--datadir",
        str(data),
        "--dumpdir",
        str(dump),
        "--expdir",
        str(tmp_path / "b"),
        "--fold",
        "0",
        "--no_progress",
        "--conf_override",
        " ".join(
            [
                "train.max_steps=8 train.eval_every_steps=4 train.log_every_steps=1",
                "data.crop_seconds=1.0",
                AUGMENT,
                "train.ema_decay=0.9",
            ]
        ),
    ]
    monkeypatch.setattr(Trainer, "_train_step", term_at_step_3)
    assert train_bin.main(args) == EXIT_PREEMPTED
    stopped = load_checkpoint(tmp_path / "b" / "fold0" / "checkpoints" / "last.pt")
    assert stopped["step"] == 3 and stopped["batch_in_epoch"] > 0
    monkeypatch.setattr(Trainer, "_train_step", orig)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers are restored
    assert train_bin.main(args) == 0

    a, b = tmp_path / "a" / "fold0" / "checkpoints", tmp_path / "b" / "fold0" / "checkpoints"
    assert_same(weights(a / "last.pt"), weights(b / "last.pt"))
    assert_same(weights(a / "last.pt", "ema_model"), weights(b / "last.pt", "ema_model"))
    assert_same(weights(a / "best.pt"), weights(b / "best.pt"))
    # EMA weights are a real average: they differ from the raw weights
    raw, ema = weights(a / "last.pt"), weights(a / "last.pt", "ema_model")
    assert any(not torch.equal(raw[k], ema[k]) for k in raw if raw[k].is_floating_point())


def tb(path: Path) -> EventAccumulator:
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_phase2_tensorboard_and_no_leak_between_folds(
    prepared: tuple[Path, Path], tmp_path: Path
) -> None:
    data, dump = prepared
    corpus = Corpus.load(data)
    cfg, sources = config("augment=[{name: mixup, p: 1.0, alpha: 0.4}]", "train.additional_steps=4")
    before = copy.deepcopy(cfg)
    for k in (0, 1):
        result = train_fold(cfg, k, corpus, dump, tmp_path, sources, progress=False)
        assert cfg == before, "training a fold changed the config"
        assert result["steps"] == 12
        assert [h["phase"] for h in result["history"]] == [1, 1, 2]
        acc = tb(tmp_path / f"fold{k}" / "tb")
        tags = acc.Tags()
        for name in (
            "train/loss",
            "train/lr",
            "train/grad_norm",
            "train/samples_per_sec",
            "valid/lwlrap",
            "valid/lwlrap_frame",
            "augment/mixup",
        ):
            assert name in tags["scalars"], f"fold {k}: {name} missing"
        assert any(t.startswith("valid_ap/") for t in tags["scalars"])
        assert {"valid/recording", "valid/score_distributions"} <= set(tags["images"])
        mix = acc.Scalars("augment/mixup")
        # augmented in phase 1 of every fold (fold 1 included), never in phase 2
        assert all(e.value == 1.0 for e in mix) and max(e.step for e in mix) <= 8
        assert min(e.step for e in mix) == 1


def test_early_stopping(
    prepared: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, dump = prepared
    scores = iter([0.9, 0.5, 0.4, 0.3, 0.2, 0.1])
    monkeypatch.setattr(
        fold_mod.WholeRecordingEvaluator,
        "__call__",
        lambda self, model: {"lwlrap": next(scores), "lwlrap_frame": 0.0},
    )
    cfg, sources = config("train.max_steps=40 train.eval_every_steps=2 train.early_stopping=2")
    result = train_fold(cfg, 0, Corpus.load(data), dump, tmp_path, sources, progress=False)
    assert result["steps"] == 6 and result["best_step"] == 2


def test_nonfinite_losses_stop_the_run(
    prepared: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, dump = prepared
    real = fold_mod.build_loss

    def nan_loss(*args, **kwargs):
        loss = real(*args, **kwargs)
        forward = loss.forward

        def broken(out, batch):
            total, terms = forward(out, batch)
            return total * float("nan"), terms

        loss.forward = broken
        return loss

    monkeypatch.setattr(fold_mod, "build_loss", nan_loss)
    cfg, sources = config("train.max_nonfinite=3")
    with pytest.raises(NonFiniteLoss, match="3 non-finite losses in a row"):
        train_fold(cfg, 0, Corpus.load(data), dump, tmp_path, sources, progress=False)


def record_initial_weights(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, torch.Tensor]]:
    """Make train_fold keep a copy of each model's weights as built, before any step."""
    built: list[dict[str, torch.Tensor]] = []
    real = fold_mod.build_model_from_config

    def build(*args, **kwargs) -> torch.nn.Module:
        model = real(*args, **kwargs)
        built.append(copy.deepcopy(model.state_dict()))
        return model

    monkeypatch.setattr(fold_mod, "build_model_from_config", build)
    return built


def test_noise_class_is_trained_and_dropped_from_outputs(
    prepared: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, dump = prepared
    corpus = Corpus.load(data)
    initial = record_initial_weights(monkeypatch)
    cfg, sources = config("data.noise_class=true data.random_crop_prob=0.5 train.max_steps=2")
    train_fold(cfg, 0, corpus, dump, tmp_path, sources, progress=False)
    n = len(corpus.classes)
    # the noise output got gradient steps: its row of every output layer (the tensors that an
    # n-class model sizes differently) moved from its initial value
    (init,) = initial
    final = weights(tmp_path / "fold0" / "checkpoints" / "last.pt")
    plain = build_model_from_config(cfg, n).state_dict()
    heads = [k for k, v in init.items() if v.shape != plain[k].shape]
    assert heads and all(init[k].shape[0] == n + 1 for k in heads), heads
    for k in heads:
        moved = (final[k][n] - init[k][n]).abs().max().item()
        assert moved > 1e-4, f"{k}: noise row moved by {moved:g}"
    model, _, _ = load_fold_model(tmp_path, 0, "last", torch.device("cpu"))
    x = torch.randn(2, cfg.features.n_mels, 64)
    assert model.model(x)["clip_logits"].shape == (2, n + 1)  # trained with the noise output
    out = model(x)
    assert out["clip_logits"].shape == (2, n) and out["frame_logits"].shape[-1] == n


def test_waveform_model_trains_with_waveform_augmentation(
    prepared: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, dump = prepared
    corpus = Corpus.load(data)
    initial = record_initial_weights(monkeypatch)
    aug = "augment=[{name: gaussian_noise, p: 0.5}, {name: time_mask, p: 0.5, max_seconds: 0.1}]"
    cfg, sources = config("model.params.frontend=true", aug, "train.max_steps=4")
    result = train_fold(cfg, 0, corpus, dump, tmp_path, sources, progress=False)
    assert result["steps"] == 4 and np.isfinite(result["best"])
    # trained: the steps changed the weights
    (init,) = initial
    final = weights(tmp_path / "fold0" / "checkpoints" / "last.pt")
    assert any(not torch.allclose(final[k], v) for k, v in init.items() if v.is_floating_point())
    model, _, _ = load_fold_model(tmp_path, 0, "last", torch.device("cpu"))
    wave = torch.randn(1, cfg.features.sample_rate)
    assert (
        model(wave)["frame_logits"].shape[1] == (wave.shape[1] // 256 + 1) // model.time_reduction
    )

    cfg, sources = config(aug)  # a feature model cannot take waveform augmentations
    with pytest.raises(ConfigError, match="frontend"):
        train_fold(cfg, 0, corpus, dump, tmp_path / "x", sources, progress=False)


def test_center_loss_run_writes_embeddings_and_hparams(
    prepared: tuple[Path, Path], tmp_path: Path
) -> None:
    data, dump = prepared
    cfg, sources = config(
        "train.max_steps=2 train.eval_every_steps=2",
        "loss.aux=[{name: center, weight: 0.01, params: {lr: 0.5}}]",
    )
    train_fold(cfg, 0, Corpus.load(data), dump, tmp_path, sources, progress=False)
    tb_dir = tmp_path / "fold0" / "tb"
    assert (tb_dir / "projector_config.pbtxt").exists()
    meta = next(tb_dir.glob("**/metadata.tsv")).read_text().split("\n")
    assert any(line and line != "none" for line in meta)  # windows labelled with their classes
    acc = tb(tb_dir)
    assert "train/loss_center" in acc.Tags()["scalars"]
    # the HPARAMS tab: the config summary and the final metrics in the same run folder
    assert acc.PluginTagToContent("hparams")
    assert "hparam/best_lwlrap" in acc.Tags()["scalars"]

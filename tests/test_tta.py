"""Test-time augmentation: view parsing, mapping views back onto the original frame grid, and
stage 3 writing per-view scores."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from sed.config import ConfigError, load_config
from sed.data.corpus import Corpus
from sed.frames import FrameGrid
from sed.infer.experiment import infer_experiment
from sed.infer.tta import View, combine_views, parse_views, predict_views
from sed.scoring import score_experiment
from sed.train.fold import train_fold

ROOT = Path(__file__).resolve().parents[1]


class Pointwise(nn.Module):
    """Frame logit of class c at frame t = feature row c at t: a view's mapping is visible."""

    time_reduction = 1

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        frame = x[:, :2, :].transpose(1, 2)
        return {"clip_logits": frame.amax(1), "frame_logits": frame, "embedding": frame.mean(1)}


def test_parse_views() -> None:
    views = parse_views([{"speed": 0.9}, {"shift_seconds": 2.5}, {"speed": 1.0}], [0.9, 1.1])
    assert views == [View(), View(0.9, 0.0), View(1.0, 2.5)]
    assert [v.name for v in views] == ["orig", "speed0.9", "shift2.5"]
    with pytest.raises(ConfigError, match="did you mean 'speed'"):
        parse_views([{"sped": 0.9}], [0.9])
    with pytest.raises(ConfigError, match="no stage-1 dump"):
        parse_views([{"speed": 1.2}], [0.9, 1.1])


def test_views_map_back_to_the_original_grid() -> None:
    grid = FrameGrid(16000, 160)  # 100 frames per second
    t = np.arange(1000) / 100.0
    curve = np.sin(2 * np.pi * 0.2 * t).astype(np.float32)  # slow: linear interpolation is exact

    def read(speed: float) -> np.ndarray:
        # the dump of the recording played `speed` times faster: f_s(t') = f(t' * speed)
        n = int(len(t) / speed)
        ts = np.arange(n) / 100.0 * speed
        row = np.interp(ts, t, curve).astype(np.float32)
        return np.stack([row, -row, np.zeros_like(row)])

    views = [View(), View(0.9), View(1.1), View(1.0, 2.0)]
    clips, frames = predict_views(Pointwise(), read, 1000, views, grid, 200, 100)
    assert clips.shape == (4, 2) and frames.shape == (4, 1000, 2)
    orig = frames[0]
    for v in (1, 2):  # speed views agree with the original where they cover it
        ok = ~np.isnan(frames[v][:, 0])
        assert ok.mean() > 0.9
        np.testing.assert_allclose(frames[v][ok], orig[ok], atol=2e-3)
    # the shifted view covers frames from 2 s on, with the same values (pointwise model)
    assert np.isnan(frames[3][:200]).all()
    np.testing.assert_allclose(frames[3][200:], orig[200:], atol=1e-6)
    clip, frame = combine_views(clips, frames)
    np.testing.assert_allclose(clip, clips.mean(0))
    assert not np.isnan(frame).any()
    np.testing.assert_allclose(frame[:200], np.nanmean(frames[:3, :200], axis=0), atol=1e-6)


def test_stage3_writes_views_and_stage5_scores_each(
    prepared: tuple[Path, Path], tmp_path: Path
) -> None:
    data, dump = prepared
    corpus = Corpus.load(data)
    cfg, sources = load_config(
        ROOT / "conf/cnn/tiny.yaml",
        "train.max_steps=2 train.eval_every_steps=2 data.crop_seconds=1.0 "
        "infer.tta=[{shift_seconds: 0.5}]",
    )
    for k in (0, 1):
        train_fold(cfg, k, corpus, dump, tmp_path, sources, progress=False)
    inf = infer_experiment(tmp_path, corpus, dump, "last", "cpu", progress=False)
    with h5py.File(inf / "oof.h5") as h5:
        assert list(h5.attrs["views"]) == ["orig", "shift0.5"]
        rid = next(iter(h5))
        views = np.asarray(h5[rid]["clip_views"])
        assert views.shape == (2, len(corpus.classes))
        np.testing.assert_allclose(np.asarray(h5[rid]["clip"]), views.mean(0), atol=1e-6)
    result = score_experiment(tmp_path, corpus, "rfcx", "last")
    assert set(result["oof"]["per_view"]) == {"orig", "shift0.5"}


def test_stage3_split_over_jobs_equals_one_job(
    prepared: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    """--nparts 3 jobs + --merge write the same predictions as one job."""
    import io

    import pandas as pd

    from sed.bin import infer

    data, dump = prepared
    corpus = Corpus.load(data)
    cfg, sources = load_config(
        ROOT / "conf/cnn/tiny.yaml", "train.max_steps=2 train.eval_every_steps=2"
    )
    for k in (0, 1):
        train_fold(cfg, k, corpus, dump, tmp_path, sources, progress=False)
    common = ["--expdir", str(tmp_path), "--datadir", str(data), "--dumpdir", str(dump)]
    common += ["--checkpoint", "last", "--device", "cpu", "--no_progress"]
    out = tmp_path / "infer" / "last"
    assert infer.main(common) == 0
    whole = {f: (out / f).read_bytes() for f in ("oof.csv", "test.csv", "oof_frame.csv")}
    with h5py.File(out / "test.h5") as h5:
        whole_test = {r: np.asarray(h5[r]["clip_folds"]) for r in h5}
    for f in whole:
        (out / f).unlink()
    for j in (1, 2, 3):
        assert infer.main([*common, "--part", str(j), "--nparts", "3"]) == 0
    assert sorted(p.name for p in (out / "parts").iterdir()) == [f"part{j}.h5" for j in (1, 2, 3)]
    with h5py.File(out / "parts" / "part2.h5") as h5:  # a share: every third recording
        n_oof = len(h5["oof"])
        assert 0 < n_oof < len(pd.read_csv(io.BytesIO(whole["oof.csv"])))
    assert infer.main([*common, "--merge", "3"]) == 0
    for f, content in whole.items():
        assert (out / f).read_bytes() == content, f
    with h5py.File(out / "test.h5") as h5:
        assert set(h5) == set(whole_test)
        for r, v in whole_test.items():
            np.testing.assert_array_equal(np.asarray(h5[r]["clip_folds"]), v)
    assert not (out / "parts").exists()  # merged parts are removed
    with pytest.raises(SystemExit):  # a share without saying which one
        infer.main([*common, "--nparts", "3"])
    # a missing part is an error naming it
    assert infer.main([*common, "--merge", "2"]) == 1
    assert "part1.h5" in capsys.readouterr().err

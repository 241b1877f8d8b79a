"""One inference path: stage 3-4 over the dumps and ``sedkit infer`` over the audio files give a
recording the same clip scores and the same detections, with the experiment's own settings
(test-time views, activity gating, smoothing, event rules, the thresholds stage 4 tuned)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from sed.bin import infer as stage3
from sed.bin.cli import main as sed_main
from sed.config import dump_yaml, load_config, to_dict
from sed.data.corpus import Corpus
from sed.data.rfcx import prepare_rfcx
from sed.data.synth import SynthConfig, generate
from sed.features.dump import FeatureStore, dump_features, feature_name
from sed.infer.events import EventRules, score_dataframes_from_h5
from sed.infer.outputs import write_stage4_events
from sed.infer.writers import write_event_outputs
from sed.models.build import build_model_from_config, n_outputs
from sed.train.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]

# everything stage 3-4 and sedkit infer must agree on is set away from its default
OVERRIDES = (
    "features.dtype=float32 features.speed_perturb=[0.9] "
    "model.params.activity_head=true data.crop_seconds=2.0 "
    "infer.window_seconds=2.0 infer.hop_seconds=0.75 infer.cpu_batch_size=3 "
    "infer.tta=[{speed: 0.9}, {shift_seconds: 0.5}] infer.gate_activity=true "
    "infer.frame_combine=mean infer.median_frames=3 infer.smooth_kernel=[1,2,1] "
    "infer.event_score=mean infer.min_event_seconds=0.1 infer.merge_gap_seconds=0.2 "
    "infer.checkpoint=last"
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A synthetic corpus (float32 dumps with a 0.9 speed copy) and a two-fold experiment whose
    checkpoints hold random tiny CNN14s (conf/cnn/tiny.yaml, with an activity head) with real
    BatchNorm statistics."""
    root = tmp_path_factory.mktemp("paths")
    raw, data, dump = root / "raw", root / "data", root / "dump"
    generate(
        raw,
        SynthConfig(n_species=3, n_train=6, n_test=3, duration=5.0, sample_rate=16000, seed=5),
        progress=False,
    )
    prepare_rfcx(raw, data, n_folds=2)
    cfg, _ = load_config(ROOT / "conf" / "cnn" / "tiny.yaml", OVERRIDES)
    corpus = Corpus.load(data)
    dump_features(
        corpus.recordings, cfg.features, dump / feature_name(cfg.features), progress=False
    )
    expdir = root / "exp" / "rfcx" / "eff" / "paths"
    expdir.mkdir(parents=True)
    (expdir / "config.yaml").write_text(dump_yaml(cfg))
    store = FeatureStore(dump / feature_name(cfg.features))
    # BatchNorm statistics of real features: at random init eval-mode outputs are near constant
    crops = torch.stack([torch.from_numpy(store.read(r, 0, 126)) for r in sorted(store.ids)])
    for k in (0, 1):
        torch.manual_seed(20 + k)
        model = build_model_from_config(cfg, n_outputs(cfg, len(corpus.classes)))
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(crops)
            # larger output weights: scores that differ between recordings and frames
            for name, p in model.named_parameters():
                if name.startswith("head.") and name.endswith("weight"):
                    p.mul_(20)
                elif name.startswith("head."):
                    p.zero_()
        state = {"model": model.state_dict(), "config": to_dict(cfg)}
        state |= {"classes": corpus.classes, "fold": k, "step": 10}
        save_checkpoint(expdir / f"fold{k}" / "checkpoints" / "last.pt", state)
    return {"raw": raw, "data": data, "dump": dump, "expdir": expdir}


def test_stage3_4_and_sed_infer_agree(setup: dict[str, Path], tmp_path: Path) -> None:
    expdir, data = setup["expdir"], setup["data"]
    # stage 3 (the checkpoint comes from the config's infer.checkpoint) and stage 4's events
    argv = ["--expdir", str(expdir), "--datadir", str(data), "--dumpdir", str(setup["dump"])]
    assert stage3.main([*argv, "--device", "cpu", "--no_progress"]) == 0
    inf = expdir / "infer" / "last"
    cfg, _ = load_config(expdir / "config.yaml")
    write_stage4_events(cfg, Corpus.load(data), inf)
    with h5py.File(inf / "test.h5") as h5:
        assert list(h5.attrs["views"]) == ["orig", "speed0.9", "shift0.5"]
    # sedkit infer on the test recordings' audio files, with nothing but the experiment folder
    out = tmp_path / "out"
    test_audio = setup["raw"] / "test"
    assert sed_main(["infer", str(expdir), str(test_audio), "--outdir", str(out),
                     "--no_progress", "--device", "cpu"]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["views"] == ["orig", "speed0.9", "shift0.5"]
    assert "last.pt" in summary["model"]

    test = pd.read_csv(inf / "test.csv", dtype={"recording_id": str}).set_index("recording_id")
    clips = pd.read_csv(out / "clip_scores.csv", dtype={"recording_id": str})
    clips = clips.set_index("recording_id").loc[test.index]
    classes = list(test.columns)
    assert test.std().min() > 1e-3  # recordings differ: not a comparison of constants
    np.testing.assert_allclose(clips[classes].to_numpy(), test.to_numpy(), atol=1e-4)

    cols = ["recording_id", "onset", "offset", "label"]
    ref = pd.read_csv(inf / "events_test" / "detections.csv", dtype={"recording_id": str})
    got = pd.read_csv(out / "detections.csv", dtype={"recording_id": str})
    assert len(ref) > 0  # the comparison is not one of empty tables
    ref, got = (d.sort_values(cols).reset_index(drop=True) for d in (ref, got))
    assert ref["recording_id"].tolist() == got["recording_id"].tolist()
    assert ref["label"].tolist() == got["label"].tolist()
    np.testing.assert_allclose(got[["onset", "offset"]], ref[["onset", "offset"]], atol=1e-5)
    np.testing.assert_allclose(got["score"], ref["score"], atol=1e-4)
    # the smoothed score tables are stage 4's too
    rid = test.index[0]
    a = pd.read_csv(out / "scores" / f"{rid}.tsv", sep="\t")
    b = pd.read_csv(inf / "events_test" / "scores" / f"{rid}.tsv", sep="\t")
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-4)

    # a threshold inside the frame scores: detections with boundaries inside the recordings,
    # against stage 4's writer with the experiment's rules at that threshold
    thr = float(np.median(b[classes[0]]))
    mid = tmp_path / "mid"
    assert sed_main(["infer", str(expdir), str(test_audio), "--outdir", str(mid), "--no_progress",
                     "--device", "cpu", "--threshold", str(thr)]) == 0  # fmt: skip
    write_event_outputs(
        score_dataframes_from_h5(inf / "test.h5"),
        tmp_path / "stage4_mid",
        EventRules.from_infer(cfg.infer, thr),
        cfg.features.sample_rate,
    )
    ref = pd.read_csv(tmp_path / "stage4_mid" / "detections.csv", dtype={"recording_id": str})
    got = pd.read_csv(mid / "detections.csv", dtype={"recording_id": str})
    assert (ref["onset"] > 0).any() and len(ref) > len(test)
    ref, got = (d.sort_values(cols).reset_index(drop=True) for d in (ref, got))
    assert ref[["recording_id", "label"]].equals(got[["recording_id", "label"]])
    np.testing.assert_allclose(got[["onset", "offset"]], ref[["onset", "offset"]], atol=1e-5)
    np.testing.assert_allclose(got["score"], ref["score"], atol=1e-4)

    # the views matter: without them the clip scores are not stage 3's
    plain = tmp_path / "plain"
    assert sed_main(["infer", str(expdir), str(test_audio), "--outdir", str(plain), "--no_progress",
                     "--device", "cpu", "--no_tta"]) == 0  # fmt: skip
    assert json.loads((plain / "summary.json").read_text())["views"] == ["orig"]
    no_tta = pd.read_csv(plain / "clip_scores.csv", dtype={"recording_id": str})
    no_tta = no_tta.set_index("recording_id").loc[test.index, classes].to_numpy()
    assert np.abs(no_tta - test.to_numpy()).max() > 1e-3


def test_stage3_fold_option_predicts_with_that_fold_only(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    expdir, data = setup["expdir"], setup["data"]
    argv = ["--expdir", str(expdir), "--datadir", str(data), "--dumpdir", str(setup["dump"])]
    argv += ["--checkpoint", "last", "--device", "cpu", "--no_progress"]
    assert stage3.main([*argv, "--fold", "1"]) == 0
    inf = expdir / "infer" / "last"
    corpus = Corpus.load(data)
    oof = pd.read_csv(inf / "oof.csv", dtype={"recording_id": str})
    _, held_out = corpus.fold_ids(1)
    assert set(oof["fold"]) == {1} and set(oof["recording_id"]) == set(held_out)
    with h5py.File(inf / "test.h5") as h5:
        assert list(h5.attrs["folds"]) == [1]
        rid = next(iter(h5))
        assert h5[rid]["clip_folds"].shape[0] == 1
        fold1 = np.asarray(h5[rid]["clip"])
    # the same numbers as sedkit infer with fold 1 alone
    out = tmp_path / "one"
    wav = setup["raw"] / "test" / f"{rid}.flac"
    assert sed_main(["infer", str(expdir), str(wav), "--outdir", str(out), "--folds", "1",
                     "--no_progress", "--device", "cpu"]) == 0  # fmt: skip
    clips = pd.read_csv(out / "clip_scores.csv", dtype={"recording_id": str})
    np.testing.assert_allclose(clips.iloc[0][corpus.classes].to_numpy(float), fold1, atol=1e-4)
    assert stage3.main([*argv, "--fold", "7"]) == 1
    with pytest.raises(SystemExit):
        stage3.main([*argv, "--fold", "x"])

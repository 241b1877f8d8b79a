"""The tile2vec triplet embedding (seed 000): anchor/positive crops, in-batch negatives, the loss,
nearest-neighbour validation, and a trained embedding that separates species better than random
weights."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from sed.bin import dump as dump_bin
from sed.config import ConfigError, load_config
from sed.data.corpus import Corpus
from sed.data.folds import make_folds
from sed.data.manifest import (
    write_classes,
    write_clips,
    write_events,
    write_folds,
    write_recordings,
)
from sed.datasets.crop_dataset import events_by_recording
from sed.datasets.triplets import TripletDataset, motif_pairs, triplet_collate
from sed.frames import FrameGrid
from sed.infer.engine import config_window_frames
from sed.losses import build_loss
from sed.models.build import build_model_from_config, n_outputs
from sed.models.loading import load_fold_model
from sed.train.fold import neighbour_evaluator, open_store, train_fold
from sed.train.neighbours import nn_accuracy

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "conf" / "t2v" / "tiny.yaml"


# --------------------------------------------------------------------------------------- loss


def test_tile2vec_loss_is_the_hinge_over_in_batch_negatives() -> None:
    torch.manual_seed(0)
    loss = build_loss("tile2vec", {"margin": 0.5, "l2": 0.1})
    z = torch.randn(6, 4, requires_grad=True)  # 3 anchors, then their 3 positives
    species = torch.tensor([0, 1, 1, 0, 1, 1])
    total, terms = loss({"embedding": z}, {"species": species})
    a, p = z[:3].detach(), z[3:].detach()
    hinges = []
    for i in range(3):
        d_pos = torch.dist(a[i], p[i])
        for j in range(6):
            if species[j] != species[i]:
                hinges.append(torch.relu(d_pos - torch.dist(a[i], z[j].detach()) + 0.5))
    want = torch.stack(hinges).mean() + 0.1 * z.detach().norm(dim=1).mean()
    assert torch.allclose(total, want, atol=1e-5)
    assert torch.allclose(terms["triplet"], torch.stack(hinges).mean(), atol=1e-5)
    total.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    # hardest: each anchor's closest negative only
    hard = build_loss("tile2vec", {"margin": 0.5, "l2": 0.0, "hardest": True})
    got, _ = hard({"embedding": z.detach()}, {"species": species})
    per_anchor = []
    for i in range(3):
        negs = [j for j in range(6) if species[j] != species[i]]
        j = min(negs, key=lambda j: float(torch.dist(a[i], z[j].detach())))
        d_neg = torch.dist(a[i], z[j].detach())
        per_anchor.append(torch.relu(torch.dist(a[i], p[i]) - d_neg + 0.5))
    assert torch.allclose(got, torch.stack(per_anchor).mean(), atol=1e-5)


def test_tile2vec_loss_without_negatives_and_bad_batches() -> None:
    loss = build_loss("tile2vec", {"margin": 1.0, "l2": 0.5})
    z = torch.ones(4, 3, requires_grad=True)
    total, terms = loss({"embedding": z}, {"species": torch.zeros(4, dtype=torch.long)})
    assert float(terms["triplet"]) == 0.0
    assert torch.isclose(total, 0.5 * torch.tensor(3.0).sqrt())  # the norm penalty alone
    total.backward()
    with pytest.raises(ValueError, match=r"triplet\.enabled"):
        loss({"embedding": z}, {"clip_target": torch.zeros(4, 2)})
    with pytest.raises(ValueError, match="2B embeddings"):
        loss({"embedding": torch.ones(3, 2)}, {"species": torch.zeros(3, dtype=torch.long)})
    with pytest.raises(ValueError, match="margin"):
        build_loss("tile2vec", {"margin": 0.0})


def test_nn_accuracy_takes_neighbours_from_other_recordings() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [1.0, -0.05], [0.0, 1.0]])
    labels = np.array([0, 1, 1, 0, 1])
    groups = np.array(["r1", "r1", "r2", "r3", "r4"])
    acc, chance = nn_accuracy(emb, labels, groups)
    # r1's first row would match its own recording's row 1 (label 1); from other recordings
    # its neighbour is row 3 (label 0): right; row 1 -> row 3 (wrong); row 2 -> row 4; row 3 ->
    # row 0 (closer than row 1: right); row 4 -> row 2
    assert acc == pytest.approx(4 / 5)
    assert 0 < chance < 1
    assert np.isnan(nn_accuracy(emb[:2], labels[:2], groups[:2])[0])


# ------------------------------------------------------------------------------------ dataset


class _Store:
    """A feature store of constant recordings: frame f of recording r holds value f (so a crop
    shows where it starts)."""

    kind = "features"

    def __init__(self, lengths: dict[str, int]) -> None:
        self.lengths = lengths
        self.ids = set(lengths)
        self.features = {"sample_rate": 16000, "hop_length": 160}  # 100 frames per second
        self.speeds = ()

    def n_frames(self, rid: str, speed: float = 1.0) -> int:
        return self.lengths[rid]

    def crop_length(self, n: int) -> int:
        return n

    def read(self, rid: str, f0: int, f1: int, speed: float = 1.0) -> np.ndarray:
        f1 = min(f1, self.lengths[rid])
        return np.tile(np.arange(f0, f1, dtype=np.float32), (2, 1))


def test_triplet_pairs_from_events_motifs_and_neighbours(tmp_path: Path) -> None:
    store = _Store({"s": 1001, "w": 1001, "v": 1001, "x": 1001})
    events = {"s": np.array([[1.0, 1.5, 0], [7.0, 7.5, 0], [4.0, 4.5, 1]])}
    weak = {"w": [0], "x": [1], "v": [0]}
    motifs = tmp_path / "motifs.csv"
    pd.DataFrame(
        [("w", "motif", 1, 2.0, 3.0, "", 8.0, 9.0, 0.1),
         ("w", "motif", 2, 5.0, 6.0, "v", 1.0, 2.0, 0.2),  # partner in a validation recording
         ("w", "discord", 1, 0.0, 1.0, "", np.nan, np.nan, 3.0)],
        columns=["recording_id", "kind", "rank", "onset", "offset", "partner_recording",
                 "partner_onset", "partner_offset", "distance"],
    ).to_csv(motifs, index=False)  # fmt: skip
    pairs = motif_pairs(str(motifs))
    assert pairs["w"] == [((2.0, 3.0), ("w", 8.0, 9.0)), ((5.0, 6.0), ("v", 1.0, 2.0))]
    ds = TripletDataset(store, ["s", "w", "x"], events, weak, 2.0, pairs, neighbour_prob=0.0)
    units = [(u.recording_id, u.onset, u.label, u.whole) for u in ds.units]
    # 3 events, the motif pair of w (the validation partner's pair is left out), x whole
    assert units == [("s", 1.0, 0, False), ("s", 7.0, 0, False), ("s", 4.0, 1, False),
                     ("w", 2.0, 0, False), ("w", 8.0, 0, False), ("x", 0.0, 1, True)]  # fmt: skip
    assert ds.item_labels().argmax(1).tolist() == [0, 0, 1, 0, 0, 1]
    for epoch in range(3):
        item = ds[(epoch, 0, 0)]  # event at 1 s: its positive is the other class-0 call (7 s)
        assert item["anchor"].shape == (2, 201) and item["label"] == 0
        assert item["start"] <= 1.25 <= item["start"] + 2.0
        assert item["anchor"][0, 0] == round(item["start"] * 100)  # the crop read is the start
        assert item["positive_start"] <= 7.25 <= item["positive_start"] + 2.0
        item = ds[(epoch, 1, 2)]  # the lone class-1 call pairs with itself
        assert item["positive_recording"] == "s"
        assert item["positive_start"] <= 4.25 <= item["positive_start"] + 2.0
        item = ds[(epoch, 2, 3)]  # a motif pairs with its partner
        assert item["start"] <= 2.5 <= item["start"] + 2.0
        assert item["positive_start"] <= 8.5 <= item["positive_start"] + 2.0
    assert ds[(1, 5, 3)]["start"] == ds[(1, 5, 3)]["start"]  # a function of the index only
    # neighbours: always another recording of the species
    nb = TripletDataset(store, ["s", "w", "x"], events, weak, 2.0, pairs, neighbour_prob=1.0)
    for position in range(6):
        item = nb[(0, position, 3)]
        assert item["positive_recording"] == "s" and item["label"] == 0
    batch = triplet_collate([ds[(0, 0, 0)], ds[(0, 1, 5)]])
    assert batch["feats"].shape == (4, 2, 201)
    assert batch["species"].tolist() == [0, 1, 0, 1]
    assert batch["recording_id"] == ["s", "x", "s", "x"]
    with pytest.raises(ValueError, match="clip label"):
        TripletDataset(store, ["v"], {}, {}, 2.0)


def test_triplet_config_is_checked(tmp_path: Path) -> None:
    cfg, _ = load_config(TINY)
    assert cfg.triplet.enabled and cfg.loss.name == "tile2vec"
    bad = {
        "loss.name=frame_clip": "disagree",
        "train.best_metric=lwlrap": "nn_accuracy",
        "triplet.neighbour_prob=1.5": "neighbour_prob",
        "triplet.pairs=motifs": "triplet.pairs",
    }
    for override, match in bad.items():
        with pytest.raises(ConfigError, match=match):
            load_config(TINY, override)
    with pytest.raises(ConfigError, match=r"triplet\.enabled"):
        load_config(ROOT / "conf" / "cnn" / "tiny.yaml", "loss.name=tile2vec")
    mixing = tmp_path / "mix.yaml"
    mixing.write_text(f"base: {TINY}\naugment:\n  - {{name: mixup, p: 0.5}}\n")
    with pytest.raises(ConfigError, match="mixup mixes crops"):
        load_config(mixing)
    base, _ = load_config(ROOT / "conf" / "t2v" / "base.yaml")
    from sed.motifs.recipe import motifs_wanted

    assert base.triplet.pairs == "motif" and motifs_wanted(base)  # stage 1 mines for it


# ------------------------------------------------------------------------------ trained model

# species: (start frequency, sweep over the call, call length): chirps that differ in shape
SPECIES = {"a": (1200.0, 800.0, 0.6), "b": (1500.0, -600.0, 0.6), "c": (2500.0, 0.0, 0.4),
           "d": (900.0, 1500.0, 0.3)}  # fmt: skip


def write_species_corpus(root: Path, per_species: int = 16, seconds: float = 4.0) -> Path:
    """Focal recordings (clip labels only) whose species call repeats every 1-2 s over a loud
    recording-specific background (a tone anywhere in the band and noise), so that an untrained
    network's embedding mostly hears the background."""
    rng = np.random.default_rng(5)
    sr = 16000
    audio, data = root / "audio", root / "data"
    audio.mkdir(parents=True)
    data.mkdir()
    t = np.arange(int(seconds * sr)) / sr
    rows, clips = [], []
    for label, (f0, sweep, dur) in SPECIES.items():
        for i in range(per_species):
            rid = f"{label}{i}"
            tone = rng.uniform(400.0, 6000.0)
            wave = rng.uniform(0.02, 0.1) * rng.standard_normal(len(t))
            wave += rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * tone * t)
            onset = rng.uniform(0.0, 0.5)
            while onset + dur < seconds:
                on = (t >= onset) & (t < onset + dur)
                tt = t[on] - onset
                chirp = np.sin(2 * np.pi * (f0 * tt + 0.5 * sweep / dur * tt**2))
                wave[on] += rng.uniform(0.15, 0.35) * chirp * np.hanning(on.sum())
                onset += rng.uniform(1.0, 2.0)
            path = audio / f"{rid}.flac"
            sf.write(path, wave.astype(np.float32), sr)
            rows.append((rid, str(path), "train", seconds, sr, 1))
            clips.append((rid, label, ""))
    recs = pd.DataFrame(
        rows, columns=["recording_id", "path", "split", "duration", "sample_rate", "channels"]
    )
    write_recordings(recs, data / "recordings.csv")
    write_classes(list(SPECIES), data / "classes.txt")
    write_clips(pd.DataFrame(clips, columns=["recording_id", "primary", "secondary"]),
                data / "clips.csv")  # fmt: skip
    write_events(pd.DataFrame(columns=["recording_id", "label", "onset", "offset", "kind"]),
                 data / "events.csv")  # fmt: skip
    ids = recs["recording_id"].tolist()
    write_folds(make_folds(ids, [{c[1]} for c in clips], 2, seed=0), data / "folds.csv")
    return data


@pytest.mark.slow
def test_trained_triplet_embedding_separates_species_better_than_random_weights(
    tmp_path: Path,
) -> None:
    data = write_species_corpus(tmp_path)
    overrides = (
        "model.params.widths=[8,16,32] train.max_steps=120 train.eval_every_steps=40 "
        "train.batch_size=16 triplet.eval_windows=3"
    )
    dumpdir = tmp_path / "dump"
    args = ["--conf", str(TINY), "--conf_override", overrides, "--datadir", str(data),
            "--dumpdir", str(dumpdir), "--no_progress"]  # fmt: skip
    assert dump_bin.main(args) == 0
    cfg, sources = load_config(TINY, overrides)
    corpus = Corpus.load(data)
    result = train_fold(cfg, 0, corpus, dumpdir, tmp_path / "exp", sources, False)
    # validation: windows of the 32 held-out recordings, neighbours from other recordings
    _, valid = corpus.fold_ids(0)
    store = open_store(cfg, dumpdir)
    grid = FrameGrid(int(store.features["sample_rate"]), int(store.features["hop_length"]))
    window, _ = config_window_frames(cfg, grid)
    evaluator = neighbour_evaluator(
        cfg, corpus, store, valid, events_by_recording(corpus.events, corpus.classes, "tp"),
        window, torch.device("cpu"), dumpdir,
    )  # fmt: skip
    assert len(evaluator.items) == 3 * len(valid)
    model, _, _ = load_fold_model(tmp_path / "exp", 0, "best", torch.device("cpu"))
    trained = evaluator(model)
    assert trained["nn_accuracy"] == pytest.approx(result["best"])  # best.pt is the best step
    random_scores = []
    for seed in range(3):
        torch.manual_seed(seed)
        untrained = build_model_from_config(cfg, n_outputs(cfg, len(corpus.classes)), sources)
        random_scores.append(evaluator(untrained.eval())["nn_accuracy"])
    chance = trained["nn_chance"]
    assert 0.2 < chance < 0.3  # 4 species
    assert trained["nn_accuracy"] >= max(random_scores) + 0.15, (trained, random_scores)
    assert trained["nn_accuracy"] >= chance + 0.25, (trained, random_scores)
    # TensorBoard: the loss terms and the projector's embeddings
    tb = tmp_path / "exp" / "fold0" / "tb"
    assert any(tb.rglob("projector_config.pbtxt"))


# ------------------------------------------------------------------------------ through run.sh


def _run(*args: str) -> str:
    proc = subprocess.run(
        [str(ROOT / "run.sh"), "--recipe", "birdclef", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_motifs_triplet_embedding_and_gbdt_through_run_sh(tmp_path: Path) -> None:
    """Seed 000's chain: stage 1 mines motifs, stage 2 trains the triplet embedding on motif
    pairs (and stops there), then an embedding config extracts that embedding and the GBDT row
    is scored in RESULTS.md."""
    from sed.data.birdclef_synth import BirdclefSynthConfig, generate

    raw = tmp_path / "birdclef-2025"
    generate(
        raw,
        BirdclefSynthConfig(
            year=2025, n_species=4, recordings_per_species=(3, 4), focal_seconds=(6.0, 10.0),
            soundscape_seconds=20.0, n_test=2, n_unlabeled=0, seed=11,
        ),
        progress=False,
    )  # fmt: skip
    work = tmp_path / "work"
    common = ["--datadir", str(raw), "--workdir", str(work), "--nj", "1"]
    t2v = (
        "triplet.pairs=motif motifs.params.subsequence_seconds=1.0 motifs.params.top_k=2 "
        "train.max_steps=6 train.eval_every_steps=6"
    )
    log = _run(*common, "--conf", "conf/t2v/tiny.yaml", "--conf_override", t2v)
    assert "stages 3-5 do not apply" in log
    exp = work / "exp" / "birdclef" / "t2v" / "tiny"
    assert all((exp / f"fold{k}" / "checkpoints" / "best.pt").is_file() for k in (0, 1))
    assert not (exp / "infer").exists()
    mined = list((work / "dump" / "birdclef" / "birdclef-2025").glob("motifs_*/motifs.csv"))
    assert len(mined) == 1 and len(motif_pairs(str(mined[0]))) > 0
    assert "motif occurrences" in (exp / "fold0" / "train.log").read_text()
    # the triplet folds as an embedding extractor, and the GBDT row on that embedding
    model, _, _ = load_fold_model(exp, 0, "best", torch.device("cpu"))
    conf = tmp_path / "conf" / "emb" / "t2v_tiny.yaml"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        f"base: {ROOT / 'conf' / 'emb' / 'tiny.yaml'}\n"
        "features:\n"
        "  sample_rate: 16000\n"
        f"  n_mels: {model.embedding_dim}\n"
        "  dtype: float32\n"
        "  embedding:\n"
        "    name: experiment\n"
        "    hop_seconds: 1.0\n"
        f"    params: {{expdir: {exp}, fold: 0}}\n"
    )
    log = _run(*common, "--conf", str(conf), "--gbdt", "true",
               "--conf_override", "train.max_steps=4 train.eval_every_steps=4")  # fmt: skip
    table = (work / "exp" / "birdclef" / "RESULTS.md").read_text()
    assert "| gbdt/emb_t2v_tiny |" in table and "| emb/t2v_tiny |" in table, table

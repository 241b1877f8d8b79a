"""Motifs in the recipe (seed 000): stage 1 mines the training recordings beside the dumps when
``data.weak_crop: motif`` (or ``motifs.enabled``), and weak crops are centred on the motifs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from test_weak_labels import dataset, weak_item

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
from sed.motifs.recipe import motif_config, motif_dir, motifs_wanted, read_motif_spans
from sed.train.fold import train_fold

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "conf" / "cnn" / "tiny.yaml"


def test_motif_crops_hold_their_motif() -> None:
    spans = {"w": np.array([[6.0, 7.0], [1.0, 2.0]])}
    ds = dataset(weak_crop="motif", weak_crops_per_file=3, weak_spans=spans)
    for epoch in range(5):
        for j, (on, off) in enumerate([(6.0, 7.0), (1.0, 2.0), (6.0, 7.0)]):  # j % 2
            item = weak_item(ds, "w", j, epoch=epoch)
            start = item["start"]
            assert start <= 0.5 * (on + off) <= start + 2.0, (j, start)
    # a recording without a motif is cropped at random, inside the recording
    starts = {round(weak_item(ds, "v", 0, epoch=e)["start"], 3) for e in range(8)}
    assert len(starts) > 1 and all(0.0 <= s <= 3.0 for s in starts)


def test_read_motif_spans(tmp_path: Path) -> None:
    rows = [
        # recording, kind, rank, onset, offset, partner_recording, partner_onset, partner_offset
        ("r1", "motif", 1, 4.0, 5.0, "", 8.0, 9.0),
        ("r1", "motif", 2, 8.5, 9.5, "", 0.0, 1.0),  # overlaps the first motif's partner
        ("r1", "discord", 1, 2.0, 3.0, "", np.nan, np.nan),
        ("r2", "motif", 1, 1.0, 2.0, "r1", 4.0, 5.0),  # an AB partner: in another recording
    ]
    cols = ["recording_id", "kind", "rank", "onset", "offset", "partner_recording",
            "partner_onset", "partner_offset"]  # fmt: skip
    path = tmp_path / "motifs.csv"
    pd.DataFrame(rows, columns=cols).assign(distance=0.1).to_csv(path, index=False)
    spans = read_motif_spans(path)
    assert spans["r1"].tolist() == [[4.0, 5.0], [8.0, 9.0], [0.0, 1.0]]
    assert spans["r2"].tolist() == [[1.0, 2.0]]
    with pytest.raises(FileNotFoundError, match="stage 1"):
        read_motif_spans(tmp_path / "none.csv")


def test_motif_settings_are_checked_and_name_the_folder(tmp_path: Path) -> None:
    cfg, src = load_config(TINY, "data.weak_crop=motif motifs.params.top_k=2")
    assert motifs_wanted(cfg) and motif_config(cfg, src).sample_rate == cfg.features.sample_rate
    other, _ = load_config(TINY, "data.weak_crop=motif motifs.params.top_k=3")
    assert motif_dir(cfg, tmp_path) != motif_dir(other, tmp_path)
    assert not motifs_wanted(load_config(TINY)[0])
    bad, src = load_config(TINY, "data.weak_crop=motif motifs.params.topk=2")
    with pytest.raises(ConfigError, match=r"motifs\.params\.top_k"):
        motif_config(bad, src)
    bad, src = load_config(TINY, "data.weak_crop=motif motifs.params.frame_rate=-1")
    with pytest.raises(ConfigError, match="frame_rate"):
        motif_config(bad, src)


CALLS = {"c0": 900.0, "c1": 2500.0}


def write_call_corpus(root: Path, per_class: int = 3, seconds: float = 8.0) -> tuple[Path, dict]:
    """Focal recordings in noise, each with its species' call (a 0.8 s chirp) at two known
    times; clips.csv labels only. Returns the manifests and ``{rid: [(onset, offset), ...]}``."""
    rng = np.random.default_rng(3)
    sr = 16000
    audio, data = root / "audio", root / "data"
    audio.mkdir(parents=True)
    data.mkdir()
    t = np.arange(int(seconds * sr)) / sr
    rows, clips, truth = [], [], {}
    for label, f0 in CALLS.items():
        for i in range(per_class):
            rid = f"{label}-{i}"
            wave = 0.05 * rng.standard_normal(len(t))
            calls = []
            for onset in (rng.uniform(0.5, 2.5), rng.uniform(4.5, 6.5)):
                on = (t >= onset) & (t < onset + 0.8)
                tt = t[on] - onset
                wave[on] += 0.5 * np.sin(2 * np.pi * (f0 * tt + 600.0 * tt**2))
                calls.append((onset, onset + 0.8))
            path = audio / f"{rid}.flac"
            sf.write(path, wave.astype(np.float32), sr)
            rows.append((rid, str(path), "train", seconds, sr, 1))
            clips.append((rid, label, ""))
            truth[rid] = calls
    recs = pd.DataFrame(
        rows, columns=["recording_id", "path", "split", "duration", "sample_rate", "channels"]
    )
    write_recordings(recs, data / "recordings.csv")
    write_classes(list(CALLS), data / "classes.txt")
    write_clips(pd.DataFrame(clips, columns=["recording_id", "primary", "secondary"]),
                data / "clips.csv")  # fmt: skip
    write_events(pd.DataFrame(columns=["recording_id", "label", "onset", "offset", "kind"]),
                 data / "events.csv")  # fmt: skip
    ids = recs["recording_id"].tolist()
    write_folds(make_folds(ids, [{c[1]} for c in clips], 2, seed=0), data / "folds.csv")
    return data, truth


@pytest.mark.slow
def test_stage1_mines_motifs_and_training_crops_on_them(tmp_path: Path) -> None:
    data, truth = write_call_corpus(tmp_path)
    overrides = (
        "data.weak_crop=motif data.crop_seconds=2.0 data.weak_crops_per_file=2 "
        "motifs.params.subsequence_seconds=1.0 motifs.params.top_k=1 "
        "motifs.params.smooth_seconds=0.2 train.max_steps=2 train.eval_every_steps=2 "
        "train.batch_size=4 infer.window_seconds=2.0"
    )
    dumpdir = tmp_path / "dump"
    args = ["--conf", str(TINY), "--conf_override", overrides, "--datadir", str(data),
            "--dumpdir", str(dumpdir), "--no_progress"]  # fmt: skip
    assert dump_bin.main(args) == 0
    cfg, sources = load_config(TINY, overrides)
    mined = motif_dir(cfg, dumpdir) / "motifs.csv"
    spans = read_motif_spans(mined)
    assert set(spans) == set(truth)
    # the matrix profile finds the repeated call: the top motif pair lies on the two chirps
    hits = 0
    for rid, occ in spans.items():
        for on, off in occ[:2]:
            hits += any(min(off, b) - max(on, a) > 0 for a, b in truth[rid])
    n = sum(min(2, len(v)) for v in spans.values())
    assert hits >= 0.8 * n, (hits, n, spans, truth)
    # a rerun keeps the mined motifs (each recording's part is reused, not mined again)
    parts = sorted((mined.parent / "parts").iterdir())
    assert len(parts) == len(truth)
    made = {p.name: p.stat().st_mtime_ns for p in parts}
    before = mined.read_bytes()
    assert dump_bin.main(args) == 0
    assert {p.name: p.stat().st_mtime_ns for p in parts} == made
    assert mined.read_bytes() == before
    # training crops on them
    result = train_fold(cfg, 0, Corpus.load(data), dumpdir, tmp_path / "exp", sources, False)
    assert result["best_step"] >= 0

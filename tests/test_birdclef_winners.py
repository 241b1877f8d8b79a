"""BirdCLEF winners' features through run.sh: geo-temporal block folds (a recipe's ``prep``), the
metadata prior blended in stage 4 (``infer.metadata_blend``) with its own RESULTS.md row, and a
pseudo-label round (``pseudo.teachers``) on those folds with the blend again."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sed.data.birdclef_synth import BirdclefSynthConfig, generate
from sed.data.corpus import Corpus
from sed.data.folds import geo_temporal_groups

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_geo_folds_metadata_blend_and_a_pseudo_label_round_through_run_sh(
    tmp_path: Path,
) -> None:
    # the recipe, copied with geo-temporal folds switched on in its prep section
    recipe = tmp_path / "birdclef"
    shutil.copytree(ROOT / "egs" / "birdclef", recipe)
    conf = yaml.safe_load((recipe / "recipe.yaml").read_text())
    conf["prep"] = {"year": "auto", "fold_groups": "geo_temporal", "min_block": 3}
    (recipe / "recipe.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
    raw = tmp_path / "birdclef-2021"  # the year whose metadata has dates
    generate(
        raw,
        BirdclefSynthConfig(
            year=2021, n_species=4, recordings_per_species=(5, 6), focal_seconds=(3.0, 8.0),
            soundscape_seconds=20.0, n_test=2, n_train_soundscapes=2, seed=5,
        ),
        progress=False,
    )  # fmt: skip
    work = tmp_path / "work"
    proc = subprocess.run(
        [
            str(ROOT / "run.sh"), "--recipe", str(recipe), "--datadir", str(raw),
            "--conf", "conf/cnn/birdclef_tiny.yaml", "--conf_override",
            "train.max_steps=8 train.eval_every_steps=8 infer.metadata_blend=true",
            "--workdir", str(work), "--nj", "1",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}"

    # no dense place-and-season block is split between folds
    corpus = Corpus.load(work / "data" / "birdclef" / "birdclef-2021_2fold")
    train = corpus.recordings.set_index("recording_id").loc[corpus.ids("train")]
    keys = geo_temporal_groups(train["latitude"], train["longitude"], train["date"], min_block=3)
    fold = corpus.folds.set_index("recording_id")["fold"].loc[train.index].to_numpy()
    blocks: dict[str, set[int]] = {}
    for key, k in zip(keys, fold, strict=True):
        if key is not None:
            blocks.setdefault(key, set()).add(int(k))
    assert blocks, "the corpus should hold dense blocks"
    assert all(len(v) == 1 for v in blocks.values()), blocks

    # the metadata blend: its own experiment folder, submission and results row
    exp = work / "exp" / "birdclef" / "cnn"
    meta = exp / "birdclef_tiny+meta"
    summary = json.loads((meta / "infer" / "best" / "metadata_blend.json").read_text())
    assert 0.0 <= summary["weight"] <= 1.0
    sub = pd.read_csv(meta / "infer" / "best" / "submission.csv", dtype=str)
    sample = pd.read_csv(raw / "sample_submission.csv", dtype=str)
    assert list(sub.columns) == ["row_id", "birds"]
    assert sub["row_id"].tolist() == sample["row_id"].tolist()
    result = json.loads((meta / "results.json").read_text())
    assert result["metric"] == "birdclef2021" and result["test"] is not None
    table = (work / "exp" / "birdclef" / "RESULTS.md").read_text()
    assert "| cnn/birdclef_tiny |" in table and "| cnn/birdclef_tiny+meta |" in table

    # one pseudo-label round on the same folds: the 2021 download has no unlabelled soundscapes,
    # so the student learns from the teacher's view of the (unlabelled to it) test soundscapes
    proc = subprocess.run(
        [
            str(ROOT / "run.sh"), "--recipe", str(recipe), "--datadir", str(raw),
            "--conf", "conf/cnn/birdclef_tiny.yaml", "--tag", "pl", "--stage", "2",
            "--conf_override",
            "train.max_steps=8 train.eval_every_steps=8 infer.metadata_blend=true "
            "pseudo.teachers=[cnn/birdclef_tiny] pseudo.splits=[test] pseudo.confidence=hard",
            "--workdir", str(work), "--nj", "1",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}"
    assert (exp / "birdclef_tiny" / "pseudo" / "best" / "w5_h5_test.h5").is_file()
    student = json.loads((exp / "birdclef_tiny_pl" / "meta.json").read_text())
    assert student["pseudo"] and student["data"]["manifests"].endswith("birdclef-2021_2fold")
    table = (work / "exp" / "birdclef" / "RESULTS.md").read_text()
    assert "| cnn/birdclef_tiny_pl |" in table and "| cnn/birdclef_tiny_pl+meta |" in table

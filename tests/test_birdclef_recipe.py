"""The birdclef recipe end to end on synthetic corpora laid out like each year's Kaggle download:
stages 0-5, the submission against the year's sample file, the scores against Kaggle's scorer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from sed.data.birdclef_synth import BirdclefSynthConfig, generate
from sed.data.corpus import Corpus
from sed.infer.segments import segment_truth
from sed.metrics.birdclef import score_submission
from sed.metrics.registry import compute

ROOT = Path(__file__).resolve().parents[1]
WRITER_COLUMNS = {
    2021: ["row_id", "birds"],
    2022: ["row_id", "target"],
}


def run(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(ROOT / "egs" / "birdclef" / "run.sh"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"run.sh failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def tiny_corpus(year: int, root: Path) -> Path:
    """A small corpus of ``year`` in a folder named like the Kaggle download."""
    raw = root / f"birdclef-{year}"
    cfg = BirdclefSynthConfig(
        year=year,
        n_species=4,
        recordings_per_species=(3, 4),
        focal_seconds=(3.0, 8.0),
        soundscape_seconds=22.0,  # a partial last window (ends at 25)
        n_test=2,
        n_train_soundscapes=2,
        n_unlabeled=1,
        seed=year,
    )
    generate(raw, cfg, progress=False)
    return raw


FAST = "train.max_steps=8 train.eval_every_steps=8 data.weak_crops_per_file=1"


@pytest.mark.slow
@pytest.mark.parametrize("year", [2021, 2022, 2023, 2024, 2025])
def test_every_year_runs_stages_0_to_5_and_submits_in_its_format(year: int, tmp_path: Path) -> None:
    raw = tiny_corpus(year, tmp_path)
    work = tmp_path / "work"
    run(
        "--datadir", str(raw), "--conf", "conf/cnn/birdclef_tiny.yaml", "--conf_override", FAST,
        "--workdir", str(work), "--nj", "1",
    )  # fmt: skip
    manifests = work / "data" / "birdclef" / f"birdclef-{year}_2fold"
    info = json.loads((manifests / "corpus.json").read_text())
    assert info["year"] == year and info["variant"] == str(year)  # detected from the files

    inf = work / "exp" / "birdclef" / "cnn" / "birdclef_tiny" / "infer" / "best"
    sub = pd.read_csv(inf / "submission.csv", dtype=str, keep_default_na=False)
    sample = pd.read_csv(raw / "sample_submission.csv", dtype=str, keep_default_na=False)
    # exactly the year's columns, row ids and row order
    assert list(sub.columns) == list(sample.columns)
    assert sub["row_id"].tolist() == sample["row_id"].tolist()
    if year in WRITER_COLUMNS:
        assert list(sub.columns) == WRITER_COLUMNS[year]
    if year == 2021:
        assert all(b == "nocall" or b.split() for b in sub["birds"])
    if year == 2022:
        assert set(sub["target"]) <= {"True", "False"}

    # stage 5's test score is Kaggle's score of the submission file against the hidden solution
    solution = pd.read_csv(raw / "solution.csv", dtype=str, keep_default_na=False)
    result = json.loads((inf.parents[1] / "results.json").read_text())
    head = f"birdclef{year}"
    assert result["metric"] == head and result["test"]["rows"] == "segments"
    scored = None
    if year == 2022:
        scored = json.loads((raw / "scored_birds.json").read_text())
    expected = score_submission(year, solution, sub, scored=scored)
    assert result["test"][head] == pytest.approx(expected, abs=1e-9)
    # and every other metric of the recipe agrees with its own computation on the segments
    corpus = Corpus.load(manifests)
    seg = pd.read_csv(inf / "test_segments.csv", dtype={"recording_id": str})
    truth = segment_truth(seg, corpus.events, corpus.classes, 5.0)
    for m in result["metrics"][1:]:
        assert result["test"][m] == pytest.approx(
            compute(m, truth, seg[corpus.classes].to_numpy()), abs=1e-9
        )
    if year in (2021, 2022):
        tuned = json.loads((inf / "submission_threshold.json").read_text())
        assert tuned["metric"] == head and 0.0 < tuned["threshold"] < 1.0
    if year == 2021:  # the labelled train soundscapes are scored out of fold, by window
        assert result["oof"]["segments"]["rows"] == "segments"


REALDATA = ROOT.parent / "shared" / "realdata" / "xc_focal"


@pytest.mark.slow
@pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata/xc_focal is absent")
def test_real_focal_recordings_run_stages_0_to_5(tmp_path: Path) -> None:
    """45 real xeno-canto recordings (MP3 and WAV, several rates) in the train_audio layout with a
    non-Kaggle metadata header: no test soundscapes, so an empty submission and OOF scores."""
    work = tmp_path / "work"
    run(
        "--datadir", str(REALDATA), "--conf", "conf/cnn/birdclef_tiny.yaml", "--conf_override",
        FAST, "--workdir", str(work), "--nj", "2",
    )  # fmt: skip
    manifests = work / "data" / "birdclef" / "xc_focal_2fold"
    corpus = Corpus.load(manifests)
    assert len(corpus.ids("train")) == 45 and len(corpus.classes) == 15
    assert corpus.ids("test") == []
    inf = work / "exp" / "birdclef" / "cnn" / "birdclef_tiny" / "infer" / "best"
    sub = pd.read_csv(inf / "submission.csv", dtype=str)
    assert list(sub.columns) == ["row_id", *corpus.classes] and sub.empty
    result = json.loads((inf.parents[1] / "results.json").read_text())
    assert result["oof"]["n_recordings"] == 45 and result["test"] is None
    oof = pd.read_csv(inf / "oof.csv", dtype={"recording_id": str})
    truth = corpus.clip_truth(oof["recording_id"].tolist())
    assert result["oof"]["birdclef2023"] == pytest.approx(
        compute("birdclef2023", truth, oof[corpus.classes].to_numpy()), abs=1e-9
    )

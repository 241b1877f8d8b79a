"""Tests of geo-temporal block folds: the block keys, the split they give (no dense block in two
folds, sparse recordings still stratified), and ``fold_groups: geo_temporal`` of BirdCLEF stage 0
on a synthetic 2021 corpus (the one year whose metadata has dates)."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sed.data.birdclef import prepare_birdclef
from sed.data.birdclef_synth import BirdclefSynthConfig, generate
from sed.data.folds import geo_temporal_groups, make_folds
from sed.data.manifest import read_folds, read_recordings

ROOT = Path(__file__).resolve().parents[1]


def test_block_keys_cells_and_seasons() -> None:
    lat = ["35.2", 36.9, "39.99", 35.5, "35.5", "-0.5"]
    lon = ["-85", -80.1, "-84", -84.0, "-84", "0.5"]
    dates = ["2020-01-03", "2019-12-30", "2010/2/1", "20200301", "2020-03-01", "2020-06-01"]
    keys = geo_temporal_groups(lat, lon, dates, cell_degrees=5.0, season_months=3, min_block=1)
    # Dec-Feb is one season across the new year; March opens the next; 36.9/-80.1 is the next
    # cell east; -0.5/0.5 is the cell south-west corner -5, 0
    assert keys == [
        "35,-85_m12-02",
        "35,-85_m12-02",
        "35,-85_m12-02",
        "35,-85_m03-05",
        "35,-85_m03-05",
        "-5,0_m06-08",
    ]
    assert keys[1] != geo_temporal_groups([36.9], [-79.9], ["2019-12-30"], min_block=1)[0]
    # min_block: a block of 3 is kept together, blocks of 2 and 1 are not
    assert geo_temporal_groups(lat, lon, dates, min_block=3) == [keys[0]] * 3 + [None] * 3
    # a date object reads like its text; the poles and the antimeridian stay on the grid
    assert geo_temporal_groups([35.2], [-85], [datetime.date(2020, 1, 3)], min_block=1) == [keys[0]]
    edge = geo_temporal_groups([90, -90], [180, -180], ["2020-07-01"] * 2, min_block=1)
    assert edge == ["85,175_m06-08", "-90,-180_m06-08"]


def test_missing_or_bad_coordinates_and_dates_are_their_own_group() -> None:
    lat = ["", "nan", "95", "10", "10", "10", None, "10"]
    lon = ["10", "10", "10", "x", "10", "10", "10", "10"]
    dates = ["2020-01-01"] * 4 + ["", "2012-00-00", "2020-01-01", "2020-01-01"]
    keys = geo_temporal_groups(lat, lon, dates, min_block=1)
    assert keys[:7] == [None] * 7
    assert keys[7] == "10,10_m12-02"
    # season_months=12: the date is not needed (spatial blocks for metadata without dates)
    spatial = geo_temporal_groups(lat, lon, dates, season_months=12, min_block=1)
    assert spatial == [None, None, None, None, "10,10_year", "10,10_year", None, "10,10_year"]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"cell_degrees": 0}, "cell_degrees must be a number in"),
        ({"cell_degrees": 200.0}, "cell_degrees must be a number in"),
        ({"cell_degrees": float("nan")}, "cell_degrees"),
        ({"season_months": 5}, "season_months must divide the year"),
        ({"season_months": 0}, "season_months"),
        ({"min_block": 0}, "min_block must be an integer >= 1"),
        ({"min_block": 2.5}, "min_block"),
    ],
)
def test_bad_parameters(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        geo_temporal_groups([1.0], [1.0], ["2020-01-01"], **kwargs)


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="2 latitudes, 1 longitudes and 2 dates"):
        geo_temporal_groups([1, 2], [1], ["", ""])


def _clustered(seed: int = 0) -> tuple[list[str], list[set[str]], list, list, list]:
    """Species recorded in a few dense places and seasons (blocks of 6-12) plus sparse
    recordings scattered over the globe and a few without coordinates."""
    rng = np.random.default_rng(seed)
    ids, labels, lat, lon, dates = [], [], [], [], []

    def add(la: object, lo: object, date: str, species: set[str]) -> None:
        ids.append(f"r{len(ids):04d}")
        labels.append(species)
        lat.append(la)
        lon.append(lo)
        dates.append(date)

    for b in range(12):
        centre = (rng.uniform(-50, 50) // 5 * 5 + 2.5, (b * 25 - 170) + 2.5)
        month = int(rng.integers(1, 13))
        species = {f"s{j}" for j in rng.choice(6, size=2, replace=False)}
        for _ in range(int(rng.integers(6, 13))):
            add(
                centre[0] + rng.uniform(-2, 2),
                centre[1] + rng.uniform(-2, 2),
                f"{rng.integers(2000, 2021)}-{month:02d}-15",
                {str(rng.choice(sorted(species)))},
            )
    for _ in range(60):
        add(
            rng.uniform(-60, 60),
            rng.uniform(-180, 180),
            f"2015-{rng.integers(1, 13):02d}-01",
            {f"s{rng.integers(6)}"},
        )
    for _ in range(5):
        add("", "", "", {"s0"})
    return ids, labels, lat, lon, dates


def test_no_dense_block_spans_two_folds_and_sparse_ones_are_stratified() -> None:
    ids, labels, lat, lon, dates = _clustered()
    keys = geo_temporal_groups(lat, lon, dates, min_block=5)
    n_blocks = len({k for k in keys if k is not None})
    assert n_blocks >= 10  # the clustered places, each dense
    folds = make_folds(ids, labels, 5, seed=0, groups=keys)
    frame = pd.DataFrame({"key": keys, "fold": folds["fold"], "labels": labels})
    per_block = frame.dropna(subset=["key"]).groupby("key")["fold"].nunique()
    assert (per_block == 1).all()
    assert set(folds["fold"]) == set(range(5))
    # stratified over the groups (a dense block counts once, a sparse recording once): every
    # species' groups spread over every fold, each within two of the ideal share
    frame["group"] = [k if k is not None else r for k, r in zip(keys, ids, strict=True)]
    groups = frame.groupby("group").agg(
        fold=("fold", "first"), labels=("labels", lambda x: set().union(*x))
    )
    for label in sorted(set().union(*labels)):
        per_fold = np.bincount(groups["fold"][[label in s for s in groups["labels"]]], minlength=5)
        assert (per_fold >= 1).all(), (label, per_fold)
        assert np.abs(per_fold - per_fold.sum() / 5).max() <= 2, (label, per_fold)
    # and the sparse recordings, one by one, land in every fold
    sparse = np.bincount(frame.loc[frame["key"].isna(), "fold"], minlength=5)
    assert (sparse >= 1).all(), sparse


def test_geo_folds_deterministic_and_order_independent() -> None:
    ids, labels, lat, lon, dates = _clustered(seed=3)
    keys = geo_temporal_groups(lat, lon, dates)
    a = make_folds(ids, labels, 4, seed=1, groups=keys)
    rev_keys = geo_temporal_groups(lat[::-1], lon[::-1], dates[::-1])
    assert rev_keys == keys[::-1]
    rev = make_folds(ids[::-1], labels[::-1], 4, seed=1, groups=rev_keys)
    assert dict(zip(rev["recording_id"], rev["fold"], strict=True)) == dict(
        zip(a["recording_id"], a["fold"], strict=True)
    )
    assert a.equals(make_folds(ids, labels, 4, seed=1, groups=geo_temporal_groups(lat, lon, dates)))


# ------------------------------------------------------------------------------- stage 0


@pytest.fixture(scope="module")
def synth_2021(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic 2021 download: coordinates clustered per species, seasonal dates."""
    cfg = BirdclefSynthConfig(
        year=2021,
        n_species=5,
        recordings_per_species=(10, 14),
        focal_seconds=(1.5, 2.0),
        n_test=1,
        soundscape_seconds=10.0,
        n_train_soundscapes=0,
        n_unlabeled=0,
        sample_rate=16000,
        seed=0,
    )
    return generate(tmp_path_factory.mktemp("geo") / "raw", cfg, progress=False)


def test_prep_geo_temporal_keeps_every_dense_block_in_one_fold(
    synth_2021: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    summary = prepare_birdclef(
        synth_2021, out, n_folds=3, fold_groups="geo_temporal", min_block=3, cell_degrees=5.0
    )
    assert summary["fold_groups"] == "geo_temporal"
    recordings = read_recordings(out / "recordings.csv")
    folds = read_folds(out / "folds.csv", recordings).merge(recordings, on="recording_id")
    keys = geo_temporal_groups(
        folds["latitude"].tolist(), folds["longitude"].tolist(), folds["date"].tolist(), 5.0, 3, 3
    )
    folds["block"] = keys
    dense = folds.dropna(subset=["block"])
    assert summary["fold_blocks"] == {"blocks": dense["block"].nunique(), "recordings": len(dense)}
    assert dense["block"].nunique() >= 3 and len(dense) >= 10  # the corpus has dense blocks
    assert (dense.groupby("block")["fold"].nunique() == 1).all()
    assert folds["fold"].nunique() == 3
    # a bad parameter fails before any audio is read, naming it
    with pytest.raises(ValueError, match="season_months"):
        prepare_birdclef(synth_2021, out, n_folds=3, fold_groups="geo_temporal", season_months=5)


def test_cli_geo_temporal_options_as_recipe_prep_passes_them(
    synth_2021: Path, tmp_path: Path
) -> None:
    from sed.recipe import RecipeConf

    # recipe.yaml prep: {fold_groups: geo_temporal, min_block: 3} -> --key value words
    words = RecipeConf(name="birdclef", prep={"fold_groups": "geo_temporal", "min_block": 3})
    args = ["--datadir", str(synth_2021), "--outdir", str(tmp_path / "out"), "--folds", "3"]
    proc = subprocess.run(
        [sys.executable, "egs/birdclef/local/data_prep.py", *args, *words.prep_args()],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "folds: 3 grouped by geo_temporal" in proc.stdout
    assert "dense block(s) of >= 3 recordings (5 degree cells x 3-month seasons)" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "egs/birdclef/local/data_prep.py", *args, "--season_months", "5"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--season_months: invalid choice" in bad.stderr

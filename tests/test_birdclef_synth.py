"""Tests of the synthetic BirdCLEF corpus generator (sed.data.birdclef_synth), one layout per year.

Expected names, headers and row-id formats are written out here from
/work/shared/BIRDCLEF_FORMATS.md and the issue-13 contract, not imported from the module, so a
change of the generator's constants cannot make its own tests agree with it.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sed.config import ConfigError
from sed.data.birdclef_synth import (
    BirdclefSynthConfig,
    generate,
    is_complete,
    make_taxa,
    n_windows,
    plan_corpus,
    synthesize_focal,
    synthesize_soundscape,
    window_labels,
)
from sed.data.generators import GENERATORS
from sed.data.synth import call_box, make_species

YEARS = (2021, 2022, 2023, 2024, 2025)
# Small corpus: a few seconds per year. 22 s soundscapes end with a partial window (20-22 s),
# which still counts (ceil((22 - 0.25) / 5) = 5 windows). High soundscape SNRs make the
# energy check of labelled windows in the decoded files a clear-cut one.
SMALL = dict(
    n_species=5,
    recordings_per_species=(2, 3),
    focal_seconds=(3.0, 6.0),
    secondary_prob=0.5,
    soundscape_seconds=22.0,
    n_test=3,
    n_train_soundscapes=2,
    n_unlabeled=2,
    nocall_frac=0.3,
    soundscape_snr_db=(15.0, 20.0),
    sample_rate=16000,
    seed=5,
)

HEADERS = {
    2021: "primary_label,secondary_labels,type,latitude,longitude,scientific_name,common_name,"
    "author,date,filename,license,rating,time,url",
    2022: "primary_label,secondary_labels,type,latitude,longitude,scientific_name,common_name,"
    "author,license,rating,time,url,filename",
    2023: "primary_label,secondary_labels,type,latitude,longitude,scientific_name,common_name,"
    "author,license,rating,url,filename",
    2024: "primary_label,secondary_labels,type,latitude,longitude,scientific_name,common_name,"
    "author,license,rating,url,filename",
    2025: "primary_label,secondary_labels,type,filename,collection,rating,url,latitude,longitude,"
    "scientific_name,common_name,author,license",
}
EBIRD_HEADER = (
    "TAXON_ORDER,CATEGORY,SPECIES_CODE,PRIMARY_COM_NAME,SCI_NAME,ORDER1,FAMILY,SPECIES_GROUP,"
    "REPORT_AS"
)
ENTRIES = {
    2021: {
        "train_short_audio",
        "train_metadata.csv",
        "train_soundscapes",
        "train_soundscape_labels.csv",
        "test_soundscapes",
        "test.csv",
        "sample_submission.csv",
    },
    2022: {
        "train_audio",
        "train_metadata.csv",
        "scored_birds.json",
        "eBird_Taxonomy_v2021.csv",
        "test_soundscapes",
        "test.csv",
        "sample_submission.csv",
    },
    2023: {
        "train_audio",
        "train_metadata.csv",
        "eBird_Taxonomy_v2021.csv",
        "test_soundscapes",
        "sample_submission.csv",
    },
    2024: {
        "train_audio",
        "train_metadata.csv",
        "eBird_Taxonomy_v2021.csv",
        "test_soundscapes",
        "unlabeled_soundscapes",
        "sample_submission.csv",
    },
    2025: {
        "train_audio",
        "train.csv",
        "taxonomy.csv",
        "recording_location.txt",
        "train_soundscapes",
        "test_soundscapes",
        "sample_submission.csv",
    },
}
OURS = {"solution.csv", "synth_config.json"}  # our only extras (plus dot files)
FOCAL_RE = {
    2021: r"train_short_audio/([a-z]+\d?)/XC\d+\.ogg",
    2022: r"train_audio/([a-z]+\d?)/XC\d+\.ogg",
    2023: r"train_audio/([a-z]+\d?)/XC\d+\.ogg",
    2024: r"train_audio/([a-z]+\d?)/XC\d+\.ogg",
    2025: r"train_audio/([a-z]+\d?|\d+)/(XC|iNat|CSA)\d+\.ogg",
}
OTHER_AUDIO_RE = {
    2021: (
        r"train_soundscapes/\d+_(COR|SSW)_\d{8}\.ogg",
        r"test_soundscapes/\d+_(COL|COR|SNE|SSW)_\d{8}\.ogg",
    ),
    2022: (r"test_soundscapes/soundscape_\d+\.ogg",),
    2023: (r"test_soundscapes/soundscape_\d+\.ogg",),
    2024: (r"test_soundscapes/soundscape_\d+\.ogg", r"unlabeled_soundscapes/\d+\.ogg"),
    2025: (
        r"test_soundscapes/soundscape_\d+\.ogg",
        r"train_soundscapes/[A-Z]\d{2}_\d{8}_\d{6}\.ogg",
    ),
}


def _cfg(year: int, **kw: object) -> BirdclefSynthConfig:
    return BirdclefSynthConfig(year=year, **{**SMALL, **kw})


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("birdclef")
    return {y: generate(root / str(y), _cfg(y), progress=False) for y in YEARS}


def _read(path: Path) -> pd.DataFrame:
    # labels may be numeric strings (2025): never let pandas turn them into numbers
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _meta(corpus: Path, year: int) -> pd.DataFrame:
    return _read(corpus / ("train.csv" if year == 2025 else "train_metadata.csv"))


def _audio_files(corpus: Path) -> list[str]:
    return sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*.ogg"))


def _test_stems(corpus: Path) -> list[str]:
    return sorted(p.stem for p in (corpus / "test_soundscapes").glob("*.ogg"))


@pytest.mark.parametrize("year", YEARS)
def test_tree_and_file_names(corpora: dict[int, Path], year: int) -> None:
    corpus = corpora[year]
    assert is_complete(corpus)
    entries = {p.name for p in corpus.iterdir() if not p.name.startswith(".")}
    assert entries == ENTRIES[year] | OURS
    assert not [p for p in corpus.rglob("*") if p.name.endswith(".tmp")]

    files = _audio_files(corpus)
    focal = [f for f in files if re.fullmatch(FOCAL_RE[year], f)]
    others = [f for f in files if f not in focal]
    assert all(any(re.fullmatch(r, f) for r in OTHER_AUDIO_RE[year]) for f in others), others
    for pattern in OTHER_AUDIO_RE[year]:  # every soundscape folder of the year has files
        assert any(re.fullmatch(pattern, f) for f in others), pattern
    assert len(_test_stems(corpus)) == SMALL["n_test"]
    if year == 2021:
        assert sum(f.startswith("train_soundscapes/") for f in others) == 2
        names = {p.name for p in (corpus / "test_soundscapes").iterdir()}
        for site in ("COL", "COR", "SNE", "SSW"):
            text = (corpus / "test_soundscapes" / f"{site}_recording_location.txt").read_text()
            assert re.search(r"^Latitude: -?\d+\.\d+$", text, re.M), text
            assert re.search(r"^Longitude: -?\d+\.\d+$", text, re.M), text
        assert "test_set_recording_dates.csv" in names
        dates = _read(corpus / "test_soundscapes" / "test_set_recording_dates.csv")
        assert list(dates.columns) == ["site", "date"]
        assert sorted(f"_{s}_{d}" for s, d in zip(dates.site, dates.date, strict=True)) == sorted(
            "_" + stem.split("_", 1)[1] for stem in _test_stems(corpus)
        )
    if year in (2024, 2025):
        folder = "unlabeled_soundscapes" if year == 2024 else "train_soundscapes"
        assert sum(f.startswith(folder + "/") for f in others) == SMALL["n_unlabeled"]
    if year == 2025:
        text = (corpus / "recording_location.txt").read_text()
        assert "Latitude: " in text and "Longitude: " in text

    # metadata rows <-> focal files, one to one; the folder is the primary label
    meta = _meta(corpus, year)
    folder = "train_short_audio" if year == 2021 else "train_audio"
    if year == 2021:
        assert not meta.filename.str.contains("/").any()  # 2021: bare file name
        paths = [
            f"{folder}/{p}/{f}" for p, f in zip(meta.primary_label, meta.filename, strict=True)
        ]
    else:
        assert (meta.filename.str.split("/").str[0] == meta.primary_label).all()
        paths = [f"{folder}/{f}" for f in meta.filename]
    assert sorted(paths) == focal
    assert len(set(paths)) == len(paths)
    counts = meta.primary_label.value_counts()
    assert len(counts) == SMALL["n_species"]
    assert counts.between(*SMALL["recordings_per_species"]).all()
    assert meta.equals(meta.sort_values(["primary_label", "filename"], ignore_index=True))

    for f in files:  # mono Ogg Vorbis at the configured rate
        info = sf.info(corpus / f)
        assert (info.format, info.subtype, info.channels) == ("OGG", "VORBIS", 1), f
        assert info.samplerate == SMALL["sample_rate"], f


@pytest.mark.parametrize("year", YEARS)
def test_headers(corpora: dict[int, Path], year: int) -> None:
    corpus = corpora[year]
    meta = "train.csv" if year == 2025 else "train_metadata.csv"
    head = {p.name: p.read_text().splitlines()[0] for p in corpus.glob("*.csv")}
    assert head[meta] == HEADERS[year]
    classes = sorted(_meta(corpus, year).primary_label.unique())
    if year == 2021:
        assert head["train_soundscape_labels.csv"] == "row_id,site,audio_id,seconds,birds"
        assert head["test.csv"] == "row_id,site,audio_id,seconds"
        assert head["sample_submission.csv"] == head["solution.csv"] == "row_id,birds"
    elif year == 2022:
        assert head["test.csv"] == "row_id,file_id,bird,end_time"
        assert head["sample_submission.csv"] == head["solution.csv"] == "row_id,target"
    else:
        # classes = the sorted primary labels (Python string sort: digits before letters)
        assert (
            head["sample_submission.csv"] == head["solution.csv"] == ",".join(["row_id", *classes])
        )
    if year in (2022, 2023, 2024):
        assert head["eBird_Taxonomy_v2021.csv"] == EBIRD_HEADER
    if year == 2025:
        assert head["taxonomy.csv"] == (
            "primary_label,inat_taxon_id,scientific_name,common_name,class_name"
        )


def _expected_rows(corpus: Path, year: int, folder: str = "test_soundscapes") -> list[str]:
    """Row ids per the contract: files by stem, windows ascending (END seconds), 2022: scored
    birds fastest in scored_birds.json order."""
    scored = json.loads((corpus / "scored_birds.json").read_text()) if year == 2022 else []
    rows = []
    for path in sorted((corpus / folder).glob("*.ogg"), key=lambda p: p.stem):
        info = sf.info(path)
        for w in range(max(1, math.ceil((info.frames / info.samplerate - 0.25) / 5))):
            end = 5 * (w + 1)
            if year == 2021:
                audio_id, site, _ = path.stem.split("_")
                rows.append(f"{audio_id}_{site}_{end}")
            elif year == 2022:
                rows += [f"{path.stem}_{bird}_{end}" for bird in scored]
            else:
                rows.append(f"{path.stem}_{end}")
    return rows


@pytest.mark.parametrize("year", YEARS)
def test_row_ids_and_order(corpora: dict[int, Path], year: int) -> None:
    corpus = corpora[year]
    expected = _expected_rows(corpus, year)
    # 22 s soundscapes: 5 windows (the last one partial), named 5 ... 25
    per_file = 5 * (
        len(json.loads((corpus / "scored_birds.json").read_text())) if year == 2022 else 1
    )
    assert len(expected) == SMALL["n_test"] * per_file
    sample, solution = _read(corpus / "sample_submission.csv"), _read(corpus / "solution.csv")
    assert list(sample.row_id) == expected
    assert list(solution.row_id) == expected
    assert list(solution.columns) == list(sample.columns)
    if year == 2021:
        assert (sample.birds == "nocall").all()
        test = _read(corpus / "test.csv")
        assert list(test.row_id) == expected
        rebuilt = test.audio_id + "_" + test.site + "_" + test.seconds
        assert list(rebuilt) == expected
        labels = _read(corpus / "train_soundscape_labels.csv")
        assert list(labels.row_id) == _expected_rows(corpus, year, "train_soundscapes")
        assert list(labels.audio_id + "_" + labels.site + "_" + labels.seconds) == list(
            labels.row_id
        )
    elif year == 2022:
        assert (sample.target == "False").all()
        assert set(solution.target) <= {"True", "False"}
        test = _read(corpus / "test.csv")
        assert list(test.row_id) == expected
        rebuilt = test.file_id + "_" + test.bird + "_" + test.end_time
        assert list(rebuilt) == expected
        assert set(test.file_id) == set(_test_stems(corpus))
    else:
        values = solution.drop(columns="row_id")
        assert set(np.unique(values.to_numpy())) <= {"0", "1"}
        assert (sample.drop(columns="row_id") == "0").all().all()


def _solution_sets(corpus: Path, year: int, classes: list[str]) -> dict[str, set[str]]:
    """row_id -> set of labels present, from solution.csv (2022: per row_id of one bird)."""
    sol = _read(corpus / "solution.csv")
    if year == 2021:
        return {
            r: set() if b == "nocall" else set(b.split())
            for r, b in zip(sol.row_id, sol.birds, strict=True)
        }
    if year == 2022:
        return {
            r: {r.split("_")[2]} if t == "True" else set()
            for r, t in zip(sol.row_id, sol.target, strict=True)
        }
    values = sol[classes].to_numpy() == "1"
    return {
        r: {c for c, v in zip(classes, row, strict=True) if v}
        for r, row in zip(sol.row_id, values, strict=True)
    }


def _band_energy(x: np.ndarray, sr: int, f_lo: float, f_hi: float) -> float:
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1.0 / sr)
    return float(np.sum(np.abs(spec[(freqs >= f_lo) & (freqs <= f_hi)]) ** 2))


@pytest.mark.parametrize("year", YEARS)
def test_labels_follow_the_calls(corpora: dict[int, Path], year: int) -> None:
    corpus = corpora[year]
    cfg = _cfg(year)
    plan = plan_corpus(cfg)
    species = make_species(cfg.synth_config())
    labels = [t.label for t in plan.taxa]
    sr = cfg.sample_rate
    truth = _solution_sets(corpus, year, sorted(labels))
    if year == 2021:
        lab = _read(corpus / "train_soundscape_labels.csv")
        truth.update(
            {
                r: set() if b == "nocall" else set(b.split())
                for r, b in zip(lab.row_id, lab.birds, strict=True)
            }
        )
    scored = set(json.loads((corpus / "scored_birds.json").read_text())) if year == 2022 else None
    n_nocall = n_labelled = 0
    ratios: list[float] = []
    for p in plan.soundscapes:
        if p.kind == "unlabeled":
            continue
        clean, calls = synthesize_soundscape(cfg, species, p, background=False)
        windows = window_labels(calls, p.n_samples, sr)
        assert len(windows) == n_windows(p.n_samples / sr) == 5
        for w, present in enumerate(windows):
            # window w covers [5 w, 5 (w + 1)) s; the last one runs to the end of the file
            a, b = w * 5 * sr, ((w + 1) * 5 * sr if w < len(windows) - 1 else p.n_samples)
            # labels are exactly the species whose (placed) calls overlap the window
            assert present == {k for k, s, e in calls if s < b and e > a}
            names = {labels[k] for k in present}
            energy = float(np.sum(clean[a:b] ** 2))
            assert (energy > 0) == bool(present)  # a nocall window holds no call sample
            n_nocall += not present
            n_labelled += bool(present)
            end = 5 * (w + 1)
            if year == 2022:
                for bird in sorted(scored):
                    assert truth[f"{p.stem}_{bird}_{end}"] == ({bird} & names)
            elif year == 2021:
                assert truth[f"{p.audio_id}_{p.site}_{end}"] == names
            else:
                assert truth[f"{p.stem}_{end}"] == names
        assert any(not s for s in windows), "every labelled soundscape has a nocall window"

        # the file holds those calls: it matches the rendered mix (Vorbis is lossy), and in its
        # own band each call stands above same-length stretches of the nocall windows
        audio, _ = sf.read(corpus / p.relpath)
        mix, _ = synthesize_soundscape(cfg, species, p)
        assert audio.shape == mix.shape
        assert np.corrcoef(audio, mix)[0, 1] > 0.95
        silent = [w for w, s in enumerate(windows) if not s]
        for k, s, e in calls:
            box = call_box(species[k].call, sr)
            lo, hi = 0.8 * box[0], 1.2 * box[1]  # room for the jitter and song type 4
            quiet = [
                _band_energy(audio[w * 5 * sr : w * 5 * sr + e - s], sr, lo, hi)
                for w in silent
                if w * 5 * sr + e - s <= p.n_samples
            ]
            ratios.append(_band_energy(audio[s:e], sr, lo, hi) / float(np.median(quiet)))
    # the background is not stationary (gusts, rain, insects), hence a margin per call and a
    # clear one for the median (SNRs of 15-20 dB in SMALL)
    assert min(ratios) > 1.5 and float(np.median(ratios)) > 10.0
    assert n_nocall > 0 and n_labelled > 0


@pytest.mark.parametrize("year", YEARS)
def test_metadata_values(corpora: dict[int, Path], year: int) -> None:
    corpus = corpora[year]
    meta = _meta(corpus, year)
    classes = set(meta.primary_label)
    n_secondary = 0
    for _, r in meta.iterrows():
        sec = ast.literal_eval(r.secondary_labels)
        types = ast.literal_eval(r.type)
        assert isinstance(sec, list) and isinstance(types, list)
        if year == 2025:
            assert sec and types, "2025 writes an empty list as ['']"
        else:
            assert "" not in sec and "" not in types
        sec = [s for s in sec if s]
        assert set(sec) <= classes - {r.primary_label}
        assert len(sec) == len(set(sec)) <= 2
        n_secondary += bool(sec)
        assert -90 <= float(r.latitude) <= 90 and -180 <= float(r.longitude) <= 180
        rating = float(r.rating)
        assert 0 <= rating <= 5 and rating * 2 == int(rating * 2)
        assert r.scientific_name.count(" ") == 1 and r.common_name and r.author
        stem = r.filename.rsplit("/", 1)[-1][: -len(".ogg")]
        if year == 2025:
            assert stem.startswith(r.collection) and r.collection in ("XC", "iNat", "CSA")
            if r.collection != "XC":
                assert rating == 0 and types == [""]
            if r.collection == "XC":
                assert r.url == f"https://www.xeno-canto.org/{stem[2:]}"
        else:
            assert r.url == f"https://www.xeno-canto.org/{stem[2:]}"
            assert set(types) <= {
                "call", "song", "flight call", "alarm call", "male", "female", "adult", "juvenile",
            }  # fmt: skip
        if year == 2021:
            datetime.strptime(r.date, "%Y-%m-%d")
        if year in (2021, 2022):
            datetime.strptime(r.time, "%H:%M")
    assert n_secondary > 0
    # list columns are quoted exactly when they contain a comma (pandas QUOTE_MINIMAL)
    text = (corpus / ("train.csv" if year == 2025 else "train_metadata.csv")).read_text()
    assert re.search(r"\"\['[^']+', '", text) and re.search(r",\['[^',]+'\],", text)
    # per species the recordings cluster around one range centre
    spread = meta.assign(lat=meta.latitude.astype(float)).groupby("primary_label").lat.std()
    assert float(spread.max()) < 15.0

    taxa_codes = sorted(classes)
    if year in (2022, 2023, 2024):
        tax = _read(corpus / "eBird_Taxonomy_v2021.csv")
        assert set(taxa_codes) <= set(tax.SPECIES_CODE[tax.CATEGORY == "species"])
        assert len(tax) > len(taxa_codes)  # like the real file: more than the classes
        assert list(tax.TAXON_ORDER.astype(int)) == sorted(tax.TAXON_ORDER.astype(int))
    else:
        assert all(re.fullmatch(r"[a-z]{6}\d?" if year == 2021 else r"[a-z]{6}\d?|\d+", c)
                   for c in taxa_codes)  # fmt: skip
    if year == 2022:
        text = (corpus / "scored_birds.json").read_text()
        scored = json.loads(text)
        assert scored == sorted(scored) and set(scored) < classes
        assert len(scored) == round(0.5 * SMALL["n_species"])
        assert len(text.strip().splitlines()) == len(scored) + 2  # one code per line
    if year == 2025:
        tax = _read(corpus / "taxonomy.csv")
        assert list(tax.primary_label) == taxa_codes
        assert set(tax.class_name) <= {"Aves", "Amphibia", "Insecta", "Mammalia"}
        numeric = tax.primary_label.str.fullmatch(r"\d+")
        assert int(numeric.sum()) == round(SMALL["n_species"] / 3)
        assert (numeric == (tax.class_name != "Aves")).all()
        assert (tax.inat_taxon_id[numeric] == tax.primary_label[numeric]).all()
        # the numeric labels survive a str read in both train.csv and the submission header
        sub_cols = _read(corpus / "sample_submission.csv").columns[1:]
        assert list(sub_cols) == taxa_codes
        assert set(tax.primary_label[numeric]) <= classes


def test_focal_recordings() -> None:
    cfg = _cfg(2023)
    plan = plan_corpus(cfg)
    species = make_species(cfg.synth_config())
    sr = cfg.sample_rate
    with_secondary = [f for f in plan.focal if f.secondary][:2]
    assert with_secondary
    for f in [*plan.focal[:3], *with_secondary]:
        clean, calls = synthesize_focal(cfg, species, f, background=False)
        assert clean.shape == (f.n_samples,)
        primary = sorted((s, e) for k, s, e in calls if k == f.species)
        assert primary[0][0] <= 0.55 * sr  # a call near the start
        # calls throughout: gaps of at most 2 s, the last one near the end
        assert all(b[0] - a[1] <= 2.0 * sr + 1 for a, b in itertools.pairwise(primary))
        assert primary[-1][1] >= f.n_samples - 3.5 * sr
        assert {k for k, _, _ in calls} - {f.species} == set(f.secondary)
        row = dict(f.row)
        assert ast.literal_eval(row["secondary_labels"]) == [
            plan.taxa[k].label for k in f.secondary
        ]


def test_deterministic_across_runs_and_workers(corpora: dict[int, Path], tmp_path: Path) -> None:
    for year, nj in ((2021, 2), (2025, 1)):
        again = generate(tmp_path / str(year), _cfg(year), nj=nj, progress=False)
        a, b = corpora[year], again
        texts = sorted(
            p.relative_to(a).as_posix()
            for p in a.rglob("*")
            if p.suffix in (".csv", ".json", ".txt")
        )
        assert texts and texts == sorted(
            p.relative_to(b).as_posix()
            for p in b.rglob("*")
            if p.suffix in (".csv", ".json", ".txt")
        )
        for name in texts:
            assert (a / name).read_bytes() == (b / name).read_bytes(), (year, nj, name)
        files = _audio_files(a)
        assert files == _audio_files(b)
        for name in files:
            assert np.array_equal(sf.read(a / name)[0], sf.read(b / name)[0]), (year, nj, name)


def test_seed_and_year_change_the_corpus() -> None:
    a, b = plan_corpus(_cfg(2023)), plan_corpus(_cfg(2023, seed=6))
    assert [t.label for t in a.taxa] != [t.label for t in b.taxa]
    # the year changes the layout, not the birds' names (2021-2024)
    assert [t.label for t in make_taxa(_cfg(2021))] == [t.label for t in a.taxa]


def test_outdir_reuse(tmp_path: Path) -> None:
    out = tmp_path / "c"
    tiny = dict(n_test=1, n_train_soundscapes=1, n_unlabeled=1, soundscape_seconds=6.0)
    generate(out, _cfg(2021, **tiny), progress=False)
    assert (out / "train_short_audio").is_dir()
    generate(out, _cfg(2024, **tiny), progress=False)  # our own corpus: replaced, no leftovers
    assert not (out / "train_short_audio").exists() and not (out / "test.csv").exists()
    assert len(list((out / "test_soundscapes").glob("*.ogg"))) == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"keep\.txt"):
        generate(foreign, _cfg(2024, **tiny), progress=False)
    assert (foreign / "keep.txt").read_text() == "mine"


def test_n_windows() -> None:
    assert [n_windows(d) for d in (1.0, 5.0, 5.2, 5.3, 59.998, 60.0, 60.002, 600.0)] == [
        1, 1, 1, 2, 12, 12, 12, 120,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"year": 2020}, "year"),
        ({"n_species": 1}, "n_species"),
        ({"recordings_per_species": (3, 2)}, "recordings_per_species"),
        ({"focal_seconds": (0.5, 6.0)}, "focal_seconds"),
        ({"focal_seconds": 4.0}, "focal_seconds"),
        ({"secondary_prob": 1.5}, "secondary_prob"),
        ({"soundscape_seconds": 3.0}, "soundscape_seconds"),
        ({"n_test": 0}, "n_test"),
        ({"n_unlabeled": -1}, "n_unlabeled"),
        ({"nocall_frac": 1.0}, "nocall_frac"),
        ({"scored_fraction": -0.1}, "scored_fraction"),
        ({"soundscape_snr_db": (5.0, float("nan"))}, "soundscape_snr_db"),
        ({"sample_rate": 4000}, "sample_rate"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_config_errors_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        BirdclefSynthConfig(**params)


def test_recipe_build(tmp_path: Path) -> None:
    from sed.recipe import RecipeConf, SynthSection, ensure_synthetic_corpus

    params = {"year": 2022, "n_species": 3, "recordings_per_species": [1, 2], "n_test": 1,
              "soundscape_seconds": 10.0, "sample_rate": 16000}  # fmt: skip
    cfg = GENERATORS.build("birdclef", params, "synth.params")
    assert isinstance(cfg, BirdclefSynthConfig)
    assert cfg.recordings_per_species == (1, 2) and cfg.year == 2022
    assert GENERATORS.attrs("birdclef")["generate"] is generate
    with pytest.raises(ConfigError, match=r"synth\.params\.n_specie\b"):
        GENERATORS.build("birdclef", {"n_specie": 3}, "synth.params")
    with pytest.raises(ConfigError, match=r"synth\.params.*year"):
        GENERATORS.build("birdclef", {"year": 2019}, "synth.params")

    recipe = RecipeConf(name="birdclef", synth=SynthSection("birdclef", params))
    out = tmp_path / "synth"
    assert ensure_synthetic_corpus(recipe, out)
    assert is_complete(out) and (out / "scored_birds.json").is_file()
    assert json.loads((out / "synth_config.json").read_text())["year"] == 2022
    assert not ensure_synthetic_corpus(recipe, out)  # complete and current: kept

"""Tests of BirdCLEF stage 0 on tiny corpora written here in each year's real Kaggle layout
(/work/shared/BIRDCLEF_FORMATS.md): headers, list literals, folder rules and row ids as shipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sed.data.birdclef import detect_year, prepare_birdclef
from sed.data.folds import make_folds
from sed.data.manifest import (
    ManifestError,
    read_classes,
    read_clips,
    read_events,
    read_folds,
    read_recordings,
)

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
SR = 8000  # tiny files; the reader never assumes 32 kHz
LICENSE = "Creative Commons Attribution-NonCommercial-ShareAlike 4.0"
EBIRD = (
    "TAXON_ORDER,CATEGORY,SPECIES_CODE,PRIMARY_COM_NAME,SCI_NAME,ORDER1,FAMILY,SPECIES_GROUP,"
    "REPORT_AS\n1,species,ostric2,Common Ostrich,Struthio camelus,Struthioniformes,"
    "Struthionidae (Ostriches),Ostriches,\n"
)


def _ogg(path: Path, seconds: float = 2.0, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    wave = 0.1 * rng.standard_normal(int(seconds * SR)).astype(np.float32)
    sf.write(path, wave, SR, format="OGG", subtype="VORBIS")


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


# ------------------------------------------------------------------------------- the five layouts

META_2021 = (
    "primary_label,secondary_labels,type,latitude,longitude,scientific_name,common_name,author,"
    "date,filename,license,rating,time,url\n"
    # line 2: list with a comma is quoted (pandas QUOTE_MINIMAL)
    "savspa,['comyel'],\"['life stage uncertain', 'male', 'song']\",25.6007,-109.0504,"
    "Passerculus sandwichensis,Savannah Sparrow,Manuel Grosselet,2020-03-04,XC531828.ogg,"
    f"{LICENSE},4.5,08:30,https://www.xeno-canto.org/531828\n"
    # line 3: a secondary label that is no class (dropped, counted)
    "acafly,\"['amegfi', 'notaclass']\",\"['begging call', 'call', 'juvenile']\",35.3860,"
    "-84.1250,Empidonax virescens,Acadian Flycatcher,A B,2012-08-12,XC109605.ogg,"
    f"{LICENSE},2.5,06:30:00 AM,https://www.xeno-canto.org/109605\n"
    # lines 4-5: dirty dates -> empty
    "amegfi,[],['call'],40.1,-75.2,Spinus tristis,American Goldfinch,C D,2012-00-00,XC100.ogg,"
    f"{LICENSE},3.0,?,https://www.xeno-canto.org/100\n"
    "comyel,[],['song'],41.1,-76.2,Geothlypis trichas,Common Yellowthroat,C D,0000-00-00,"
    f"XC200.ogg,{LICENSE},5.0,xx:xx,https://www.xeno-canto.org/200\n"
)
LABELS_2021 = (
    "row_id,site,audio_id,seconds,birds\n"
    "7019_COR_5,COR,7019,5,nocall\n"
    "7019_COR_10,COR,7019,10,savspa amegfi\n"
    "7019_COR_15,COR,7019,15,nocall\n"
    "7019_COR_20,COR,7019,20,acafly\n"
    "2782_SSW_5,SSW,2782,5,nocall\n"
    "2782_SSW_10,SSW,2782,10,comyel\n"
    "2782_SSW_15,SSW,2782,15,nocall\n"
)


def corpus_2021(root: Path, labels: str = LABELS_2021) -> Path:
    for i, rel in enumerate(["savspa/XC531828", "acafly/XC109605", "amegfi/XC100", "comyel/XC200"]):
        _ogg(root / "train_short_audio" / f"{rel}.ogg", seed=i)
    _ogg(root / "train_soundscapes" / "7019_COR_20190904.ogg", 20.0, seed=7)
    _ogg(root / "train_soundscapes" / "2782_SSW_20170701.ogg", 15.0, seed=8)
    _write(
        root,
        {
            "train_metadata.csv": META_2021,
            "train_soundscape_labels.csv": labels,
            # the visible download: no test audio, only the site files
            "test_soundscapes/COR_recording_location.txt": (
                "Costa Rica\nSan Ramon\nLatitude: 10.12\nLongitude: -84.51\n"
            ),
            "test_soundscapes/SSW_recording_location.txt": (
                "Sapsucker Woods\nIthaca NY\nLatitude: 42.47\nLongitude: -76.45\n"
            ),
            "test_soundscapes/test_set_recording_dates.csv": "site,date\nCOR,20190904\n",
            "test.csv": "row_id,site,audio_id,seconds\n3575_COL_5,COL,3575,5\n",
            "sample_submission.csv": "row_id,birds\n3575_COL_5,wewpew batpig1\n",
        },
    )
    return root


META_2022 = (
    "primary_label,secondary_labels,type,latitude,longitude,scientific_name,common_name,author,"
    "license,rating,time,url,filename\n"
    "afrsil1,\"['houspa', 'redava', 'zebdov']\",['call'],19.8801,-155.7254,Euodice cantans,"
    f"African Silverbill,Dan Lane,{LICENSE},3.5,08:30,https://www.xeno-canto.org/175522,"
    "afrsil1/XC175522.ogg\n"
    "afrsil1,[],\"['call', 'song']\",16.2901,-16.0321,Euodice cantans,African Silverbill,"
    f"Bram Piot,{LICENSE},4.0,11:30,https://www.xeno-canto.org/177993,afrsil1/XC177993.ogg\n"
    "houspa,[],['song'],21.3,-157.8,Passer domesticus,House Sparrow,E F,"
    f"{LICENSE},0.0,07:00,https://www.xeno-canto.org/1,houspa/XC1.ogg\n"
    "akiapo,[],['call'],19.7,-155.1,Hemignathus wilsoni,Akiapolaau,G H,"
    f"{LICENSE},5.0,09:00,https://www.xeno-canto.org/2,akiapo/XC2.ogg\n"
)


def corpus_2022(root: Path, solution: bool = True) -> Path:
    for i, rel in enumerate(["afrsil1/XC175522", "afrsil1/XC177993", "houspa/XC1", "akiapo/XC2"]):
        _ogg(root / "train_audio" / f"{rel}.ogg", seed=i)
    _ogg(root / "test_soundscapes" / "soundscape_453028782.ogg", 10.0, seed=9)
    stem = "soundscape_453028782"
    files = {
        "train_metadata.csv": META_2022,
        "scored_birds.json": '[\n    "akiapo",\n    "houspa"\n]',
        "eBird_Taxonomy_v2021.csv": EBIRD,
        "test.csv": f"row_id,file_id,bird,end_time\n{stem}_akiapo_5,{stem},akiapo,5\n",
        "sample_submission.csv": f"row_id,target\n{stem}_akiapo_5,False\n",
    }
    if solution:
        # bird varies fastest within a window, in scored_birds.json order
        files["solution.csv"] = (
            f"row_id,target\n{stem}_akiapo_5,True\n{stem}_houspa_5,False\n"
            f"{stem}_akiapo_10,False\n{stem}_houspa_10,True\n"
        )
    _write(root, files)
    return root


HEADER_2023 = (
    "primary_label,secondary_labels,type,latitude,longitude,scientific_name,common_name,author,"
    "license,rating,url,filename\n"
)


def _row_2023(label: str, xc: int, author: str = "Tieme", secondary: str = "[]") -> str:
    return (
        f"{label},{secondary},['call'],7.6295,-2.5672,Sci name,Common name,{author},"
        f"{LICENSE},2.5,https://www.xeno-canto.org/{xc},{label}/XC{xc}.ogg\n"
    )


ROWS_2023 = [("abethr1", 128013), ("helgui", 503001), ("subbus1", 390820), ("helgui", 2)]
# the header's order is the class order, whatever it is (Kaggle's is sorted; this one is not)
SUBMISSION_2023 = "row_id,subbus1,abethr1,helgui,yetgre1\nsoundscape_29201_5,0,0,0,0\n"


def corpus_2023(
    root: Path,
    rows: list[tuple[str, int]] = ROWS_2023,
    submission: str | None = SUBMISSION_2023,
    solution: str | None = None,
    meta: str | None = None,
) -> Path:
    for i, (label, xc) in enumerate(rows):
        _ogg(root / "train_audio" / label / f"XC{xc}.ogg", seed=i)
    _ogg(root / "test_soundscapes" / "soundscape_29201.ogg", 12.0, seed=5)
    files = {
        "train_metadata.csv": meta or HEADER_2023 + "".join(_row_2023(*r) for r in rows),
        "eBird_Taxonomy_v2021.csv": EBIRD,
    }
    if submission is not None:
        files["sample_submission.csv"] = submission
    if solution is not None:
        files["solution.csv"] = solution
    _write(root, files)
    return root


def corpus_2024(root: Path) -> Path:
    rows = [("asbfly", 134896), ("asbfly", 164848), ("zitcis1", 1)]
    for i, (label, xc) in enumerate(rows):
        _ogg(root / "train_audio" / label / f"XC{xc}.ogg", seed=i)
    (root / "test_soundscapes").mkdir(parents=True)  # empty in the download
    _ogg(root / "unlabeled_soundscapes" / "1000170626.ogg", 8.0, seed=4)
    _write(
        root,
        {
            "train_metadata.csv": HEADER_2023 + "".join(_row_2023(*r) for r in rows),
            "eBird_Taxonomy_v2021.csv": EBIRD,
            "sample_submission.csv": "row_id,asbfly,zitcis1\nsoundscape_1_5,0,0\n",
        },
    )
    return root


META_2025 = (
    "primary_label,secondary_labels,type,filename,collection,rating,url,latitude,longitude,"
    "scientific_name,common_name,author,license\n"
    "1139490,[''],[''],1139490/CSA36385.ogg,CSA,0,http://colecciones.humboldt.org.co/rec/"
    "sonidos/IAvH-CSA-36385/IAvH-CSA-36385.mp3,7.3206,-73.7128,Ragoniella pulchella,"
    "Ragoniella pulchella,Fabio A. Sarria-S,cc-by-nc-sa 4.0\n"
    "126247,[],[],126247/iNat1.ogg,iNat,0,https://www.inaturalist.org/observations/1,6.7,"
    "-74.2,Frog sp,Frog,I J,cc-by 4.0\n"
    "yercac1,['126247'],['call'],yercac1/XC100.ogg,XC,4.0,https://xeno-canto.org/100,6.8,"
    "-74.1,Caracara sp,Yellow-headed Caracara,K L,cc-by-nc-sa 4.0\n"
    "ywcpar,[],['song'],ywcpar/XC200.ogg,XC,3.5,https://xeno-canto.org/200,,,Parrot sp,"
    "Parakeet,M N,cc-by-nc-sa 4.0\n"
)
CLASSES_2025 = ["1139490", "126247", "yercac1", "ywcpar"]  # Python string sort


def corpus_2025(root: Path, submission: bool = True) -> Path:
    for i, rel in enumerate(["1139490/CSA36385", "126247/iNat1", "yercac1/XC100", "ywcpar/XC200"]):
        _ogg(root / "train_audio" / f"{rel}.ogg", seed=i)
    _ogg(root / "train_soundscapes" / "H02_20230420_074000.ogg", 10.0, seed=6)
    (root / "test_soundscapes").mkdir(parents=True)
    files = {
        "train.csv": META_2025,
        "taxonomy.csv": (
            "primary_label,inat_taxon_id,scientific_name,common_name,class_name\n"
            "ywcpar,,Parrot sp,Parakeet,Aves\n"
            "1139490,1139490,Ragoniella pulchella,Ragoniella pulchella,Insecta\n"
            "yercac1,,Caracara sp,Yellow-headed Caracara,Aves\n"
            "126247,126247,Frog sp,Frog,Amphibia\n"
        ),
        "recording_location.txt": (
            'Nature reserve "El Silencio" in Yondo\nhttps://example.org\n'
            "Latitude: 6.76\nLongitude: -74.21\n"
        ),
    }
    if submission:
        files["sample_submission.csv"] = (
            "row_id," + ",".join(CLASSES_2025) + "\nsoundscape_1_5,0,0,0,0\n"
        )
    _write(root, files)
    return root


BUILDERS = {
    2021: corpus_2021,
    2022: corpus_2022,
    2023: corpus_2023,
    2024: corpus_2024,
    2025: corpus_2025,
}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    base = tmp_path_factory.mktemp("birdclef")
    return {year: build(base / f"birdclef-{year}") for year, build in BUILDERS.items()}


def _prep(raw: Path, out: Path, **kwargs) -> tuple[dict, dict[str, object]]:
    summary = prepare_birdclef(raw, out, n_folds=2, **kwargs)
    recordings = read_recordings(out / "recordings.csv")
    classes = read_classes(out / "classes.txt")
    manifests = {
        "recordings": recordings.set_index("recording_id"),
        "classes": classes,
        "clips": read_clips(out / "clips.csv", recordings, classes).set_index("recording_id"),
        "events": read_events(out / "events.csv", recordings, classes),
        "folds": read_folds(out / "folds.csv", recordings),
        "skipped": pd.read_csv(out / "skipped.csv", dtype=str),
        "corpus": json.loads((out / "corpus.json").read_text()),
    }
    return summary, manifests


# ------------------------------------------------------------------------------- year detection


@pytest.mark.parametrize("year", sorted(BUILDERS))
def test_detect_year_of_each_layout(corpora: dict[int, Path], year: int) -> None:
    assert detect_year(corpora[year]) == year


def test_2024_without_unlabeled_reads_as_2023_and_year_overrides(tmp_path: Path) -> None:
    raw = corpus_2023(tmp_path / "raw")
    assert detect_year(raw) == 2023
    summary, m = _prep(raw, tmp_path / "out", year="2024")
    assert summary["year"] == 2024 and not summary["year_detected"]
    assert m["corpus"] == {
        "variant": "2024",
        "year": 2024,
        "segment_seconds": 5.0,
        "source": str(raw),
    }


def test_detection_errors_name_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="not a BirdCLEF folder"):
        detect_year(tmp_path / "empty")
    # the folder above the download: the message points at it
    corpus_2023(tmp_path / "above" / "birdclef-2023")
    with pytest.raises(ManifestError, match=r"did you mean .*birdclef-2023\?"):
        detect_year(tmp_path / "above")
    # 13 columns without scored_birds.json: 2022's header, but not its files
    raw = tmp_path / "odd"
    _write(raw, {"train_metadata.csv": META_2022})
    with pytest.raises(ManifestError, match=r"line 1: .*13 columns.*--year") as e:
        detect_year(raw)
    assert e.value.path.endswith("train_metadata.csv")
    with pytest.raises(ManifestError, match="not a BirdCLEF year"):
        prepare_birdclef(corpus_2023(tmp_path / "y"), tmp_path / "out", year=2019)
    # --year 2025 on a 2023 layout: the 2025 files are missing
    with pytest.raises(ManifestError, match=r"no train\.csv in it.*BirdCLEF 2025 layout"):
        prepare_birdclef(tmp_path / "y", tmp_path / "out", year=2025)


# ------------------------------------------------------------------------------- manifests per year


def test_2021_focal_and_labelled_soundscapes(corpora: dict[int, Path], tmp_path: Path) -> None:
    raw = corpora[2021]
    summary, m = _prep(raw, tmp_path / "out")
    rec, clips, events = m["recordings"], m["clips"], m["events"]
    assert m["classes"] == ["acafly", "amegfi", "comyel", "savspa"]
    # the 2021 filename has no folder: the path adds the primary label's folder
    assert rec.loc["savspa-XC531828", "path"] == str(
        raw / "train_short_audio" / "savspa" / "XC531828.ogg"
    )
    focal = rec[rec["kind"] == "focal"]
    assert sorted(focal.index) == [
        "acafly-XC109605",
        "amegfi-XC100",
        "comyel-XC200",
        "savspa-XC531828",
    ]
    assert set(focal["split"]) == {"train"}
    r = rec.loc["savspa-XC531828"]
    assert (r["latitude"], r["longitude"], r["author"], r["rating"]) == (
        "25.6007",
        "-109.0504",
        "Manuel Grosselet",
        "4.5",
    )
    assert r["date"] == "2020-03-04"
    assert r["type"] == "life stage uncertain; male; song"
    assert rec.loc["amegfi-XC100", "date"] == "" and rec.loc["comyel-XC200", "date"] == ""
    # secondary labels: kept when a class, dropped and counted otherwise
    assert clips.loc["savspa-XC531828", "secondary"] == "comyel"
    assert clips.loc["acafly-XC109605", "secondary"] == "amegfi"
    assert clips.loc["amegfi-XC100", "secondary"] == ""
    assert summary["dropped_secondary"] == 1
    assert summary["dropped_secondary_labels"] == ["notaclass"]
    # labelled soundscapes: train split, site/date from the name, location from the site file
    sc = rec.loc["7019_COR_20190904"]
    assert (sc["split"], sc["kind"], sc["site"], sc["date"]) == (
        "train",
        "soundscape",
        "COR",
        "2019-09-04",
    )
    assert (sc["latitude"], sc["longitude"]) == ("10.12", "-84.51")
    assert sc["duration"] == pytest.approx(20.0)
    # seconds = END of the window: "7019_COR_10 savspa amegfi" is 5-10 s
    got = sorted(
        zip(events["recording_id"], events["label"], events["onset"], events["offset"], strict=True)
    )
    assert got == [
        ("2782_SSW_20170701", "comyel", 5.0, 10.0),
        ("7019_COR_20190904", "acafly", 15.0, 20.0),
        ("7019_COR_20190904", "amegfi", 5.0, 10.0),
        ("7019_COR_20190904", "savspa", 5.0, 10.0),
    ]
    assert set(events["kind"]) == {"tp"}
    # the visible test_soundscapes/ has no audio: an empty test split, said in the summary
    assert summary["recordings"] == {"train": 6, "test": 0, "unlabeled": 0}
    assert summary["test_audio"] == 0
    assert summary["events"] == {"train": 4, "test": 0}
    assert sorted(m["folds"]["recording_id"]) == sorted(rec.index)
    assert not (tmp_path / "out" / "scored_classes.txt").exists()
    assert (tmp_path / "out" / ".done").exists()


def test_2022_scored_birds_and_solution(corpora: dict[int, Path], tmp_path: Path) -> None:
    summary, m = _prep(corpora[2022], tmp_path / "out")
    assert m["classes"] == ["afrsil1", "akiapo", "houspa"]
    out = tmp_path / "out"
    assert (out / "scored_classes.txt").read_text() == "akiapo\nhouspa\n"
    assert summary["scored_classes"] == 2
    rec, clips = m["recordings"], m["clips"]
    # 2022+ filename holds the folder; the id is <label>-<stem>
    assert rec.loc["afrsil1-XC175522", "path"].endswith("train_audio/afrsil1/XC175522.ogg")
    assert rec.loc["afrsil1-XC175522", "date"] == ""  # 2022 has no date column
    assert clips.loc["afrsil1-XC175522", "secondary"] == "houspa"  # redava, zebdov: no classes
    assert summary["dropped_secondary"] == 2
    assert rec.loc["soundscape_453028782", "split"] == "test"
    ev = m["events"]
    got = sorted(zip(ev["label"], ev["onset"], ev["offset"], strict=True))
    assert got == [("akiapo", 0.0, 5.0), ("houspa", 5.0, 10.0)]
    assert set(ev["recording_id"]) == {"soundscape_453028782"}
    assert summary["events"] == {"train": 0, "test": 2}
    # test soundscapes are never in folds
    assert "soundscape_453028782" not in set(m["folds"]["recording_id"])


def test_2023_classes_from_sample_submission_and_solution(tmp_path: Path) -> None:
    solution = (
        "row_id,subbus1,abethr1,helgui,yetgre1\n"
        "soundscape_29201_5,0,1,0,0\n"
        "soundscape_29201_10,0,0,0,0\n"
        "soundscape_29201_15,1,0,0,1\n"
    )
    raw = corpus_2023(tmp_path / "raw", solution=solution)
    summary, m = _prep(raw, tmp_path / "out")
    # header order, not sorted, and a class without any recording kept
    assert m["classes"] == ["subbus1", "abethr1", "helgui", "yetgre1"]
    assert summary["classes_source"] == "sample_submission.csv"
    rec = m["recordings"]
    assert rec.loc["soundscape_29201", "duration"] == pytest.approx(12.0)
    ev = m["events"]
    got = sorted(zip(ev["label"], ev["onset"], ev["offset"], strict=True))
    # the 12 s file has 3 windows; the last ends at the file's end (12 s), not at 15 s
    assert got == [("abethr1", 0.0, 5.0), ("subbus1", 10.0, 12.0), ("yetgre1", 10.0, 12.0)]
    assert rec.loc["helgui-XC2", "author"] == "Tieme"
    assert rec.loc["helgui-XC2", "type"] == "call"


def test_2024_unlabeled_soundscapes(corpora: dict[int, Path], tmp_path: Path) -> None:
    summary, m = _prep(corpora[2024], tmp_path / "out")
    rec = m["recordings"]
    assert rec.loc["1000170626", "split"] == "unlabeled"
    assert rec.loc["1000170626", "kind"] == "soundscape"
    assert summary["recordings"] == {"train": 3, "test": 0, "unlabeled": 1}
    assert "1000170626" not in set(m["folds"]["recording_id"])
    assert m["classes"] == ["asbfly", "zitcis1"]


def test_2025_numeric_labels_and_empty_list_literals(
    corpora: dict[int, Path], tmp_path: Path
) -> None:
    summary, m = _prep(corpora[2025], tmp_path / "out")
    assert m["classes"] == CLASSES_2025  # "1139490" stays text, sorted before "126247"
    assert (tmp_path / "out" / "classes.txt").read_text().splitlines()[:2] == [
        "1139490",
        "126247",
    ]
    rec, clips = m["recordings"], m["clips"]
    r = rec.loc["1139490-CSA36385"]
    assert (r["collection"], r["rating"], r["type"]) == ("CSA", "0", "")  # [''] -> empty
    assert clips.loc["1139490-CSA36385", "primary"] == "1139490"
    assert clips.loc["1139490-CSA36385", "secondary"] == ""
    assert clips.loc["yercac1-XC100", "secondary"] == "126247"
    assert rec.loc["ywcpar-XC200", "latitude"] == ""  # empty field stays empty
    sc = rec.loc["H02_20230420_074000"]
    assert (sc["split"], sc["site"], sc["date"], sc["latitude"]) == (
        "unlabeled",
        "H02",
        "2023-04-20",
        "6.76",
    )
    assert summary["dropped_secondary"] == 0
    assert m["corpus"]["variant"] == "2025"


def test_2025_classes_from_taxonomy_without_sample_submission(tmp_path: Path) -> None:
    raw = corpus_2025(tmp_path / "raw", submission=False)
    summary, m = _prep(raw, tmp_path / "out")
    assert m["classes"] == CLASSES_2025  # taxonomy rows are shuffled; classes are sorted
    assert summary["classes_source"] == "taxonomy.csv"


# ------------------------------------------------------------------------------- errors


def test_missing_required_column_names_file_line_column(tmp_path: Path) -> None:
    header = HEADER_2023.replace(",filename\n", "\n")
    row = _row_2023("helgui", 1).rsplit(",", 1)[0] + "\n"
    raw = corpus_2023(tmp_path / "raw", meta=header + row * 1, rows=[("helgui", 1)])
    with pytest.raises(ManifestError, match=r"train_metadata\.csv line 1: missing column") as e:
        prepare_birdclef(raw, tmp_path / "out", year=2023, n_folds=2)
    assert e.value.column == "filename"


def test_2021_labels_missing_column(tmp_path: Path) -> None:
    labels = "row_id,site,audio_id,birds\n7019_COR_5,COR,7019,nocall\n"
    raw = corpus_2021(tmp_path / "raw", labels=labels)
    with pytest.raises(ManifestError, match=r"train_soundscape_labels\.csv line 1") as e:
        prepare_birdclef(raw, tmp_path / "out", n_folds=2)
    assert e.value.column == "seconds"


def test_malformed_list_literal_names_file_line_column(tmp_path: Path) -> None:
    rows = [("abethr1", 1), ("helgui", 2), ("subbus1", 3)]
    meta = HEADER_2023 + "".join(_row_2023(*r) for r in rows[:2])
    meta += _row_2023("subbus1", 3, secondary="\"['helgui', \"")  # unclosed list, line 4
    raw = corpus_2023(tmp_path / "raw", rows=rows, meta=meta)
    with pytest.raises(ManifestError, match=r"train_metadata\.csv line 4: secondary_labels") as e:
        prepare_birdclef(raw, tmp_path / "out", n_folds=2)
    assert (e.value.line, e.value.column) == (4, "secondary_labels")


def test_primary_label_not_in_classes(tmp_path: Path) -> None:
    rows = [*ROWS_2023, ("notinsub", 9)]
    raw = corpus_2023(tmp_path / "raw", rows=rows)
    with pytest.raises(
        ManifestError, match=r"line 6: primary_label 'notinsub' is not a class"
    ) as e:
        prepare_birdclef(raw, tmp_path / "out", n_folds=2)
    assert e.value.path.endswith("train_metadata.csv") and e.value.column == "primary_label"


def test_soundscape_label_row_for_a_missing_file(tmp_path: Path) -> None:
    raw = corpus_2021(tmp_path / "raw", labels=LABELS_2021 + "9999_COR_5,COR,9999,5,acafly\n")
    with pytest.raises(ManifestError, match=r"line 9: audio_id '9999' / site 'COR' matches no"):
        prepare_birdclef(raw, tmp_path / "out", n_folds=2)


def test_soundscape_label_window_beyond_the_file(tmp_path: Path) -> None:
    raw = corpus_2021(tmp_path / "raw", labels=LABELS_2021 + "2782_SSW_20,SSW,2782,20,comyel\n")
    with pytest.raises(ManifestError, match=r"line 9: window end 20 s .* 5, 10, \.\.\., 15") as e:
        prepare_birdclef(raw, tmp_path / "out", n_folds=2)
    assert e.value.column == "seconds"


def test_solution_row_that_names_no_test_window(tmp_path: Path) -> None:
    solution = "row_id,subbus1,abethr1,helgui,yetgre1\nsoundscape_1_5,0,1,0,0\n"
    raw = corpus_2023(tmp_path / "raw", solution=solution)
    with pytest.raises(ManifestError, match=r"solution\.csv line 2: row_id 'soundscape_1_5'") as e:
        prepare_birdclef(raw, tmp_path / "out", n_folds=2)
    assert e.value.column == "row_id"


# ------------------------------------------------------------------------------- audio problems


def test_corrupt_and_missing_audio_are_skipped_or_raise_with_strict(tmp_path: Path) -> None:
    rows = [*ROWS_2023, ("subbus1", 7)]
    raw = corpus_2023(tmp_path / "raw", rows=rows)
    bad = raw / "train_audio" / "helgui" / "XC503001.ogg"
    bad.write_bytes(b"OggS" + bytes(200))  # not decodable
    (raw / "train_audio" / "subbus1" / "XC7.ogg").unlink()
    summary, m = _prep(raw, tmp_path / "out")
    assert set(m["skipped"]["path"]) == {str(bad), str(raw / "train_audio/subbus1/XC7.ogg")}
    reasons = dict(zip(m["skipped"]["path"], m["skipped"]["reason"], strict=True))
    assert "unreadable" in reasons[str(bad)]
    assert reasons[str(raw / "train_audio/subbus1/XC7.ogg")] == "missing audio file"
    assert "helgui-XC503001" not in m["recordings"].index
    assert "helgui-XC503001" not in m["clips"].index
    assert summary["skipped_clips"] == 2 and len(m["clips"]) == 3
    with pytest.raises(ManifestError, match=r"train_metadata\.csv line 3: recording 'helgui") as e:
        prepare_birdclef(raw, tmp_path / "strict", n_folds=2, strict=True)
    assert e.value.column == "filename"


def test_solution_rows_of_a_skipped_soundscape_are_dropped(tmp_path: Path) -> None:
    raw = corpus_2022(tmp_path / "raw")
    (raw / "test_soundscapes" / "soundscape_453028782.ogg").write_bytes(b"junk")
    summary, m = _prep(raw, tmp_path / "out")
    assert summary["skipped_events"] == 4 and len(m["events"]) == 0
    assert summary["recordings"]["test"] == 0


# ------------------------------------------------------------------------------- folds


@pytest.mark.skipif(
    "groups" not in make_folds.__code__.co_varnames, reason="make_folds has no groups yet"
)
def test_fold_groups_keep_an_author_in_one_fold(tmp_path: Path) -> None:
    authors = ["Ann", "Ann", "Ann", "Bob", "Bob", "Cy", "Di", "", "Ed", "Ed"]
    labels = ["abethr1", "helgui", "subbus1", "helgui", "abethr1", "subbus1", "helgui",
              "abethr1", "subbus1", "helgui"]  # fmt: skip
    rows = [(lab, 100 + i) for i, lab in enumerate(labels)]
    meta = HEADER_2023 + "".join(
        _row_2023(lab, xc, author=a) for (lab, xc), a in zip(rows, authors, strict=True)
    )
    raw = corpus_2023(tmp_path / "raw", rows=rows, meta=meta)
    summary = prepare_birdclef(raw, tmp_path / "out", n_folds=3, fold_groups="author")
    assert summary["fold_groups"] == "author"
    recordings = read_recordings(tmp_path / "out" / "recordings.csv")
    folds = read_folds(tmp_path / "out" / "folds.csv").merge(recordings, on="recording_id")
    named = folds[folds["author"] != ""]
    assert (named.groupby("author")["fold"].nunique() == 1).all()
    assert folds["fold"].nunique() == 3
    with pytest.raises(ValueError, match="fold_groups"):
        prepare_birdclef(raw, tmp_path / "out", n_folds=3, fold_groups="country")


# ------------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "egs/birdclef/local/data_prep.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_exits_2_on_bad_input(tmp_path: Path) -> None:
    raw = corpus_2021(tmp_path / "raw", labels=LABELS_2021 + "9999_COR_5,COR,9999,5,acafly\n")
    proc = _cli("--datadir", str(raw), "--outdir", str(tmp_path / "out"), "--folds", "2")
    assert proc.returncode == 2
    assert "data_prep.py: error:" in proc.stderr
    assert "train_soundscape_labels.csv line 9" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_prints_summary(corpora: dict[int, Path], tmp_path: Path) -> None:
    proc = _cli(
        "--datadir", str(corpora[2021]), "--outdir", str(tmp_path / "out"), "--folds", "2",
        "--year", "2021", "--nj", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "BirdCLEF 2021 (given)" in proc.stdout
    assert "recordings: 6 train, 0 test, 0 unlabeled (4 focal, 2 soundscape)" in proc.stdout
    assert "events: 4 train, 0 test" in proc.stdout
    assert "test split: empty" in proc.stdout
    assert "secondary labels dropped (not classes): 1 (1 distinct: notaclass)" in proc.stdout
    assert "skipped: none" in proc.stdout


# ------------------------------------------------------------------------------- real recordings


@pytest.mark.skipif(not (REALDATA / "xc_focal").is_dir(), reason="no ../shared/realdata/xc_focal")
def test_xc_focal_real_recordings(tmp_path: Path) -> None:
    """45 real xeno-canto files (MP3 whose headers overstate the length, WAV, mixed rates) under a
    non-Kaggle 12-column header: all usable, detected as 2023."""
    raw = REALDATA / "xc_focal"
    summary, m = _prep(raw, tmp_path / "out", nj=2)
    assert summary["year"] == 2023
    assert summary["recordings"] == {"train": 45, "test": 0, "unlabeled": 0}
    assert summary["skipped"] == []
    assert len(m["classes"]) == 15 and len(m["clips"]) == 45
    rec = m["recordings"]
    assert {Path(p).suffix for p in rec["path"]} == {".mp3", ".wav"}
    assert (rec["duration"] > 1.0).all()
    assert (rec["author"] != "").all()  # from the "recordist" column
    # MP3 durations are the decoded length, what a reader of the whole file gets
    rid = "black_capped_chickadee-XC544967"
    assert rec.loc[rid, "duration"] * rec.loc[rid, "sample_rate"] == pytest.approx(
        len(sf.read(rec.loc[rid, "path"])[0])
    )


def test_2021_synthetic_test_soundscapes_with_solution(tmp_path: Path) -> None:
    """A synthetic 2021 corpus has test audio: row ids <audio_id>_<site>_<end>, birds or nocall."""
    raw = corpus_2021(tmp_path / "raw")
    _ogg(raw / "test_soundscapes" / "3575_COL_20200101.ogg", 10.0, seed=3)
    _write(raw, {"solution.csv": "row_id,birds\n3575_COL_5,nocall\n3575_COL_10,acafly savspa\n"})
    summary, m = _prep(raw, tmp_path / "out")
    assert m["recordings"].loc["3575_COL_20200101", "split"] == "test"
    assert m["recordings"].loc["3575_COL_20200101", "date"] == "2020-01-01"
    test = m["events"][m["events"]["recording_id"] == "3575_COL_20200101"]
    assert sorted(zip(test["label"], test["onset"], test["offset"], strict=True)) == [
        ("acafly", 5.0, 10.0),
        ("savspa", 5.0, 10.0),
    ]
    assert summary["events"] == {"train": 4, "test": 2} and summary["test_audio"] == 1

"""Deterministic synthetic corpus in the layout of one year of Kaggle's BirdCLEF (2021-2025).

The corpus stands in for a real BirdCLEF download in tests, demos and recipe runs. It has the
year's folders, file names and CSV columns in their documented order (see
``/work/shared/BIRDCLEF_FORMATS.md``), so the real-data reader needs no marker of ours::

    2021  train_short_audio/<label>/XC<id>.ogg   train_metadata.csv (14 columns, bare filename)
          train_soundscapes/<audio_id>_<site>_<YYYYMMDD>.ogg + train_soundscape_labels.csv
          test_soundscapes/<SITE>_recording_location.txt, test_set_recording_dates.csv and
          (synthetic only) the test files <audio_id>_<site>_<YYYYMMDD>.ogg
          test.csv (row_id,site,audio_id,seconds), sample_submission.csv (row_id,birds)
    2022  train_audio/<label>/XC<id>.ogg   train_metadata.csv (13 columns: time, no date)
          scored_birds.json   eBird_Taxonomy_v2021.csv   test_soundscapes/soundscape_<digits>.ogg
          test.csv (row_id,file_id,bird,end_time), sample_submission.csv (row_id,target)
    2023  train_audio/   train_metadata.csv (12 columns)   eBird_Taxonomy_v2021.csv
          test_soundscapes/soundscape_<digits>.ogg   sample_submission.csv (row_id,<class>...)
    2024  as 2023 plus unlabeled_soundscapes/<digits>.ogg
    2025  train_audio/<label>/<XC|iNat|CSA><id>.ogg   train.csv (13 columns, new order,
          collection; numeric iNat labels; empty lists ['']), taxonomy.csv, recording_location.txt,
          train_soundscapes/<site>_<YYYYMMDD>_<HHMMSS>.ogg (unlabelled), test_soundscapes/,
          sample_submission.csv
    all   solution.csv      the hidden labels of the test soundscapes, in the year's submission
                            format, same rows and order as sample_submission.csv
          synth_config.json the BirdclefSynthConfig that made the corpus
          .complete         written last: a corpus without it is unfinished

Sound: each species is a call family of :mod:`sed.data.synth` (its ``make_species`` /
``jitter_call`` / ``render_call`` / ``call_box``, backgrounds from its ``_background``), so every
species has a distinct, learnable call. A focal recording holds its primary species' calls from
near the start to the end, sometimes one or two quieter secondary species, over background noise.
A soundscape holds a few species' calls, placed only in its "active" 5 s windows, so some windows
are always empty (``nocall``). A window's labels are the species with a call overlapping it; a
window is named by its END second (5, 10, ...). SNRs are in-band as in :mod:`sed.data.synth`.

Determinism: every random number comes from ``np.random.default_rng([seed, ...])`` streams (one
per recording), so a config gives byte-identical CSVs and identical audio samples for any number
of workers. (The Ogg files' bytes are not: libsndfile draws a random Ogg stream serial number.)
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from sed.data.synth import (
    FAMILIES,
    Call,
    Species,
    SynthConfig,
    _background,
    _band_energy,
    _check_int,
    _pair,
    _place,
    call_box,
    jitter_call,
    make_species,
    max_call_seconds,
    render_call,
)
from sed.fileio import atomic_path, write_csv, write_json, write_text
from sed.frames import n_segments
from sed.utils.parallel import process_map

YEARS: tuple[int, ...] = (2021, 2022, 2023, 2024, 2025)
WINDOW_SECONDS = 5.0
COMPLETE_MARKER = ".complete"

_BASE_12 = (
    "primary_label",
    "secondary_labels",
    "type",
    "latitude",
    "longitude",
    "scientific_name",
    "common_name",
    "author",
    "license",
    "rating",
    "url",
    "filename",
)
METADATA_COLUMNS: dict[int, tuple[str, ...]] = {
    2021: (
        "primary_label",
        "secondary_labels",
        "type",
        "latitude",
        "longitude",
        "scientific_name",
        "common_name",
        "author",
        "date",
        "filename",
        "license",
        "rating",
        "time",
        "url",
    ),
    2022: (*_BASE_12[:10], "time", *_BASE_12[10:]),
    2023: _BASE_12,
    2024: _BASE_12,
    2025: (
        "primary_label",
        "secondary_labels",
        "type",
        "filename",
        "collection",
        "rating",
        "url",
        "latitude",
        "longitude",
        "scientific_name",
        "common_name",
        "author",
        "license",
    ),
}
"""Columns of ``train_metadata.csv`` (2021-2024) / ``train.csv`` (2025), in the files' order."""

EBIRD_TAXONOMY_COLUMNS: tuple[str, ...] = (
    "TAXON_ORDER",
    "CATEGORY",
    "SPECIES_CODE",
    "PRIMARY_COM_NAME",
    "SCI_NAME",
    "ORDER1",
    "FAMILY",
    "SPECIES_GROUP",
    "REPORT_AS",
)
TAXONOMY_2025_COLUMNS: tuple[str, ...] = (
    "primary_label",
    "inat_taxon_id",
    "scientific_name",
    "common_name",
    "class_name",
)
SOUNDSCAPE_LABEL_COLUMNS: tuple[str, ...] = ("row_id", "site", "audio_id", "seconds", "birds")
TEST_COLUMNS: dict[int, tuple[str, ...]] = {
    2021: ("row_id", "site", "audio_id", "seconds"),
    2022: ("row_id", "file_id", "bird", "end_time"),
}
"""Columns of ``test.csv`` (only 2021 and 2022 ship one)."""

# Soundscape kinds and their RNG stream ids; focal recordings use _KIND_IDS["focal"].
_KIND_IDS: dict[str, int] = {"focal": 300, "test": 301, "train": 302, "unlabeled": 303}
_STREAM_TAXA = 200
_STREAM_META = 201
_STREAM_SCAPES = 202
_STREAM_SCORED = 203

_EDGE = 0.05  # seconds kept free at both ends of a recording or an active run of windows
_GAP = 0.1  # seconds between two calls of one species in a soundscape
_PEAK = 0.9  # mixes are scaled down to this peak: Vorbis overshoots a little on decoding
_SECONDARY_DB = 10.0  # secondary species in a focal recording are this much quieter (in-band SNR)
_MAX_SPECIES = 400

_SITES_2021 = {
    "COL": ("Jardín, Department of Antioquia", "Colombia", 5.57, -75.85),
    "COR": ("Alajuela, San Ramón", "Costa Rica", 10.12, -84.51),
    "SNE": ("Sierra Nevada", "California, USA", 38.49, -119.95),
    "SSW": ("Sapsucker Woods, Ithaca", "New York, USA", 42.47, -76.45),
}
_TRAIN_SITES_2021 = ("COR", "SSW")  # the two sites of the real train_soundscapes
# Per year: (lat range, lon range) of the species' range centres.
_REGIONS: dict[int, tuple[tuple[float, float], tuple[float, float]]] = {
    2021: ((-30.0, 50.0), (-120.0, -40.0)),
    2022: ((-20.0, 40.0), (-160.0, 40.0)),
    2023: ((-30.0, 15.0), (10.0, 45.0)),
    2024: ((5.0, 50.0), (70.0, 130.0)),
    2025: ((-10.0, 12.0), (-80.0, -60.0)),
}

_ADJ = (
    "Rufous", "Spotted", "Olive", "Crested", "Scaly", "Ashy", "Golden", "Barred", "Slaty",
    "Streaked", "Tawny", "Pale", "Dusky", "Velvet", "Hooded", "Banded", "Lesser", "Greater",
    "Plain", "Cinnamon", "Chestnut", "Sooty", "Grey", "White", "Black", "Yellow", "Little",
    "Mountain", "Forest", "Marsh", "Striped", "Ruddy", "Buff", "Brown", "Red", "Blue", "Green",
    "Pied", "Wattled", "Masked",
)  # fmt: skip
_BIRD_NOUNS = (
    "Warbler", "Thrush", "Flycatcher", "Wren", "Sparrow", "Tanager", "Finch", "Dove", "Babbler",
    "Bulbul", "Sunbird", "Robin", "Shrike", "Oriole", "Cuckoo", "Owl", "Kingfisher", "Pigeon",
    "Woodpecker", "Antbird", "Vireo", "Swift", "Parrot", "Hawk", "Tinamou", "Quail", "Barbet",
    "Manakin", "Seedeater", "Nightjar",
)  # fmt: skip
_BIRD_ORDERS = ("Passeriformes", "Columbiformes", "Piciformes", "Strigiformes", "Cuculiformes")
_OTHER_NOUNS = {"Amphibia": ("Treefrog", "Rainfrog", "Toad"), "Mammalia": ("Bat", "Monkey")}
_SYLLABLES = (
    "ca", "lo", "mi", "thra", "pe", "ri", "sto", "xa", "phy", "le", "du", "ne", "go", "bar",
    "cu", "ta", "mel", "or", "si", "pha", "ro", "ven", "ti", "myr",
)  # fmt: skip
_FIRST = (
    "Ana", "Bram", "Carlos", "Dan", "Elena", "Fabio", "Grace", "Hiro", "Ines", "Jonas", "Kwame",
    "Lena", "Magnus", "Nadia", "Oscar", "Priya", "Rolf", "Sara", "Tieme", "Uma",
)  # fmt: skip
_LAST = (
    "Lane", "Piot", "Sarria", "de By", "Hellström", "Slaymaker", "Okafor", "Tanaka", "Moreau",
    "Silva", "Novak", "Rao", "Keller", "Mbeki", "Larsen",
)  # fmt: skip
_TYPES = ("call", "song", "flight call", "alarm call", "male", "female", "adult", "juvenile")
_XC_LICENSES = (
    "Creative Commons Attribution-NonCommercial-ShareAlike 4.0",
    "Creative Commons Attribution-NonCommercial-ShareAlike 3.0",
    "Creative Commons Attribution-ShareAlike 4.0",
)
_LICENSES_2025 = ("cc-by-nc-sa 4.0", "cc-by-nc 4.0", "cc-by 4.0", "cc-by-sa 4.0")


# --------------------------------------------------------------------------------------------------
# configuration


@dataclass
class BirdclefSynthConfig:
    """Parameters of the synthetic BirdCLEF corpus.

    Attributes:
        year: Layout to write: 2021, 2022, 2023, 2024 or 2025.
        n_species: Number of species (each is the primary label of some focal recordings).
        recordings_per_species: Inclusive range of focal recordings per species.
        focal_seconds: Range (uniform) of a focal recording's duration in seconds.
        secondary_prob: Probability that a focal recording has one or two secondary species.
        soundscape_seconds: Duration of every soundscape (test, train, unlabelled) in seconds.
        n_test: Number of test soundscapes (with hidden labels in solution.csv).
        n_train_soundscapes: Labelled train soundscapes (2021 only; other years have none).
        n_unlabeled: Unlabelled soundscapes (2024 unlabeled_soundscapes/, 2025
            train_soundscapes/; other years have none).
        species_per_soundscape: Inclusive range of species in a soundscape (capped at n_species).
        calls_per_species: Inclusive range of calls of one species in a soundscape.
        nocall_frac: Fraction of a soundscape's windows kept free of calls (at least one when the
            soundscape has two windows or more and the fraction is > 0).
        scored_fraction: Fraction of the species listed in scored_birds.json (2022; at least one).
        focal_snr_db: Range (uniform) of the in-band SNR in dB of a focal recording's primary
            calls (secondary calls are 10 dB quieter).
        soundscape_snr_db: Range (uniform) of the in-band SNR in dB of soundscape calls.
        sample_rate: Sample rate of the Ogg Vorbis files in Hz (real BirdCLEF: 32000).
        seed: Seed of every random draw; the same config gives the same corpus.
    """

    year: int = 2025
    n_species: int = 10
    recordings_per_species: tuple[int, int] = (6, 10)
    focal_seconds: tuple[float, float] = (4.0, 20.0)
    secondary_prob: float = 0.3
    soundscape_seconds: float = 60.0
    n_test: int = 8
    n_train_soundscapes: int = 3
    n_unlabeled: int = 2
    species_per_soundscape: tuple[int, int] = (2, 5)
    calls_per_species: tuple[int, int] = (1, 6)
    nocall_frac: float = 0.25
    scored_fraction: float = 0.5
    focal_snr_db: tuple[float, float] = (3.0, 20.0)
    soundscape_snr_db: tuple[float, float] = (-3.0, 15.0)
    sample_rate: int = 32000
    seed: int = 0

    def __post_init__(self) -> None:
        # YAML and JSON hand over lists; tuples keep the config hashable and comparable.
        self.recordings_per_species = _pair(
            self.recordings_per_species, "recordings_per_species", int
        )
        self.focal_seconds = _pair(self.focal_seconds, "focal_seconds", float)
        self.species_per_soundscape = _pair(
            self.species_per_soundscape, "species_per_soundscape", int
        )
        self.calls_per_species = _pair(self.calls_per_species, "calls_per_species", int)
        self.focal_snr_db = _pair(self.focal_snr_db, "focal_snr_db", float)
        self.soundscape_snr_db = _pair(self.soundscape_snr_db, "soundscape_snr_db", float)
        self.validate()

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: Naming the first field with a bad value.
        """
        if isinstance(self.year, bool) or self.year not in YEARS:
            raise ValueError(f"year must be one of {', '.join(map(str, YEARS))}, got {self.year!r}")
        _check_int(self.n_species, "n_species", 2)
        if self.n_species > _MAX_SPECIES:
            raise ValueError(f"n_species must be <= {_MAX_SPECIES}, got {self.n_species}")
        _check_int(self.n_test, "n_test", 1)
        _check_int(self.n_train_soundscapes, "n_train_soundscapes", 0)
        _check_int(self.n_unlabeled, "n_unlabeled", 0)
        _check_int(self.sample_rate, "sample_rate", 8000)
        _check_int(self.seed, "seed", 0)
        for name in ("recordings_per_species", "species_per_soundscape", "calls_per_species"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ValueError(f"{name} must satisfy 1 <= low <= high, got {(lo, hi)}")
        for name in ("focal_seconds", "focal_snr_db", "soundscape_snr_db"):
            lo_f, hi_f = getattr(self, name)
            if not (math.isfinite(lo_f) and math.isfinite(hi_f) and lo_f <= hi_f):
                raise ValueError(
                    f"{name} must be two finite numbers (low <= high), got {getattr(self, name)}"
                )
        for name in ("secondary_prob", "scored_fraction"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
        v = self.nocall_frac
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
            raise ValueError(f"nocall_frac must be a number in [0, 1), got {v!r}")
        s = self.soundscape_seconds
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            raise ValueError(f"soundscape_seconds must be a number of seconds, got {s!r}")
        if s < WINDOW_SECONDS:
            raise ValueError(f"soundscape_seconds must be >= {WINDOW_SECONDS}, got {s}")
        need = max_call_seconds(make_species(self.synth_config())) + 2 * _EDGE
        if self.focal_seconds[0] < need:
            raise ValueError(
                f"focal_seconds={list(self.focal_seconds)}: the shortest focal recording must "
                f"hold the longest call ({need - 2 * _EDGE:.2f} s) plus margins; need low >= "
                f"{need:.2f} s"
            )

    def synth_config(self) -> SynthConfig:
        """The :class:`SynthConfig` whose species table (``make_species``) this corpus uses
        (only its n_species, sample_rate and seed matter)."""
        return SynthConfig(
            n_species=self.n_species,
            n_train=1,
            n_test=0,
            # only checked against the longest call; our own checks are in validate()
            duration=max(float(self.focal_seconds[1]), float(self.soundscape_seconds), 10.0),
            sample_rate=self.sample_rate,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields."""
        items = dataclasses.asdict(self).items()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in items}


# --------------------------------------------------------------------------------------------------
# species names and taxonomy


@dataclass(frozen=True)
class Taxon:
    """Names of one species (index ``k`` matches ``make_species(cfg.synth_config())[k]``).

    Attributes:
        label: primary_label: an eBird-like code (``rufwar1``) or, in 2025 for non-birds, an
            iNaturalist taxon id as a string (``1139490``).
        scientific_name: Binomial name.
        common_name: English name (2025 insects: the scientific name, as in the real file).
        class_name: Aves, Amphibia, Insecta or Mammalia.
        inat_taxon_id: iNaturalist-like numeric id (a string).
        order: Taxonomic order (eBird ORDER1).
        family: eBird FAMILY text.
        group: eBird SPECIES_GROUP text.
    """

    label: str
    scientific_name: str
    common_name: str
    class_name: str
    inat_taxon_id: str
    order: str
    family: str
    group: str


def _latin(rng: np.random.Generator, endings: Sequence[str]) -> str:
    n = int(rng.integers(2, 4))
    return "".join(str(rng.choice(_SYLLABLES)) for _ in range(n)) + str(rng.choice(endings))


def make_taxa(cfg: BirdclefSynthConfig) -> list[Taxon]:
    """Species names and codes of a config (depends on year, n_species and seed).

    Bird codes follow eBird: the first three letters of the two words of the common name, with a
    digit when taken (or sometimes anyway, as ``afrsil1``). In 2025 about a third of the species
    (frog-like pulse callers first, then trills, then the others) are non-birds with numeric
    iNaturalist labels.
    """
    rng = np.random.default_rng([cfg.seed, _STREAM_TAXA])
    families = [FAMILIES[k % len(FAMILIES)] for k in range(cfg.n_species)]
    non_birds: dict[int, str] = {}
    if cfg.year == 2025:
        order = sorted(
            range(cfg.n_species), key=lambda k: (families[k] != "pulse", families[k] != "trill", k)
        )
        for k in order[: round(cfg.n_species / 3)]:
            non_birds[k] = {"pulse": "Amphibia", "trill": "Insecta"}.get(families[k], "Mammalia")
    taken_codes: set[str] = set()
    taken_names: set[str] = set()
    taken_ids: set[int] = set()
    out = []
    for k in range(cfg.n_species):
        # the same draws for every species, whatever it becomes, so names stay put across years
        genus = _latin(rng, ("a", "us", "is", "ia")).capitalize()
        epithet = _latin(rng, ("us", "a", "ensis", "i", "atus"))
        adj = str(rng.choice(_ADJ))
        bird_noun = str(rng.choice(_BIRD_NOUNS))
        u_digit = float(rng.uniform())
        bird_order = str(rng.choice(_BIRD_ORDERS))
        inat = int(rng.integers(10_000, 2_000_000))
        while inat in taken_ids:
            inat += 1
        taken_ids.add(inat)
        scientific = f"{genus} {epithet}"
        while scientific in taken_names:
            scientific += "a"
        taken_names.add(scientific)
        cls = non_birds.get(k, "Aves")
        if cls == "Aves":
            common = f"{adj} {bird_noun}"
            base = (adj[:3] + bird_noun[:3]).lower()
            digit = 1 if u_digit < 0.25 else 0
            code = base + (str(digit) if digit else "")
            while code in taken_codes:
                digit += 1
                code = f"{base}{digit}"
            label, order, group = code, bird_order, f"{bird_noun}s"
        else:
            nouns = _OTHER_NOUNS.get(cls)
            common = f"{adj} {nouns[k % len(nouns)]}" if nouns else scientific
            label = str(inat)
            order = {"Amphibia": "Anura", "Insecta": "Orthoptera"}.get(cls, "Chiroptera")
            group = cls
        taken_codes.add(label)
        family = f"{genus}idae ({group})"
        out.append(Taxon(label, scientific, common, cls, str(inat), order, family, group))
    return out


# --------------------------------------------------------------------------------------------------
# the corpus plan (everything but the audio; drawn in the main process)


@dataclass(frozen=True)
class FocalPlan:
    """One focal (train) recording.

    Attributes:
        index: Index among the corpus's focal recordings (selects its RNG stream).
        species: Index of the primary species.
        secondary: Indices of the secondary species (sorted by label).
        n_samples: Length in samples.
        relpath: Path of the Ogg file relative to the corpus root.
        row: Its metadata row (column -> text), in the year's columns.
    """

    index: int
    species: int
    secondary: tuple[int, ...]
    n_samples: int
    relpath: str
    row: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SoundscapePlan:
    """One soundscape.

    Attributes:
        kind: "test", "train" (2021 labelled) or "unlabeled".
        index: Index within its kind (selects its RNG stream).
        stem: File name without ``.ogg``.
        relpath: Path of the Ogg file relative to the corpus root.
        n_samples: Length in samples.
        site: Recording site (2021 and 2025 train soundscapes; "" otherwise).
        audio_id: 2021 audio id ("" otherwise).
    """

    kind: str
    index: int
    stem: str
    relpath: str
    n_samples: int
    site: str = ""
    audio_id: str = ""


@dataclass(frozen=True)
class CorpusPlan:
    """Everything :func:`generate` writes except the audio samples."""

    taxa: tuple[Taxon, ...]
    focal: tuple[FocalPlan, ...]
    soundscapes: tuple[SoundscapePlan, ...]
    scored: tuple[str, ...]  # 2022: the scored labels (sorted); other years: empty


def _list_text(items: Sequence[str], empty: str = "[]") -> str:
    """A Python-list string as in the Kaggle CSVs (``['a', 'b']``; pandas quotes it if needed)."""
    return str(list(items)) if items else empty


def _unique_ints(rng: np.random.Generator, lo: int, hi: int, n: int, taken: set[int]) -> list[int]:
    out: list[int] = []
    while len(out) < n:
        v = int(rng.integers(lo, hi))
        if v not in taken:
            taken.add(v)
            out.append(v)
    return out


def _plan_focal(cfg: BirdclefSynthConfig, taxa: Sequence[Taxon]) -> list[FocalPlan]:
    rng = np.random.default_rng([cfg.seed, _STREAM_META])
    (lat_a, lat_b), (lon_a, lon_b) = _REGIONS[cfg.year]
    # per species: range centre, spread, peak month, usual call types, authors
    centres = [(rng.uniform(lat_a, lat_b), rng.uniform(lon_a, lon_b)) for _ in taxa]
    spreads = rng.uniform(0.5, 4.0, size=len(taxa))
    peaks = rng.integers(1, 13, size=len(taxa))
    usual_types = [
        sorted({str(t) for t in rng.choice(_TYPES[:4], size=2, replace=True)}) for _ in taxa
    ]
    counts = rng.integers(
        cfg.recordings_per_species[0], cfg.recordings_per_species[1] + 1, size=len(taxa)
    )
    taken_ids: set[int] = set()
    focal: list[FocalPlan] = []
    ratings = np.arange(0.0, 5.01, 0.5)
    rating_p = np.array([4, 0, 0, 1, 1, 2, 4, 6, 8, 10, 12], dtype=float)
    rating_p /= rating_p.sum()
    for k, taxon in enumerate(taxa):
        for _ in range(int(counts[k])):
            seconds = float(rng.uniform(*cfg.focal_seconds))
            n_sec = 0
            if rng.uniform() < cfg.secondary_prob:
                n_sec = 1 if rng.uniform() < 0.7 else 2
            others = [j for j in range(len(taxa)) if j != k]
            sec = [int(j) for j in rng.choice(others, size=min(n_sec, len(others)), replace=False)]
            sec.sort(key=lambda j: taxa[j].label)
            lat = np.clip(centres[k][0] + spreads[k] * rng.standard_normal(), -89.9, 89.9)
            lon = np.clip(centres[k][1] + spreads[k] * rng.standard_normal(), -179.9, 179.9)
            month = (int(peaks[k]) - 1 + round(1.2 * rng.standard_normal())) % 12 + 1
            date = f"{int(rng.integers(2005, 2021))}-{month:02d}-{int(rng.integers(1, 29)):02d}"
            hour = int(np.clip(round(rng.normal(7.5, 2.5)), 0, 23))
            clock = f"{hour:02d}:{int(rng.choice([0, 15, 30, 45, int(rng.integers(60))])):02d}"
            types = list(usual_types[k])
            if rng.uniform() < 0.3:
                types = sorted(set(types) | {str(rng.choice(_TYPES[4:]))})
            author = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
            rating = float(rng.choice(ratings, p=rating_p))
            lic = int(rng.integers(len(_XC_LICENSES)))
            u_coll = float(rng.uniform())
            # ids: XC 6 digits, iNat 6-9 digits, CSA 4-5 digits (as in the real file names)
            collection = "XC"
            if cfg.year == 2025:
                if taxon.class_name == "Aves":
                    collection = "XC" if u_coll < 0.8 else "iNat"
                else:
                    collection = "XC" if u_coll < 0.2 else ("iNat" if u_coll < 0.6 else "CSA")
            span = {"XC": (100_000, 1_000_000), "iNat": (100_000, 999_999_999),
                    "CSA": (1_000, 99_999)}[collection]  # fmt: skip
            rid = _unique_ints(rng, *span, 1, taken_ids)[0]
            fname = f"{collection}{rid}.ogg"
            folder = "train_short_audio" if cfg.year == 2021 else "train_audio"
            values: dict[str, str] = {
                "primary_label": taxon.label,
                "secondary_labels": _list_text([taxa[j].label for j in sec]),
                "type": _list_text(types),
                # as pandas writes a float column: 4 decimals, no trailing zeros
                "latitude": repr(round(float(lat), 4)),
                "longitude": repr(round(float(lon), 4)),
                "scientific_name": taxon.scientific_name,
                "common_name": taxon.common_name,
                "author": author,
                "date": date,
                "filename": fname if cfg.year == 2021 else f"{taxon.label}/{fname}",
                "license": _XC_LICENSES[lic],
                "rating": f"{rating:.1f}",
                "time": clock,
                "url": f"https://www.xeno-canto.org/{rid}",
            }
            if cfg.year == 2025:
                values["collection"] = collection
                values["license"] = _LICENSES_2025[lic % len(_LICENSES_2025)]
                # real train.csv: empty lists are [''] and CSA/iNat carry no rating or type
                values["secondary_labels"] = _list_text([taxa[j].label for j in sec], "['']")
                values["rating"] = f"{rating:g}" if collection == "XC" else "0"
                if collection != "XC":
                    values["type"] = "['']"
                if collection == "iNat":
                    values["url"] = f"https://www.inaturalist.org/observations/{rid}"
                elif collection == "CSA":
                    csa = f"IAvH-CSA-{rid}"
                    values["url"] = (
                        f"http://colecciones.humboldt.org.co/rec/sonidos/{csa}/{csa}.mp3"
                    )
            row = tuple((c, values[c]) for c in METADATA_COLUMNS[cfg.year])
            focal.append(
                FocalPlan(
                    index=len(focal),
                    species=k,
                    secondary=tuple(sec),
                    n_samples=round(seconds * cfg.sample_rate),
                    relpath=f"{folder}/{taxon.label}/{fname}",
                    row=row,
                )
            )
    return focal


def _plan_soundscapes(cfg: BirdclefSynthConfig) -> list[SoundscapePlan]:
    rng = np.random.default_rng([cfg.seed, _STREAM_SCAPES])
    n = round(cfg.soundscape_seconds * cfg.sample_rate)
    out: list[SoundscapePlan] = []
    taken: set[int] = set()
    if cfg.year == 2021:
        # <audio_id>_<site>_<YYYYMMDD>: ids of 4-5 digits, unique over train and test
        for kind, count, sites in (
            ("train", cfg.n_train_soundscapes, _TRAIN_SITES_2021),
            ("test", cfg.n_test, tuple(_SITES_2021)),
        ):
            ids = _unique_ints(rng, 1000, 60000, count, taken)
            for i, audio_id in enumerate(ids):
                site = str(rng.choice(sites))
                day = np.datetime64("2017-01-01") + int(rng.integers(0, 4 * 365))
                stem = f"{audio_id}_{site}_{str(day).replace('-', '')}"
                folder = "train_soundscapes" if kind == "train" else "test_soundscapes"
                out.append(SoundscapePlan(kind, i, stem, f"{folder}/{stem}.ogg", n, site,
                                          str(audio_id)))  # fmt: skip
        return out
    for i, v in enumerate(_unique_ints(rng, 10_000, 1_000_000_000, cfg.n_test, taken)):
        stem = f"soundscape_{v}"
        out.append(SoundscapePlan("test", i, stem, f"test_soundscapes/{stem}.ogg", n))
    if cfg.year == 2024:
        for i, v in enumerate(
            _unique_ints(rng, 1_000_000_000, 10_000_000_000, cfg.n_unlabeled, taken)
        ):
            stem = str(v)
            out.append(SoundscapePlan("unlabeled", i, stem, f"unlabeled_soundscapes/{stem}.ogg", n))
    elif cfg.year == 2025:
        stems: set[str] = set()
        while len(stems) < cfg.n_unlabeled:
            site = f"{rng.choice(list('HPU'))}{int(rng.integers(1, 25)):02d}"
            day = np.datetime64("2023-01-01") + int(rng.integers(0, 2 * 365))
            clock = f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 6)) * 10:02d}00"
            stem = f"{site}_{str(day).replace('-', '')}_{clock}"
            if stem not in stems:
                stems.add(stem)
                i = len(stems) - 1
                out.append(
                    SoundscapePlan("unlabeled", i, stem, f"train_soundscapes/{stem}.ogg", n, site)
                )
    return out


def plan_corpus(cfg: BirdclefSynthConfig) -> CorpusPlan:
    """The names, metadata and recording list of the corpus of ``cfg`` (no audio)."""
    cfg.validate()
    taxa = make_taxa(cfg)
    scored: tuple[str, ...] = ()
    if cfg.year == 2022:
        rng = np.random.default_rng([cfg.seed, _STREAM_SCORED])
        m = max(1, round(cfg.scored_fraction * cfg.n_species))
        pick = rng.choice(cfg.n_species, size=m, replace=False)
        scored = tuple(sorted(taxa[int(j)].label for j in pick))
    return CorpusPlan(tuple(taxa), tuple(_plan_focal(cfg, taxa)),
                      tuple(_plan_soundscapes(cfg)), scored)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# audio


PlacedCall = tuple[int, int, int]
"""(species index, first sample, end sample (exclusive)) of a call in a recording."""


def n_windows(duration: float) -> int:
    """Number of 5 s windows of a soundscape: ``max(1, ceil((duration - 0.25) / 5))``."""
    return n_segments(duration, WINDOW_SECONDS)


def window_bounds(n_samples: int, sample_rate: int) -> list[tuple[int, int]]:
    """Sample range ``[a, b)`` of each window; the last one runs to the end of the recording."""
    n_win = n_windows(n_samples / sample_rate)
    win = round(WINDOW_SECONDS * sample_rate)
    bounds = [(i * win, (i + 1) * win) for i in range(n_win)]
    bounds[-1] = (bounds[-1][0], n_samples)
    return bounds


def window_labels(calls: Sequence[PlacedCall], n_samples: int, sample_rate: int) -> list[set[int]]:
    """Species indices with a call overlapping each window (the window's labels)."""
    return [
        {k for k, s, e in calls if s < b and e > a}
        for a, b in window_bounds(n_samples, sample_rate)
    ]


def _add_call(
    mix: np.ndarray,
    bg: np.ndarray,
    y: np.ndarray,
    s: int,
    call: Call,
    sr: int,
    snr_db: float,
) -> None:
    """Mix ``y`` (the rendered ``call``) at sample ``s`` with the in-band SNR ``snr_db`` against
    ``bg``, as synth.py does."""
    f_min, f_max = call_box(call, sr)
    e_bg = _band_energy(bg[s : s + y.size], sr, f_min, f_max)
    mix[s : s + y.size] += math.sqrt(10.0 ** (snr_db / 10.0) * e_bg / float(np.sum(y**2))) * y


def _noise(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """synth.py's background (n,) at a random level. Made at the next FFT-friendly length and
    cut: focal lengths are arbitrary, and an FFT of a length with a large prime factor is slow."""
    from scipy.fft import next_fast_len

    bg = _background(rng, next_fast_len(n, real=True), sr)[:n]
    return bg * 10.0 ** (rng.uniform(-42.0, -28.0) / 20.0)


def _rendition(sp: Species, rng: np.random.Generator) -> Call:
    nominal = sp.songtype4 if sp.songtype4 is not None and rng.uniform() < 0.35 else sp.call
    return jitter_call(nominal, rng)


def _finish(mix: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(mix)))
    return mix * (_PEAK / peak) if peak > _PEAK else mix


def synthesize_focal(
    cfg: BirdclefSynthConfig,
    species: Sequence[Species],
    plan: FocalPlan,
    background: bool = True,
) -> tuple[np.ndarray, list[PlacedCall]]:
    """One focal recording: the primary species' calls from near the start to the end, the
    secondary species' (fewer, quieter) calls, background noise.

    Args:
        cfg: The corpus configuration.
        species: ``make_species(cfg.synth_config())``.
        plan: The recording's plan (:func:`plan_corpus`).
        background: False gives the same calls at the same gains alone.

    Returns:
        ``(audio, calls)``: float64 mono samples (n_samples,) and the placed calls.
    """
    sr, n = cfg.sample_rate, plan.n_samples
    rng = np.random.default_rng([cfg.seed, _KIND_IDS["focal"], plan.index])
    bg = _noise(rng, n, sr)
    mix = bg.copy() if background else np.zeros(n)
    edge = round(_EDGE * sr)
    base_snr = rng.uniform(*cfg.focal_snr_db)
    calls: list[PlacedCall] = []
    sp = species[plan.species]
    # the first call within 0.5 s of the start, as real focal recordings usually have; then
    # calls with gaps of 0.2-2 s until the end (validate() makes room for the first one)
    s = -1
    while True:
        call = _rendition(sp, rng)
        y = render_call(call, sr)
        if s < 0:
            s = edge + int(rng.integers(0, max(0, min(round(0.5 * sr), n - 2 * edge - y.size)) + 1))
        if s + y.size > n - edge:
            break
        snr = float(np.clip(base_snr + rng.uniform(-3.0, 3.0), *cfg.focal_snr_db))
        _add_call(mix, bg, y, s, call, sr, snr)
        calls.append((plan.species, s, s + y.size))
        s += y.size + round(rng.uniform(0.2, 2.0) * sr)
    for k in plan.secondary:
        taken: list[tuple[int, int]] = []
        for _ in range(int(rng.integers(1, 4))):
            call = _rendition(species[k], rng)
            y = render_call(call, sr)
            s2 = _place(rng, n, y.size, sr, taken)
            snr = float(rng.uniform(*cfg.focal_snr_db)) - _SECONDARY_DB
            if s2 is None:
                continue
            taken.append((s2, s2 + y.size))
            _add_call(mix, bg, y, s2, call, sr, snr)
            calls.append((k, s2, s2 + y.size))
    return _finish(mix), calls


def _active_runs(bounds: Sequence[tuple[int, int]], silent: set[int]) -> list[tuple[int, int]]:
    """Sample ranges of the runs of consecutive active (not silent) windows."""
    runs: list[tuple[int, int]] = []
    for i, (a, b) in enumerate(bounds):
        if i in silent:
            continue
        if runs and runs[-1][1] == a:  # window i - 1 is active: extend its run
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    return runs


def synthesize_soundscape(
    cfg: BirdclefSynthConfig,
    species: Sequence[Species],
    plan: SoundscapePlan,
    background: bool = True,
) -> tuple[np.ndarray, list[PlacedCall]]:
    """One soundscape: a few species' calls placed in its active windows only.

    A call starts in a random active window and may run into the next window only when that one
    is active too, so silent windows hold background only (labels ``nocall``).

    Args:
        cfg: The corpus configuration.
        species: ``make_species(cfg.synth_config())``.
        plan: The soundscape's plan (:func:`plan_corpus`).
        background: False gives the same calls at the same gains alone.

    Returns:
        ``(audio, calls)``: float64 mono samples (n_samples,) and the placed calls.
    """
    sr, n = cfg.sample_rate, plan.n_samples
    rng = np.random.default_rng([cfg.seed, _KIND_IDS[plan.kind], plan.index])
    bg = _noise(rng, n, sr)
    mix = bg.copy() if background else np.zeros(n)
    bounds = window_bounds(n, sr)
    n_win = len(bounds)
    n_silent = 0
    if n_win >= 2 and cfg.nocall_frac > 0:
        n_silent = min(n_win - 1, max(1, round(cfg.nocall_frac * n_win)))
    silent = {int(i) for i in rng.choice(n_win, size=n_silent, replace=False)}
    active = [i for i in range(n_win) if i not in silent]
    runs = _active_runs(bounds, silent)
    edge, gap = round(_EDGE * sr), round(_GAP * sr)

    weights = np.array([sp.weight for sp in species])
    lo, hi = cfg.species_per_soundscape
    n_sp = int(rng.integers(min(lo, len(species)), min(hi, len(species)) + 1))
    chosen = sorted(int(c) for c in rng.choice(len(species), n_sp, replace=False,
                                               p=weights / weights.sum()))  # fmt: skip
    calls: list[PlacedCall] = []
    for k in chosen:
        taken: list[tuple[int, int]] = []
        for _ in range(int(rng.integers(cfg.calls_per_species[0], cfg.calls_per_species[1] + 1))):
            call = _rendition(species[k], rng)
            y = render_call(call, sr)
            snr = float(rng.uniform(*cfg.soundscape_snr_db))
            for _try in range(30):
                w = active[int(rng.integers(len(active)))]
                a, b = bounds[w]
                run = next(r for r in runs if r[0] <= a < r[1])
                s = int(rng.integers(a + edge, max(a + edge, b - edge) + 1))
                s = min(s, run[1] - edge - y.size)  # end inside the run of active windows
                if s < run[0] + edge:
                    continue
                if all(s + y.size + gap <= p or s >= q + gap for p, q in taken):
                    break
            else:
                continue  # crowded: no room away from the species' other calls
            taken.append((s, s + y.size))
            _add_call(mix, bg, y, s, call, sr, snr)
            calls.append((k, s, s + y.size))
    calls.sort(key=lambda c: (c[1], c[0]))
    return _finish(mix), calls


# --------------------------------------------------------------------------------------------------
# jobs (one per recording; results come back in job order whatever the number of workers)


@dataclass(frozen=True)
class _Context:
    cfg: BirdclefSynthConfig
    species: tuple[Species, ...]
    outdir: Path


def _run_job(ctx: _Context, job: FocalPlan | SoundscapePlan) -> list[PlacedCall]:
    if isinstance(job, FocalPlan):
        audio, calls = synthesize_focal(ctx.cfg, ctx.species, job)
    else:
        audio, calls = synthesize_soundscape(ctx.cfg, ctx.species, job)
    with atomic_path(ctx.outdir / job.relpath) as tmp:
        sf.write(tmp, audio, ctx.cfg.sample_rate, format="OGG", subtype="VORBIS")
    return calls


# --------------------------------------------------------------------------------------------------
# tables


def row_id(year: int, plan: SoundscapePlan, end: int, bird: str = "") -> str:
    """The Kaggle row id of a soundscape window ending at second ``end``."""
    if year == 2021:
        return f"{plan.audio_id}_{plan.site}_{end}"
    if year == 2022:
        return f"{plan.stem}_{bird}_{end}"
    return f"{plan.stem}_{end}"


def _submission_tables(
    cfg: BirdclefSynthConfig,
    plan: CorpusPlan,
    labels: dict[str, list[set[int]]],
) -> dict[str, pd.DataFrame]:
    """sample_submission.csv, solution.csv and (2021/2022) test.csv of the test soundscapes:
    files sorted by stem, windows ascending, 2022 scored birds in scored_birds.json order."""
    year = cfg.year
    codes = [t.label for t in plan.taxa]
    classes = sorted(codes)
    tests = sorted((p for p in plan.soundscapes if p.kind == "test"), key=lambda p: p.stem)
    sample: list[tuple] = []
    solution: list[tuple] = []
    test: list[tuple] = []
    for p in tests:
        for w, present in enumerate(labels[p.stem]):
            end = int((w + 1) * WINDOW_SECONDS)
            names = {codes[k] for k in present}
            if year == 2022:
                for bird in plan.scored:
                    rid = row_id(year, p, end, bird)
                    sample.append((rid, "False"))
                    solution.append((rid, str(bird in names)))
                    test.append((rid, p.stem, bird, str(end)))
                continue
            rid = row_id(year, p, end)
            if year == 2021:
                sample.append((rid, "nocall"))
                solution.append((rid, " ".join(sorted(names)) or "nocall"))
                test.append((rid, p.site, p.audio_id, str(end)))
            else:
                sample.append((rid, *(["0"] * len(classes))))
                solution.append((rid, *("1" if c in names else "0" for c in classes)))
    sub_cols = {2021: ["row_id", "birds"], 2022: ["row_id", "target"]}.get(
        year, ["row_id", *classes]
    )
    out = {
        "sample_submission.csv": pd.DataFrame(sample, columns=sub_cols, dtype=str),
        "solution.csv": pd.DataFrame(solution, columns=sub_cols, dtype=str),
    }
    if year in TEST_COLUMNS:
        out["test.csv"] = pd.DataFrame(test, columns=list(TEST_COLUMNS[year]), dtype=str)
    return out


def _metadata_table(cfg: BirdclefSynthConfig, plan: CorpusPlan) -> pd.DataFrame:
    rows = sorted((dict(f.row) for f in plan.focal),
                  key=lambda r: (r["primary_label"], r["filename"]))  # fmt: skip
    return pd.DataFrame(rows, columns=list(METADATA_COLUMNS[cfg.year]), dtype=str)


def _ebird_taxonomy(cfg: BirdclefSynthConfig, plan: CorpusPlan) -> pd.DataFrame:
    """Our species plus a few that no recording has and a 'slash' entry, as in the real file
    (which lists every bird of the world, far more than the classes)."""
    rng = np.random.default_rng([cfg.seed, _STREAM_TAXA, 1])
    rows = [
        ["species", t.label, t.common_name, t.scientific_name, t.order, t.family, t.group, ""]
        for t in plan.taxa
    ]
    codes = {t.label for t in plan.taxa}
    for i in range(3):
        genus = _latin(rng, ("a", "us")).capitalize()
        adj, noun = str(rng.choice(_ADJ)), str(rng.choice(_BIRD_NOUNS))
        code = (adj[:3] + noun[:3]).lower() + "9"
        if code in codes:
            code += str(i)
        rows.append(["species", code, f"{adj} {noun}", f"{genus} {_latin(rng, ('us',))}",
                     _BIRD_ORDERS[0], f"{genus}idae ({noun}s)", f"{noun}s", ""])  # fmt: skip
    a, b = rows[0], rows[1]
    rows.append(["slash", "y00001", f"{a[2]}/{b[2]}", f"{a[3]}/{b[3]}", a[4], a[5], a[6], ""])
    order = np.sort(_unique_ints(rng, 1, 40_000, len(rows), set()))
    perm = rng.permutation(len(rows))
    data = [[str(order[i]), *rows[j]] for i, j in enumerate(perm)]
    return pd.DataFrame(data, columns=list(EBIRD_TAXONOMY_COLUMNS), dtype=str)


def _location_text(place: str, country: str, lat: float, lon: float) -> str:
    return f"{place}\n{country}\nLatitude: {lat}\nLongitude: {lon}\n"


# --------------------------------------------------------------------------------------------------
# corpus

# Every top-level entry any year writes: a folder marked as ours (synth_config.json) loses these
# before a new corpus is written, so a corpus of another year or size leaves nothing behind that
# a reader would take for part of the new one (a stale train_short_audio/ means "2021").
_OWN_ENTRIES = (
    "train_short_audio",
    "train_audio",
    "train_soundscapes",
    "test_soundscapes",
    "unlabeled_soundscapes",
    "train_metadata.csv",
    "train.csv",
    "train_soundscape_labels.csv",
    "test.csv",
    "sample_submission.csv",
    "solution.csv",
    "scored_birds.json",
    "eBird_Taxonomy_v2021.csv",
    "taxonomy.csv",
    "recording_location.txt",
)


def _prepare_outdir(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / COMPLETE_MARKER).unlink(missing_ok=True)
    ours = (outdir / "synth_config.json").is_file()
    present = [p for p in outdir.iterdir() if not p.name.startswith(".")]
    if not ours and present:
        names = ", ".join(sorted(p.name for p in present)[:5])
        raise ValueError(
            f"{outdir} is not empty and holds no synth_config.json of this generator "
            f"({names}); generate into an empty or new folder"
        )
    for name in _OWN_ENTRIES:
        p = outdir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def generate(
    outdir: str | Path, cfg: BirdclefSynthConfig, nj: int = 1, progress: bool = True
) -> Path:
    """Write the synthetic corpus of ``cfg`` in the layout of BirdCLEF ``cfg.year`` into ``outdir``.

    ``outdir`` must be empty, new, or an earlier corpus of this generator (then its files are
    replaced). ``synth_config.json`` is written first (it marks the folder as ours, also after an
    interrupted run) and ``.complete`` last.

    Args:
        outdir: Output folder (created).
        cfg: The corpus configuration.
        nj: Number of worker processes; the output does not depend on it.
        progress: Show a progress bar on stderr.

    Returns:
        ``outdir`` as a Path.

    Raises:
        ValueError: On a bad ``nj`` or an ``outdir`` holding other files.
    """
    cfg.validate()
    if isinstance(nj, bool) or not isinstance(nj, int) or nj < 1:
        raise ValueError(f"nj must be an integer >= 1, got {nj!r}")
    outdir = Path(outdir)
    start = time.time()
    _prepare_outdir(outdir)
    write_json(outdir / "synth_config.json", cfg.to_dict())

    plan = plan_corpus(cfg)
    species = tuple(make_species(cfg.synth_config()))
    year, sr = cfg.year, cfg.sample_rate
    (outdir / "test_soundscapes").mkdir()
    jobs: list[FocalPlan | SoundscapePlan] = [*plan.focal, *plan.soundscapes]
    labels: dict[str, list[set[int]]] = {}
    ctx = _Context(cfg, species, outdir)
    for job, calls in zip(
        jobs, process_map(_run_job, ctx, jobs, nj, "birdclef synth", progress), strict=True
    ):
        if isinstance(job, SoundscapePlan) and job.kind != "unlabeled":
            labels[job.stem] = window_labels(calls, job.n_samples, sr)

    meta_name = "train.csv" if year == 2025 else "train_metadata.csv"
    write_csv(outdir / meta_name, _metadata_table(cfg, plan))
    for name, table in _submission_tables(cfg, plan, labels).items():
        write_csv(outdir / name, table)
    codes = [t.label for t in plan.taxa]
    if year == 2021:
        rows = []
        trains = sorted((p for p in plan.soundscapes if p.kind == "train"), key=lambda p: p.stem)
        for p in trains:
            for w, present in enumerate(labels[p.stem]):
                end = int((w + 1) * WINDOW_SECONDS)
                birds = " ".join(sorted(codes[k] for k in present)) or "nocall"
                rows.append((row_id(year, p, end), p.site, p.audio_id, str(end), birds))
        write_csv(
            outdir / "train_soundscape_labels.csv",
            pd.DataFrame(rows, columns=list(SOUNDSCAPE_LABEL_COLUMNS), dtype=str),
        )
        for site, (place, country, lat, lon) in _SITES_2021.items():
            write_text(
                outdir / "test_soundscapes" / f"{site}_recording_location.txt",
                _location_text(place, country, lat, lon),
            )
        tests = sorted((p for p in plan.soundscapes if p.kind == "test"), key=lambda p: p.stem)
        dates = [(p.site, p.stem.rsplit("_", 1)[1]) for p in tests]
        write_csv(
            outdir / "test_soundscapes" / "test_set_recording_dates.csv",
            pd.DataFrame(dates, columns=["site", "date"], dtype=str),
        )
    if year in (2022, 2023, 2024):
        write_csv(outdir / "eBird_Taxonomy_v2021.csv", _ebird_taxonomy(cfg, plan))
    if year == 2022:
        write_json(outdir / "scored_birds.json", list(plan.scored))
    if year == 2025:
        tax = [
            (t.label, t.inat_taxon_id, t.scientific_name, t.common_name, t.class_name)
            for t in sorted(plan.taxa, key=lambda t: t.label)
        ]
        write_csv(
            outdir / "taxonomy.csv",
            pd.DataFrame(tax, columns=list(TAXONOMY_2025_COLUMNS), dtype=str),
        )
        write_text(
            outdir / "recording_location.txt",
            'Nature reserve "El Silencio" in the municipality of Yondó, Antioquia, Colombia\n'
            "(synthetic corpus: sed.data.birdclef_synth)\n"
            "Latitude: 6.76\nLongitude: -74.21\n",
        )
    summary = {
        "year": year,
        "n_species": cfg.n_species,
        "n_focal": len(plan.focal),
        "n_soundscapes": len(plan.soundscapes),
        "n_test_windows": sum(len(v) for k, v in labels.items() if k in _test_stems(plan)),
        "seconds": round(time.time() - start, 1),
    }
    write_text(outdir / COMPLETE_MARKER, json.dumps(summary) + "\n")
    return outdir


def _test_stems(plan: CorpusPlan) -> set[str]:
    return {p.stem for p in plan.soundscapes if p.kind == "test"}


def is_complete(outdir: str | Path) -> bool:
    """True when ``outdir`` holds a finished corpus (its ``.complete`` marker exists)."""
    return (Path(outdir) / COMPLETE_MARKER).is_file()

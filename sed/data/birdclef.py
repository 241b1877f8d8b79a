"""Stage 0 of the birdclef recipe: a Kaggle BirdCLEF download (2021-2025, or a synthetic corpus in
the same layout) -> the manifests of DESIGN §4.

Input layouts (``datadir``; /work/shared/BIRDCLEF_FORMATS.md has the sources)::

    2021  train_short_audio/<label>/XC<id>.ogg   train_metadata.csv (filename WITHOUT folder)
          train_soundscapes/<audio_id>_<site>_<YYYYMMDD>.ogg + train_soundscape_labels.csv
          test_soundscapes/ (visible download: no audio, only <SITE>_recording_location.txt)
    2022  train_audio/<label>/XC<id>.ogg   train_metadata.csv   scored_birds.json
          test_soundscapes/soundscape_<digits>.ogg
    2023  train_audio/   train_metadata.csv (12 columns)   test_soundscapes/   sample_submission.csv
    2024  as 2023 + unlabeled_soundscapes/<digits>.ogg
    2025  train_audio/<label>/<collection><id>.ogg   train.csv   taxonomy.csv
          recording_location.txt
          train_soundscapes/<site>_<YYYYMMDD>_<HHMMSS>.ogg (unlabelled)   test_soundscapes/
    any   solution.csv (optional; a synthetic corpus's hidden test labels in the submission format)

Every CSV is read by column name with every field as text (2025 labels such as ``1139490`` stay
strings). Output (``outdir``): ``recordings.csv`` (with the metadata columns of
:data:`EXTRA_COLUMNS`), ``clips.csv``, ``events.csv``, ``classes.txt``, ``folds.csv``,
``skipped.csv``, ``scored_classes.txt`` (2022), ``corpus.json`` and, last, the ``.done`` marker.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import datetime
import functools
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sed.data.corpus_info import CORPUS_INFO_FILE
from sed.data.folds import geo_temporal_groups, make_folds
from sed.data.manifest import (
    Column,
    ManifestError,
    read_table,
    write_classes,
    write_clips,
    write_events,
    write_folds,
    write_recordings,
)
from sed.data.probe import AudioProbe, probe_all
from sed.fileio import write_csv, write_json, write_text
from sed.frames import n_segments

__all__ = [
    "AUDIO_SUFFIXES",
    "DONE_MARKER",
    "EXTRA_COLUMNS",
    "FOLD_GROUPS",
    "GEO_DEFAULTS",
    "SEGMENT_SECONDS",
    "YEARS",
    "birdclef_folds",
    "detect_year",
    "prepare_birdclef",
]

logger = logging.getLogger(__name__)

YEARS = (2021, 2022, 2023, 2024, 2025)
#: Length of the scored windows; row ids name a window by its END second (5, 10, ...).
SEGMENT_SECONDS = 5.0
#: Containers taken as audio in the soundscape folders (focal files are named by the metadata).
AUDIO_SUFFIXES = (".ogg", ".flac", ".wav", ".mp3", ".opus")
#: Metadata columns of recordings.csv after the contract columns ("" when unknown).
EXTRA_COLUMNS = (
    "kind",
    "site",
    "latitude",
    "longitude",
    "date",
    "rating",
    "author",
    "collection",
    "url",
    "type",
)
#: Values of ``fold_groups``: recordings sharing one keep to one fold (``geo_temporal``: one
#: grid cell in one season, where such a block is dense; see sed.data.folds.geo_temporal_groups).
FOLD_GROUPS = ("author", "site", "geo_temporal")
#: Default block of ``fold_groups: geo_temporal``: 5 degree cells (~550 km), meteorological
#: seasons, and a block kept together from 5 recordings (fewer: stratified one by one).
GEO_DEFAULTS: dict[str, Any] = {"cell_degrees": 5.0, "season_months": 3, "min_block": 5}
DONE_MARKER = ".done"

_LAYOUT_HELP = (
    "pass --datadir the unpacked Kaggle BirdCLEF download (e.g. birdclef-2024/, holding "
    "train_metadata.csv and train_audio/; 2021: train_short_audio/; 2025: train.csv and "
    "taxonomy.csv) or a synthetic corpus in that layout"
)
# Optional focal metadata column -> names it may have, first found wins (a non-Kaggle export
# such as xeno-canto's calls the author "recordist").
_META_COLUMNS: dict[str, tuple[str, ...]] = {
    "latitude": ("latitude",),
    "longitude": ("longitude",),
    "date": ("date",),
    "rating": ("rating",),
    "author": ("author", "recordist"),
    "collection": ("collection",),
    "url": ("url",),
}
_LAT = re.compile(r"latitude\s*:\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_LON = re.compile(r"longitude\s*:\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_DASHED_DATE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T].*)?$")
_COMPACT_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


@dataclass
class _Focal:
    """One row of the focal metadata, checked."""

    rid: str
    path: Path
    line: int
    primary: str
    secondary: list[str]
    meta: dict[str, str]


@dataclass
class _Soundscape:
    """One soundscape file and what its name tells."""

    rid: str
    path: Path
    split: str
    site: str = ""
    date: str = ""
    latitude: str = ""
    longitude: str = ""
    # 2021 row-id key "<audio_id>_<site>" (first two fields of the stem), else the stem
    key: str = ""


@dataclass
class _WindowLabels:
    """Labels of 5 s windows from one CSV: (recording id, window end, labels, line) per row."""

    path: Path
    rows: list[tuple[str, int, list[str], int]] = field(default_factory=list)
    column: str = "row_id"  # the column that names the window, for error messages


# --------------------------------------------------------------------------------------------
# Year detection and layout checks
# --------------------------------------------------------------------------------------------


def detect_year(datadir: str | os.PathLike) -> int:
    """The BirdCLEF year whose layout ``datadir`` has.

    Rules (first match): ``train_short_audio/`` -> 2021; ``train.csv`` + ``taxonomy.csv`` -> 2025;
    ``scored_birds.json`` -> 2022; ``unlabeled_soundscapes/`` -> 2024; ``train_metadata.csv`` with
    12 columns -> 2023 (2024 downloads without ``unlabeled_soundscapes/`` look the same: pass the
    year explicitly).

    Raises:
        ManifestError: No folder, or a folder in none of the layouts (the message says what was
            expected and, when there is one, a nearby folder that looks right).
    """
    path = _check_datadir(datadir)
    if (path / "train_short_audio").is_dir():
        return 2021
    if (path / "train.csv").is_file() and (path / "taxonomy.csv").is_file():
        return 2025
    if (path / "scored_birds.json").is_file():
        return 2022
    if (path / "unlabeled_soundscapes").is_dir():
        return 2024
    meta = path / "train_metadata.csv"
    if meta.is_file():
        header = _header(meta)
        if len(header) == 12:
            return 2023
        raise ManifestError(
            f"cannot tell the BirdCLEF year: the header has {len(header)} columns "
            "(2021: 14 with train_short_audio/, 2022: 13 with scored_birds.json, 2023/2024: 12); "
            "pass the year (--year)",
            path=meta,
            line=1,
        )
    raise ManifestError(
        f"not a BirdCLEF folder (no train_metadata.csv, train.csv or train_short_audio/); "
        f"{_LAYOUT_HELP}{_layout_hint(path)}",
        path=path,
    )


def _check_datadir(datadir: str | os.PathLike | None) -> Path:
    if datadir is None or str(datadir) == "":
        raise ManifestError(f"no data folder given; {_LAYOUT_HELP}")
    path = Path(datadir)
    if not path.is_dir():
        raise ManifestError(f"data folder does not exist; {_LAYOUT_HELP}", path=path)
    # abspath, not resolve(): a symlinked data folder is deliberate and the manifests keep it.
    return Path(os.path.abspath(path))


def _layout_hint(path: Path) -> str:
    """``" (did you mean <dir>?)"`` for a sub- or parent folder in a BirdCLEF layout, or ``""``."""

    def looks_right(d: Path) -> bool:
        return (d / "train_metadata.csv").is_file() or (d / "train.csv").is_file()

    candidates = [path.parent] if path.name in ("train_audio", "train_short_audio") else []
    with contextlib.suppress(OSError):
        candidates += sorted(d for d in path.iterdir() if d.is_dir())
    for d in candidates:
        if looks_right(d):
            return f" (did you mean {d}?)"
    return ""


def _resolve_year(datadir: Path, year: int | str | None) -> tuple[int, bool]:
    """(year, detected): the given year, or the detected one for None / ``"auto"``."""
    if year is None or str(year) == "auto":
        return detect_year(datadir), True
    try:
        value = int(year)
    except (TypeError, ValueError):
        value = -1
    if value not in YEARS:
        raise ManifestError(
            f"year {year!r} is not a BirdCLEF year; expected auto or one of "
            f"{', '.join(map(str, YEARS))}"
        )
    return value, False


def _metadata_file(datadir: Path, year: int) -> Path:
    return datadir / ("train.csv" if year == 2025 else "train_metadata.csv")


def _audio_root(datadir: Path, year: int) -> Path:
    return datadir / ("train_short_audio" if year == 2021 else "train_audio")


def _check_layout(datadir: Path, year: int) -> None:
    """The files every download of ``year`` has; all that are missing are named at once."""
    needed = [_metadata_file(datadir, year).name]
    if year == 2022:
        needed.append("scored_birds.json")
    missing = [n for n in needed if not (datadir / n).is_file()]
    audio = _audio_root(datadir, year)
    if not audio.is_dir():
        missing.append(f"{audio.name}/")
    if missing:
        raise ManifestError(
            f"no {', '.join(missing)} in it, which the BirdCLEF {year} layout has; "
            f"{_LAYOUT_HELP}{_layout_hint(datadir)}",
            path=datadir,
        )


def _header(path: Path) -> list[str]:
    """The column names of a CSV file's first line (duplicates kept, unlike pandas)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return next(csv.reader(f), [])
    except UnicodeDecodeError as e:
        raise ManifestError(f"not a readable UTF-8 CSV file ({e})", path=path) from None


# --------------------------------------------------------------------------------------------
# Field parsing
# --------------------------------------------------------------------------------------------


def _parse_list(text: str, path: Path, line: int, column: str) -> list[str]:
    """A list column (``"['a', 'b']"``, ``[]``, 2025's ``['']``) -> its non-empty strings."""
    value = _literal_list(text.strip())
    if value is None:
        raise ManifestError(
            f"{column} ({text.strip()!r}) is not a list of strings such as ['a', 'b'] or []",
            path=path,
            line=line,
            column=column,
        )
    return list(value)


@functools.lru_cache(maxsize=65536)
def _literal_list(text: str) -> tuple[str, ...] | None:
    """The non-empty strings of a list literal, None when it is not one. Cached: most rows of a
    real metadata file repeat a few values (``[]``, ``['call']``), and parsing is the slow part."""
    if text == "":
        return ()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, (str, int)) and not isinstance(v, bool) for v in value
    ):
        return None
    # int elements: a 2025 numeric label written without quotes is still that label's text
    out = (str(v).strip() for v in value)
    return tuple(v for v in out if v)


def _normalise_date(text: str) -> str:
    """``YYYY-MM-DD`` (also from ``YYYY/M/D``, ``YYYYMMDD``); ``""`` for a date that is not one
    (2021's metadata has ``2012-00-00`` and worse: unknown, not an error)."""
    text = text.strip()
    m = _DASHED_DATE.match(text) or _COMPACT_DATE.match(text)
    if not m:
        return ""
    try:
        return datetime.date(int(m[1]), int(m[2]), int(m[3])).isoformat()
    except ValueError:
        return ""


def _location(path: Path) -> tuple[str, str]:
    """(latitude, longitude) from a ``*recording_location.txt`` (free text with ``Latitude: x``
    lines); ``("", "")`` when absent or unparsable."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", ""
    lat, lon = _LAT.search(text), _LON.search(text)
    return (lat[1] if lat else "", lon[1] if lon else "")


def _n_windows(duration: float) -> int:
    """5 s windows of a soundscape: a file a few ms short of a full window still has it."""
    return n_segments(duration, SEGMENT_SECONDS)


# --------------------------------------------------------------------------------------------
# Focal metadata and classes
# --------------------------------------------------------------------------------------------


def _read_focal(meta: Path, audio_root: Path) -> list[_Focal]:
    """Rows of the focal metadata with checked labels, paths and metadata (``secondary`` holds
    every listed label: the classes are not known yet)."""
    header = set(_header(meta))
    required = ("primary_label", "filename")
    spec = [Column(c, "str") for c in required]
    spec += [
        Column(c, "str", required=False, nullable=True, fill="")
        for c in sorted(header)
        if c not in required
    ]
    table, lines = read_table(meta, spec)
    # plain lists: a Python loop over 60k rows of pandas .iat lookups takes seconds
    cols = {c: table[c].tolist() for c in table.columns}
    empty = [""] * len(table)
    sources = {
        name: next((cols[c] for c in names if c in header), empty)
        for name, names in _META_COLUMNS.items()
    }
    rows: list[_Focal] = []
    seen: dict[str, int] = {}
    for i, line in enumerate(int(x) for x in lines):
        primary = cols["primary_label"][i]
        if any(ch.isspace() for ch in primary) or "/" in primary:
            raise ManifestError(
                f"primary_label {primary!r} may not contain whitespace or '/'",
                path=meta,
                line=line,
                column="primary_label",
            )
        filename = cols["filename"][i]
        rel = Path(filename)
        if rel.is_absolute() or ".." in rel.parts or rel.name in ("", "."):
            raise ManifestError(
                f"filename {filename!r} must be a file name relative to {audio_root.name}/",
                path=meta,
                line=line,
                column="filename",
            )
        # 2021 names the file alone (train_short_audio/<label>/<filename>); 2022+ include the label
        # folder. A name without a folder is taken to be in its label's folder in every year.
        path = audio_root / rel if len(rel.parts) > 1 else audio_root / primary / rel
        rid = f"{primary}-{rel.stem}"
        if rid in seen:
            raise ManifestError(
                f"recording {rid!r} (filename {filename!r}) is listed twice "
                f"(first at line {seen[rid]})",
                path=meta,
                line=line,
                column="filename",
            )
        seen[rid] = line
        values = {name: column[i] for name, column in sources.items()}
        values["date"] = _normalise_date(values["date"])
        kinds = _parse_list(cols["type"][i], meta, line, "type") if "type" in cols else []
        # "; " joins: call types are free text with spaces ("life stage uncertain"), never ";"
        values["type"] = "; ".join(kinds)
        secondary = (
            _parse_list(cols["secondary_labels"][i], meta, line, "secondary_labels")
            if "secondary_labels" in cols
            else []
        )
        rows.append(_Focal(rid, path, line, primary, secondary, values))
    return rows


def _submission_classes(path: Path) -> list[str]:
    """Classes of a 2023-2025 ``sample_submission.csv``: its columns after ``row_id``."""
    header = [h.strip() for h in _header(path)]
    if not header or header[0] != "row_id":
        raise ManifestError(
            f"first column is {header[0] if header else ''!r}, expected row_id then one column "
            "per class",
            path=path,
            line=1,
            column=header[0] if header else None,
        )
    classes = header[1:]
    if not classes:
        raise ManifestError("no class columns after row_id", path=path, line=1)
    seen: set[str] = set()
    for name in classes:
        if name == "" or any(ch.isspace() for ch in name) or name in seen:
            what = "is a duplicate" if name in seen else "is empty or contains whitespace"
            raise ManifestError(f"class column {name!r} {what}", path=path, line=1, column=name)
        seen.add(name)
    return classes


def _classes(
    datadir: Path, year: int, focal: Sequence[_Focal], meta: Path
) -> tuple[list[str], Path]:
    """(classes in model output order, the file they come from)."""
    submission = datadir / "sample_submission.csv"
    if year >= 2023 and submission.is_file():
        return _submission_classes(submission), submission
    taxonomy = datadir / "taxonomy.csv"
    if year == 2025 and taxonomy.is_file():
        table, _ = read_table(taxonomy, (Column("primary_label", "str"),))
        # Python string sort, like the real sample_submission header (digits before letters)
        return sorted(set(table["primary_label"])), taxonomy
    if not focal:
        raise ManifestError("no rows: cannot tell the classes", path=meta)
    return sorted({f.primary for f in focal}), meta


def _read_scored(path: Path, classes: Sequence[str]) -> list[str]:
    """2022's ``scored_birds.json``: a JSON list of class codes, each one a class."""
    try:
        scored = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"not valid JSON ({e})", path=path) from None
    if not isinstance(scored, list) or not scored or not all(isinstance(s, str) for s in scored):
        raise ManifestError("expected a non-empty JSON list of bird codes", path=path)
    known = set(classes)
    for s in scored:
        if s not in known:
            raise ManifestError(
                f"scored bird {s!r} is not a primary label of train_metadata.csv", path=path
            )
    if len(set(scored)) != len(scored):
        raise ManifestError("a bird code is listed twice", path=path)
    return scored


# --------------------------------------------------------------------------------------------
# Soundscapes and their window labels
# --------------------------------------------------------------------------------------------


def _soundscapes(datadir: Path, year: int) -> list[_Soundscape]:
    """Every soundscape file with its split (train: 2021 labelled; test; unlabeled)."""
    folders = [("test_soundscapes", "test")]
    if year == 2021:
        folders.insert(0, ("train_soundscapes", "train"))
    elif year == 2024:
        folders.append(("unlabeled_soundscapes", "unlabeled"))
    elif year == 2025:
        folders.append(("train_soundscapes", "unlabeled"))
    if year == 2021:
        sites = {
            p.name.split("_")[0]: _location(p)
            for p in (datadir / "test_soundscapes").glob("*_recording_location.txt")
        }
    elif year == 2025:
        sites = {"": _location(datadir / "recording_location.txt")}
    else:
        sites = {}
    out: list[_Soundscape] = []
    for folder, split in folders:
        files = [
            p
            for p in (datadir / folder).glob("*")
            if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".") and p.is_file()
        ]
        for p in sorted(files, key=lambda p: (p.stem, p.name)):
            s = _Soundscape(rid=p.stem, path=p, split=split, key=p.stem)
            parts = p.stem.split("_")
            if year == 2021 and len(parts) >= 2:
                s.key = f"{parts[0]}_{parts[1]}"
                s.site = parts[1]
                s.date = _normalise_date(parts[2]) if len(parts) > 2 else ""
                s.latitude, s.longitude = sites.get(s.site, ("", ""))
            elif year == 2025:
                s.latitude, s.longitude = sites[""]
                if split == "unlabeled" and len(parts) >= 2:
                    s.site, s.date = parts[0], _normalise_date(parts[1])
            out.append(s)
    return out


def _soundscape_keys(soundscapes: Sequence[_Soundscape], split: str) -> dict[str, _Soundscape]:
    """Row-id key -> soundscape of ``split``; two files with one key cannot be told apart."""
    keys: dict[str, _Soundscape] = {}
    for s in soundscapes:
        if s.split != split:
            continue
        if s.key in keys:
            raise ManifestError(
                f"{s.path.name} and {keys[s.key].path.name} share the row-id key {s.key!r}; "
                "their windows could not be told apart",
                path=s.path.parent,
            )
        keys[s.key] = s
    return keys


def _split_labels(text: str, classes: set[str], path: Path, line: int, column: str) -> list[str]:
    """A space list of labels (``nocall`` = none), each a class."""
    labels = list(dict.fromkeys(t for t in text.split() if t != "nocall"))
    for label in labels:
        if label not in classes:
            raise ManifestError(
                f"label {label!r} is not a class (classes come from the primary labels of the "
                "metadata or the sample_submission.csv header)",
                path=path,
                line=line,
                column=column,
            )
    return labels


def _read_soundscape_labels(
    path: Path, keys: dict[str, _Soundscape], classes: set[str]
) -> _WindowLabels:
    """2021 ``train_soundscape_labels.csv``: row_id, site, audio_id, seconds (window END), birds."""
    spec = (
        Column("row_id", "str"),
        Column("site", "str"),
        Column("audio_id", "str"),
        Column("seconds", "int"),
        Column("birds", "str"),
    )
    table, lines = read_table(path, spec)
    out = _WindowLabels(path=path, column="seconds")
    seen: dict[str, int] = {}
    for i, line in enumerate(int(x) for x in lines):
        row_id, site, audio_id = (table[c].iat[i] for c in ("row_id", "site", "audio_id"))
        end = int(table["seconds"].iat[i])
        key = f"{audio_id}_{site}"
        if key not in keys:
            raise ManifestError(
                f"audio_id {audio_id!r} / site {site!r} matches no file "
                f"{audio_id}_{site}_<date>.ogg in train_soundscapes/",
                path=path,
                line=line,
                column="audio_id",
            )
        if row_id != f"{key}_{end}":
            raise ManifestError(
                f"row_id {row_id!r} does not match audio_id, site and seconds "
                f"(expected {key}_{end!r})",
                path=path,
                line=line,
                column="row_id",
            )
        if row_id in seen:
            raise ManifestError(
                f"row_id {row_id!r} is a duplicate (first seen at line {seen[row_id]})",
                path=path,
                line=line,
                column="row_id",
            )
        seen[row_id] = line
        labels = _split_labels(table["birds"].iat[i], classes, path, line, "birds")
        out.rows.append((keys[key].rid, end, labels, line))
    return out


def _read_solution(
    path: Path,
    year: int,
    keys: dict[str, _Soundscape],
    classes: Sequence[str],
    scored: Sequence[str] | None,
) -> _WindowLabels:
    """``solution.csv`` (a synthetic corpus's hidden test labels, in the year's submission
    format) -> labels of test soundscape windows."""
    class_set = set(classes)
    if year == 2021:
        table, lines = read_table(path, (Column("row_id", "str"), Column("birds", "str")))
    elif year == 2022:
        table, lines = read_table(path, (Column("row_id", "str"), Column("target", "str")))
    else:
        header = [h.strip() for h in _header(path)]
        table, lines = read_table(path, [Column(c, "str") for c in ["row_id", *classes]])
        for name in header[1:]:
            if name not in class_set:
                raise ManifestError(
                    f"column {name!r} is not a class of sample_submission.csv",
                    path=path,
                    line=1,
                    column=name,
                )
    out = _WindowLabels(path=path)
    seen: dict[str, int] = {}
    for i, line in enumerate(int(x) for x in lines):
        row_id = table["row_id"].iat[i]
        # 2022 ids hold the bird between the file stem and the end second
        head, sep, end_text = row_id.rpartition("_")
        bird = ""
        if year == 2022:
            head, _, bird = head.rpartition("_")
        s = keys.get(head)
        if not sep or s is None or not end_text.isdigit() or int(end_text) <= 0:
            form = {2021: "<audio_id>_<site>_<end>", 2022: "<stem>_<bird>_<end>"}
            raise ManifestError(
                f"row_id {row_id!r} names no window of a test soundscape "
                f"(expected {form.get(year, '<stem>_<end>')} of a file in test_soundscapes/)",
                path=path,
                line=line,
                column="row_id",
            )
        if row_id in seen:
            raise ManifestError(
                f"row_id {row_id!r} is a duplicate (first seen at line {seen[row_id]})",
                path=path,
                line=line,
                column="row_id",
            )
        seen[row_id] = line
        if year == 2021:
            labels = _split_labels(table["birds"].iat[i], class_set, path, line, "birds")
        elif year == 2022:
            target = table["target"].iat[i].lower()
            if target not in ("true", "false", "1", "0"):
                raise ManifestError(
                    f"target ({table['target'].iat[i]!r}) must be True or False",
                    path=path,
                    line=line,
                    column="target",
                )
            if bird not in set(scored or ()):
                raise ManifestError(
                    f"row_id {row_id!r}: bird {bird!r} is not in scored_birds.json",
                    path=path,
                    line=line,
                    column="row_id",
                )
            labels = [bird] if target in ("true", "1") else []
        else:
            labels = []
            for c in classes:
                value = table[c].iat[i]
                if value not in ("0", "1"):
                    raise ManifestError(
                        f"{c} ({value!r}) must be 0 or 1", path=path, line=line, column=c
                    )
                if value == "1":
                    labels.append(c)
        out.rows.append((s.rid, int(end_text), labels, line))
    return out


def _window_events(
    labels: _WindowLabels, durations: dict[str, float]
) -> tuple[list[dict[str, Any]], int]:
    """One tp event per (window, label) of the usable soundscapes; (events, rows dropped with
    skipped audio). Windows must lie within their file (see :func:`_n_windows`)."""
    events: list[dict[str, Any]] = []
    dropped = 0
    for rid, end, names, line in labels.rows:
        if rid not in durations:
            dropped += 1
            continue
        duration = durations[rid]
        n = _n_windows(duration)
        if end % SEGMENT_SECONDS != 0 or not 0 < end <= n * SEGMENT_SECONDS:
            raise ManifestError(
                f"window end {end} s of {rid!r} is not one of 5, 10, ..., {n * 5:g} "
                f"(the file lasts {duration:.3f} s)",
                path=labels.path,
                line=line,
                column=labels.column,
            )
        for name in names:
            events.append(
                {
                    "recording_id": rid,
                    "label": name,
                    "onset": end - SEGMENT_SECONDS,
                    # the last window of a file a few ms short of it ends at the file's end
                    "offset": min(float(end), duration),
                    "kind": "tp",
                }
            )
    return events, dropped


# --------------------------------------------------------------------------------------------
# prepare_birdclef
# --------------------------------------------------------------------------------------------


def prepare_birdclef(
    datadir: str | os.PathLike | None,
    outdir: str | os.PathLike,
    n_folds: int = 5,
    seed: int = 0,
    strict: bool = False,
    nj: int = 1,
    year: int | str | None = None,
    fold_groups: str | None = None,
    cell_degrees: float = GEO_DEFAULTS["cell_degrees"],
    season_months: int = GEO_DEFAULTS["season_months"],
    min_block: int = GEO_DEFAULTS["min_block"],
) -> dict[str, Any]:
    """Turn a BirdCLEF download (any year 2021-2025) into manifests.

    Focal recordings (``train_audio/``) become train recordings with weak labels in ``clips.csv``
    (id ``<primary_label>-<file stem>``); soundscapes keep their file stem as id: 2021's labelled
    ``train_soundscapes`` are train recordings with one tp event per bird per 5 s window,
    ``test_soundscapes`` the test split (events from ``solution.csv`` when present), 2024's
    ``unlabeled_soundscapes`` and 2025's ``train_soundscapes`` the ``unlabeled`` split. Folds cover
    the train split.

    Every audio file is probed (format, duration, a decode of its last samples); a missing,
    unreadable or truncated one is logged, skipped with its clips and events, and listed in
    ``skipped.csv`` (with ``strict`` it raises instead). Inconsistent CSV content always raises.

    Args:
        datadir: Corpus folder (see the module docstring for the layouts).
        outdir: Folder for the manifests, created if needed; existing manifests are replaced.
        n_folds: Number of cross-validation folds over the train recordings.
        seed: Seed of the fold assignment.
        strict: Raise on a missing or unreadable audio file instead of skipping it.
        nj: Number of threads probing audio files.
        year: 2021 .. 2025, or None / ``"auto"`` to detect it (:func:`detect_year`).
        fold_groups: None, ``"author"``, ``"site"`` or ``"geo_temporal"``: recordings sharing
            the value (or, for geo_temporal, a dense block of one grid cell and season) stay in
            one fold (a recording without one is a group of its own).
        cell_degrees: Grid cell side in degrees (``geo_temporal``).
        season_months: Months per season, a divisor of 12 (``geo_temporal``).
        min_block: Recordings a block needs to be kept in one fold (``geo_temporal``).

    Returns:
        Summary: ``datadir``, ``outdir`` (absolute str), ``year``, ``year_detected`` (bool),
        ``recordings`` ({split: count} for train, test, unlabeled), ``kinds`` ({focal,
        soundscape: count}), ``clips``, ``events`` ({split: tp events}), ``classes`` (count),
        ``classes_source`` (file name), ``scored_classes`` (2022 count, else None), ``folds``,
        ``fold_groups``, ``fold_blocks`` (geo_temporal: {"blocks", "recordings"} in dense blocks,
        else None), ``test_audio`` (files in test_soundscapes/ before skipping), ``skipped``
        (list of {"path", "reason"}), ``skipped_clips``, ``skipped_events`` (window-label rows
        dropped with skipped audio), ``dropped_secondary`` (secondary labels not in the classes)
        and ``dropped_secondary_labels`` (those labels, sorted).

    Raises:
        ManifestError: Missing folder or file, a layout of no BirdCLEF year, bad CSV content (the
            message names file, line and column), an unusable audio file when ``strict``, too few
            train recordings for the folds.
        ValueError: ``nj < 1``, an unknown ``fold_groups`` or a geo_temporal parameter out of
            range.
    """
    if nj < 1:
        raise ValueError(f"nj must be at least 1, got {nj}")
    fold_groups = _check_fold_groups(fold_groups, cell_degrees, season_months, min_block)
    geo = {"cell_degrees": cell_degrees, "season_months": season_months, "min_block": min_block}
    datadir = _check_datadir(datadir)
    outdir = Path(os.path.abspath(outdir))
    year, detected = _resolve_year(datadir, year)
    _check_layout(datadir, year)

    meta = _metadata_file(datadir, year)
    focal = _read_focal(meta, _audio_root(datadir, year))
    classes, classes_file = _classes(datadir, year, focal, meta)
    class_set = set(classes)
    for f in focal:
        if f.primary not in class_set:
            raise ManifestError(
                f"primary_label {f.primary!r} is not a class of {classes_file.name}",
                path=meta,
                line=f.line,
                column="primary_label",
            )
    scored = _read_scored(datadir / "scored_birds.json", classes) if year == 2022 else None

    # Secondary labels outside the classes (real 2021 metadata names many) are dropped, counted.
    dropped: list[str] = []
    for f in focal:
        dropped += [s for s in f.secondary if s not in class_set]
        f.secondary = [s for s in dict.fromkeys(f.secondary) if s in class_set and s != f.primary]

    soundscapes = _soundscapes(datadir, year)
    ids: dict[str, Path] = {f.rid: f.path for f in focal}
    for s in soundscapes:
        if s.rid in ids:
            raise ManifestError(
                f"recording id {s.rid!r} of {s.path} is also the id of {ids[s.rid]}",
                path=s.path.parent,
            )
        ids[s.rid] = s.path

    window_labels: list[_WindowLabels] = []
    labels_csv = datadir / "train_soundscape_labels.csv"
    if year == 2021:
        labelled: set[str] = set()
        if labels_csv.is_file():
            train_keys = _soundscape_keys(soundscapes, "train")
            window_labels.append(_read_soundscape_labels(labels_csv, train_keys, class_set))
            labelled = {rid for rid, *_ in window_labels[-1].rows}
        for s in soundscapes:
            if s.split == "train" and s.rid not in labelled:
                logger.warning(
                    "%s has no rows in %s: listed as unlabeled, not trained on",
                    s.path,
                    labels_csv.name,
                )
                s.split = "unlabeled"
    solution = datadir / "solution.csv"
    if solution.is_file():
        test_keys = _soundscape_keys(soundscapes, "test")
        window_labels.append(_read_solution(solution, year, test_keys, classes, scored))

    # Probe every audio file once, focal and soundscape together (one progress bar).
    paths = [f.path for f in focal] + [s.path for s in soundscapes]
    probes = probe_all(paths, nj)
    probe_of = dict(zip([f.rid for f in focal] + [s.rid for s in soundscapes], probes, strict=True))
    skipped = _skipped(focal, soundscapes, probe_of, meta, strict)

    durations = {rid: p.duration for rid, p in probe_of.items() if p.reason is None}
    events_rows: list[dict[str, Any]] = []
    skipped_events = 0
    for wl in window_labels:
        rows, n = _window_events(wl, durations)
        events_rows += rows
        skipped_events += n

    focal_ok = [f for f in focal if f.rid in durations]
    scapes_ok = [s for s in soundscapes if s.rid in durations]
    recordings = _recordings_table(focal_ok, scapes_ok, probe_of)
    clips = pd.DataFrame(
        {
            "recording_id": pd.Series([f.rid for f in focal_ok], dtype="str"),
            "primary": pd.Series([f.primary for f in focal_ok], dtype="str"),
            "secondary": pd.Series([" ".join(f.secondary) for f in focal_ok], dtype="str"),
        }
    )
    events = pd.DataFrame(
        events_rows, columns=["recording_id", "label", "onset", "offset", "kind"]
    ).astype({"onset": "float64", "offset": "float64"})
    events = events.sort_values(["recording_id", "onset", "label"], kind="mergesort")
    events = events.reset_index(drop=True)
    folds, blocks = birdclef_folds(recordings, clips, events, n_folds, seed, fold_groups, **geo)

    outdir.mkdir(parents=True, exist_ok=True)
    # Remove the marker first: a run that dies half-way must not leave old files looking complete.
    (outdir / DONE_MARKER).unlink(missing_ok=True)
    write_recordings(recordings, outdir / "recordings.csv")
    write_classes(classes, outdir / "classes.txt")
    write_clips(clips, outdir / "clips.csv", recordings=recordings, classes=classes)
    write_events(events, outdir / "events.csv", recordings=recordings, classes=classes)
    write_folds(folds, outdir / "folds.csv", recordings=recordings)
    write_csv(outdir / "skipped.csv", pd.DataFrame(skipped, columns=["path", "reason"]))
    if scored is not None:
        write_text(outdir / "scored_classes.txt", "".join(f"{s}\n" for s in scored))
    else:
        # a manifests folder reused for another year must not keep 2022's scored list
        (outdir / "scored_classes.txt").unlink(missing_ok=True)
    info = {
        "variant": str(year),
        "year": year,
        "segment_seconds": SEGMENT_SECONDS,
        "source": str(datadir),
    }
    write_json(outdir / CORPUS_INFO_FILE, info)
    write_text(outdir / DONE_MARKER, "")

    split_counts = recordings["split"].value_counts()
    event_split = events["recording_id"].map(
        dict(zip(recordings["recording_id"], recordings["split"], strict=True))
    )
    return {
        "datadir": str(datadir),
        "outdir": str(outdir),
        "year": year,
        "year_detected": detected,
        "recordings": {s: int(split_counts.get(s, 0)) for s in ("train", "test", "unlabeled")},
        "kinds": {k: int((recordings["kind"] == k).sum()) for k in ("focal", "soundscape")},
        "clips": len(clips),
        "events": {s: int((event_split == s).sum()) for s in ("train", "test")},
        "classes": len(classes),
        "classes_source": classes_file.name,
        "scored_classes": None if scored is None else len(scored),
        "folds": n_folds,
        "fold_groups": fold_groups,
        "fold_blocks": blocks,
        "test_audio": sum(s.split == "test" for s in soundscapes),
        "skipped": skipped,
        "skipped_clips": len(focal) - len(focal_ok),
        "skipped_events": skipped_events,
        "dropped_secondary": len(dropped),
        "dropped_secondary_labels": sorted(set(dropped)),
    }


def _skipped(
    focal: Sequence[_Focal],
    soundscapes: Sequence[_Soundscape],
    probe_of: dict[str, AudioProbe],
    meta: Path,
    strict: bool,
) -> list[dict[str, str]]:
    """Unusable audio files as skipped.csv rows; with ``strict`` the first one raises."""
    skipped: list[dict[str, str]] = []
    items: list[tuple[str, Path, int | None]] = [(f.rid, f.path, f.line) for f in focal]
    items += [(s.rid, s.path, None) for s in soundscapes]
    for rid, path, line in items:
        reason = probe_of[rid].reason
        if reason is None:
            continue
        if strict:
            if line is not None:
                raise ManifestError(
                    f"recording {rid!r}: {reason}: {path}", path=meta, line=line, column="filename"
                )
            raise ManifestError(reason, path=path)
        where = f" (listed in {meta} line {line})" if line is not None else ""
        logger.warning("skipping %s: %s%s", path, reason, where)
        skipped.append({"path": str(path), "reason": reason})
    return skipped


def _recordings_table(
    focal: Sequence[_Focal], soundscapes: Sequence[_Soundscape], probe_of: dict[str, AudioProbe]
) -> pd.DataFrame:
    """recordings.csv rows: focal (sorted by id), then soundscapes by split and stem."""
    rows: list[dict[str, Any]] = []
    for f in sorted(focal, key=lambda f: f.rid):
        rows.append(
            {
                "recording_id": f.rid,
                "path": str(f.path),
                "split": "train",
                "kind": "focal",
                "site": "",
                **f.meta,
            }
        )
    order = {"train": 0, "test": 1, "unlabeled": 2}
    for s in sorted(soundscapes, key=lambda s: (order[s.split], s.rid)):
        rows.append(
            {
                "recording_id": s.rid,
                "path": str(s.path),
                "split": s.split,
                "kind": "soundscape",
                "site": s.site,
                "latitude": s.latitude,
                "longitude": s.longitude,
                "date": s.date,
            }
        )
    for row in rows:
        p = probe_of[row["recording_id"]]
        row.update(duration=p.duration, sample_rate=p.sample_rate, channels=p.channels)
    columns = ["recording_id", "path", "split", "duration", "sample_rate", "channels"]
    table = pd.DataFrame(rows, columns=[*columns, *EXTRA_COLUMNS])
    for c in ("recording_id", "path", "split", *EXTRA_COLUMNS):
        table[c] = table[c].fillna("").astype("str")
    return table


def _check_fold_groups(
    fold_groups: str | None, cell_degrees: float, season_months: int, min_block: int
) -> str | None:
    """``fold_groups`` checked (None for ``"none"``); geo_temporal's parameters checked too, so a
    bad value fails before any audio is probed."""
    if fold_groups not in (None, "none", *FOLD_GROUPS):
        raise ValueError(
            f"fold_groups must be none or one of {', '.join(FOLD_GROUPS)}, got {fold_groups!r}"
        )
    if fold_groups == "geo_temporal":
        geo_temporal_groups([], [], [], cell_degrees, season_months, min_block)
    return None if fold_groups == "none" else fold_groups


def birdclef_folds(
    recordings: pd.DataFrame,
    clips: pd.DataFrame,
    events: pd.DataFrame,
    n_folds: int,
    seed: int,
    fold_groups: str | None,
    cell_degrees: float = GEO_DEFAULTS["cell_degrees"],
    season_months: int = GEO_DEFAULTS["season_months"],
    min_block: int = GEO_DEFAULTS["min_block"],
) -> tuple[pd.DataFrame, dict[str, int] | None]:
    """Folds over the train split; labels = {primary} ∪ the recording's event labels.

    Args:
        recordings, clips, events: The manifests (recordings with the columns that
            ``fold_groups`` reads: author, site, or latitude, longitude and date).
        n_folds, seed: As :func:`sed.data.folds.make_folds`.
        fold_groups: None, or one of :data:`FOLD_GROUPS`.
        cell_degrees, season_months, min_block: The blocks of ``geo_temporal``
            (:func:`sed.data.folds.geo_temporal_groups`).

    Returns:
        (folds sorted by recording id, {"blocks", "recordings"}: the dense blocks and the
        recordings in them for ``geo_temporal``, else None).

    Raises:
        ManifestError: Too few recordings (or groups) for the folds.
        ValueError: An unknown ``fold_groups`` or a geo_temporal parameter out of range.
    """
    fold_groups = _check_fold_groups(fold_groups, cell_degrees, season_months, min_block)
    train = recordings[recordings["split"] == "train"]
    train_ids = train["recording_id"].tolist()
    labels: dict[str, set[str]] = {r: set() for r in train_ids}
    for rid, primary in zip(clips["recording_id"], clips["primary"], strict=True):
        if rid in labels:
            labels[rid].add(primary)
    for rid, label in zip(events["recording_id"], events["label"], strict=True):
        if rid in labels:
            labels[rid].add(label)
    kwargs: dict[str, Any] = {}
    blocks = None
    if fold_groups == "geo_temporal":
        columns = [
            train[c].tolist() if c in train.columns else [""] * len(train)
            for c in ("latitude", "longitude", "date")
        ]
        keys = geo_temporal_groups(*columns, cell_degrees, season_months, min_block)
        named = [k for k in keys if k is not None]
        blocks = {"blocks": len(set(named)), "recordings": len(named)}
        undated = sum(not str(d).strip() for d in columns[2])
        if season_months < 12 and undated > len(train) // 2:
            logger.warning(
                "geo_temporal folds: %d of %d train recordings have no date (2022-2024 metadata "
                "has none), so they are stratified one by one; season_months 12 groups them by "
                "grid cell alone",
                undated,
                len(train),
            )
        kwargs["groups"] = keys
    elif fold_groups is not None:
        # "" (unknown author / focal recording without a site) is a group of its own in make_folds
        column = train[fold_groups] if fold_groups in train.columns else [""] * len(train)
        kwargs["groups"] = list(column)
    try:
        folds = make_folds(train_ids, [labels[r] for r in train_ids], n_folds, seed, **kwargs)
    except ValueError as e:
        raise ManifestError(f"cannot make {n_folds} folds of the train recordings: {e}") from None
    return folds.sort_values("recording_id", kind="mergesort").reset_index(drop=True), blocks

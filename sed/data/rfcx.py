"""Stage 0 of the rfcx recipe: the Kaggle "Rainforest Connection Species Audio Detection" layout
(or a synthetic corpus in the same layout) -> the manifests of DESIGN §4.

Input layout (``datadir``)::

    train/<recording_id>.flac      test/<recording_id>.flac
    train_tp.csv  train_fp.csv     recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max
    sample_submission.csv          recording_id,s0,...,s23 (optional: gives classes, test set)
    test_labels.csv                same columns as train_tp.csv (optional; synthetic corpora)

Output (``outdir``): ``recordings.csv``, ``events.csv``, ``classes.txt``, ``folds.csv``,
``skipped.csv`` and, last, the ``.done`` marker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sed.data.folds import make_folds
from sed.data.manifest import (
    DURATION_TOLERANCE,
    Column,
    ManifestError,
    read_table,
    write_classes,
    write_events,
    write_folds,
    write_recordings,
)
from sed.data.probe import AudioProbe, probe_all
from sed.fileio import write_csv, write_text

__all__ = ["ANNOTATION_COLUMNS", "AUDIO_SUFFIX", "DONE_MARKER", "prepare_rfcx"]

logger = logging.getLogger(__name__)

#: Columns of train_tp.csv, train_fp.csv and test_labels.csv.
ANNOTATION_COLUMNS: tuple[Column, ...] = (
    Column("recording_id", "str"),
    Column("species_id", "int"),
    Column("songtype_id", "int"),
    Column("t_min", "float"),
    Column("f_min", "float"),
    Column("t_max", "float"),
    Column("f_max", "float"),
)

AUDIO_SUFFIX = ".flac"
DONE_MARKER = ".done"

_LAYOUT_HELP = (
    "pass --datadir the folder of the Kaggle 'rfcx-species-audio-detection' data (or of a "
    "synthetic corpus in its layout) holding train/, test/, train_tp.csv, train_fp.csv and "
    "sample_submission.csv"
)
_SPECIES_COLUMN = re.compile(r"^s(\d+)$")


@dataclass
class _Annotations:
    """One annotation CSV, typed, with the file line of every row."""

    path: Path
    table: pd.DataFrame
    lines: np.ndarray
    kind: str
    split: str


def prepare_rfcx(
    datadir: str | os.PathLike | None,
    outdir: str | os.PathLike,
    n_folds: int = 5,
    seed: int = 0,
    strict: bool = False,
    nj: int = 1,
) -> dict[str, Any]:
    """Turn an RFCX corpus into manifests.

    Every audio file is probed (format, duration, and a read of its last samples, which catches a
    file cut short by an interrupted download). A missing, unreadable or truncated file is logged
    as a warning and skipped together with its annotations, and listed in ``skipped.csv``; with
    ``strict`` it raises instead. Inconsistent CSV content (bad field, ``t_max <= t_min``, unknown
    species, annotation beyond the end of its recording ...) always raises.

    Args:
        datadir: Corpus folder (see the module docstring for the layout).
        outdir: Folder for the manifests, created if needed; existing manifests are replaced.
        n_folds: Number of cross-validation folds over the train recordings.
        seed: Seed of the fold assignment.
        strict: Raise on a missing or unreadable audio file instead of skipping it.
        nj: Number of threads probing audio files.

    Returns:
        Summary: ``datadir``, ``outdir`` (absolute str), ``recordings`` ({split: count}),
        ``events`` ({kind: count}), ``classes`` (count), ``folds`` (n_folds), ``skipped``
        (list of {"path", "reason"}), ``skipped_events`` (annotations dropped with them).

    Raises:
        ManifestError: Missing datadir or file, bad CSV content (message names file, line and
            column), an unusable audio file when ``strict``, or too few recordings for the folds.
        ValueError: ``nj < 1``.
    """
    if nj < 1:
        raise ValueError(f"nj must be at least 1, got {nj}")
    datadir = _check_datadir(datadir)
    outdir = Path(os.path.abspath(outdir))

    submission = datadir / "sample_submission.csv"
    classes, submission_ids = _read_submission(submission) if submission.is_file() else (None, None)
    annotations = [
        _read_annotations(datadir / "train_tp.csv", "tp", "train", classes, submission),
        _read_annotations(datadir / "train_fp.csv", "fp", "train", classes, submission),
    ]
    if (datadir / "test_labels.csv").is_file():
        annotations.append(
            _read_annotations(datadir / "test_labels.csv", "tp", "test", classes, submission)
        )
    if classes is None:
        # Without sample_submission.csv the classes are the species seen, in numeric order
        # (s2 before s10), which is the order Kaggle's columns use.
        species = sorted({int(s) for a in annotations for s in a.table["species_id"]})
        if not species:
            raise ManifestError(
                "no sample_submission.csv and no annotations: cannot tell the classes",
                path=datadir,
            )
        classes = [f"s{k}" for k in species]

    # Where each recording id is first mentioned, so errors can point at a file and a line.
    refs: dict[tuple[str, str], tuple[Path, int]] = {}
    for ann in annotations:
        for rid, line in zip(ann.table["recording_id"], ann.lines, strict=True):
            refs.setdefault((ann.split, rid), (ann.path, int(line)))
    if submission_ids is not None:
        for rid, line in submission_ids:
            refs.setdefault(("test", rid), (submission, line))

    train_ids = sorted(_audio_ids(datadir / "train") | {r for s, r in refs if s == "train"})
    if submission_ids is not None:
        test_ids = sorted(rid for rid, _ in submission_ids)
        extra = sorted(_audio_ids(datadir / "test") - set(test_ids))
        if extra:
            logger.warning(
                "%d audio file(s) in %s are not listed in %s and are ignored (first: %s%s)",
                len(extra),
                datadir / "test",
                submission,
                extra[0],
                AUDIO_SUFFIX,
            )
        _check_test_labels_listed(annotations, set(test_ids), submission)
    else:
        test_ids = sorted(_audio_ids(datadir / "test") | {r for s, r in refs if s == "test"})
    _check_disjoint(train_ids, test_ids, refs, datadir)

    entries = [("train", rid) for rid in train_ids] + [("test", rid) for rid in test_ids]
    paths = [datadir / split / f"{rid}{AUDIO_SUFFIX}" for split, rid in entries]
    probes = probe_all(paths, nj)

    skipped: list[dict[str, str]] = []
    for (split, rid), path, probe in zip(entries, paths, probes, strict=True):
        if probe.reason is None:
            continue
        ref = refs.get((split, rid))
        where = f" (listed in {ref[0]} line {ref[1]})" if ref else ""
        if strict:
            if ref:
                raise ManifestError(
                    f"recording_id {rid!r}: {probe.reason}: {path}",
                    path=ref[0],
                    line=ref[1],
                    column="recording_id",
                )
            raise ManifestError(probe.reason, path=path)
        logger.warning("skipping %s: %s%s", path, probe.reason, where)
        skipped.append({"path": str(path), "reason": probe.reason})

    usable = {
        (split, rid): probe
        for (split, rid), probe in zip(entries, probes, strict=True)
        if probe.reason is None
    }
    recordings = pd.DataFrame(
        {
            "recording_id": [rid for _, rid in usable],
            "path": [str(datadir / s / f"{r}{AUDIO_SUFFIX}") for s, r in usable],
            "split": [s for s, _ in usable],
            "duration": [p.duration for p in usable.values()],
            "sample_rate": [p.sample_rate for p in usable.values()],
            "channels": [p.channels for p in usable.values()],
        }
    )

    events, skipped_events = _events(annotations, usable)
    folds = _folds(recordings, events, n_folds, seed)

    outdir.mkdir(parents=True, exist_ok=True)
    # Remove the marker first: a run that dies half-way must not leave old files looking complete.
    (outdir / DONE_MARKER).unlink(missing_ok=True)
    write_recordings(recordings, outdir / "recordings.csv")
    write_classes(classes, outdir / "classes.txt")
    write_events(events, outdir / "events.csv", recordings=recordings, classes=classes)
    write_folds(folds, outdir / "folds.csv", recordings=recordings)
    write_csv(outdir / "skipped.csv", pd.DataFrame(skipped, columns=["path", "reason"]))
    write_text(outdir / DONE_MARKER, "")

    return {
        "datadir": str(datadir),
        "outdir": str(outdir),
        "recordings": {
            split: int((recordings["split"] == split).sum()) for split in ("train", "test")
        },
        "events": {kind: int((events["kind"] == kind).sum()) for kind in ("tp", "fp")},
        "classes": len(classes),
        "folds": n_folds,
        "skipped": skipped,
        "skipped_events": skipped_events,
    }


def _check_datadir(datadir: str | os.PathLike | None) -> Path:
    if datadir is None or str(datadir) == "":
        raise ManifestError(f"no data folder given; {_LAYOUT_HELP}")
    path = Path(datadir)
    if not path.is_dir():
        raise ManifestError(f"data folder does not exist; {_LAYOUT_HELP}", path=path)
    # Name everything that is missing at once, and where the corpus probably is: the usual
    # mistakes are the folder above the unpacked download, or its train/ folder.
    missing = [f"{d}/" for d in ("train", "test") if not (path / d).is_dir()]
    missing += [f for f in ("train_tp.csv", "train_fp.csv") if not (path / f).is_file()]
    if missing:
        hint = _layout_hint(path)
        if missing == ["train_tp.csv"] or missing == ["train_fp.csv"]:
            raise ManifestError(f"file not found; {_LAYOUT_HELP}{hint}", path=path / missing[0])
        if len(missing) == 1:
            raise ManifestError(f"no {missing[0]} folder; {_LAYOUT_HELP}{hint}", path=path)
        raise ManifestError(f"no {', '.join(missing)} in it; {_LAYOUT_HELP}{hint}", path=path)
    if not any((path / "train").glob(f"*{AUDIO_SUFFIX}")):
        others = sorted({p.suffix for p in (path / "train").iterdir() if p.is_file()})
        kinds = ", ".join(o or "suffix-less" for o in others)
        found = f" (it holds {kinds} files)" if others else ""
        raise ManifestError(
            f"no {AUDIO_SUFFIX} files in train/{found}; the Kaggle layout has "
            f"train/<recording_id>{AUDIO_SUFFIX}",
            path=path,
        )
    # abspath, not resolve(): a symlinked data folder is usually deliberate (a big disk mounted
    # elsewhere), and the manifest should keep the path the user chose.
    return Path(os.path.abspath(path))


def _layout_hint(path: Path) -> str:
    """``" (did you mean <dir>?)"`` for a nearby folder in the RFCX layout, else ``""``."""

    def looks_right(d: Path) -> bool:
        return (d / "train_tp.csv").is_file() and (d / "train").is_dir()

    candidates = [path.parent] if path.name in ("train", "test") else []
    with contextlib.suppress(OSError):  # unreadable: the error goes out without a hint
        candidates += sorted(d for d in path.iterdir() if d.is_dir())
    for d in candidates:
        if looks_right(d):
            return f" (did you mean {d}?)"
    return ""


def _audio_ids(folder: Path) -> set[str]:
    return {p.name[: -len(AUDIO_SUFFIX)] for p in folder.glob(f"*{AUDIO_SUFFIX}") if p.is_file()}


def _read_submission(path: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes (the ``s<k>`` columns, in order) and the test ids with their lines."""
    table, lines = read_table(path, (Column("recording_id", "str"),))
    classes = [c for c in table.columns if c != "recording_id"]
    for name in classes:
        if not _SPECIES_COLUMN.match(name):
            raise ManifestError(
                f"column {name!r} is not a species column (expected recording_id, s0, s1, ...)",
                path=path,
                line=1,
                column=name,
            )
    if not classes:
        raise ManifestError(
            "no species columns (expected recording_id, s0, s1, ...)", path=path, line=1
        )
    ids = table["recording_id"].tolist()
    seen: dict[str, int] = {}
    for rid, line in zip(ids, lines, strict=True):
        if rid in seen:
            raise ManifestError(
                f"recording_id {rid!r} is a duplicate (first seen at line {seen[rid]})",
                path=path,
                line=int(line),
                column="recording_id",
            )
        seen[rid] = int(line)
    return classes, [(rid, int(line)) for rid, line in zip(ids, lines, strict=True)]


def _read_annotations(
    path: Path, kind: str, split: str, classes: Sequence[str] | None, submission: Path
) -> _Annotations:
    """Read one annotation CSV and check what can be checked without the audio."""
    table, lines = read_table(path, ANNOTATION_COLUMNS)

    def fail(mask: np.ndarray, column: str, message: str) -> None:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            row = table.iloc[i]
            raise ManifestError(
                message.format(**row.to_dict()), path=path, line=int(lines[i]), column=column
            )

    species = table["species_id"].to_numpy()
    fail(species < 0, "species_id", "species_id ({species_id}) must be >= 0")
    if classes is not None:
        known = set(classes)
        fail(
            np.array([f"s{k}" not in known for k in species], dtype=bool),
            "species_id",
            f"species_id {{species_id}} is not a class of {submission.name} "
            f"(its columns are {_span(classes)})",
        )
    t_min, t_max = table["t_min"].to_numpy(), table["t_max"].to_numpy()
    f_min, f_max = table["f_min"].to_numpy(), table["f_max"].to_numpy()
    fail(t_min < 0, "t_min", "t_min ({t_min}) must be >= 0")
    fail(t_max <= t_min, "t_max", "t_max ({t_max}) must be greater than t_min ({t_min})")
    fail(f_min < 0, "f_min", "f_min ({f_min}) must be >= 0")
    fail(f_max <= f_min, "f_max", "f_max ({f_max}) must be greater than f_min ({f_min})")
    return _Annotations(path=path, table=table, lines=lines, kind=kind, split=split)


def _span(classes: Sequence[str]) -> str:
    return ", ".join(classes) if len(classes) <= 3 else f"{classes[0]}..{classes[-1]}"


def _check_test_labels_listed(
    annotations: Sequence[_Annotations], test_ids: set[str], submission: Path
) -> None:
    for ann in annotations:
        if ann.split != "test":
            continue
        for rid, line in zip(ann.table["recording_id"], ann.lines, strict=True):
            if rid not in test_ids:
                raise ManifestError(
                    f"recording_id {rid!r} is not a test recording (not in {submission.name})",
                    path=ann.path,
                    line=int(line),
                    column="recording_id",
                )


def _check_disjoint(
    train_ids: Sequence[str],
    test_ids: Sequence[str],
    refs: dict[tuple[str, str], tuple[Path, int]],
    datadir: Path,
) -> None:
    both = sorted(set(train_ids) & set(test_ids))
    if not both:
        return
    rid = both[0]
    for split in ("train", "test"):
        if (split, rid) in refs:
            path, line = refs[(split, rid)]
            raise ManifestError(
                f"recording_id {rid!r} is both a train and a test recording",
                path=path,
                line=line,
                column="recording_id",
            )
    raise ManifestError(
        f"recording {rid!r} is in both train/ and test/ (ids must be unique)", path=datadir
    )


def _events(
    annotations: Sequence[_Annotations], usable: dict[tuple[str, str], AudioProbe]
) -> tuple[pd.DataFrame, int]:
    """Annotations of usable recordings as events; checks they lie within their recording."""
    frames = []
    dropped = 0
    for ann in annotations:
        t = ann.table
        keep = np.array([(ann.split, rid) in usable for rid in t["recording_id"]], dtype=bool)
        dropped += int((~keep).sum())
        t, lines = t.loc[keep].reset_index(drop=True), ann.lines[keep]
        duration = np.array([usable[(ann.split, rid)].duration for rid in t["recording_id"]])
        beyond = t["t_max"].to_numpy() > duration + DURATION_TOLERANCE
        if beyond.any():
            i = int(np.flatnonzero(beyond)[0])
            raise ManifestError(
                f"t_max ({t['t_max'].iloc[i]}) is beyond the end of recording "
                f"{t['recording_id'].iloc[i]!r} (duration {duration[i]} s, "
                f"tolerance {DURATION_TOLERANCE} s)",
                path=ann.path,
                line=int(lines[i]),
                column="t_max",
            )
        frames.append(
            pd.DataFrame(
                {
                    "recording_id": t["recording_id"].astype("str"),
                    "label": ["s" + str(k) for k in t["species_id"]],
                    "onset": t["t_min"],
                    "offset": t["t_max"],
                    "fmin": t["f_min"],
                    "fmax": t["f_max"],
                    "songtype": t["songtype_id"].astype(str),
                    "kind": ann.kind,
                }
            )
        )
    events = pd.concat(frames, ignore_index=True)
    events = events.sort_values(
        ["recording_id", "onset", "offset", "label", "kind"], kind="mergesort"
    ).reset_index(drop=True)
    return events, dropped


def _folds(recordings: pd.DataFrame, events: pd.DataFrame, n_folds: int, seed: int) -> pd.DataFrame:
    train_ids = recordings.loc[recordings["split"] == "train", "recording_id"].tolist()
    train_set = set(train_ids)
    tp = events[(events["kind"] == "tp") & events["recording_id"].isin(train_set)]
    labels = tp.groupby("recording_id")["label"].agg(set).to_dict()
    try:
        folds = make_folds(train_ids, [labels.get(r, set()) for r in train_ids], n_folds, seed)
    except ValueError as e:
        raise ManifestError(f"cannot make {n_folds} folds of the train recordings: {e}") from None
    return folds.sort_values("recording_id", kind="mergesort").reset_index(drop=True)

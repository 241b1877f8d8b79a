"""Stage 0 of the detector recipe: a folder of labelled clips (and long field recordings) -> the
manifests of DESIGN §4.

Input layout (``datadir``; a user's own data, no marker files)::

    clips/<label>/<name>.{wav,flac,ogg,mp3}   labelled clips; <label> is a class, or the negative
                                              folder (default "negative": no target in the clip)
    long/<name>.{wav,flac,ogg,mp3}            long unlabelled field recordings (optional; subfolders
                                              such as long/<site>/ are read too)
    reviewed.csv                              optional: provenance of clips a review merge added
                                              (clip,source,onset,offset,decision,label,score,
                                              reviewer,date,checkpoint)
    long_truth.csv                            optional answer key of the long files
                                              (file,onset,offset,label; the synthetic corpus has
                                              one): every listed long file counts as fully
                                              annotated, the others as holding no target call

Output (``outdir``): ``recordings.csv`` (extra columns ``kind`` (clip | soundscape) and the
``review_*`` provenance of reviewed clips), ``events.csv`` (one tp event spanning each labelled
clip; the long files' calls when an answer key is given), ``classes.txt`` (the clip folders
except the negative one, sorted), ``folds.csv`` (clips only, stratified; clips cut from one
reviewed source stay in one fold), ``skipped.csv``, ``corpus.json`` (``segment_seconds``: stage 3
also scores the long files in fixed windows) and, last, ``.done``.

Clips are the ``train`` split; long files the ``test`` split: stage 3 predicts them with every
fold's model, stage 4 writes their detections, and stage 5 scores them only when an answer key
gives their truth (else the test score is null).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sed.data.corpus_info import CORPUS_INFO_FILE
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
from sed.data.probe import probe_all
from sed.fileio import write_csv, write_json, write_text

__all__ = [
    "AUDIO_SUFFIXES",
    "DONE_MARKER",
    "LONG_TRUTH_FILE",
    "REVIEW_COLUMNS",
    "prepare_detector",
]

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
DONE_MARKER = ".done"
LONG_TRUTH_FILE = "long_truth.csv"
#: reviewed.csv columns kept in recordings.csv, as review_<name> (date stays apart from any
#: recording-date metadata a model might use)
REVIEW_COLUMNS = (
    "source",
    "onset",
    "offset",
    "decision",
    "score",
    "reviewer",
    "date",
    "checkpoint",
)

_REVIEWED_SPEC = (
    Column("clip", "str"),
    Column("source", "str", nullable=True, fill=""),
    Column("onset", "str", nullable=True, fill=""),
    Column("offset", "str", nullable=True, fill=""),
    Column("decision", "str", nullable=True, fill=""),
    Column("label", "str", nullable=True, fill=""),
    Column("score", "str", nullable=True, fill=""),
    Column("reviewer", "str", nullable=True, fill=""),
    Column("date", "str", nullable=True, fill=""),
    Column("checkpoint", "str", required=False, nullable=True, fill=""),
)
_TRUTH_SPEC = (
    Column("file", "str"),
    Column("onset", "float"),
    Column("offset", "float"),
    Column("label", "str"),
)
_LAYOUT_HELP = (
    "pass --datadir a detector corpus: clips/<label>/ folders of audio clips (and clips/negative/"
    " for clips without the target), optionally long/ with long recordings"
)


@dataclass
class _Audio:
    rid: str
    path: Path
    rel: str  # path relative to the corpus root, "/"-separated
    split: str
    label: str | None  # class of a clip; None: negative clip or long file
    kind: str  # clip | soundscape
    review: dict[str, str] = field(default_factory=dict)


def prepare_detector(
    datadir: str | os.PathLike | None,
    outdir: str | os.PathLike,
    n_folds: int = 5,
    seed: int = 0,
    strict: bool = False,
    nj: int = 1,
    negative: str = "negative",
    long_truth: str | os.PathLike | None = "auto",
    segment_seconds: float = 5.0,
) -> dict[str, Any]:
    """Turn a detector corpus into manifests (module docstring).

    Every audio file is probed (format, duration, a decode of its last samples); a missing,
    unreadable or truncated one is logged, skipped and listed in ``skipped.csv`` (with ``strict``
    it raises instead). Bad CSV content (reviewed.csv, the answer key) always raises.

    Args:
        datadir: Corpus folder.
        outdir: Folder for the manifests, created if needed; existing manifests are replaced.
        n_folds: Cross-validation folds over the clips.
        seed: Seed of the fold assignment.
        strict: Raise on an unreadable audio file instead of skipping it.
        nj: Threads probing audio files.
        negative: Name of the clip folder without the target (not a class).
        long_truth: Answer key of the long files: ``"auto"`` (``<datadir>/long_truth.csv`` when
            present), None or ``"none"`` (never), or a CSV path.
        segment_seconds: Window of the long files' fixed-segment scores (``corpus.json``); 0: none.

    Returns:
        Summary: ``datadir``, ``outdir``, ``classes`` (list), ``recordings`` ({"train", "test"}),
        ``clips`` ({label or negative: count}), ``events`` ({"train", "test"}), ``reviewed``
        (clips with provenance), ``long_truth`` (path used or None), ``folds``, ``skipped``
        (list of {"path", "reason"}), ``skipped_truth`` (answer-key rows of skipped files).

    Raises:
        ManifestError: No usable layout, a duplicate recording id, bad CSV content (file, line and
            column named), an unusable audio file when ``strict``, too few clips for the folds.
        ValueError: ``nj < 1`` or a negative ``segment_seconds``.
    """
    if nj < 1:
        raise ValueError(f"nj must be at least 1, got {nj}")
    if not (segment_seconds >= 0 and np.isfinite(segment_seconds)):
        raise ValueError(f"segment_seconds must be >= 0, got {segment_seconds}")
    root = _check_datadir(datadir, negative)
    outdir = Path(os.path.abspath(outdir))

    items = _scan(root, negative)
    classes = sorted({a.label for a in items if a.label is not None})
    if not classes:
        raise ManifestError(
            f"no class folder with audio under clips/ (only '{negative}'); {_LAYOUT_HELP}",
            path=root / "clips",
        )
    _check_unique(items)
    n_reviewed = _attach_reviews(root, items, negative)

    probes = probe_all([a.path for a in items], nj)
    skipped: list[dict[str, str]] = []
    usable: list[tuple[_Audio, Any]] = []
    for a, p in zip(items, probes, strict=True):
        if p.reason is None:
            usable.append((a, p))
            continue
        if strict:
            raise ManifestError(p.reason, path=a.path)
        logger.warning("skipping %s: %s", a.path, p.reason)
        skipped.append({"path": str(a.path), "reason": p.reason})
    if not any(a.split == "train" for a, _ in usable):
        raise ManifestError("no readable clip under clips/ (see skipped.csv)", path=root / "clips")

    recordings = pd.DataFrame(
        {
            "recording_id": [a.rid for a, _ in usable],
            "path": [str(a.path) for a, _ in usable],
            "split": [a.split for a, _ in usable],
            "duration": [p.duration for _, p in usable],
            "sample_rate": [p.sample_rate for _, p in usable],
            "channels": [p.channels for _, p in usable],
            "kind": [a.kind for a, _ in usable],
            **{f"review_{c}": [a.review.get(c, "") for a, _ in usable] for c in REVIEW_COLUMNS},
        }
    )
    # a labelled clip is the call: its event spans the whole clip (frame targets on throughout)
    events = [
        {"recording_id": a.rid, "label": a.label, "onset": 0.0, "offset": p.duration, "kind": "tp"}
        for a, p in usable
        if a.label is not None
    ]
    truth_path = _truth_path(root, long_truth)
    skipped_truth = 0
    if truth_path is not None:
        more, skipped_truth = _truth_events(truth_path, root, items, usable, set(classes))
        events += more
    events_df = pd.DataFrame(events, columns=["recording_id", "label", "onset", "offset", "kind"])
    events_df = events_df.astype({"onset": "float64", "offset": "float64"})
    events_df = events_df.sort_values(["recording_id", "onset", "label"], kind="mergesort")
    folds = _folds(usable, n_folds, seed)

    outdir.mkdir(parents=True, exist_ok=True)
    # the marker first: a run that dies half-way must not leave old files looking complete
    (outdir / DONE_MARKER).unlink(missing_ok=True)
    write_recordings(recordings, outdir / "recordings.csv")
    write_classes(classes, outdir / "classes.txt")
    write_events(
        events_df.reset_index(drop=True),
        outdir / "events.csv",
        recordings=recordings,
        classes=classes,
    )
    write_folds(folds, outdir / "folds.csv", recordings=recordings)
    write_csv(outdir / "skipped.csv", pd.DataFrame(skipped, columns=["path", "reason"]))
    info: dict[str, Any] = {"source": str(root), "negative": negative}
    if segment_seconds > 0:
        info["segment_seconds"] = float(segment_seconds)
    write_json(outdir / CORPUS_INFO_FILE, info)
    write_text(outdir / DONE_MARKER, "")

    split_of = dict(zip(recordings["recording_id"], recordings["split"], strict=True))
    event_split = events_df["recording_id"].map(split_of)
    clip_counts: dict[str, int] = {}
    for a, _ in usable:
        if a.split == "train":
            key = a.label or negative
            clip_counts[key] = clip_counts.get(key, 0) + 1
    return {
        "datadir": str(root),
        "outdir": str(outdir),
        "classes": classes,
        "recordings": {s: int((recordings["split"] == s).sum()) for s in ("train", "test")},
        "clips": clip_counts,
        "events": {s: int((event_split == s).sum()) for s in ("train", "test")},
        "reviewed": n_reviewed,
        "long_truth": None if truth_path is None else str(truth_path),
        "folds": n_folds,
        "skipped": skipped,
        "skipped_truth": skipped_truth,
    }


def _check_datadir(datadir: str | os.PathLike | None, negative: str) -> Path:
    if datadir is None or str(datadir) == "":
        raise ManifestError(f"no data folder given; {_LAYOUT_HELP}")
    path = Path(datadir)
    if not path.is_dir():
        raise ManifestError(f"data folder does not exist; {_LAYOUT_HELP}", path=path)
    if not (path / "clips").is_dir():
        hint = ""
        if path.name == "clips" or (path.parent / "clips").is_dir():
            hint = f" (did you mean {path.parent}?)"
        raise ManifestError(f"no clips/ folder; {_LAYOUT_HELP}{hint}", path=path)
    # abspath, not resolve(): a symlinked data folder is deliberate, keep the path the user chose
    return Path(os.path.abspath(path))


def _audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (any depth), hidden files and folders left out, sorted."""
    out = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder).parts
        if any(part.startswith(".") for part in rel):
            continue
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES:
            out.append(p)
    return sorted(out)


def _rid(rel_parts: Sequence[str]) -> str:
    # "/" would nest HDF5 groups in the feature dumps: folders join with "-"
    return "-".join([*rel_parts[:-1], Path(rel_parts[-1]).stem])


def _scan(root: Path, negative: str) -> list[_Audio]:
    clips = root / "clips"
    items: list[_Audio] = []
    loose = [p.name for p in clips.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]
    if loose:
        logger.warning(
            "%d audio file(s) directly in %s are ignored (a clip goes in clips/<label>/ or "
            "clips/%s/; first: %s)",
            len(loose),
            clips,
            negative,
            sorted(loose)[0],
        )
    for folder in sorted(d for d in clips.iterdir() if d.is_dir() and not d.name.startswith(".")):
        files = _audio_files(folder)
        if not files:
            logger.warning("%s holds no audio (%s): not a class", folder, ", ".join(AUDIO_SUFFIXES))
            continue
        label = None if folder.name == negative else folder.name
        for p in files:
            rel = p.relative_to(clips)
            items.append(
                _Audio(_rid(rel.parts), p, f"clips/{rel.as_posix()}", "train", label, "clip")
            )
    if (root / "long").is_dir():
        for p in _audio_files(root / "long"):
            rel = p.relative_to(root / "long")
            items.append(
                _Audio(_rid(rel.parts), p, f"long/{rel.as_posix()}", "test", None, "soundscape")
            )
    return items


def _check_unique(items: Sequence[_Audio]) -> None:
    seen: dict[str, Path] = {}
    for a in items:
        if a.rid in seen:
            raise ManifestError(
                f"{a.path} and {seen[a.rid]} both become recording id {a.rid!r} (same folder and "
                "name up to the suffix or a '-'): rename one",
                path=a.path.parent,
            )
        seen[a.rid] = a.path


def _attach_reviews(root: Path, items: Sequence[_Audio], negative: str) -> int:
    """Provenance of ``reviewed.csv`` rows onto their clips; returns how many clips got one.

    The clip folders are the truth: a row whose clip is gone (deleted or moved by hand) is
    ignored with a warning, and a clip whose folder disagrees with the row's label keeps its
    folder's label.
    """
    path = root / "reviewed.csv"
    if not path.is_file():
        return 0
    table, lines = read_table(path, _REVIEWED_SPEC)
    by_rel = {a.rel: a for a in items if a.kind == "clip"}
    missing: list[str] = []
    n = 0
    for row, line in zip(table.to_dict("records"), lines, strict=True):
        rel = Path(str(row["clip"])).as_posix()
        a = by_rel.get(rel)
        if a is None:
            missing.append(f"{rel} (line {int(line)})")
            continue
        folder = a.label or negative
        if row["label"] and row["label"] != folder:
            logger.warning(
                "%s line %d: clip %s is labelled %r but lies in clips/%s/: the folder wins",
                path,
                int(line),
                rel,
                row["label"],
                folder,
            )
        if not a.review:
            n += 1
        a.review = {c: str(row[c] or "") for c in REVIEW_COLUMNS}
    if missing:
        logger.warning(
            "%s lists %d clip(s) that are not under clips/ (deleted or moved?), ignored: %s",
            path,
            len(missing),
            ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else ""),
        )
    return n


def _truth_path(root: Path, long_truth: str | os.PathLike | None) -> Path | None:
    if long_truth is None or str(long_truth) in ("", "none"):
        return None
    if str(long_truth) == "auto":
        p = root / LONG_TRUTH_FILE
        return p if p.is_file() else None
    p = Path(long_truth)
    if not p.is_file():
        raise ManifestError("answer key of the long files (--long_truth) not found", path=p)
    return Path(os.path.abspath(p))


def _truth_events(
    path: Path,
    root: Path,
    items: Sequence[_Audio],
    usable: Sequence[tuple[_Audio, Any]],
    classes: set[str],
) -> tuple[list[dict[str, Any]], int]:
    """tp events of the long files from the answer key; also the rows of skipped files dropped."""
    table, lines = read_table(path, _TRUTH_SPEC)
    longs = [a for a in items if a.kind == "soundscape"]
    # a row names its file relative to the root (long/x.flac), to long/ (x.flac), or by stem
    names: dict[str, _Audio] = {}
    for a in longs:
        inner = a.rel[len("long/") :]
        for key in (a.rel, inner, str(Path(inner).with_suffix(""))):
            names.setdefault(key, a)
    duration = {a.rid: p.duration for a, p in usable}
    out: list[dict[str, Any]] = []
    dropped = 0
    for row, line in zip(table.to_dict("records"), lines, strict=True):
        where = {"path": path, "line": int(line)}
        a = names.get(Path(str(row["file"])).as_posix())
        if a is None:
            raise ManifestError(
                f"file {row['file']!r} is not a long recording under {root / 'long'}",
                column="file",
                **where,
            )
        if row["label"] not in classes:
            raise ManifestError(
                f"label {row['label']!r} is not a class (clip folders: "
                f"{', '.join(sorted(classes))})",
                column="label",
                **where,
            )
        if not (0 <= row["onset"] < row["offset"]):
            raise ManifestError(
                f"need 0 <= onset < offset, got onset {row['onset']} offset {row['offset']}",
                column="offset",
                **where,
            )
        if a.rid not in duration:
            dropped += 1  # its audio was skipped
            continue
        if row["offset"] > duration[a.rid] + DURATION_TOLERANCE:
            raise ManifestError(
                f"offset ({row['offset']}) is beyond the end of {a.rel} ({duration[a.rid]} s)",
                column="offset",
                **where,
            )
        out.append(
            {
                "recording_id": a.rid,
                "label": row["label"],
                "onset": float(row["onset"]),
                "offset": min(float(row["offset"]), duration[a.rid]),
                "kind": "tp",
            }
        )
    return out, dropped


def _folds(usable: Sequence[tuple[Any, Any]], n_folds: int, seed: int) -> pd.DataFrame:
    clips = [a for a, _ in usable if a.split == "train"]
    ids = [a.rid for a in clips]
    labels = [{a.label} if a.label else set() for a in clips]
    # clips a review cut from one long recording are neighbours in time: one fold keeps them from
    # being trained on and validated against at once
    groups = [a.review.get("source") or None for a in clips]
    try:
        folds = make_folds(ids, labels, n_folds, seed, groups=groups)
    except ValueError as e:
        raise ManifestError(f"cannot make {n_folds} folds of the {len(ids)} clips: {e}") from None
    return folds.sort_values("recording_id", kind="mergesort").reset_index(drop=True)

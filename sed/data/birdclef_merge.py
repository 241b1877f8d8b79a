"""Merge the prepared manifests of several BirdCLEF corpora into one, for a target year's species.

BirdCLEF winners trained on the focal recordings of earlier competitions and extra xeno-canto /
iNaturalist downloads besides the year's own. Each source is a manifests folder written by
stage 0 (``recordings.csv``, ``clips.csv``, ``classes.txt``, ...); the TARGET (e.g.
``data/birdclef/birdclef-2024_5fold``) gives the classes, the variant and the test and unlabelled
recordings, the EXTRAS only focal train recordings. Rules, in this order:

1. ``not_focal``: an extra's recording that is not a focal train recording (a row of its
   ``clips.csv`` with split train): its soundscapes were labelled for another class list.
2. ``not_target_class``: a focal recording whose primary label is not a target class (secondary
   labels outside the target classes are dropped from the recordings that stay, and counted).
3. ``duplicate_id``: the same source id as a recording kept before it. The source id is the
   public collection's id from the file stem (``XC134896``, ``iNat327629``, ``CSA1234``,
   ``ML12345``) or, failing that, the url (xeno-canto, iNaturalist, Macaulay, Humboldt CSA); a
   local file with another name has none (two collections' ``rec001`` are not one recording).
4. ``duplicate_content``: the same audio bytes (sha1) as a recording kept before it.
5. ``cap``: more than ``cap`` recordings of the species: the most recent are kept (date, else the
   larger source id number, a proxy of the upload order), ties broken by source order and id.

"Before" is the order target first, then the extras as given, each by recording id; the target's
test, unlabelled and labelled-soundscape recordings are always kept. Recording ids stay as they
were; an extra's id that is already taken gets the prefix ``x<k>-`` (k: the extra's 1-based
position), repeated until it is free. Folds are re-made over the merged train recordings as
stage 0 makes them. Output: the manifests, ``scored_classes.txt`` and ``corpus.json`` of the
target (with a ``merged`` entry), ``merge_report.csv`` (one row per source recording: its id in
the merged corpus, or its own when dropped; source folder, id there, source id, kept / dropped,
reason, what it duplicates) and the ``.done`` marker, written last.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sed.data.birdclef import DONE_MARKER, EXTRA_COLUMNS, FOLD_GROUPS, GEO_DEFAULTS, birdclef_folds
from sed.data.corpus_info import CORPUS_INFO_FILE, read_corpus_info
from sed.data.folds import geo_temporal_groups
from sed.data.manifest import (
    RECORDINGS_COLUMNS,
    ManifestError,
    read_classes,
    read_clips,
    read_events,
    read_recordings,
    write_classes,
    write_clips,
    write_events,
    write_folds,
    write_recordings,
)
from sed.fileio import write_csv, write_json, write_text
from sed.utils.progress import progress_bar

__all__ = ["MERGE_REPORT", "REASONS", "format_summary", "merge_birdclef", "source_id"]

MERGE_REPORT = "merge_report.csv"
#: Why a recording is dropped, in the order the rules apply.
REASONS = ("not_focal", "not_target_class", "duplicate_id", "duplicate_content", "cap")
REPORT_COLUMNS = (
    "recording_id",
    "source",
    "source_recording_id",
    "source_id",
    "status",
    "reason",
    "duplicate_of",
)

_COLLECTIONS = {"xc": "XC", "inat": "iNat", "csa": "CSA", "ml": "ML"}
_STEM_ID = re.compile(r"^(xc|inat|csa|ml)[-_]?(\d+)$", re.IGNORECASE)
_URL_IDS = (
    (re.compile(r"xeno-canto\.org/(\d+)", re.IGNORECASE), "XC"),
    (re.compile(r"inaturalist\.org/observations/(\d+)", re.IGNORECASE), "iNat"),
    (re.compile(r"macaulaylibrary\.org/asset/(\d+)", re.IGNORECASE), "ML"),
    (re.compile(r"IAvH-CSA-(\d+)", re.IGNORECASE), "CSA"),
)
_HASH_BLOCK = 1 << 20


def source_id(path: str, url: str = "") -> tuple[str, int]:
    """(public collection id such as ``XC134896``, its number) of a recording, or ``("", -1)``.

    From the file stem (``XC134896.ogg``, ``iNat327629.ogg``, ``CSA1234.ogg``; case and a ``-`` or
    ``_`` before the digits ignored, leading zeros dropped), else from the url.
    """
    m = _STEM_ID.match(Path(str(path)).stem)
    if m:
        return f"{_COLLECTIONS[m[1].lower()]}{int(m[2])}", int(m[2])
    for pattern, collection in _URL_IDS:
        u = pattern.search(str(url))
        if u:
            return f"{collection}{int(u[1])}", int(u[1])
    return "", -1


@dataclass(eq=False)  # compared and hashed by identity: one object per folder
class _Source:
    """One manifests folder, read and validated."""

    root: Path
    index: int  # 0: the target, k: the k-th extra
    recordings: pd.DataFrame
    clips: pd.DataFrame
    events: pd.DataFrame
    classes: list[str]


@dataclass
class _Row:
    """One source recording and what the merge does with it."""

    source: _Source
    rid: str  # id in its source
    path: str
    focal: bool  # a train recording with a clips.csv row: subject to the rules
    primary: str = ""
    secondary: str = ""
    date: str = ""
    sid: str = ""
    number: int = -1
    digest: str = ""  # sha1 of the audio bytes, for the live candidates
    new_id: str = ""
    reason: str = ""  # "" while kept
    duplicate_of: str = ""


def merge_birdclef(
    target: str | os.PathLike,
    extras: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    cap: int | None = None,
    n_folds: int = 5,
    seed: int = 0,
    fold_groups: str | None = None,
    cell_degrees: float = GEO_DEFAULTS["cell_degrees"],
    season_months: int = GEO_DEFAULTS["season_months"],
    min_block: int = GEO_DEFAULTS["min_block"],
    nj: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Merge the manifests folders ``extras`` into ``target``'s species list (module docstring).

    Args:
        target: Manifests folder of the target corpus (stage 0 output).
        extras: Manifests folders of other corpora (older years, local collections).
        outdir: Folder for the merged manifests; neither the target nor an extra.
        cap: Most focal recordings kept per species (None: no cap).
        n_folds, seed, fold_groups, cell_degrees, season_months, min_block: The folds over the
            merged train recordings, as ``prepare_birdclef`` makes them.
        nj: Threads hashing audio files.
        progress: Show a progress bar while hashing.

    Returns:
        Summary: ``outdir``, ``sources`` (per folder: ``folder``, ``recordings``, ``kept``,
        ``prefix`` of renamed ids or None), ``recordings`` ({split: count} merged), ``clips``,
        ``dropped`` ({reason: count} for each of :data:`REASONS`), ``renamed`` (ids prefixed),
        ``capped_species``, ``secondary_dropped``, ``folds``, ``fold_groups``, ``fold_blocks``,
        ``variant``.

    Raises:
        ManifestError: A missing or invalid manifest, an unreadable audio file (naming the
            recording and the folder), too few train recordings for the folds.
        ValueError: A bad ``cap``, ``nj``, ``fold_groups`` or geo parameter, or ``outdir`` /
            a folder given twice.
    """
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ValueError(f"cap must be an integer >= 1 or None, got {cap!r}")
    if isinstance(nj, bool) or not isinstance(nj, int) or nj < 1:
        raise ValueError(f"nj must be an integer >= 1, got {nj!r}")
    if fold_groups not in (None, "none", *FOLD_GROUPS):
        raise ValueError(
            f"fold_groups must be none or one of {', '.join(FOLD_GROUPS)}, got {fold_groups!r}"
        )
    fold_groups = None if fold_groups == "none" else fold_groups
    geo = {"cell_degrees": cell_degrees, "season_months": season_months, "min_block": min_block}
    geo_temporal_groups([], [], [], **geo)  # checks the parameters before any hashing
    roots = [Path(os.path.abspath(p)) for p in (target, *extras)]
    outdir = Path(os.path.abspath(outdir))
    for i, root in enumerate(roots):
        if root in roots[:i]:
            raise ValueError(f"manifests folder {root} is given twice")
        if root == outdir:
            raise ValueError(f"outdir {outdir} is a source folder; write the merge elsewhere")
    sources = [_read_source(root, i) for i, root in enumerate(roots)]
    classes = sources[0].classes
    class_set = set(classes)
    info = read_corpus_info(roots[0])

    rows = [row for s in sources for row in _rows(s)]
    candidates: list[_Row] = []
    for row in rows:
        if not row.focal:
            if row.source.index > 0:
                row.reason = "not_focal"
            continue
        if row.primary not in class_set:
            row.reason = "not_target_class"
            continue
        candidates.append(row)
    candidates.sort(key=lambda r: (r.source.index, r.rid))

    _drop_duplicates(candidates, lambda r: r.sid, "duplicate_id")
    alive = [r for r in candidates if not r.reason]
    for row, digest in zip(alive, _hashes(alive, nj, progress), strict=True):
        row.digest = digest
    _drop_duplicates(alive, lambda r: r.digest, "duplicate_content")
    capped = _cap([r for r in alive if not r.reason], cap)
    prefixes = _assign_ids(rows, len(sources))

    kept = [r for r in rows if not r.reason]
    recordings = _recordings_table(kept)
    clips_rows, secondary_dropped = [], 0
    for r in kept:
        if not r.focal:
            continue
        listed = r.secondary.split()
        secondary = [s for s in dict.fromkeys(listed) if s in class_set and s != r.primary]
        secondary_dropped += sum(s not in class_set for s in listed)
        clips_rows.append((r.new_id, r.primary, " ".join(secondary)))
    clips = pd.DataFrame(clips_rows, columns=["recording_id", "primary", "secondary"], dtype="str")
    events = _events(kept, class_set)
    folds, blocks = birdclef_folds(recordings, clips, events, n_folds, seed, fold_groups, **geo)

    report = pd.DataFrame(
        [
            (
                r.new_id or r.rid,
                str(r.source.root),
                r.rid,
                r.sid,
                "dropped" if r.reason else "kept",
                r.reason,
                r.duplicate_of,
            )
            for r in rows
        ],
        columns=list(REPORT_COLUMNS),
        dtype="str",
    )
    dropped = {reason: int((report["reason"] == reason).sum()) for reason in REASONS}
    merged_info = {
        **info,
        "merged": {
            "target": str(roots[0]),
            "extras": [str(p) for p in roots[1:]],
            "cap": cap,
            "dropped": dropped,
            "prefixes": {str(roots[k]): p for k, p in prefixes.items()},
        },
    }

    outdir.mkdir(parents=True, exist_ok=True)
    # the marker goes first: a merge that dies half-way must not leave old files looking complete
    (outdir / DONE_MARKER).unlink(missing_ok=True)
    write_recordings(recordings, outdir / "recordings.csv")
    write_classes(classes, outdir / "classes.txt")
    write_clips(clips, outdir / "clips.csv", recordings=recordings, classes=classes)
    write_events(events, outdir / "events.csv", recordings=recordings, classes=classes)
    write_folds(folds, outdir / "folds.csv", recordings=recordings)
    scored = roots[0] / "scored_classes.txt"
    if scored.is_file():
        write_text(outdir / "scored_classes.txt", scored.read_text(encoding="utf-8"))
    else:
        (outdir / "scored_classes.txt").unlink(missing_ok=True)
    write_json(outdir / CORPUS_INFO_FILE, merged_info)
    write_csv(outdir / MERGE_REPORT, report)
    write_text(outdir / DONE_MARKER, "")

    splits = recordings["split"].value_counts()
    return {
        "outdir": str(outdir),
        "sources": [
            {
                "folder": str(s.root),
                "recordings": len(s.recordings),
                "kept": sum(1 for r in kept if r.source is s),
                "prefix": prefixes.get(s.index),
            }
            for s in sources
        ],
        "recordings": {k: int(splits.get(k, 0)) for k in ("train", "test", "unlabeled")},
        "clips": len(clips),
        "dropped": dropped,
        "renamed": sum(1 for r in kept if r.new_id != r.rid),
        "capped_species": capped,
        "secondary_dropped": secondary_dropped,
        "folds": n_folds,
        "fold_groups": fold_groups,
        "fold_blocks": blocks,
        "variant": info.get("variant"),
    }


def _read_source(root: Path, index: int) -> _Source:
    """A manifests folder's tables, validated against each other (clips.csv and events.csv may
    be absent: none)."""
    what = "the target" if index == 0 else f"extra {index}"
    if not (root / "recordings.csv").is_file():
        raise ManifestError(
            f"no recordings.csv: {what} must be a manifests folder written by stage 0 "
            "(egs/birdclef/local/data_prep.py --outdir)",
            path=root,
        )
    recordings = read_recordings(root / "recordings.csv")
    classes = read_classes(root / "classes.txt")
    clips = (
        read_clips(root / "clips.csv", recordings, classes)
        if (root / "clips.csv").is_file()
        else pd.DataFrame(columns=["recording_id", "primary", "secondary"], dtype="str")
    )
    events = (
        read_events(root / "events.csv", recordings, classes)
        if (root / "events.csv").is_file()
        else pd.DataFrame(columns=["recording_id", "label", "onset", "offset", "kind"])
    )
    return _Source(root, index, recordings, clips, events, classes)


def _rows(source: _Source) -> list[_Row]:
    clip = {
        r: (p, s)
        for r, p, s in zip(
            source.clips["recording_id"],
            source.clips["primary"],
            source.clips["secondary"],
            strict=True,
        )
    }
    table = source.recordings
    empty = [""] * len(table)
    dates = table["date"].tolist() if "date" in table.columns else empty
    urls = table["url"].tolist() if "url" in table.columns else empty
    out = []
    for rid, path, split, date, url in zip(
        table["recording_id"], table["path"], table["split"], dates, urls, strict=True
    ):
        row = _Row(source, rid, path, focal=split == "train" and rid in clip, date=str(date))
        if row.focal:
            row.primary, row.secondary = clip[rid]
            row.sid, row.number = source_id(path, str(url))
        out.append(row)
    return out


def _drop_duplicates(rows: Sequence[_Row], key: Any, reason: str) -> None:
    """Drop (``reason``) each live row whose non-empty ``key`` an earlier live row has."""
    first: dict[str, _Row] = {}
    for row in rows:
        if row.reason:
            continue
        k = key(row)
        if not k:
            continue
        if k in first:
            row.reason = reason
            row.duplicate_of = f"{first[k].source.root}:{first[k].rid}"
        else:
            first[k] = row


def _sha1(row: _Row) -> str:
    digest = hashlib.sha1()
    try:
        with open(row.path, "rb") as f:
            while block := f.read(_HASH_BLOCK):
                digest.update(block)
    except OSError as e:
        raise ManifestError(
            f"recording {row.rid!r}: cannot read its audio {row.path} ({e.strerror or e})",
            path=row.source.root / "recordings.csv",
            column="path",
        ) from None
    return digest.hexdigest()


def _hashes(rows: Sequence[_Row], nj: int, progress: bool) -> list[str]:
    bar = {"total": len(rows), "desc": "hashing audio", "unit": "file", "disable": not progress}
    if nj == 1:
        return [_sha1(r) for r in progress_bar(rows, **bar)]
    # threads: reading and hashlib (which releases the GIL on large buffers) overlap well
    with ThreadPoolExecutor(max_workers=nj) as pool:
        return list(progress_bar(pool.map(_sha1, rows), **bar))


def _cap(rows: Sequence[_Row], cap: int | None) -> int:
    """Drop (``cap``) all but the ``cap`` most recent rows of each species; species capped."""
    if cap is None:
        return 0
    by_species: dict[str, list[_Row]] = {}
    for row in rows:
        by_species.setdefault(row.primary, []).append(row)
    capped = 0
    for group in by_species.values():
        if len(group) <= cap:
            continue
        capped += 1
        # newest first: a dated recording before an undated one (ISO dates sort as text), then
        # the larger source id number; ties by source order and id, ascending
        group.sort(key=lambda r: (r.source.index, r.rid))
        group.sort(key=lambda r: (r.date, r.number), reverse=True)
        for row in group[cap:]:
            row.reason = "cap"
    return capped


def _assign_ids(rows: Sequence[_Row], n_sources: int) -> dict[int, str]:
    """Merged ids of the kept rows: the source id unless taken, else ``x<k>-`` prefixed;
    returns {source index: prefix} for the sources that needed one."""
    taken = {r.rid for r in rows if not r.reason and r.source.index == 0}
    prefixes: dict[int, str] = {}
    for r in rows:
        if r.source.index == 0 and not r.reason:
            r.new_id = r.rid
    for k in range(1, n_sources):
        prefix = f"x{k}-"
        mine = sorted(
            (r for r in rows if r.source.index == k and not r.reason), key=lambda r: r.rid
        )
        for r in mine:
            new_id = r.rid
            while new_id in taken:
                new_id = prefix + new_id
                prefixes[k] = prefix
            r.new_id = new_id
            taken.add(new_id)
    return prefixes


def _recordings_table(kept: Sequence[_Row]) -> pd.DataFrame:
    """recordings.csv of the kept rows: the target's first, then each extra's, in source order;
    contract columns, then the BirdCLEF metadata columns, then any other (all text, "" unknown)."""
    parts = []
    for source in dict.fromkeys(r.source for r in kept):
        ids = {r.rid: r.new_id for r in kept if r.source is source}
        table = source.recordings[source.recordings["recording_id"].isin(ids)].copy()
        table["recording_id"] = table["recording_id"].map(ids)
        parts.append(table)
    contract = [c.name for c in RECORDINGS_COLUMNS]
    if not parts:
        return pd.DataFrame(columns=[*contract, *EXTRA_COLUMNS])
    merged = pd.concat(parts, ignore_index=True)
    others = sorted(c for c in merged.columns if c not in contract and c not in EXTRA_COLUMNS)
    columns = [*contract, *EXTRA_COLUMNS, *others]
    merged = merged.reindex(columns=columns)
    for c in ("recording_id", "path", "split", *EXTRA_COLUMNS, *others):
        column = merged[c].astype(object)
        merged[c] = column.where(column.notna(), "").astype("str")
    return merged


def _events(kept: Sequence[_Row], class_set: set[str]) -> pd.DataFrame:
    """Events of the kept recordings under their merged ids; an extra's labels outside the
    target classes are left out."""
    parts = []
    for source in dict.fromkeys(r.source for r in kept):
        ids = {r.rid: r.new_id for r in kept if r.source is source}
        table = source.events[source.events["recording_id"].isin(ids)].copy()
        table["recording_id"] = table["recording_id"].map(ids)
        parts.append(table[table["label"].isin(class_set)])
    columns = ["recording_id", "label", "onset", "offset", "kind"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)


def format_summary(summary: dict[str, Any]) -> str:
    """The merge summary as lines of text (printed by merge_years.py)."""
    lines = [f"merged manifests written to {summary['outdir']} (variant {summary['variant']})"]
    for s in summary["sources"]:
        prefix = f"; ids already taken prefixed {s['prefix']}" if s["prefix"] else ""
        lines.append(f"  {s['folder']}: {s['kept']} of {s['recordings']} kept{prefix}")
    rec = summary["recordings"]
    lines.append(
        f"recordings: {rec['train']} train, {rec['test']} test, {rec['unlabeled']} unlabeled; "
        f"clips: {summary['clips']}"
    )
    dropped = summary["dropped"]
    total = sum(dropped.values())
    lines.append(
        f"dropped: {total}"
        + (": " + ", ".join(f"{n} {k}" for k, n in dropped.items() if n) if total else "")
    )
    if summary["capped_species"]:
        lines.append(f"species capped: {summary['capped_species']}")
    if summary["secondary_dropped"]:
        lines.append(
            f"secondary labels dropped (not target classes): {summary['secondary_dropped']}"
        )
    groups = f" grouped by {summary['fold_groups']}" if summary["fold_groups"] else ""
    lines.append(f"folds: {summary['folds']}{groups}; report: {MERGE_REPORT}")
    return "\n".join(lines)

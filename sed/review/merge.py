"""Merge review decisions into a detector corpus (``<root>/clips/<label>/``, ``reviewed.csv``).

``yes`` writes the detection's clip into ``clips/<label>/``, ``no`` into
``clips/<negative>/``; ``unsure`` and ``skip`` write nothing (and withdraw a clip an earlier
merge wrote for the same detection). The clip is the detection span cut out of the segment
sample-exactly (``--keep_padding``: the whole segment).

A clip's name depends on the detection only (source, onset, offset, label; :func:`clip_name`),
never on the decision, and ``reviewed.csv`` records where each clip is: merging again changes
nothing, and a changed decision moves the clip. ``reviewed.csv`` holds one row per clip present
(a moved clip's row is replaced by a new one at the end), written atomically after the clip files;
a clip that leaves a folder is deleted before ``reviewed.csv`` is written, so an interrupted merge
never leaves a clip in the wrong folder that a rerun would not fix.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from sed.fileio import atomic_open
from sed.review.cut import flac_subtype, safe_name, write_flac
from sed.review.tables import ReviewError, ReviewRow, read_decisions, read_review

REVIEWED_COLUMNS = [
    "clip",
    "source",
    "onset",
    "offset",
    "decision",
    "label",
    "score",
    "reviewer",
    "date",
    "checkpoint",
]
ACTIONS = ("added", "moved", "rewritten", "restored", "removed", "unchanged")


@dataclass
class MergeSummary:
    """Counts of a merge (:data:`ACTIONS` plus decisions not merged) and the lines it printed."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (*ACTIONS, "unsure", "skip", "undecided", "missing"), 0
        )
    )
    lines: list[str] = field(default_factory=list)


def clip_name(row: ReviewRow) -> str:
    """The clip's file stem: source stem, a hash of the source path (recorders name files
    alike in every folder), onset and offset in ms, label."""
    digest = hashlib.sha1(row.source.encode("utf-8")).hexdigest()[:6]
    on, off = int(round(row.onset * 1000)), int(round(row.offset * 1000))
    return f"{safe_name(Path(row.source).stem)}_{digest}_{on}-{off}_{safe_name(row.label)}"


def _folder(label: str, what: str) -> str:
    # a class name is a folder name: it must be one path component
    if not label or label in (".", "..") or any(c in label for c in "/\\\x00"):
        raise ReviewError(f"{what} {label!r} cannot be a folder name under clips/")
    return label


def read_reviewed(path: Path) -> list[dict[str, str]]:
    """Rows of ``reviewed.csv`` (none when it does not exist)."""
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REVIEWED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ReviewError(f"{path}: missing column(s) {', '.join(missing)}")
        return list(reader)


def _write_reviewed(path: Path, rows: list[dict[str, str]]) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, REVIEWED_COLUMNS, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def merge(
    review_csv: str | Path,
    root: str | Path,
    decisions: str | Path | None = None,
    negative: str = "negative",
    keep_padding: bool = False,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> MergeSummary:
    """Merge the decisions of one review into the corpus at ``root``.

    Args:
        review_csv: ``review.csv`` of ``cut`` (segments relative to its folder).
        root: detector corpus root (``clips/`` and ``reviewed.csv`` are made when missing).
        decisions: ``decisions.csv`` (default: beside ``review.csv``).
        negative: folder of ``no`` clips.
        keep_padding: write the whole segment (detection + context) instead of the detection.
        dry_run: print what would change, write nothing.
        echo: where the lines of changes and the summary go.

    Returns:
        The counts and lines (also echoed).

    Raises:
        ReviewError: missing or invalid tables, or a label that cannot be a folder name.
    """
    review_csv, root = Path(review_csv), Path(root)
    folder = review_csv.parent
    dec_path = Path(decisions) if decisions else folder / "decisions.csv"
    if not dec_path.exists():
        raise ReviewError(f"{dec_path}: not found (review the segments first)")
    rows = read_review(review_csv)
    decided = read_decisions(dec_path)
    negative = _folder(negative, "--negative")
    reviewed_path = root / "reviewed.csv"
    existing = read_reviewed(reviewed_path)
    where = {Path(r["clip"]).stem: i for i, r in enumerate(existing)}  # latest row wins
    summary = MergeSummary()
    counts = summary.counts
    drop: set[int] = set()  # rows of existing replaced or withdrawn
    appended: list[dict[str, str]] = []
    writes: list[tuple[ReviewRow, Path]] = []
    deletes: list[Path] = []

    def note(text: str) -> None:
        summary.lines.append(text)
        echo(("would " if dry_run else "") + text)

    for row in rows:
        d = decided.get(row.segment)
        if d is None:
            counts["undecided"] += 1
            continue
        name = clip_name(row)
        prev_i = where.get(name)
        prev = existing[prev_i] if prev_i is not None else None
        if d.decision in ("unsure", "skip"):
            counts[d.decision] += 1
            if prev is not None and prev_i not in drop:
                note(f"remove {prev['clip']} (now {d.decision})")
                deletes.append(root / prev["clip"])
                drop.add(prev_i)  # type: ignore[arg-type]
                counts["removed"] += 1
            continue
        if d.decision == "yes":
            label = _folder(row.label, "label")
            if label == negative:
                raise ReviewError(f"label {label!r} of {row.segment} is the negative folder name")
        else:
            label = negative
        if not (folder / row.segment).is_file():
            note(f"skip {row.segment}: segment file missing")
            counts["missing"] += 1
            continue
        onset, offset = row.onset, row.offset
        if keep_padding:
            onset, offset = onset - row.pad_before, offset + row.pad_after
        new = {
            "clip": f"clips/{label}/{name}.flac",
            "source": row.source,
            "onset": f"{onset:.6f}",
            "offset": f"{offset:.6f}",
            "decision": d.decision,
            "label": label,
            "score": f"{row.score:.6f}",
            "reviewer": d.reviewer,
            "date": d.date,
            "checkpoint": row.checkpoint,
        }
        target = root / new["clip"]
        if prev is None:
            action = "added"
            note(f"add {new['clip']} ({d.decision})")
        elif prev["clip"] != new["clip"]:
            action = "moved"
            note(f"move {prev['clip']} -> {new['clip']} ({prev['decision']} -> {d.decision})")
            deletes.append(root / prev["clip"])
        elif (prev["onset"], prev["offset"]) != (new["onset"], new["offset"]):
            action = "rewritten"
            note(f"rewrite {new['clip']} (span {new['onset']}-{new['offset']})")
        elif not target.is_file():
            action = "restored"
            note(f"restore {new['clip']} (listed in reviewed.csv, missing on disk)")
        else:
            counts["unchanged"] += 1
            continue
        counts[action] += 1
        writes.append((row, target))
        if prev_i is not None:
            drop.add(prev_i)
        appended.append(new)

    changed = any(counts[a] for a in ACTIONS if a != "unchanged")
    if not dry_run and changed:
        for row, target in writes:
            _write_clip(folder / row.segment, row, target, keep_padding)
        for path in deletes:
            path.unlink(missing_ok=True)
        kept = [r for i, r in enumerate(existing) if i not in drop]
        _write_reviewed(reviewed_path, kept + appended)
    text = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "nothing to merge"
    summary.lines.append(text)
    echo(("dry run: " if dry_run else "") + text)
    return summary


def _write_clip(segment: Path, row: ReviewRow, target: Path, keep_padding: bool) -> None:
    """Cut the detection span out of a segment (or take it whole) and write it as FLAC."""
    info = sf.info(str(segment))
    wave, sr = sf.read(str(segment), dtype="float32", always_2d=True)
    if not keep_padding:
        a = int(round(row.pad_before * sr))
        b = len(wave) - int(round(row.pad_after * sr))
        if b <= a:
            raise ReviewError(f"{segment}: shorter than its padding ({len(wave)} samples)")
        wave = wave[a:b]
    write_flac(target, wave, sr, flac_subtype(info.subtype))

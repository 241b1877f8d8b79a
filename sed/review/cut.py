"""Cut review segments: each detection with context padding, as FLAC, plus ``review.csv``.

A segment holds the detection and ``pad`` seconds before and after it, less where the file
starts or ends (``pad_before`` / ``pad_after`` in ``review.csv`` say how much there is, so the
merge can take the detection span back out sample-exactly). Only the segment's samples are read
(a seek), so hours-long recordings cost no more than short ones.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from sed.fileio import atomic_open, atomic_path
from sed.review.select import Detection
from sed.review.tables import ReviewError, ReviewRow, write_review

log = logging.getLogger(__name__)

SEGMENT_DIR = "segments"
# FLAC holds integer samples of at most 24 bits and at most 8 channels
_FLAC_16 = {"PCM_S8", "PCM_U8", "PCM_16"}
_FLAC_MAX_CHANNELS = 8


@dataclass
class CutResult:
    """What :func:`cut_segments` wrote: the rows of ``review.csv`` and ``(source, reason)`` of
    what was skipped."""

    rows: list[ReviewRow] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def safe_name(text: str) -> str:
    """``text`` usable in a file name: runs of characters other than letters, digits, ``.``,
    ``_`` and ``-`` become ``-`` (a label "Turdus merula" -> "Turdus-merula")."""
    out = re.sub(r"[^\w.-]+", "-", text).strip("-.")
    return out or "x"


def flac_subtype(subtype: str) -> str:
    """FLAC sample format for a source's: 16 bit for 8/16-bit sources, else 24 bit."""
    return "PCM_16" if subtype in _FLAC_16 else "PCM_24"


def write_flac(path: str | Path, wave: np.ndarray, sample_rate: int, subtype: str) -> None:
    """Write ``wave`` (N, channels) float32 as FLAC atomically (more than 8 channels: mono)."""
    if wave.ndim == 2 and wave.shape[1] > _FLAC_MAX_CHANNELS:
        wave = wave.mean(axis=1, keepdims=True)
    with atomic_path(path) as tmp:
        # the temporary name ends in .tmp: the format must be named, not guessed from it
        sf.write(str(tmp), wave, sample_rate, subtype=subtype, format="FLAC")


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def cut_segments(
    dets: Sequence[Detection],
    sources: Mapping[str, Path],
    outdir: str | Path,
    pad: float = 1.0,
    checkpoint: str = "",
    strict: bool = False,
) -> CutResult:
    """Write one FLAC per detection into ``<outdir>/segments/`` and ``<outdir>/review.csv``.

    Args:
        dets: detections, in review order.
        sources: ``{recording id: audio file}`` (:func:`sed.review.sources.resolve_sources`); an
            id missing there that is itself an existing path (``file`` column) is used as one.
        outdir: review folder.
        pad: context in seconds on each side (clipped to the file).
        checkpoint: the model that made the detections, copied into ``review.csv``.
        strict: raise on the first source that cannot be used instead of skipping it.

    Returns:
        The rows written and the skipped ``(source, reason)`` pairs (also ``skipped.csv``).

    Raises:
        ReviewError: with ``strict``, the first unusable source (its path and the reason).
    """
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    outdir = Path(outdir)
    result = CutResult()
    infos: dict[str, Any] = {}  # source -> info, or why it cannot be read
    names: set[str] = set()

    def skip(source: str, reason: str) -> None:
        if strict:
            raise ReviewError(f"{source}: {reason} (--strict)")
        log.warning("skipped: %s: %s", source, reason)
        result.skipped.append((source, reason))

    for d in dets:
        path = sources.get(d.recording_id)
        if path is None and Path(d.recording_id).is_file():
            path = Path(d.recording_id)
        if path is None:
            skip(d.recording_id, "no audio file for this recording_id (see --audio, --sources)")
            continue
        src = str(path)
        if src not in infos:
            try:
                infos[src] = sf.info(src)
            except Exception as e:  # soundfile raises several types for unreadable files
                infos[src] = "not found" if not path.exists() else f"cannot read audio ({e})"
                skip(src, infos[src])  # once per source, not once per detection
                continue
        info = infos[src]
        if isinstance(info, str):
            continue
        sr, n = int(info.samplerate), int(info.frames)
        s0 = int(round(d.onset * sr))
        s1 = min(n, int(round(d.offset * sr)))
        if s1 <= s0:
            end_s = n / sr
            skip(
                src, f"detection {d.onset:.3f}-{d.offset:.3f} s starts past the end ({end_s:.3f} s)"
            )
            continue
        p = int(round(pad * sr))
        start, end = max(0, s0 - p), min(n, s1 + p)
        try:
            with sf.SoundFile(src) as f:
                f.seek(start)
                wave = f.read(end - start, dtype="float32", always_2d=True)
        except Exception as e:
            skip(src, f"cannot read samples {start}-{end} ({e})")
            continue
        if len(wave) != end - start:
            skip(src, f"truncated: read {len(wave)} of {end - start} samples at {start}")
            continue
        name = f"{safe_name(d.recording_id)}_{_ms(d.onset)}-{_ms(d.offset)}_{safe_name(d.label)}"
        base, k = name, 1
        while name in names:  # detections within a millisecond of each other
            k += 1
            name = f"{base}_{k}"
        names.add(name)
        rel = f"{SEGMENT_DIR}/{name}.flac"
        try:
            write_flac(outdir / rel, wave, sr, flac_subtype(info.subtype))
        except (sf.LibsndfileError, RuntimeError, ValueError) as e:
            skip(src, f"cannot write {outdir / rel} ({e})")
            continue
        result.rows.append(
            ReviewRow(
                segment=rel,
                source=src,
                recording_id=d.recording_id,
                onset=s0 / sr,
                offset=s1 / sr,
                pad_before=(s0 - start) / sr,
                pad_after=(end - s1) / sr,
                label=d.label,
                score=float(d.score),
                checkpoint=checkpoint,
            )
        )
    write_review(outdir / "review.csv", result.rows)
    _write_skipped(outdir / "skipped.csv", result.skipped)
    return result


def _write_skipped(path: Path, skipped: Sequence[tuple[str, str]]) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["source", "reason"])
        w.writerows(skipped)

"""Audio files of ``sedkit infer``'s inputs and their recording ids (no torch, no pandas: the
full path, the lite ONNX path and the review tools share this one rule)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aif", ".aiff")


def collect_files(inputs: Sequence[str]) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    """Audio files of the inputs with a unique recording id each, and inputs that do not exist.

    A folder gives its audio files (by suffix, recursively, sorted); a file is taken whatever its
    suffix (it was asked for). Ids are paths below the folder without suffix (``/`` -> ``__``);
    a name taken already gets its suffix appended (``soundscape_ogg``), then a number.

    Returns:
        ``[(recording_id, path)]`` and ``[(input, reason)]``.
    """
    files: list[tuple[str, Path]] = []
    missing: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in inputs:
        root = Path(item)
        if root.is_dir():
            found = sorted(
                p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
            )
            pairs = [("__".join(p.relative_to(root).with_suffix("").parts), p) for p in found]
        elif root.is_file():
            pairs = [(root.stem, root)]
        else:
            missing.append((item, "not found"))
            continue
        for rid, path in pairs:
            if rid in seen:  # the same audio in two formats: soundscape.flac, soundscape.ogg
                rid = f"{rid}_{path.suffix.lstrip('.').lower()}"
            base, k = rid, 1
            while rid in seen:  # the same name under two inputs
                k += 1
                rid = f"{base}_{k}"
            seen.add(rid)
            files.append((rid, path))
    return files, missing

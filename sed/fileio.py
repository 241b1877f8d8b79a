"""Crash-safe file writing: write to a temporary file in the target folder, then rename.

A reader never sees a half-written file and an existing file is only replaced once the new one is
complete, so an interrupted stage cannot corrupt what an earlier run wrote. Files that several
jobs update (an experiment's ``meta.json``) are read, changed and replaced under a lock
(:func:`update_json`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

# mkstemp creates files readable by their owner only; a renamed file gets the permissions a plain
# open() would have given it, so that a lab sharing an experiment folder can read it. Read once:
# os.umask can only be read by setting it, which is not safe once threads run.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Use for libraries that want a file name (h5py, soundfile, torch.save).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file for writing; it replaces ``path`` only if the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def write_csv(path: str | os.PathLike, df: Any, **kwargs: Any) -> None:
    """Write a pandas DataFrame as CSV atomically (no index unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        df.to_csv(f, **kwargs)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block; blocks until free.

    POSIX record locks (``fcntl.lockf``): they hold between processes and, on NFS with a lock
    manager, between hosts (jobs of a Slurm array); the kernel releases them when a process dies.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # append mode: lockf needs a file open for writing, and the lock file's content is never used
    with open(path, "a") as f:
        fcntl.lockf(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)


def update_json(
    path: str | os.PathLike, update: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """Read the JSON object at ``path``, apply ``update`` and write the result, atomically and
    under a lock (``.<name>.lock`` beside it), so that concurrent updates all take effect.

    Args:
        path: a JSON file holding an object; a missing or unreadable one reads as ``{}``.
        update: current object -> new object (called with the lock held).

    Returns:
        The object written.
    """
    path = Path(path)
    with file_lock(path.with_name(f".{path.name}.lock")):
        try:
            current = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            current = {}
        new = update(current if isinstance(current, dict) else {})
        write_json(path, new)
    return new

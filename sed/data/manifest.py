"""The manifest contract between stage 0 of every recipe and the rest of the engine (DESIGN §4).

Stage 0 of each recipe turns its raw corpus into the same five files, so every later stage is
corpus-agnostic:

- ``recordings.csv``: one row per audio file
  (recording_id, path, split, duration, sample_rate, channels, then any extra metadata columns).
- ``events.csv``: strong labels (recording_id, label, onset, offset, fmin, fmax, songtype, kind).
- ``clips.csv``: weak labels (recording_id, primary, secondary).
- ``classes.txt``: one label per line, in model output order.
- ``folds.csv``: recording_id, fold.

Every ``read_*`` function returns a typed DataFrame (or list) that has passed the matching
``validate_*`` function; every ``write_*`` function validates first and then writes atomically, so
a manifest on disk is always complete and valid. A problem raises :class:`ManifestError`, whose
message names the file, the 1-based line of the CSV file (header = line 1) and the column, e.g.::

    data/rfcx/events.csv line 17: offset (3.2) must be greater than onset (4.0)

For a table validated in memory (``validate_*``, ``write_*``) the line is the one the row has in the
written file: row position + 2.

Column types after reading (pandas):

- identifiers and labels are strings (``str`` dtype): CSV files are read with every field as text
  first, so ids such as ``00204008d`` or ``0123`` and a label such as ``NA`` are never mangled;
- times and frequencies are ``float64`` (seconds, Hz), counts and folds ``int64``;
- optional columns absent from the file are added (NaN / missing) so readers need not branch;
- extra metadata columns of ``recordings.csv`` are kept as strings; a consumer casts what it uses
  (guessing types would turn a site id ``0123`` into ``123``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sed.fileio import write_csv, write_text

__all__ = [
    "CLIPS_COLUMNS",
    "DURATION_TOLERANCE",
    "EVENTS_COLUMNS",
    "EVENT_KINDS",
    "FOLDS_COLUMNS",
    "RECORDINGS_COLUMNS",
    "Column",
    "ManifestError",
    "read_classes",
    "read_clips",
    "read_events",
    "read_folds",
    "read_recordings",
    "read_table",
    "validate_classes",
    "validate_clips",
    "validate_events",
    "validate_folds",
    "validate_recordings",
    "write_classes",
    "write_clips",
    "write_events",
    "write_folds",
    "write_recordings",
]

#: Seconds an event may end after its recording's end: annotation tools and resampling round the
#: end of a call a few frames past the last sample, which is not worth rejecting a corpus for.
DURATION_TOLERANCE = 0.05

#: Allowed values of ``events.csv`` ``kind``: true positive and (verified) false positive.
EVENT_KINDS = ("tp", "fp")

PathLike = str | os.PathLike


class ManifestError(ValueError):
    """A manifest or raw-corpus file that breaks the contract.

    The message reads ``<path> line <n>: <what is wrong>`` (or ``<path>: ...`` for whole-file
    problems), where ``<what is wrong>`` names the column and what was expected.

    Attributes:
        path (str | None): The file at fault, as given by the caller.
        line (int | None): 1-based line number in that file (CSV header = line 1).
        column (str | None): The column at fault, when one is.
    """

    def __init__(
        self,
        message: str,
        *,
        path: PathLike | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        self.reason = message
        where = self.path or ""
        if line is not None:
            where = f"{where} line {line}" if where else f"line {line}"
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class Column:
    """Type spec of one manifest column.

    Attributes:
        name: Column name in the CSV header.
        dtype: ``"str"``, ``"float"`` or ``"int"``.
        required: Whether the column must be present in the file.
        nullable: Whether a row may leave the field empty.
        fill: For a nullable text column, the value an empty field reads as (None: missing).
    """

    name: str
    dtype: str
    required: bool = True
    nullable: bool = False
    fill: str | None = None


RECORDINGS_COLUMNS: tuple[Column, ...] = (
    Column("recording_id", "str"),
    Column("path", "str"),
    Column("split", "str"),
    Column("duration", "float"),
    Column("sample_rate", "int"),
    Column("channels", "int"),
)

EVENTS_COLUMNS: tuple[Column, ...] = (
    Column("recording_id", "str"),
    Column("label", "str"),
    Column("onset", "float"),
    Column("offset", "float"),
    Column("fmin", "float", required=False, nullable=True),
    Column("fmax", "float", required=False, nullable=True),
    # Text, not int: other corpora name song types ("call", "song"); RFCX's 1 / 4 stay "1" / "4".
    Column("songtype", "str", required=False, nullable=True),
    Column("kind", "str"),
)

CLIPS_COLUMNS: tuple[Column, ...] = (
    Column("recording_id", "str"),
    Column("primary", "str"),
    # Space-separated labels; "" (not missing) when there are none, so ``.split()`` always works.
    Column("secondary", "str", required=False, nullable=True, fill=""),
)

FOLDS_COLUMNS: tuple[Column, ...] = (
    Column("recording_id", "str"),
    Column("fold", "int"),
)


# --------------------------------------------------------------------------------------------
# Generic table reading and typing
# --------------------------------------------------------------------------------------------


def _line_numbers(df: pd.DataFrame, lines: Sequence[int] | None) -> np.ndarray:
    """Line numbers of ``df``'s rows: as read from the file, else as they would be written."""
    if lines is not None:
        return np.asarray(lines, dtype=int)
    return np.arange(len(df), dtype=int) + 2


def read_table(path: PathLike, columns: Sequence[Column]) -> tuple[pd.DataFrame, np.ndarray]:
    """Read any CSV file against a column spec, with the manifest readers' error messages.

    Recipes use it for their raw corpus files (e.g. RFCX ``train_tp.csv``) so that a bad field there
    is reported exactly like one in a manifest.

    Args:
        path: CSV file with a header line.
        columns: Expected columns; columns not in the spec are kept as text.

    Returns:
        The typed table (blank lines dropped) and the 1-based file line of each of its rows.

    Raises:
        ManifestError: Missing file, missing column, empty or non-numeric field.
    """
    raw, lines = _read_raw(path)
    return _coerce(raw, columns, path, lines), lines


def _read_raw(path: PathLike) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a CSV with every field as text, dropping blank lines but keeping true line numbers.

    Returns:
        The raw table (all ``str``, empty fields as ``""``) and the 1-based line of each row.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError("file not found", path=path)
    try:
        # keep_default_na=False: only our own rules decide what is missing, so a label "NA" or an
        # id "nan" survives; skip_blank_lines=False keeps row i on line i + 2 for error messages.
        raw = pd.read_csv(
            path, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8"
        )
    except pd.errors.EmptyDataError:
        raise ManifestError("file is empty (expected a CSV header line)", path=path) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ManifestError(f"not a readable UTF-8 CSV file ({e})", path=path) from None
    raw = raw.fillna("")
    lines = np.arange(len(raw), dtype=int) + 2
    blank = (raw == "").all(axis=1).to_numpy() if len(raw.columns) else np.ones(len(raw), bool)
    raw = raw.loc[~blank].reset_index(drop=True)
    return raw, lines[~blank]


def _check_columns(df: pd.DataFrame, spec: Sequence[Column], path: PathLike) -> None:
    missing = [c.name for c in spec if c.required and c.name not in df.columns]
    if missing:
        expected = ", ".join(c.name if c.required else f"[{c.name}]" for c in spec)
        raise ManifestError(
            f"missing column(s) {', '.join(missing)}; expected columns: {expected}",
            path=path,
            line=1,
            column=missing[0],
        )


def _coerce(
    raw: pd.DataFrame, spec: Sequence[Column], path: PathLike, lines: np.ndarray
) -> pd.DataFrame:
    """Turn a raw all-text table into typed columns, failing on the first bad field."""
    _check_columns(raw, spec, path)
    out = pd.DataFrame(index=raw.index)
    for col in spec:
        if col.name not in raw.columns:
            out[col.name] = _empty_column(col, len(raw))
            continue
        text = raw[col.name].astype(str).str.strip()
        empty = (text == "").to_numpy()
        if not col.nullable and empty.any():
            i = int(np.flatnonzero(empty)[0])
            raise ManifestError(
                f"{col.name} is empty (expected {_describe(col)})",
                path=path,
                line=int(lines[i]),
                column=col.name,
            )
        if col.dtype == "str":
            values = text.astype("str")
            if col.nullable:
                values = values.where(~empty, col.fill)
            out[col.name] = values
            continue
        numbers = pd.to_numeric(text.where(~empty, None), errors="coerce").astype("float64")
        bad = numbers.isna().to_numpy() & ~empty
        bad |= ~np.isfinite(numbers.fillna(0.0).to_numpy())
        if col.dtype == "int":
            frac = numbers.fillna(0.0).to_numpy() % 1 != 0
            bad |= frac
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ManifestError(
                f"{col.name} ({raw[col.name].iloc[i]!r}) is not {_describe(col)}",
                path=path,
                line=int(lines[i]),
                column=col.name,
            )
        out[col.name] = numbers.astype("int64") if col.dtype == "int" else numbers
    known = {c.name for c in spec}
    for name in raw.columns:
        if name not in known:
            out[name] = raw[name].astype("str")
    return out


def _empty_column(col: Column, n: int) -> pd.Series:
    if col.dtype == "float":
        return pd.Series(np.full(n, np.nan), dtype="float64")
    return pd.Series([col.fill] * n, dtype="str")


def _describe(col: Column) -> str:
    return {"str": "a non-empty text", "float": "a finite number", "int": "an integer"}[col.dtype]


def _typed_view(
    df: pd.DataFrame, spec: Sequence[Column], path: PathLike, lines: Sequence[int] | None
) -> pd.DataFrame:
    """Check an in-memory table against ``spec`` by round-tripping its values through text.

    Validating in-memory tables with the same code as files keeps the two from drifting apart:
    what ``write_*`` accepts is exactly what ``read_*`` will accept back.
    """
    _check_columns(df, spec, path)
    raw = pd.DataFrame(index=range(len(df)))
    for name in df.columns:
        values = df[name].reset_index(drop=True)
        raw[name] = [_to_text(v) for v in values]
    return _coerce(raw, spec, path, _line_numbers(df, lines))


def _to_text(value: object) -> str:
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, (bool, np.bool_)):
        # True would silently pass as the integer 1; a flag in a numeric column is a bug upstream.
        return "True" if value else "False"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def _raise_at(
    mask: np.ndarray,
    lines: np.ndarray,
    path: PathLike,
    column: str,
    message: Callable[[int], str],
) -> None:
    """Raise for the first row where ``mask`` is true; ``message(i)`` words the problem."""
    if mask.any():
        i = int(np.flatnonzero(mask)[0])
        raise ManifestError(message(i), path=path, line=int(lines[i]), column=column)


def _check_unique_ids(
    df: pd.DataFrame, path: PathLike, lines: np.ndarray, column: str = "recording_id"
) -> None:
    ids = df[column].to_numpy()
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero(ids == ids[i])[0])
        raise ManifestError(
            f"{column} {ids[i]!r} is a duplicate (first seen at line {int(lines[first])})",
            path=path,
            line=int(lines[i]),
            column=column,
        )


def _known_ids(recordings: pd.DataFrame | Iterable[str] | None) -> set[str] | None:
    if recordings is None:
        return None
    if isinstance(recordings, pd.DataFrame):
        return set(recordings["recording_id"].astype(str))
    return {str(r) for r in recordings}


def _durations(recordings: pd.DataFrame | Iterable[str] | None) -> dict[str, float] | None:
    if isinstance(recordings, pd.DataFrame) and "duration" in recordings.columns:
        return dict(
            zip(
                recordings["recording_id"].astype(str),
                recordings["duration"].astype(float),
                strict=True,
            )
        )
    return None


def _check_unknown_recordings(
    df: pd.DataFrame,
    known: set[str] | None,
    path: PathLike,
    lines: np.ndarray,
) -> None:
    if known is None:
        return
    ids = df["recording_id"].to_numpy()
    unknown = np.array([r not in known for r in ids], dtype=bool)
    _raise_at(
        unknown,
        lines,
        path,
        "recording_id",
        lambda i: f"recording_id {ids[i]!r} is not in recordings.csv",
    )


# --------------------------------------------------------------------------------------------
# recordings.csv
# --------------------------------------------------------------------------------------------


def _validate_recordings(
    df: pd.DataFrame, path: PathLike, lines: Sequence[int] | None
) -> pd.DataFrame:
    typed = _typed_view(df, RECORDINGS_COLUMNS, path, lines)
    ln = _line_numbers(df, lines)
    _check_unique_ids(typed, path, ln)
    for name, what in (("duration", "seconds"), ("sample_rate", "Hz"), ("channels", "channels")):
        values = typed[name].to_numpy()
        _raise_at(
            values <= 0,
            ln,
            path,
            name,
            lambda i, n=name, v=values, w=what: f"{n} ({v[i]}) must be positive ({w})",
        )
    return typed


def validate_recordings(df: pd.DataFrame, path: PathLike = "recordings.csv") -> None:
    """Check a recordings table against the contract.

    Args:
        df: Table with at least the columns of :data:`RECORDINGS_COLUMNS`.
        path: File name used in error messages (the file it was read from or will be written to).

    Raises:
        ManifestError: Missing column, empty or non-numeric field, duplicate ``recording_id``,
            non-positive ``duration`` / ``sample_rate`` / ``channels``.
    """
    _validate_recordings(df, path, None)


def read_recordings(path: PathLike) -> pd.DataFrame:
    """Read and validate ``recordings.csv``.

    Returns:
        Columns ``recording_id, path, split`` (str), ``duration`` (float64, seconds),
        ``sample_rate``, ``channels`` (int64), then any extra columns as str.
    """
    raw, lines = _read_raw(path)
    return _validate_recordings(raw, path, lines)


def write_recordings(df: pd.DataFrame, path: PathLike) -> None:
    """Validate and write ``recordings.csv`` atomically (contract columns first, extras after)."""
    typed = _validate_recordings(df, path, None)
    write_csv(path, typed)


# --------------------------------------------------------------------------------------------
# events.csv
# --------------------------------------------------------------------------------------------


def _validate_events(
    df: pd.DataFrame,
    recordings: pd.DataFrame | Iterable[str] | None,
    classes: Sequence[str] | None,
    path: PathLike,
    lines: Sequence[int] | None,
    tolerance: float,
) -> pd.DataFrame:
    typed = _typed_view(df, EVENTS_COLUMNS, path, lines)
    ln = _line_numbers(df, lines)
    onset = typed["onset"].to_numpy()
    offset = typed["offset"].to_numpy()
    _raise_at(onset < 0, ln, path, "onset", lambda i: f"onset ({onset[i]}) must be >= 0")
    _raise_at(
        offset <= onset,
        ln,
        path,
        "offset",
        lambda i: f"offset ({offset[i]}) must be greater than onset ({onset[i]})",
    )
    fmin = typed["fmin"].to_numpy()
    fmax = typed["fmax"].to_numpy()
    alone = np.flatnonzero(np.isnan(fmin) != np.isnan(fmax))
    if alone.size:
        i = int(alone[0])
        given, other = ("fmin", "fmax") if np.isnan(fmax[i]) else ("fmax", "fmin")
        raise ManifestError(
            f"{given} is given but {other} is empty (give both or neither)",
            path=path,
            line=int(ln[i]),
            column=other,
        )
    _raise_at(
        np.nan_to_num(fmin, nan=0.0) < 0,
        ln,
        path,
        "fmin",
        lambda i: f"fmin ({fmin[i]}) must be >= 0",
    )
    _raise_at(
        ~np.isnan(fmin) & (fmax <= fmin),
        ln,
        path,
        "fmax",
        lambda i: f"fmax ({fmax[i]}) must be greater than fmin ({fmin[i]})",
    )
    kind = typed["kind"].to_numpy()
    _raise_at(
        ~np.isin(kind, EVENT_KINDS),
        ln,
        path,
        "kind",
        lambda i: f"kind {kind[i]!r} must be one of {', '.join(EVENT_KINDS)}",
    )
    labels = typed["label"].to_numpy()
    if classes is not None:
        class_set = set(classes)
        _raise_at(
            np.array([lab not in class_set for lab in labels], dtype=bool),
            ln,
            path,
            "label",
            lambda i: f"label {labels[i]!r} is not in classes.txt",
        )
    _check_unknown_recordings(typed, _known_ids(recordings), path, ln)
    durations = _durations(recordings)
    if durations is not None:
        ids = typed["recording_id"].to_numpy()
        dur = np.array([durations.get(r, np.inf) for r in ids], dtype=float)
        _raise_at(
            offset > dur + tolerance,
            ln,
            path,
            "offset",
            lambda i: (
                f"offset ({offset[i]}) is beyond the end of recording {ids[i]!r} "
                f"(duration {dur[i]} s, tolerance {tolerance} s)"
            ),
        )
    return typed


def validate_events(
    df: pd.DataFrame,
    recordings: pd.DataFrame | Iterable[str] | None = None,
    classes: Sequence[str] | None = None,
    path: PathLike = "events.csv",
    tolerance: float = DURATION_TOLERANCE,
) -> None:
    """Check a strong-label table against the contract.

    Args:
        df: Table with the columns of :data:`EVENTS_COLUMNS` (``fmin``, ``fmax``, ``songtype``
            optional).
        recordings: The recordings table (enables the unknown-recording and duration checks) or
            just the known recording ids (unknown-recording check only). None skips both.
        classes: The class list; None skips the label check.
        path: File name used in error messages.
        tolerance: Seconds an event may end after its recording's duration.

    Raises:
        ManifestError: Missing column, bad number, ``onset < 0``, ``offset <= onset``, ``offset``
            beyond the duration, ``fmin``/``fmax`` given alone or ``fmin >= fmax``, ``kind`` not in
            :data:`EVENT_KINDS`, label not in ``classes``, unknown ``recording_id``.
    """
    _validate_events(df, recordings, classes, path, None, tolerance)


def read_events(
    path: PathLike,
    recordings: pd.DataFrame | Iterable[str] | None = None,
    classes: Sequence[str] | None = None,
    tolerance: float = DURATION_TOLERANCE,
) -> pd.DataFrame:
    """Read and validate ``events.csv`` (see :func:`validate_events` for the arguments).

    Returns:
        Columns ``recording_id, label`` (str), ``onset, offset, fmin, fmax`` (float64; fmin/fmax
        NaN when not given), ``songtype`` (str, missing when not given), ``kind`` (str: tp | fp),
        in file order.
    """
    raw, lines = _read_raw(path)
    return _validate_events(raw, recordings, classes, path, lines, tolerance)


def write_events(
    df: pd.DataFrame,
    path: PathLike,
    recordings: pd.DataFrame | Iterable[str] | None = None,
    classes: Sequence[str] | None = None,
    tolerance: float = DURATION_TOLERANCE,
) -> None:
    """Validate and write ``events.csv`` atomically, with every contract column present."""
    typed = _validate_events(df, recordings, classes, path, None, tolerance)
    write_csv(path, typed)


# --------------------------------------------------------------------------------------------
# clips.csv
# --------------------------------------------------------------------------------------------


def _validate_clips(
    df: pd.DataFrame,
    recordings: pd.DataFrame | Iterable[str] | None,
    classes: Sequence[str] | None,
    path: PathLike,
    lines: Sequence[int] | None,
) -> pd.DataFrame:
    typed = _typed_view(df, CLIPS_COLUMNS, path, lines)
    ln = _line_numbers(df, lines)
    _check_unique_ids(typed, path, ln)
    if classes is not None:
        class_set = set(classes)
        primary = typed["primary"].to_numpy()
        _raise_at(
            np.array([p not in class_set for p in primary], dtype=bool),
            ln,
            path,
            "primary",
            lambda i: f"primary label {primary[i]!r} is not in classes.txt",
        )
        secondary = [s.split() for s in typed["secondary"]]
        outside = [[s for s in row if s not in class_set] for row in secondary]
        _raise_at(
            np.array([bool(o) for o in outside], dtype=bool),
            ln,
            path,
            "secondary",
            lambda i: f"secondary label {outside[i][0]!r} is not in classes.txt",
        )
    _check_unknown_recordings(typed, _known_ids(recordings), path, ln)
    return typed


def validate_clips(
    df: pd.DataFrame,
    recordings: pd.DataFrame | Iterable[str] | None = None,
    classes: Sequence[str] | None = None,
    path: PathLike = "clips.csv",
) -> None:
    """Check a weak-label table: one row per recording, labels known, recordings known.

    Args:
        df: Table with ``recording_id``, ``primary`` and optionally ``secondary``
            (space-separated labels).
        recordings: Recordings table or ids; None skips the unknown-recording check.
        classes: The class list; None skips the label checks.
        path: File name used in error messages.

    Raises:
        ManifestError: On the first violation.
    """
    _validate_clips(df, recordings, classes, path, None)


def read_clips(
    path: PathLike,
    recordings: pd.DataFrame | Iterable[str] | None = None,
    classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read and validate ``clips.csv``.

    Returns:
        Columns ``recording_id, primary, secondary`` (str; ``secondary`` is ``""`` when none).
    """
    raw, lines = _read_raw(path)
    return _validate_clips(raw, recordings, classes, path, lines)


def write_clips(
    df: pd.DataFrame,
    path: PathLike,
    recordings: pd.DataFrame | Iterable[str] | None = None,
    classes: Sequence[str] | None = None,
) -> None:
    """Validate and write ``clips.csv`` atomically."""
    write_csv(path, _validate_clips(df, recordings, classes, path, None))


# --------------------------------------------------------------------------------------------
# classes.txt
# --------------------------------------------------------------------------------------------


def validate_classes(classes: Sequence[str], path: PathLike = "classes.txt") -> None:
    """Check a class list: non-empty, unique labels without whitespace.

    Labels may not contain whitespace because ``clips.csv`` separates secondary labels by spaces.
    Line numbers in errors are 1-based lines of ``classes.txt``.

    Raises:
        ManifestError: Empty list, empty or whitespace-containing label, duplicate label.
    """
    if len(classes) == 0:
        raise ManifestError("no classes (expected one label per line)", path=path)
    seen: dict[str, int] = {}
    for i, label in enumerate(classes, start=1):
        if not isinstance(label, str) or label == "":
            raise ManifestError("empty label (expected one label per line)", path=path, line=i)
        if any(ch.isspace() for ch in label):
            raise ManifestError(f"label {label!r} contains whitespace", path=path, line=i)
        if label in seen:
            raise ManifestError(
                f"label {label!r} is a duplicate (first seen at line {seen[label]})",
                path=path,
                line=i,
            )
        seen[label] = i


def read_classes(path: PathLike) -> list[str]:
    """Read ``classes.txt``: one label per line, in output order (trailing blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError("file not found", path=path)
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and lines[-1].strip() == "":
        lines.pop()
    # Strip only the line ending's leftovers (\r) and surrounding blanks; inner blanks are errors.
    classes = [line.strip() for line in lines]
    validate_classes(classes, path)
    return classes


def write_classes(classes: Sequence[str], path: PathLike) -> None:
    """Validate and write ``classes.txt`` atomically."""
    classes = [str(c) for c in classes]
    validate_classes(classes, path)
    write_text(path, "".join(f"{c}\n" for c in classes))


# --------------------------------------------------------------------------------------------
# folds.csv
# --------------------------------------------------------------------------------------------


def _validate_folds(
    df: pd.DataFrame,
    recordings: pd.DataFrame | Iterable[str] | None,
    path: PathLike,
    lines: Sequence[int] | None,
) -> pd.DataFrame:
    typed = _typed_view(df, FOLDS_COLUMNS, path, lines)
    ln = _line_numbers(df, lines)
    _check_unique_ids(typed, path, ln)
    fold = typed["fold"].to_numpy()
    _raise_at(fold < 0, ln, path, "fold", lambda i: f"fold ({fold[i]}) must be >= 0")
    _check_unknown_recordings(typed, _known_ids(recordings), path, ln)
    return typed


def validate_folds(
    df: pd.DataFrame,
    recordings: pd.DataFrame | Iterable[str] | None = None,
    path: PathLike = "folds.csv",
) -> None:
    """Check a fold table: unique recording ids, integer folds >= 0, recordings known.

    Raises:
        ManifestError: On the first violation.
    """
    _validate_folds(df, recordings, path, None)


def read_folds(
    path: PathLike, recordings: pd.DataFrame | Iterable[str] | None = None
) -> pd.DataFrame:
    """Read and validate ``folds.csv``.

    Returns:
        Columns ``recording_id`` (str) and ``fold`` (int64).
    """
    raw, lines = _read_raw(path)
    return _validate_folds(raw, recordings, path, lines)


def write_folds(
    df: pd.DataFrame, path: PathLike, recordings: pd.DataFrame | Iterable[str] | None = None
) -> None:
    """Validate and write ``folds.csv`` atomically."""
    write_csv(path, _validate_folds(df, recordings, path, None))

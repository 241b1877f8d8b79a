"""Gather every experiment's ``results.json`` of a recipe into ``RESULTS.md`` and ``results.csv``.

Each experiment folder ``exp/<recipe>/<family>/<version>/`` holds a ``results.json`` written by
the scoring stage. This module reads them all and writes the recipe-level table::

    python -m sed.results --expdir exp/rfcx
    python -m sed.results --expdir exp/rfcx --lb cnn/demo 0.912   # record a leaderboard score

A ``results.json`` that cannot be read, is not valid JSON or lacks the required keys is reported
with a warning naming the file and skipped, so one broken run does not hide the others.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sed.fileio import write_csv, write_json, write_text

__all__ = [
    "COLUMNS",
    "ResultsWarning",
    "collect_results",
    "main",
    "set_leaderboard",
    "write_results_table",
]

RESULTS_NAME = "results.json"
MARKDOWN_NAME = "RESULTS.md"
CSV_NAME = "results.csv"

COLUMNS = [
    "experiment",
    "family",
    "version",
    "checkpoint",
    "cv_mean",
    "cv_std",
    "cv_folds",
    "oof_lwlrap",
    "oof_lwlrap_frame",
    "test_lwlrap",
    "test_lwlrap_frame",
    "lb",
    "created",
]

# (DataFrame column, markdown header); family and version are already in "experiment".
_MD_COLUMNS = [
    ("experiment", "experiment"),
    ("checkpoint", "ckpt"),
    ("cv_mean", "CV mean"),
    ("cv_std", "CV std"),
    ("cv_folds", "CV folds"),
    ("oof_lwlrap", "OOF"),
    ("oof_lwlrap_frame", "OOF frame"),
    ("test_lwlrap", "test"),
    ("test_lwlrap_frame", "test frame"),
    ("lb", "LB"),
    ("created", "created"),
]
_FLOAT_COLUMNS = {
    "cv_mean",
    "cv_std",
    "oof_lwlrap",
    "oof_lwlrap_frame",
    "test_lwlrap",
    "test_lwlrap_frame",
    "lb",
}


class ResultsWarning(UserWarning):
    """A results.json was skipped or an option could not be applied."""


class _BadResults(ValueError):
    """Raised inside the parser when a results.json does not follow the schema."""


def _number(value: Any, where: str, *, required: bool = False) -> float:
    """A JSON number as float; None/absent gives NaN unless required."""
    if value is None and not required:
        return math.nan
    # bool is an int subclass in Python; true/false is never a meaningful score.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadResults(f"{where} must be a number, got {value!r}")
    return float(value)


def _section(data: dict, key: str, *, required: bool) -> dict:
    value = data.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise _BadResults(f"'{key}' must be an object, got {value!r}")
    return value


def _folds(per_fold: Any) -> list[float]:
    """Fold scores in fold order; accepts {"0": x, "1": y} or [x, y]."""
    if per_fold is None:
        return []
    if isinstance(per_fold, list):
        return [_number(v, f"oof.per_fold[{i}]", required=True) for i, v in enumerate(per_fold)]
    if not isinstance(per_fold, dict):
        raise _BadResults(f"oof.per_fold must be an object or a list, got {per_fold!r}")

    def key(k: str) -> tuple[int, int | str]:
        # Numeric fold ids sort numerically ("10" after "9"); anything else after them by name.
        return (0, int(k)) if k.lstrip("-").isdigit() else (1, k)

    return [
        _number(per_fold[k], f"oof.per_fold[{k!r}]", required=True)
        for k in sorted(per_fold, key=key)
    ]


def _parse(path: Path) -> dict[str, Any]:
    """One table row from one results.json; raises _BadResults if unusable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise _BadResults(f"cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise _BadResults(f"not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise _BadResults(f"top level must be an object, got {type(data).__name__}")

    oof = _section(data, "oof", required=True)
    if "lwlrap" not in oof:
        raise _BadResults("missing required key 'oof.lwlrap'")
    test = _section(data, "test", required=False)
    folds = _folds(oof.get("per_fold"))

    checkpoint = data.get("checkpoint")
    created = data.get("created")
    # The folder names identify the experiment: two runs differing only in their _<tag> suffix
    # would otherwise collide if results.json carried the untagged version.
    family, version = path.parent.parent.name, path.parent.name
    return {
        "experiment": f"{family}/{version}",
        "family": family,
        "version": version,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "cv_mean": float(np.mean(folds)) if folds else math.nan,
        # Population std (ddof=0): defined for a single fold and what np.std reports.
        "cv_std": float(np.std(folds)) if folds else math.nan,
        "cv_folds": " ".join(f"{v:.3f}" for v in folds) if folds else None,
        "oof_lwlrap": _number(oof["lwlrap"], "oof.lwlrap", required=True),
        "oof_lwlrap_frame": _number(oof.get("lwlrap_frame"), "oof.lwlrap_frame"),
        "test_lwlrap": _number(test.get("lwlrap"), "test.lwlrap"),
        "test_lwlrap_frame": _number(test.get("lwlrap_frame"), "test.lwlrap_frame"),
        "lb": _number(data.get("lb"), "lb"),
        "created": None if created is None else str(created),
        "_metric": data.get("metric"),
        "_recipe": data.get("recipe"),
    }


def _collect(recipe_dir: Path) -> tuple[pd.DataFrame, list[str], str | None]:
    """Rows (public columns), the metric names seen, and the recipe name seen in the files."""
    if not recipe_dir.is_dir():
        raise FileNotFoundError(f"experiment directory not found: {recipe_dir}")
    rows = []
    for path in sorted(recipe_dir.glob(f"*/*/{RESULTS_NAME}")):
        try:
            rows.append(_parse(path))
        except _BadResults as e:
            warnings.warn(f"skipping {path}: {e}", ResultsWarning, stacklevel=3)
    metrics = sorted({str(r["_metric"]) for r in rows if r["_metric"]})
    recipes = sorted({str(r["_recipe"]) for r in rows if r["_recipe"]})
    df = pd.DataFrame([{k: r[k] for k in COLUMNS} for r in rows], columns=COLUMNS)
    df = df.sort_values(["family", "version"], kind="stable", ignore_index=True)
    for col in _FLOAT_COLUMNS:
        df[col] = df[col].astype(float)
    return df, metrics, recipes[0] if len(recipes) == 1 else None


def collect_results(recipe_dir: str | Path) -> pd.DataFrame:
    """Read every ``<recipe_dir>/<family>/<version>/results.json`` into one table.

    Args:
        recipe_dir (str | Path): the recipe's experiment folder, e.g. ``exp/rfcx``.

    Returns:
        DataFrame: one row per valid results.json, sorted by family then version, with columns
        ``COLUMNS``: experiment ("family/version", from the folder names), family, version,
        checkpoint, cv_mean and cv_std (mean and population std over ``oof.per_fold``), cv_folds
        (the fold scores, 3 decimals, space-separated, in fold order), oof_lwlrap,
        oof_lwlrap_frame, test_lwlrap, test_lwlrap_frame, lb, created. Missing values are NaN
        (test with ``pd.isna``: string columns may hold None or NaN depending on pandas).

    Raises:
        FileNotFoundError: ``recipe_dir`` is not a directory.

    Warns:
        ResultsWarning: for each results.json that is skipped (unreadable, invalid JSON, missing
            ``oof.lwlrap``, or a value of the wrong type), naming the file.
    """
    return _collect(Path(recipe_dir))[0]


def _cell(value: Any, column: str) -> str:
    # pandas may hold a missing string as None, NaN or pd.NA depending on version and dtype.
    if value is None or pd.isna(value):
        return "-"
    if column in _FLOAT_COLUMNS:
        return f"{value:.4f}"
    # A pipe would end the cell early.
    return str(value).replace("|", "\\|")


def _markdown(df: pd.DataFrame, title: str, metrics: list[str]) -> str:
    metric = ", ".join(metrics) if metrics else "lwlrap"
    lines = [
        f"# Results: {title}",
        "",
        f"Metric: **{metric}** (higher is better).",
        "",
        "Columns: *CV mean* / *CV std* are the mean and population std of the per-fold "
        "out-of-fold scores listed in *CV folds*; *OOF* is the score over all out-of-fold "
        "predictions pooled; *test* is the held-out test set; *frame* columns score frame-level "
        "predictions instead of clip-level ones; *LB* is the leaderboard score entered by hand "
        "(`python -m sed.results --expdir <dir> --lb <family/version> <score>`); "
        "`-` means not available.",
        "",
        "| " + " | ".join(h for _, h in _MD_COLUMNS) + " |",
        "|"
        + "|".join(
            "---" if c in ("experiment", "checkpoint", "created") else "---:"
            for c, _ in _MD_COLUMNS
        )
        + "|",
    ]
    for row in df.itertuples(index=False):
        rec = row._asdict()
        lines.append("| " + " | ".join(_cell(rec[c], c) for c, _ in _MD_COLUMNS) + " |")
    if df.empty:
        lines += ["", "No results yet."]
    return "\n".join(lines) + "\n"


def _write(recipe_dir: Path) -> tuple[Path, Path, str]:
    df, metrics, recipe = _collect(recipe_dir)
    text = _markdown(df, recipe or recipe_dir.resolve().name, metrics)
    md_path, csv_path = recipe_dir / MARKDOWN_NAME, recipe_dir / CSV_NAME
    write_text(md_path, text)
    write_csv(csv_path, df)
    return md_path, csv_path, text


def write_results_table(recipe_dir: str | Path) -> tuple[Path, Path]:
    """Write ``<recipe_dir>/RESULTS.md`` and ``<recipe_dir>/results.csv`` atomically.

    Args:
        recipe_dir (str | Path): the recipe's experiment folder, e.g. ``exp/rfcx``.

    Returns:
        tuple: ``(markdown_path, csv_path)``.

    Raises:
        FileNotFoundError: ``recipe_dir`` is not a directory.

    Warns:
        ResultsWarning: for each results.json that is skipped (see ``collect_results``).
    """
    md_path, csv_path, _ = _write(Path(recipe_dir))
    return md_path, csv_path


def set_leaderboard(recipe_dir: str | Path, experiment: str, score: float | None) -> Path:
    """Store a leaderboard score in ``<recipe_dir>/<experiment>/results.json`` (atomically).

    Args:
        recipe_dir (str | Path): the recipe's experiment folder, e.g. ``exp/rfcx``.
        experiment (str): ``"family/version"``.
        score (float | None): the score; None clears it.

    Returns:
        Path: the results.json that was updated.

    Raises:
        FileNotFoundError: the experiment has no results.json.
        ValueError: the experiment name is not ``family/version`` or the file is not a JSON
            object.
    """
    parts = Path(experiment).parts
    if len(parts) != 2 or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"experiment must be 'family/version', got {experiment!r}")
    path = Path(recipe_dir) / parts[0] / parts[1] / RESULTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {RESULTS_NAME} for {experiment}: {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be an object")
    data["lb"] = score
    write_json(path, data)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: write the recipe's results table and print the markdown.

    Args:
        argv (Sequence[str] | None): arguments without the program name; None reads sys.argv.

    Returns:
        int: exit status (0 on success, 1 on a missing folder or experiment).
    """
    parser = argparse.ArgumentParser(
        prog="python -m sed.results",
        description="Collect exp/<recipe>/*/*/results.json into RESULTS.md and results.csv.",
    )
    parser.add_argument("--expdir", required=True, help="recipe experiment folder, e.g. exp/rfcx")
    parser.add_argument(
        "--lb",
        nargs=2,
        metavar=("EXPERIMENT", "SCORE"),
        help="first store a leaderboard score for EXPERIMENT (family/version) in its "
        "results.json; SCORE 'none' clears it",
    )
    args = parser.parse_args(argv)

    try:
        if args.lb is not None:
            experiment, raw = args.lb
            if raw.lower() in ("none", "null", "-"):
                score = None
            else:
                try:
                    score = float(raw)
                except ValueError:
                    parser.error(f"--lb SCORE must be a number or 'none', got {raw!r}")
                if not math.isfinite(score):
                    parser.error(f"--lb SCORE must be finite, got {raw!r}")
            set_leaderboard(args.expdir, experiment, score)
        # Record the skip warnings to print them as one plain line each, without the
        # source-line echo of the default warning display.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResultsWarning)
            md_path, csv_path, text = _write(Path(args.expdir))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for w in caught:
        if issubclass(w.category, ResultsWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    print(text, end="")
    print(f"wrote {md_path} and {csv_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

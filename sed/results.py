"""The recipe-level results table: every experiment's scores, what it changed, and its LB score.

Each experiment folder ``exp/<recipe>/<family>/<version>/`` holds ``results.json`` (written by
stage 5, :func:`sed.scoring.score_experiment`), ``config.yaml`` (the fully resolved config)
and ``meta.json`` (the stage-2 command line). This module gathers them into three files beside the
experiments, each written atomically:

- ``RESULTS.md``: a markdown table for people;
- ``results.csv``: the same rows with full-precision numbers, for pandas;
- ``cv_vs_lb.png``: CV against leaderboard score (left), CV per fold of every experiment (right).

The *changes* column says what an experiment tries: its ``config.yaml`` is compared with the
resolved config of the ``base:`` of the conf file it was trained from (found through the
``--conf`` of the command line in ``meta.json``), e.g. ``loss.aux=[activity(weight=0.5)]
optim.lr=8e-4``. The base is loaded as it is *now*, so an edited base file shows up as a change.
When the conf file, its base, ``meta.json`` or ``config.yaml`` cannot be found the column is
``-``.

Command line (``sedkit results --help``)::

    sedkit results --expdir exp/rfcx                          # rewrite the table and the plot
    sedkit results --expdir exp/rfcx --set-lb eff/v023 0.912  # record a leaderboard score
    sedkit results --set-lb exp/rfcx/eff/v023 0.912         # the same: the folder names the recipe

A ``results.json`` that cannot be read, is not valid JSON or lacks the required keys is reported
with a warning naming the file and skipped, so one broken run does not hide the others.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from sed.config import ConfigError, from_dict, load_config, to_dict
from sed.fileio import atomic_path, write_csv, write_json, write_text

__all__ = [
    "COLUMNS",
    "ResultsWarning",
    "collect_results",
    "config_changes",
    "main",
    "plot_cv_vs_lb",
    "resolve_experiment",
    "set_leaderboard",
    "write_results_table",
]

RESULTS_NAME = "results.json"
MARKDOWN_NAME = "RESULTS.md"
CSV_NAME = "results.csv"
PLOT_NAME = "cv_vs_lb.png"
DEFAULT_EXPDIR = Path("exp/rfcx")

NO_CHANGES = "(none)"  # the config equals its base's
UNSET = "(unset)"  # a key the base has and the experiment does not

COLUMNS = [
    "experiment",
    "family",
    "version",
    "base",
    "changes",
    "checkpoint",
    "cv_mean",
    "cv_std",
    "cv_folds",
    "oof_score",
    "oof_score_frame",
    "test_score",
    "test_score_frame",
    "others",
    "lb",
    "note",
    "created",
]

# (DataFrame column, markdown header); family and version are already in "experiment", "created"
# stays in the CSV to keep the markdown table narrow enough to read.
_MD_COLUMNS = [
    ("experiment", "experiment"),
    ("base", "base"),
    ("changes", "changes"),
    ("cv", "CV mean ± std"),
    ("cv_folds", "CV folds"),
    ("oof_score", "OOF"),
    ("oof_score_frame", "OOF frame"),
    ("test_score", "test"),
    ("test_score_frame", "test frame"),
    ("others", "other metrics (OOF / test)"),
    ("lb", "LB"),
    ("checkpoint", "ckpt"),
    ("note", "note"),
]
_TEXT_MD_COLUMNS = {"experiment", "base", "changes", "checkpoint", "note", "others"}
_FLOAT_COLUMNS = {
    "cv_mean",
    "cv_std",
    "oof_score",
    "oof_score_frame",
    "test_score",
    "test_score_frame",
    "lb",
}


class ResultsWarning(UserWarning):
    """A results.json was skipped, or a config, meta.json or base could not be read."""


class _BadResults(ValueError):
    """Raised inside the parser when a results.json does not follow the schema."""


def _warn(message: str) -> None:
    # The message names the file at fault; the Python source line of the warning does not matter.
    warnings.warn(message, ResultsWarning, stacklevel=2)


# --------------------------------------------------------------------------------------------------
# results.json
# --------------------------------------------------------------------------------------------------


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


def _read_json_object(path: Path) -> dict:
    """The top-level object of a JSON file; raises _BadResults (without the path) if unusable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise _BadResults(f"cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise _BadResults(f"not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise _BadResults(f"top level must be an object, got {type(data).__name__}")
    return data


def _parse(path: Path) -> tuple[dict[str, Any], list[float]]:
    """One table row (scores only) and the fold scores from one results.json."""
    data = _read_json_object(path)
    oof = _section(data, "oof", required=True)
    # the recipe's headline metric names the keys (results.json of older runs: lwlrap)
    metric = data.get("metric") or "lwlrap"
    if not isinstance(metric, str):
        raise _BadResults(f"'metric' must be a metric name, got {metric!r}")
    if metric not in oof:
        raise _BadResults(f"missing required key 'oof.{metric}'")
    test = _section(data, "test", required=False)
    folds = _folds(oof.get("per_fold"))

    checkpoint = data.get("checkpoint")
    created = data.get("created")
    # The folder names identify the experiment: two runs differing only in their _<tag> suffix
    # would otherwise collide if results.json carried the untagged version.
    family, version = path.parent.parent.name, path.parent.name
    row = {
        "experiment": f"{family}/{version}",
        "family": family,
        "version": version,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "cv_mean": float(np.mean(folds)) if folds else math.nan,
        # Population std (ddof=0): defined for a single fold and what np.std reports.
        "cv_std": float(np.std(folds)) if folds else math.nan,
        "cv_folds": " ".join(f"{v:.3f}" for v in folds) if folds else None,
        "oof_score": _number(oof[metric], f"oof.{metric}", required=True),
        "oof_score_frame": _number(oof.get(f"{metric}_frame"), f"oof.{metric}_frame"),
        "test_score": _number(test.get(metric), f"test.{metric}"),
        "test_score_frame": _number(test.get(f"{metric}_frame"), f"test.{metric}_frame"),
        "others": _others(data, metric, oof, test),
        "lb": _number(data.get("lb"), "lb"),
        "created": None if created is None else str(created),
        "_metric": metric,
        "_recipe": data.get("recipe"),
    }
    return row, folds


def _others(data: dict[str, Any], head: str, oof: dict, test: dict) -> str | None:
    """The recipe's other metrics as ``name OOF / test`` (e.g. lwlrap beside a BirdCLEF score)."""
    names = data.get("metrics")
    if not isinstance(names, list):
        return None

    def fmt(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"

    parts = [f"{m} {fmt(oof.get(m))} / {fmt(test.get(m))}" for m in names if m != head]
    return ", ".join(parts) or None


# --------------------------------------------------------------------------------------------------
# What an experiment changes against its base
# --------------------------------------------------------------------------------------------------


def _format_value(value: Any) -> str:
    """A config value in one short token: ``8e-4``, ``[activity(weight=0.5)]``, ``true``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != 0 and math.isfinite(value) and not 1e-2 <= abs(value) < 1e5:
            # Learning rates read best as 8e-4, not 0.0008 or 8.000000e-04.
            mantissa, exponent = f"{value:.6e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return f"{value:.6g}"
    if isinstance(value, dict):
        # Registry entries ({name: mixup, alpha: 0.1}) read as calls: mixup(alpha=0.1).
        rest = ",".join(f"{k}={_format_value(v)}" for k, v in value.items() if k != "name")
        if "name" in value:
            return f"{value['name']}({rest})" if rest else str(value["name"])
        return "{" + ",".join(f"{k}:{_format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    return str(value)


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted leaf keys of nested dicts; lists are leaves, empty dicts contribute nothing."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def config_changes(config: dict, base: dict) -> str:
    """The dotted keys whose values differ between two resolved configs, in one line.

    Args:
        config (dict): the experiment's resolved config (``config.yaml`` as a dict).
        base (dict): its base's resolved config.

    Returns:
        str: ``key=value`` items separated by spaces in the config's key order (keys only the base
        has come last, as ``key=(unset)``); ``version_note`` is ignored, as every version has its
        own. ``"(none)"`` when nothing differs.
    """
    ours, theirs = _flatten(config), _flatten(base)
    items = []
    for key, value in ours.items():
        if key != "version_note" and (key not in theirs or theirs[key] != value):
            items.append(f"{key}={_format_value(value)}")
    items += [f"{key}={UNSET}" for key in theirs if key not in ours and key != "version_note"]
    return " ".join(items) if items else NO_CHANGES


def _conf_from_meta(meta: dict) -> str | None:
    """The ``--conf`` path of a stage-2 run, from meta.json (a ``conf`` key or its command line)."""
    if isinstance(meta.get("conf"), str):
        return meta["conf"]
    command = meta.get("command")
    if not isinstance(command, str):
        return None
    try:
        tokens = shlex.split(command)
    except ValueError:  # an unbalanced quote: the command was joined without quoting
        tokens = command.split()
    for i, token in enumerate(tokens):
        if token == "--conf" and i + 1 < len(tokens):
            return tokens[i + 1]
        if token.startswith("--conf="):
            return token.split("=", 1)[1]
    return None


def _find_conf(conf: str, expdir: Path) -> Path | None:
    """The conf file a run named, relative to an ancestor of the experiment or the current folder.

    Stage 2 runs from the repository root, and ``exp/`` usually lies inside it, so the
    experiment's own checkout is searched first; with ``--workdir`` elsewhere, ``sedkit results``
    finds the conf when run from the root.
    """
    path = Path(conf)
    if path.is_absolute():
        return path if path.is_file() else None
    for folder in [*expdir.resolve().parents, Path.cwd()]:
        if (folder / path).is_file():
            return folder / path
    return None


def _resolve_base_path(base: str, including: Path) -> Path | None:
    """Where ``base:`` points; the same search as :mod:`sed.config` (., then the including file's
    folder and its ancestors)."""
    cand = Path(base)
    if cand.is_absolute() or cand.exists():
        return cand.resolve() if cand.exists() else None
    for folder in [including.parent, *including.resolve().parents]:
        if (folder / base).exists():
            return (folder / base).resolve()
    return None


def _label(conf: Path) -> str:
    """``conf/eff/v022.yaml`` -> ``eff/v022``."""
    return f"{conf.parent.name}/{conf.stem}"


@dataclass
class _BaseCache:
    """Resolved base configs by their file list: many versions share one base."""

    configs: dict[tuple[Path, ...], dict | None] = field(default_factory=dict)

    def load(self, bases: tuple[Path, ...]) -> dict | None:
        if bases not in self.configs:
            self.configs[bases] = self._load(bases)
        return self.configs[bases]

    @staticmethod
    def _load(bases: tuple[Path, ...]) -> dict | None:
        # A file holding only the base list merges the bases exactly as loading the version
        # itself did (sed.config owns the merge rules), without the version's own keys.
        with tempfile.TemporaryDirectory() as tmp:
            stub = Path(tmp) / "bases.yaml"
            write_text(stub, yaml.safe_dump({"base": [str(b) for b in bases]}))
            try:
                return to_dict(load_config(stub)[0])
            except ConfigError as e:
                _warn(f"cannot load base config {' + '.join(map(str, bases))}: {e}")
                return None


def _experiment_config(path: Path) -> dict | None:
    """An experiment's config.yaml as a dict, normalised like a freshly loaded config."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        _warn(f"cannot read {path}: {e}")
        return None
    if not isinstance(data, dict):
        _warn(f"cannot read {path}: top level must be a mapping")
        return None
    try:
        # Fills keys added to the schema after the run with their defaults, which the base has
        # too, so schema growth is not reported as a change.
        return to_dict(from_dict(data))
    except (ConfigError, TypeError):
        return data  # a key since removed from the schema: compare the file as written


def _describe(expdir: Path, cache: _BaseCache) -> dict[str, Any]:
    """The base label, the changes against it, and the version note of one experiment."""
    out: dict[str, Any] = {"base": None, "changes": None, "note": None}
    config_path, meta_path = expdir / "config.yaml", expdir / "meta.json"
    if not config_path.is_file():
        return out
    config = _experiment_config(config_path)
    if config is None:
        return out
    note = config.get("version_note")
    if isinstance(note, str) and note:
        # Notes start "eff/v022: ..." by convention; the row already names the experiment.
        out["note"] = re.sub(r"^\S+/\S+:\s*", "", note)
    if not meta_path.is_file():
        return out
    try:
        meta = _read_json_object(meta_path)
    except _BadResults as e:
        _warn(f"cannot use {meta_path}: {e}")
        return out
    conf_name = _conf_from_meta(meta)
    conf = _find_conf(conf_name, expdir) if conf_name else None
    if conf is None:
        return out
    try:
        raw = yaml.safe_load(conf.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        _warn(f"cannot read {conf}: {e}")
        return out
    bases = raw.get("base") if isinstance(raw, dict) else None
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not bases:
        return out  # a root config (e.g. conf/eff/base.yaml): nothing to compare with
    paths = [_resolve_base_path(b, conf) if isinstance(b, str) else None for b in bases]
    if any(p is None for p in paths):
        return out
    resolved = tuple(p for p in paths if p is not None)
    base = cache.load(resolved)
    if base is None:
        return out
    out["base"] = " + ".join(_label(p) for p in resolved)
    out["changes"] = config_changes(config, base)
    return out


# --------------------------------------------------------------------------------------------------
# Collecting and writing
# --------------------------------------------------------------------------------------------------


@dataclass
class _Table:
    df: pd.DataFrame
    folds: dict[str, list[float]]  # experiment -> fold scores at full precision (for the plot)
    metrics: list[str]
    recipe: str | None


def _collect(recipe_dir: Path) -> _Table:
    if not recipe_dir.is_dir():
        raise FileNotFoundError(f"experiment directory not found: {recipe_dir}")
    rows, folds = [], {}
    cache = _BaseCache()
    for path in sorted(recipe_dir.glob(f"*/*/{RESULTS_NAME}")):
        try:
            row, fold_scores = _parse(path)
        except _BadResults as e:
            _warn(f"skipping {path}: {e}")
            continue
        row.update(_describe(path.parent, cache))
        rows.append(row)
        folds[row["experiment"]] = fold_scores
    metrics = sorted({str(r["_metric"]) for r in rows if r["_metric"]})
    recipes = sorted({str(r["_recipe"]) for r in rows if r["_recipe"]})
    df = pd.DataFrame([{k: r[k] for k in COLUMNS} for r in rows], columns=COLUMNS)
    df = df.sort_values(["family", "version"], kind="stable", ignore_index=True)
    for col in _FLOAT_COLUMNS:
        df[col] = df[col].astype(float)
    return _Table(df, folds, metrics, recipes[0] if len(recipes) == 1 else None)


def collect_results(recipe_dir: str | Path) -> pd.DataFrame:
    """Read every ``<recipe_dir>/<family>/<version>/results.json`` into one table.

    Args:
        recipe_dir (str | Path): the recipe's experiment folder, e.g. ``exp/rfcx``.

    Returns:
        DataFrame: one row per valid results.json, sorted by family then version, with columns
        ``COLUMNS``: experiment ("family/version", from the folder names), family, version,
        base (the base conf as "family/version", "a + b" for a list of bases), changes (see
        :func:`config_changes`), checkpoint, cv_mean and cv_std (mean and population std over
        ``oof.per_fold``), cv_folds (the fold scores, 3 decimals, space-separated, in fold
        order), oof_score, oof_score_frame, test_score, test_score_frame, lb, note (the
        config's version note), created. Missing values are NaN (test with ``pd.isna``: string
        columns may hold None or NaN depending on pandas); base and changes are missing when the
        base cannot be found.

    Raises:
        FileNotFoundError: ``recipe_dir`` is not a directory.

    Warns:
        ResultsWarning: for each results.json that is skipped (unreadable, invalid JSON, missing
            ``oof.<metric>``, or a value of the wrong type), and for each config.yaml, meta.json or
            base config that exists but cannot be read; each names the file.
    """
    return _collect(Path(recipe_dir)).df


def _cell(rec: dict[str, Any], column: str) -> str:
    if column == "cv":
        if pd.isna(rec["cv_mean"]):
            return "-"
        return f"{rec['cv_mean']:.4f} ± {rec['cv_std']:.4f}"
    value = rec[column]
    # pandas may hold a missing string as None, NaN or pd.NA depending on version and dtype.
    if value is None or pd.isna(value):
        return "-"
    if column in _FLOAT_COLUMNS:
        return f"{value:.4f}"
    # A pipe would end the cell early.
    text = str(value).replace("|", "\\|")
    # Code spans keep '*' and '_' in dotted keys from turning into emphasis.
    return f"`{text}`" if column == "changes" and text != NO_CHANGES else text


def _markdown(table: _Table, title: str) -> str:
    metric = ", ".join(table.metrics) if table.metrics else "(no results yet)"
    lines = [
        f"# Results: {title}",
        "",
        f"Metric: **{metric}** (higher is better).",
        "",
        "Columns: *base* is the config the version's conf file inherits (`base:`) and *changes* "
        "the resolved keys that differ from it (`(none)`: identical); *CV* is the mean and "
        "population std of the per-fold out-of-fold scores listed in *CV folds*; *OOF* is the "
        "score over all out-of-fold predictions pooled; *test* is the held-out test set; "
        "*frame* columns score frame-level predictions instead of clip-level ones; *other "
        "metrics* are the recipe's further metrics; *LB* is the "
        "leaderboard score entered by hand (`sedkit results --expdir <dir> --set-lb "
        "<family/version> <score>`); `-` means not available. Plot: `cv_vs_lb.png`.",
        "",
        "| " + " | ".join(h for _, h in _MD_COLUMNS) + " |",
        "|" + "|".join("---" if c in _TEXT_MD_COLUMNS else "---:" for c, _ in _MD_COLUMNS) + "|",
    ]
    for row in table.df.itertuples(index=False):
        rec = row._asdict()
        lines.append("| " + " | ".join(_cell(rec, c) for c, _ in _MD_COLUMNS) + " |")
    if table.df.empty:
        lines += ["", "No results yet."]
    return "\n".join(lines) + "\n"


def _cv(df: pd.DataFrame) -> pd.Series:
    """The CV score of each row: the fold mean, or the pooled OOF score when folds are missing."""
    return df["cv_mean"].where(df["cv_mean"].notna(), df["oof_score"])


def plot_cv_vs_lb(
    df: pd.DataFrame, path: str | Path, folds: dict[str, list[float]] | None = None
) -> Path | None:
    """Write a PNG comparing CV with the leaderboard (atomically).

    Left panel: one labelled point per experiment with an LB score, CV (fold mean, else pooled
    OOF) on x with the fold std as an error bar, LB on y, and the line y = x: points below it
    over-fit the CV. Without any LB score the panel says how to enter one, so the file always
    has the same layout. Right panel: every experiment's fold scores (dots) and their mean
    (diamond), to see which CV differences are larger than the spread between folds.

    Args:
        df (DataFrame): rows as returned by :func:`collect_results`.
        path (str | Path): the PNG to write.
        folds (dict | None): experiment -> fold scores at full precision; None reads them from
            the 3-decimal ``cv_folds`` column.

    Returns:
        Path | None: the PNG written, or None (nothing written) when ``df`` has no rows.
    """
    if df.empty:
        return None
    # No pyplot: the figure is not registered in pyplot's global state, so nothing leaks and no
    # GUI backend is ever touched (stage 5 runs on headless nodes).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if folds is None:
        folds = {
            e: [float(v) for v in str(s).split()] if isinstance(s, str) else []
            for e, s in zip(df["experiment"], df["cv_folds"], strict=True)
        }
    names = df["experiment"].tolist()
    cv = _cv(df).to_numpy(dtype=float)
    std = df["cv_std"].fillna(0.0).to_numpy(dtype=float)
    lb = df["lb"].to_numpy(dtype=float)

    height = max(4.0, 0.3 * len(names) + 1.5)
    fig = Figure(figsize=(12, height), layout="constrained")
    FigureCanvasAgg(fig)
    ax_lb, ax_cv = fig.subplots(1, 2)

    has = np.isfinite(cv) & np.isfinite(lb)
    if has.any():
        ax_lb.errorbar(cv[has], lb[has], xerr=std[has], fmt="o", capsize=3)
        for x, y, name in zip(cv[has], lb[has], np.asarray(names)[has], strict=True):
            ax_lb.annotate(name, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
        lo = float(np.min(np.r_[cv[has] - std[has], lb[has]]))
        hi = float(np.max(np.r_[cv[has] + std[has], lb[has]]))
        pad = max(0.01, 0.1 * (hi - lo))
        ax_lb.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color="gray", label="y = x")
        ax_lb.set_xlim(lo - pad, hi + pad)
        ax_lb.set_ylim(lo - pad, hi + pad)
        ax_lb.legend(loc="lower right")
        ax_lb.set_title(f"CV vs LB ({int(has.sum())} experiments)")
    else:
        ax_lb.text(
            0.5,
            0.5,
            "no leaderboard scores yet\n\nsedkit results --set-lb <family/version> <score>",
            ha="center",
            va="center",
            transform=ax_lb.transAxes,
        )
        ax_lb.set_title("CV vs LB")
    ax_lb.set_xlabel("CV (fold mean ± std)")
    ax_lb.set_ylabel("LB")
    ax_lb.grid(alpha=0.3)

    ys = np.arange(len(names))
    fold_label = "fold"  # one legend entry for all the fold dots
    for y, name in zip(ys, names, strict=True):
        scores = folds.get(name, [])
        if scores:
            ax_cv.plot(
                scores, [y] * len(scores), "o", color="tab:blue", alpha=0.5, ms=4, label=fold_label
            )
            fold_label = "_nolegend_"
    ax_cv.plot(cv, ys, "D", color="black", ms=5, label="mean (pooled OOF if no folds)")
    ax_cv.set_yticks(ys, names, fontsize=8)
    ax_cv.invert_yaxis()  # first experiment on top, as in the table
    ax_cv.set_xlabel("CV score")
    ax_cv.set_title("CV per fold")
    ax_cv.grid(alpha=0.3, axis="x")
    ax_cv.legend(loc="best", fontsize=8)

    with atomic_path(path) as tmp:
        # The temporary name ends in .tmp, so the format must be explicit.
        fig.savefig(tmp, format="png", dpi=100)
    return path


@dataclass
class _Written:
    markdown: Path
    csv: Path
    plot: Path | None
    text: str


def _write(recipe_dir: Path, plot: bool = True) -> _Written:
    table = _collect(recipe_dir)
    text = _markdown(table, table.recipe or recipe_dir.resolve().name)
    md_path, csv_path = recipe_dir / MARKDOWN_NAME, recipe_dir / CSV_NAME
    write_text(md_path, text)
    write_csv(csv_path, table.df)
    png = plot_cv_vs_lb(table.df, recipe_dir / PLOT_NAME, table.folds) if plot else None
    return _Written(md_path, csv_path, png, text)


def write_results_table(recipe_dir: str | Path, *, plot: bool = True) -> tuple[Path, Path]:
    """Write ``RESULTS.md``, ``results.csv`` and ``cv_vs_lb.png`` in ``recipe_dir`` atomically.

    Stage 5 (:mod:`sed.bin.score`) calls this after scoring one experiment, so the table always
    covers every scored experiment of the recipe.

    Args:
        recipe_dir (str | Path): the recipe's experiment folder, e.g. ``exp/rfcx``.
        plot (bool): also write the plot (see :func:`plot_cv_vs_lb`; not written without rows).

    Returns:
        tuple: ``(markdown_path, csv_path)``.

    Raises:
        FileNotFoundError: ``recipe_dir`` is not a directory.

    Warns:
        ResultsWarning: for each file that is skipped or cannot be read (see
            ``collect_results``).
    """
    written = _write(Path(recipe_dir), plot)
    return written.markdown, written.csv


# --------------------------------------------------------------------------------------------------
# Leaderboard scores
# --------------------------------------------------------------------------------------------------


def resolve_experiment(recipe_dir: str | Path, experiment: str) -> Path:
    """The folder of an experiment named ``family/version`` or by its folder path.

    Args:
        recipe_dir (str | Path): the recipe's experiment folder, e.g. ``exp/rfcx``.
        experiment (str): ``"eff/v023"``, or a folder such as ``exp/rfcx/eff/v023`` (absolute
            or relative to the current folder) that lies directly in ``recipe_dir/<family>/``.

    Returns:
        Path: ``recipe_dir/<family>/<version>``.

    Raises:
        ValueError: the name is neither ``family/version`` nor a folder two levels inside
            ``recipe_dir``.
    """
    recipe_dir = Path(recipe_dir)
    path = Path(experiment)
    parts = path.parts
    if len(parts) == 2 and not path.is_absolute() and not {".", ".."} & set(parts):
        return recipe_dir / parts[0] / parts[1]
    # Anything else is a folder path; it must lead to <recipe_dir>/<family>/<version>.
    try:
        rel = path.resolve().relative_to(recipe_dir.resolve())
    except ValueError:
        raise ValueError(
            f"experiment {experiment!r} is neither 'family/version' nor a folder inside "
            f"{recipe_dir}"
        ) from None
    if len(rel.parts) != 2:
        raise ValueError(
            f"experiment folder {experiment!r} must be {recipe_dir}/<family>/<version>"
        )
    return recipe_dir / rel


def set_leaderboard(recipe_dir: str | Path, experiment: str, score: float | None) -> Path:
    """Store a leaderboard score as ``lb`` in the experiment's ``results.json`` (atomically).

    Everything else in the file is kept, and stage 5 keeps ``lb`` when it rescores, so the score
    survives until it is set again.

    Args:
        recipe_dir (str | Path): the recipe's experiment folder, e.g. ``exp/rfcx``.
        experiment (str): ``"family/version"`` or the experiment's folder (see
            :func:`resolve_experiment`).
        score (float | None): the score; None clears it.

    Returns:
        Path: the results.json that was updated.

    Raises:
        FileNotFoundError: the experiment has no results.json.
        ValueError: a bad experiment name, a non-finite score, or a results.json that is not a
            readable JSON object (the message names the file).
    """
    if score is not None and not math.isfinite(score):
        raise ValueError(f"leaderboard score must be finite, got {score}")
    path = resolve_experiment(recipe_dir, experiment) / RESULTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {RESULTS_NAME} for {experiment}: {path}")
    try:
        data = _read_json_object(path)
    except _BadResults as e:
        raise ValueError(f"{path}: {e}") from None
    data["lb"] = score
    write_json(path, data)
    return path


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _parse_score(raw: str) -> float | None:
    """A leaderboard score from the command line; ``none``, ``null`` or ``-`` clear it."""
    if raw.lower() in ("none", "null", "-"):
        return None
    try:
        score = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"SCORE must be a number or 'none', got {raw!r}") from None
    if not math.isfinite(score):
        raise argparse.ArgumentTypeError(f"SCORE must be finite, got {raw!r}")
    return score


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sedkit results",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Gather <expdir>/<family>/<version>/results.json of every experiment of a recipe "
            "into\n<expdir>/RESULTS.md, results.csv and cv_vs_lb.png (CV against leaderboard).\n"
            "Each row shows the CV per fold and mean ± std, the clip and frame OOF and test "
            "scores,\nthe LB score, and what the config changes against its base (from "
            "config.yaml,\nmeta.json's --conf and that file's base:)."
        ),
        epilog=(
            "examples:\n"
            "  sedkit results --expdir exp/rfcx\n"
            "  sedkit results --expdir exp/rfcx --set-lb eff/v023 0.912\n"
            "  sedkit results --set-lb exp/rfcx/eff/v023 0.912   # recipe folder from the path\n"
            "  sedkit results --expdir exp/rfcx --set-lb eff/v023 none   # clear it\n"
            "\nexit status: 0 ok, 1 missing folder or experiment or unreadable file, 2 misuse"
        ),
    )
    parser.add_argument(
        "--expdir",
        type=Path,
        default=None,
        help="the recipe's experiment folder, e.g. exp/birdclef; default: the folder of the "
        f"--set-lb experiment path if one is given, else {DEFAULT_EXPDIR} if it exists",
    )
    parser.add_argument(
        "--set-lb",
        "--lb",
        dest="set_lb",
        nargs=2,
        metavar=("EXPERIMENT", "SCORE"),
        help="first store leaderboard SCORE for EXPERIMENT (family/version, or its folder) in "
        "its results.json, then rewrite the table; SCORE 'none' clears it (--lb is an alias)",
    )
    parser.add_argument("--no-plot", action="store_true", help=f"do not write {PLOT_NAME}")
    return parser


def _default_expdir(set_lb: list[str] | None) -> Path | None:
    if set_lb is not None:
        path = Path(set_lb[0])
        # A folder path names its recipe folder: exp/<recipe>/<family>/<version>.
        if len(path.parts) > 2 and (path / RESULTS_NAME).is_file():
            return path.resolve().parent.parent
    return DEFAULT_EXPDIR if DEFAULT_EXPDIR.is_dir() else None


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: optionally set a leaderboard score, then write the results table and print it.

    Args:
        argv (Sequence[str] | None): arguments without the program name; None reads sys.argv.

    Returns:
        int: exit status (0 on success, 1 on a missing folder or experiment or an unreadable
        file; misuse exits with 2 through argparse).
    """
    parser = get_parser()
    args = parser.parse_args(argv)
    score = None
    if args.set_lb is not None:
        try:
            score = _parse_score(args.set_lb[1])
        except argparse.ArgumentTypeError as e:
            parser.error(f"--set-lb: {e}")
    expdir = args.expdir if args.expdir is not None else _default_expdir(args.set_lb)
    if expdir is None:
        parser.error(f"--expdir is required here ({DEFAULT_EXPDIR} does not exist)")

    try:
        if args.set_lb is not None:
            path = set_leaderboard(expdir, args.set_lb[0], score)
            print(f"lb of {path.parent} set to {score}", file=sys.stderr)
        # Record the warnings to print them as one plain line each, without the source-line
        # echo of the default warning display.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResultsWarning)
            written = _write(expdir, plot=not args.no_plot)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for w in caught:
        if issubclass(w.category, ResultsWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    print(written.text, end="")
    paths = [written.markdown, written.csv] + ([written.plot] if written.plot else [])
    print(f"wrote {', '.join(map(str, paths))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

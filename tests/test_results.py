"""Tests for sed.results (the recipe-level results table)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sed import results
from sed.results import COLUMNS, ResultsWarning, collect_results, main, write_results_table


def _put(root: Path, exp: str, data: dict | str) -> Path:
    path = root / exp / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


FULL = {
    "recipe": "rfcx",
    "family": "cnn",
    "version": "demo",
    "checkpoint": "best",
    "metric": "lwlrap",
    "oof": {
        "lwlrap": 0.91,
        "lwlrap_frame": 0.89,
        "per_fold": {"0": 0.90, "1": 0.92},
        "n_recordings": 200,
    },
    "test": {"lwlrap": 0.90, "lwlrap_frame": 0.88, "n_recordings": 100},
    "lb": None,
    "created": "2026-11-22T10:00:00",
}

# No test section, no frame score, 3 folds (keys out of order, "10" must sort after "2").
NO_TEST = {
    "recipe": "rfcx",
    "family": "cnn",
    "version": "base",
    "checkpoint": "last",
    "metric": "lwlrap",
    "oof": {"lwlrap": 0.8, "per_fold": {"10": 0.7, "2": 0.9, "0": 0.8}, "n_recordings": 30},
    "lb": 0.85,
    "created": "2026-11-21T09:00:00",
}

# A different family, "test": null explicitly, versioned with a _<tag> suffix.
AAA = {
    "recipe": "rfcx",
    "family": "aaa",
    "version": "v1",
    "checkpoint": "best",
    "metric": "lwlrap",
    "oof": {"lwlrap": 0.5, "per_fold": {"0": 0.5}},
    "test": None,
    "lb": None,
    "created": "2026-11-20T08:00:00",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "exp" / "rfcx"
    _put(root, "cnn/demo", FULL)
    _put(root, "cnn/base", NO_TEST)
    _put(root, "aaa/v1_lr3e-4", AAA)
    _put(root, "cnn/broken", '{"oof": {"lwlrap": 0.9')  # truncated JSON
    _put(root, "cnn/nokey", {"recipe": "rfcx", "test": {"lwlrap": 0.9}})  # no "oof"
    (root / "cnn" / "running").mkdir()  # a run without results yet: silently absent
    return root


def _collect(root: Path) -> tuple[pd.DataFrame, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = collect_results(root)
    return df, [str(w.message) for w in caught if issubclass(w.category, ResultsWarning)]


def test_rows_and_order(tree: Path) -> None:
    df, _ = _collect(tree)
    assert list(df.columns) == COLUMNS
    assert df["experiment"].tolist() == ["aaa/v1_lr3e-4", "cnn/base", "cnn/demo"]
    assert df["family"].tolist() == ["aaa", "cnn", "cnn"]
    assert df["version"].tolist() == ["v1_lr3e-4", "base", "demo"]
    assert df["checkpoint"].tolist() == ["best", "last", "best"]


def test_values(tree: Path) -> None:
    df, _ = _collect(tree)
    demo = df.set_index("experiment").loc["cnn/demo"]
    assert demo["cv_mean"] == pytest.approx(0.91)
    assert demo["cv_std"] == pytest.approx(0.01)
    assert demo["cv_folds"] == "0.900 0.920"
    assert demo["oof_lwlrap"] == 0.91
    assert demo["oof_lwlrap_frame"] == 0.89
    assert demo["test_lwlrap"] == 0.90
    assert demo["test_lwlrap_frame"] == 0.88
    assert math.isnan(demo["lb"])
    assert demo["created"] == "2026-11-22T10:00:00"

    base = df.set_index("experiment").loc["cnn/base"]
    assert base["cv_folds"] == "0.800 0.900 0.700"  # fold 0, 2, 10
    assert base["cv_mean"] == pytest.approx(0.8)
    assert base["cv_std"] == pytest.approx(np.std([0.8, 0.9, 0.7]))
    assert math.isnan(base["oof_lwlrap_frame"])
    assert math.isnan(base["test_lwlrap"])
    assert math.isnan(base["test_lwlrap_frame"])
    assert base["lb"] == 0.85

    aaa = df.set_index("experiment").loc["aaa/v1_lr3e-4"]
    assert aaa["cv_std"] == 0.0
    assert math.isnan(aaa["test_lwlrap"])


def test_bad_files_warn_and_are_skipped(tree: Path) -> None:
    df, msgs = _collect(tree)
    assert len(df) == 3
    assert len(msgs) == 2
    broken = [m for m in msgs if "broken" in m]
    nokey = [m for m in msgs if "nokey" in m]
    assert broken and "not valid JSON" in broken[0]
    assert str(tree / "cnn" / "broken" / "results.json") in broken[0]
    assert nokey and "oof" in nokey[0]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([1, 2], "top level"),
        ({"oof": {"per_fold": {"0": 0.5}}}, "oof.lwlrap"),
        ({"oof": {"lwlrap": "0.5"}}, "must be a number"),
        ({"oof": {"lwlrap": True}}, "must be a number"),
        ({"oof": {"lwlrap": 0.5, "per_fold": {"0": None}}}, "per_fold"),
        ({"oof": {"lwlrap": 0.5}, "test": [0.5]}, "'test' must be an object"),
    ],
)
def test_schema_errors(tmp_path: Path, data: object, reason: str) -> None:
    _put(tmp_path, "f/v", json.dumps(data))
    _put(tmp_path, "f/ok", {"oof": {"lwlrap": 0.5}})
    df, msgs = _collect(tmp_path)
    assert df["experiment"].tolist() == ["f/ok"]
    assert len(msgs) == 1 and reason in msgs[0] and "f/v" in Path(msgs[0]).as_posix()


def test_minimal_file_and_list_folds(tmp_path: Path) -> None:
    _put(tmp_path, "f/min", {"oof": {"lwlrap": 0.5}})
    _put(tmp_path, "f/list", {"oof": {"lwlrap": 0.5, "per_fold": [0.25, 0.75]}})
    df = collect_results(tmp_path).set_index("experiment")
    assert math.isnan(df.loc["f/min", "cv_mean"]) and pd.isna(df.loc["f/min", "cv_folds"])
    assert pd.isna(df.loc["f/min", "checkpoint"])
    assert df.loc["f/list", "cv_mean"] == 0.5
    assert df.loc["f/list", "cv_std"] == 0.25


def test_empty_and_missing_dir(tmp_path: Path) -> None:
    df = collect_results(tmp_path)
    assert df.empty and list(df.columns) == COLUMNS
    md, _ = write_results_table(tmp_path)
    assert "No results yet." in md.read_text()
    with pytest.raises(FileNotFoundError):
        collect_results(tmp_path / "nope")


def test_markdown(tree: Path) -> None:
    with pytest.warns(ResultsWarning):
        md_path, csv_path = write_results_table(tree)
    assert md_path == tree / "RESULTS.md"
    assert csv_path == tree / "results.csv"
    text = md_path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "# Results: rfcx"
    assert "Metric: **lwlrap**" in text
    assert any(line.startswith("Columns:") for line in lines)

    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + 3  # header, separator, 3 rows
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[0] == "experiment" and "LB" in header and "CV mean" in header
    rows = {r[0]: r for r in ([c.strip() for c in t.strip("|").split("|")] for t in table[2:])}
    assert list(rows) == ["aaa/v1_lr3e-4", "cnn/base", "cnn/demo"]
    demo = dict(zip(header, rows["cnn/demo"], strict=True))
    assert demo["CV mean"] == "0.9100"
    assert demo["CV std"] == "0.0100"
    assert demo["CV folds"] == "0.900 0.920"
    assert demo["OOF"] == "0.9100"
    assert demo["OOF frame"] == "0.8900"
    assert demo["test"] == "0.9000"
    assert demo["test frame"] == "0.8800"
    assert demo["LB"] == "-"
    base = dict(zip(header, rows["cnn/base"], strict=True))
    assert base["test"] == "-" and base["test frame"] == "-" and base["OOF frame"] == "-"
    assert base["LB"] == "0.8500"


def test_csv(tree: Path) -> None:
    with pytest.warns(ResultsWarning):
        _, csv_path = write_results_table(tree)
    df = pd.read_csv(csv_path)
    assert list(df.columns) == COLUMNS
    assert df["experiment"].tolist() == ["aaa/v1_lr3e-4", "cnn/base", "cnn/demo"]
    assert df["oof_lwlrap"].tolist() == [0.5, 0.8, 0.91]
    assert df["test_lwlrap"].isna().tolist() == [True, True, False]


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]


def test_rewrite_is_atomic(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.warns(ResultsWarning):
        md_path, csv_path = write_results_table(tree)
    before_md, before_csv = md_path.read_text(), csv_path.read_text()

    # A new experiment appears: both files are replaced, no temporary file is left behind.
    _put(tree, "zzz/new", {"oof": {"lwlrap": 0.99}})
    with pytest.warns(ResultsWarning):
        write_results_table(tree)
    assert "zzz/new" in md_path.read_text() and "zzz/new" in csv_path.read_text()
    assert _leftovers(tree) == []

    # A write that fails midway leaves the previous complete files and no temporary file.
    md_path.write_text(before_md)
    csv_path.write_text(before_csv)

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail)
    with pytest.warns(ResultsWarning), pytest.raises(RuntimeError, match="disk full"):
        write_results_table(tree)
    assert csv_path.read_text() == before_csv
    assert _leftovers(tree) == []


def test_uses_atomic_writers(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(results, "write_text", lambda p, t: calls.append(f"text {Path(p).name}"))
    monkeypatch.setattr(results, "write_csv", lambda p, d: calls.append(f"csv {Path(p).name}"))
    with pytest.warns(ResultsWarning):
        write_results_table(tree)
    assert calls == ["text RESULTS.md", "csv results.csv"]


def test_cli(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--expdir", str(tree)]) == 0
    captured = capsys.readouterr()
    assert captured.out == (tree / "RESULTS.md").read_text(encoding="utf-8")
    err = captured.err.splitlines()
    skipped = [line for line in err if line.startswith("warning: skipping")]
    assert len(skipped) == 2 and any("broken" in line for line in skipped)
    assert (tree / "results.csv").is_file()


def test_cli_lb(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--expdir", str(tree), "--lb", "cnn/demo", "0.93"]) == 0
    assert json.loads((tree / "cnn/demo/results.json").read_text())["lb"] == 0.93
    capsys.readouterr()
    with pytest.warns(ResultsWarning):
        df = collect_results(tree).set_index("experiment")
    assert df.loc["cnn/demo", "lb"] == 0.93
    # Everything else in the file is kept.
    data = json.loads((tree / "cnn/demo/results.json").read_text())
    assert {k: v for k, v in data.items() if k != "lb"} == {
        k: v for k, v in FULL.items() if k != "lb"
    }

    assert main(["--expdir", str(tree), "--lb", "cnn/demo", "none"]) == 0
    assert json.loads((tree / "cnn/demo/results.json").read_text())["lb"] is None

    assert main(["--expdir", str(tree), "--lb", "cnn/absent", "0.5"]) == 1
    assert "no results.json" in capsys.readouterr().err
    assert main(["--expdir", str(tree), "--lb", "../x", "0.5"]) == 1
    with pytest.raises(SystemExit):
        main(["--expdir", str(tree), "--lb", "cnn/demo", "abc"])
    assert _leftovers(tree) == []


def test_cli_missing_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--expdir", str(tmp_path / "nope")]) == 1
    assert "not found" in capsys.readouterr().err


def test_module_entry_point(tree: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "sed.results", "--expdir", str(tree)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# Results: rfcx")
    assert "warning: skipping" in proc.stderr and "broken" in proc.stderr

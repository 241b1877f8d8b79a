"""Atomic writes: an interrupted write never corrupts what was there."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sed.fileio import atomic_open, write_csv, write_json, write_text


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    p = tmp_path / "out.txt"
    write_text(p, "old")
    with pytest.raises(RuntimeError), atomic_open(p) as f:
        f.write("partial")
        raise RuntimeError("crash")
    assert p.read_text() == "old"
    assert list(tmp_path.iterdir()) == [p]


def test_writers(tmp_path: Path) -> None:
    write_json(tmp_path / "a" / "x.json", {"a": 1})
    assert (tmp_path / "a" / "x.json").read_text().strip().startswith("{")
    write_csv(tmp_path / "t.csv", pd.DataFrame({"x": [1, 2]}))
    assert (tmp_path / "t.csv").read_text() == "x\n1\n2\n"

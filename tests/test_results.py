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
    assert demo["oof_score"] == 0.91
    assert demo["oof_score_frame"] == 0.89
    assert demo["test_score"] == 0.90
    assert demo["test_score_frame"] == 0.88
    assert math.isnan(demo["lb"])
    assert demo["created"] == "2026-11-22T10:00:00"

    base = df.set_index("experiment").loc["cnn/base"]
    assert base["cv_folds"] == "0.800 0.900 0.700"  # fold 0, 2, 10
    assert base["cv_mean"] == pytest.approx(0.8)
    assert base["cv_std"] == pytest.approx(np.std([0.8, 0.9, 0.7]))
    assert math.isnan(base["oof_score_frame"])
    assert math.isnan(base["test_score"])
    assert math.isnan(base["test_score_frame"])
    assert base["lb"] == 0.85

    aaa = df.set_index("experiment").loc["aaa/v1_lr3e-4"]
    assert aaa["cv_std"] == 0.0
    assert math.isnan(aaa["test_score"])


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
    assert header[0] == "experiment" and "LB" in header and "CV mean ± std" in header
    rows = {r[0]: r for r in ([c.strip() for c in t.strip("|").split("|")] for t in table[2:])}
    assert list(rows) == ["aaa/v1_lr3e-4", "cnn/base", "cnn/demo"]
    demo = dict(zip(header, rows["cnn/demo"], strict=True))
    assert demo["CV mean ± std"] == "0.9100 ± 0.0100"
    # no config.yaml / meta.json in this tree: nothing to compare against
    assert demo["base"] == "-" and demo["changes"] == "-"
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
    assert df["oof_score"].tolist() == [0.5, 0.8, 0.91]
    assert df["test_score"].isna().tolist() == [True, True, False]


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
    assert not (tree / "RESULTS.md").exists()  # only the patched writers wrote anything


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


# --------------------------------------------------------------------------------------------------
# A repository with a base chain of conf files and experiments trained from them
# --------------------------------------------------------------------------------------------------

CONFS = {
    "conf/eff/base.yaml": (
        "# eff/base: the family's defaults\n"
        "seed: 1\n"
        "model: {name: efficientnet_att, params: {variant: b0, dropout: 0.2}}\n"
        "optim: {name: adam, lr: 1.0e-3}\n"
        "train: {max_steps: 3000}\n"
    ),
    "conf/eff/v022.yaml": (
        "# eff/v022: activity head and loss\n"
        "base: conf/eff/base.yaml\n"
        "model: {params: {activity_head: true}}\n"
        "loss: {aux: [{name: activity, weight: 0.5}]}\n"
    ),
    "conf/eff/v023.yaml": (
        "# eff/v023: v022 with a lower learning rate\n"
        "base: conf/eff/v022.yaml\n"
        "optim: {lr: 8.0e-4}\n"
    ),
    "conf/eff/extra.yaml": "data: {crop_seconds: 7.0}\n",
    "conf/eff/v030.yaml": (
        "# eff/v030: two bases\nbase: [conf/eff/base.yaml, conf/eff/extra.yaml]\nseed: 2\n"
    ),
}


def _results_json(family: str, version: str, folds: dict[str, float], lb: float | None) -> dict:
    """What sed.scoring.score_experiment writes, key for key."""
    return {
        "recipe": "rfcx",
        "family": family,
        "version": version,
        "checkpoint": "best",
        "metric": "lwlrap",
        "oof": {
            "lwlrap": float(np.mean(list(folds.values()))) + 0.001,
            "lwlrap_frame": 0.7,
            "per_fold": folds,
            "n_recordings": 40,
        },
        "test": None,
        "lb": lb,
        "created": "2026-11-22T10:00:00",
    }


def _experiment(
    root: Path,
    exp: str,
    conf: str,
    folds: dict[str, float],
    overrides: list[str] | None = None,
    lb: float | None = None,
) -> Path:
    """An experiment folder as stage 2 and stage 5 leave it: config.yaml, meta.json, results."""
    from sed.config import dump_yaml, load_config

    expdir = root / "exp" / "rfcx" / exp
    expdir.mkdir(parents=True)
    cfg, _ = load_config(root / conf, overrides)
    (expdir / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
    command = f"train.py --conf {conf} --datadir data/rfcx --expdir exp/rfcx/{exp}"
    if overrides:
        command += " --conf_override " + " ".join(overrides)
    meta = {"command": command, "git_commit": "abc", "git_dirty": False, "folds": [0, 1]}
    (expdir / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    family, version = exp.split("/")
    (expdir / "results.json").write_text(json.dumps(_results_json(family, version, folds, lb)))
    return expdir


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    for name, text in CONFS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    # Stages run from the repository root, and sed.config looks up "base: conf/..." relative to
    # the current folder first: without this the real repository's conf/ would be read.
    monkeypatch.chdir(root)
    _experiment(root, "eff/base", "conf/eff/base.yaml", {"0": 0.70, "1": 0.74})
    _experiment(root, "eff/v022", "conf/eff/v022.yaml", {"0": 0.80, "1": 0.82}, lb=0.79)
    _experiment(
        root,
        "eff/v023_short",
        "conf/eff/v023.yaml",
        {"0": 0.83, "1": 0.85, "2": 0.90},
        overrides=["train.max_steps=200"],
    )
    return root


def _table(root: Path) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResultsWarning)  # a clean tree warns about nothing
        return collect_results(root / "exp" / "rfcx").set_index("experiment")


def test_changes_against_base_chain(repo: Path) -> None:
    df = _table(repo)
    assert df.index.tolist() == ["eff/base", "eff/v022", "eff/v023_short"]
    # a root config has no base to compare with
    assert pd.isna(df.loc["eff/base", "base"]) and pd.isna(df.loc["eff/base", "changes"])
    assert df.loc["eff/v022", "base"] == "eff/base"
    assert df.loc["eff/v022", "changes"] == (
        "model.params.activity_head=true loss.aux=[activity(weight=0.5)]"
    )
    # v023 against the resolved v022 (not against eff/base): its own lr, plus the override
    # given on the command line, which config.yaml holds.
    assert df.loc["eff/v023_short", "base"] == "eff/v022"
    assert df.loc["eff/v023_short", "changes"] == "optim.lr=8e-4 train.max_steps=200"
    assert df.loc["eff/v023_short", "note"] == "v022 with a lower learning rate"
    assert df.loc["eff/v023_short", "cv_mean"] == pytest.approx(np.mean([0.83, 0.85, 0.90]))
    assert df.loc["eff/v023_short", "cv_std"] == pytest.approx(np.std([0.83, 0.85, 0.90]))
    assert df.loc["eff/v022", "lb"] == 0.79


def test_changes_identical_and_list_base(repo: Path) -> None:
    _experiment(repo, "eff/v030", "conf/eff/v030.yaml", {"0": 0.5})
    # trained from v022 with nothing changed: the same config as its base
    _experiment(repo, "eff/v022_rerun", "conf/eff/v023.yaml", {"0": 0.5}, ["optim.lr=1e-3"])
    df = _table(repo)
    assert df.loc["eff/v030", "base"] == "eff/base + eff/extra"
    assert df.loc["eff/v030", "changes"] == "seed=2"
    assert df.loc["eff/v022_rerun", "changes"] == "(none)"


def test_changes_unknown_base(repo: Path) -> None:
    exp = repo / "exp" / "rfcx" / "eff"
    # the conf file was renamed since the run
    meta = json.loads((exp / "v022" / "meta.json").read_text())
    meta["command"] = meta["command"].replace("v022.yaml", "v022_old.yaml")
    (exp / "v022" / "meta.json").write_text(json.dumps(meta))
    # no meta.json at all (e.g. an ensemble folder)
    (exp / "v023_short" / "meta.json").unlink()
    df = _table(repo)
    assert pd.isna(df.loc["eff/v022", "changes"]) and pd.isna(df.loc["eff/v022", "base"])
    assert pd.isna(df.loc["eff/v023_short", "changes"])
    # the note comes from config.yaml and needs no base
    assert df.loc["eff/v023_short", "note"] == "v022 with a lower learning rate"

    md, _ = write_results_table(repo / "exp" / "rfcx")
    row = next(line for line in md.read_text().splitlines() if line.startswith("| eff/v022 "))
    assert "| eff/v022 | - | - |" in row


def test_corrupt_config_and_meta_warn(repo: Path) -> None:
    exp = repo / "exp" / "rfcx" / "eff"
    (exp / "v022" / "meta.json").write_text("{not json")
    (exp / "v023_short" / "config.yaml").write_text("model: [unclosed\n")
    df, msgs = _collect(repo / "exp" / "rfcx")
    assert len(df) == 3  # the scores are still there
    assert any(str(exp / "v022" / "meta.json") in m and "not valid JSON" in m for m in msgs)
    assert any(str(exp / "v023_short" / "config.yaml") in m for m in msgs)
    assert pd.isna(df.set_index("experiment").loc["eff/v022", "changes"])


def test_markdown_rows_with_changes(repo: Path) -> None:
    md, csv = write_results_table(repo / "exp" / "rfcx")
    lines = md.read_text(encoding="utf-8").splitlines()
    table = [line for line in lines if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    rows = [
        dict(zip(header, (c.strip() for c in t.strip("|").split("|")), strict=True))
        for t in table[2:]
    ]
    assert [r["experiment"] for r in rows] == ["eff/base", "eff/v022", "eff/v023_short"]
    v023 = rows[2]
    assert v023["base"] == "eff/v022"
    assert v023["changes"] == "`optim.lr=8e-4 train.max_steps=200`"
    folds = [0.83, 0.85, 0.90]
    assert v023["CV mean ± std"] == f"{np.mean(folds):.4f} ± {np.std(folds):.4f}"
    assert v023["CV folds"] == "0.830 0.850 0.900"
    assert v023["OOF frame"] == "0.7000" and v023["LB"] == "-"
    assert rows[1]["LB"] == "0.7900"
    back = pd.read_csv(csv).set_index("experiment")
    assert back.loc["eff/v023_short", "changes"] == "optim.lr=8e-4 train.max_steps=200"
    assert back.loc["eff/v022", "base"] == "eff/base"


def test_config_changes_formatting() -> None:
    base = {"optim": {"lr": 1e-3, "params": {"betas": [0.9, 0.99]}}, "version_note": "a"}
    ours = {
        "optim": {"lr": 3e-5, "params": {}},
        "augment": [{"name": "mixup", "alpha": 0.1}, {"name": "specaug"}],
        "data": {"crop": "random", "epoch_size": None, "crop_seconds": 10.9},
        "version_note": "b",
    }
    assert results.config_changes(ours, base) == (
        "optim.lr=3e-5 augment=[mixup(alpha=0.1),specaug] data.crop=random "
        "data.epoch_size=null data.crop_seconds=10.9 optim.params.betas=(unset)"
    )
    assert results.config_changes(base, base) == "(none)"


def test_set_lb_persists_and_keeps_other_rows(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = repo / "exp" / "rfcx"
    before = {p: p.read_text() for p in recipe.glob("*/*/results.json")}
    assert main(["--expdir", str(recipe), "--set-lb", "eff/v023_short", "0.861"]) == 0
    assert "| eff/v023_short |" in capsys.readouterr().out
    df = _table(repo)
    assert df.loc["eff/v023_short", "lb"] == 0.861
    assert df.loc["eff/v022", "lb"] == 0.79 and math.isnan(df.loc["eff/base", "lb"])
    changed = recipe / "eff" / "v023_short" / "results.json"
    for path, text in before.items():
        if path != changed:
            assert path.read_text() == text  # other experiments untouched, byte for byte
    data = json.loads(changed.read_text())
    assert data["oof"] == json.loads(before[changed])["oof"]

    # by folder, with the recipe folder taken from the path; --lb is the old spelling
    assert main(["--set-lb", "exp/rfcx/eff/v022", "0.801"]) == 0
    assert main(["--lb", str(recipe / "eff" / "base"), "0.7"]) == 0
    df = _table(repo)
    assert df.loc["eff/v022", "lb"] == 0.801 and df.loc["eff/base", "lb"] == 0.7
    # without --expdir the default exp/rfcx (relative to the current folder) is used
    assert main(["--set-lb", "eff/v022", "none"]) == 0
    assert math.isnan(_table(repo).loc["eff/v022", "lb"])
    assert (recipe / "results.csv").is_file() and _leftovers(recipe) == []


def test_set_lb_errors(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = repo / "exp" / "rfcx"
    # a folder outside the recipe folder
    assert main(["--expdir", str(recipe), "--set-lb", str(tmp_path), "0.5"]) == 1
    assert "nor a folder inside" in capsys.readouterr().err
    with pytest.raises(ValueError, match="inside"):
        results.set_leaderboard(recipe, str(tmp_path), 0.5)
    with pytest.raises(ValueError, match="finite"):
        results.set_leaderboard(recipe, "eff/v022", math.inf)
    # a corrupt results.json: the error names the file and nothing is written
    bad = recipe / "eff" / "v022" / "results.json"
    bad.write_text('{"oof": ')
    assert main(["--expdir", str(recipe), "--set-lb", "eff/v022", "0.5"]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "not valid JSON" in err
    assert bad.read_text() == '{"oof": '
    # no --expdir and no exp/rfcx in the current folder: misuse
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["--set-lb", "eff/v022", "0.5"])
    assert e.value.code == 2 and "--expdir is required" in capsys.readouterr().err


def test_plot_with_lb(repo: Path) -> None:
    import matplotlib.image

    recipe = repo / "exp" / "rfcx"
    write_results_table(recipe)
    image = matplotlib.image.imread(recipe / "cv_vs_lb.png")
    assert image.ndim == 3 and image.shape[0] >= 300 and image.shape[1] >= 1000
    # not a blank canvas
    assert image[..., :3].std() > 0.05
    assert _leftovers(recipe) == []


def test_plot_without_lb_and_without_rows(tmp_path: Path) -> None:
    import matplotlib.image

    _put(tmp_path, "f/a", {"oof": {"lwlrap": 0.5, "per_fold": [0.4, 0.6]}})
    _put(tmp_path, "f/b", {"oof": {"lwlrap": 0.6}})  # no folds: the pooled OOF stands in
    write_results_table(tmp_path)
    assert matplotlib.image.imread(tmp_path / "cv_vs_lb.png").ndim == 3

    empty = tmp_path / "empty"
    empty.mkdir()
    write_results_table(empty)
    assert not (empty / "cv_vs_lb.png").exists()
    assert results.plot_cv_vs_lb(collect_results(empty), empty / "x.png") is None


def test_no_plot_option(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = repo / "exp" / "rfcx"
    assert main(["--expdir", str(recipe), "--no-plot"]) == 0
    assert not (recipe / "cv_vs_lb.png").exists() and (recipe / "RESULTS.md").is_file()


def test_help_explains(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--set-lb", "--expdir", "exp/rfcx", "RESULTS.md", "cv_vs_lb.png", "base"):
        assert needle in text

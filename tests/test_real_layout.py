"""The recipe on a corpus laid out exactly like the Kaggle download (no file of ours in it), with
paths that hold spaces, quotes and the JOB placeholder, and values that must never become code."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from sed.data.synth import SynthConfig, generate

ROOT = Path(__file__).resolve().parents[1]
KAGGLE_FILES = ("train_tp.csv", "train_fp.csv", "sample_submission.csv")

TINY = """\
# tiny: a few steps of a very small CNN
base: {root}/conf/cnn/demo.yaml
data: {{folds: {folds}, crop_seconds: 2.0}}
model: {{name: cnn14_att, params: {{widths: [4, 8], time_pools: [2, 2]}}}}
train: {{max_steps: 4, batch_size: 4, eval_every_steps: 2, log_every_steps: 1}}
infer: {{window_seconds: 2.0, hop_seconds: 1.0}}
"""


def run(*args: str, cwd: Path = ROOT, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "run.sh"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def kaggle_download(tmp: Path) -> Path:
    """train/, test/ and the three CSVs of the Kaggle download: nothing else (no test labels, no
    marker of ours), in a folder whose path holds a space."""
    synth = tmp / "synth"
    generate(
        synth,
        SynthConfig(n_species=4, n_train=8, n_test=5, duration=6.0, sample_rate=16000, seed=3),
        progress=False,
    )
    dst = tmp / "kaggle download" / "rfcx-species-audio-detection"
    dst.mkdir(parents=True)
    for split in ("train", "test"):
        shutil.copytree(synth / split, dst / split)
    for name in KAGGLE_FILES:
        shutil.copy(synth / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("real")
    raw = kaggle_download(tmp)
    confdir = tmp / "conf JOB's" / "cnn"
    confdir.mkdir(parents=True)
    conf = confdir / "tiny.yaml"
    conf.write_text(textwrap.dedent(TINY.format(root=ROOT, folds=2)))
    conf3 = confdir / "tiny3.yaml"
    conf3.write_text(textwrap.dedent(TINY.format(root=ROOT, folds=3)))
    work = tmp / "work JOB it's"
    proc = run(
        "--datadir",
        str(raw),
        "--conf",
        str(conf),
        "--workdir",
        str(work),
        "--nj",
        "2",
        "--conf_override",
        "train.max_steps=4 optim.lr=1e-3",
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return {"raw": raw, "conf": conf, "conf3": conf3, "work": work, "tmp": tmp}


@pytest.mark.slow
def test_a_kaggle_layout_corpus_runs_every_stage(real: dict[str, Path]) -> None:
    raw, work = real["raw"], real["work"]
    assert sorted(p.name for p in raw.iterdir()) == sorted(["train", "test", *KAGGLE_FILES])
    manifests = work / "data" / "rfcx" / "rfcx-species-audio-detection_2fold"
    assert (manifests / "folds.csv").is_file()
    exp = work / "exp" / "rfcx" / "cnn" / "tiny"
    for k in (0, 1):  # the JOB placeholder of the paths was left alone: foldk, not fold<k>
        assert (exp / f"fold{k}" / "checkpoints" / "best.pt").is_file()
    for k in (0, 1):  # a mangled path would have put fold k's files in "work <k> it's"
        assert not (real["tmp"] / f"work {k} it's").exists()
    sub = pd.read_csv(exp / "infer" / "best" / "submission.csv", dtype={"recording_id": str})
    assert sorted(sub.recording_id) == sorted(p.stem for p in (raw / "test").glob("*.flac"))
    result = json.loads((exp / "results.json").read_text())
    assert result["test"] is None  # the download has no test labels
    assert 0 < result["oof"]["lwlrap"] <= 1
    meta = json.loads((exp / "meta.json").read_text())
    assert meta["data"]["manifests"] == str(manifests) and len(meta["data"]["fingerprint"]) == 16
    # the override reached the config as two keys, through argv
    cfg = (exp / "config.yaml").read_text()
    assert "lr: 0.001" in cfg
    # no file of ours was added to the user's corpus
    assert sorted(p.name for p in raw.iterdir()) == sorted(["train", "test", *KAGGLE_FILES])


@pytest.mark.slow
def test_a_second_run_skips_every_complete_stage(real: dict[str, Path]) -> None:
    sub = real["work"] / "exp" / "rfcx" / "cnn" / "tiny" / "infer" / "best" / "submission.csv"
    before = sub.stat().st_mtime_ns
    proc = run(
        "--datadir",
        str(real["raw"]),
        "--conf",
        str(real["conf"]),
        "--workdir",
        str(real["work"]),
        "--conf_override",
        "train.max_steps=4 optim.lr=1e-3",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for line in (
        "manifests in",
        "fold 0 is trained",
        "predictions are complete; skipping",
        "outputs are complete; skipping",
        "scores are complete; skipping",
    ):
        assert line in proc.stdout, line
    assert sub.stat().st_mtime_ns == before


@pytest.mark.slow
def test_a_crafted_override_is_data_not_code(real: dict[str, Path], tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    crafted = f"x'''+__import__('os').system('touch {marker}')+'''"
    proc = run(
        "--datadir",
        str(real["raw"]),
        "--conf",
        str(real["conf"]),
        "--workdir",
        str(tmp_path / "w"),
        "--conf_override",
        crafted,
        "--stop_stage",
        "0",
        timeout=120,
    )
    assert proc.returncode == 2
    assert "config error" in proc.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_a_config_with_other_folds_fails_fast_with_the_fix(real: dict[str, Path]) -> None:
    """Stage 2 of a 3-fold config after a 2-fold stage 0: one message and the exact command,
    not a job array of tasks that all fail."""
    work = real["work"]
    proc = run("--stage", "2", "--conf", str(real["conf3"]), "--workdir", str(work), timeout=120)
    assert proc.returncode == 2
    assert "stage 2 cannot start" in proc.stderr and "no manifests" in proc.stderr
    assert "run first: ./run.sh" in proc.stderr and "--stop_stage 1" in proc.stderr
    assert "--data_tag rfcx-species-audio-detection" in proc.stderr  # the latest stage-0 corpus
    assert not (work / "exp" / "rfcx" / "cnn" / "tiny3" / "fold0").exists()
    # the 2-fold manifests of the first experiment are untouched
    assert (work / "data" / "rfcx" / "rfcx-species-audio-detection_2fold" / "folds.csv").is_file()


@pytest.mark.slow
def test_strict_mode_of_run_sh(real: dict[str, Path], tmp_path: Path) -> None:
    """A corrupt recording: listed in skipped.csv and skipped by default, the run stopped at it
    with --strict true."""
    raw = tmp_path / "kaggle copy"
    shutil.copytree(real["raw"], raw)
    bad = sorted((raw / "train").glob("*.flac"))[0]
    bad.write_bytes(b"not audio at all" * 64)
    common = ["--datadir", str(raw), "--conf", str(real["conf"]), "--stop_stage", "0", "--nj", "1"]
    proc = run(*common, "--workdir", str(tmp_path / "lenient"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    skipped = pd.read_csv(
        tmp_path / "lenient" / "data" / "rfcx" / "kaggle_copy_2fold" / "skipped.csv", dtype=str
    )
    assert any(bad.stem in str(v) for v in skipped.to_numpy().ravel())
    proc = run(*common, "--workdir", str(tmp_path / "strict"), "--strict", "true", timeout=300)
    assert proc.returncode != 0
    assert bad.name in proc.stdout + proc.stderr
    assert not (
        tmp_path / "strict" / "data" / "rfcx" / "kaggle_copy_2fold" / "recordings.csv"
    ).exists()

"""Atomic writes: an interrupted write never corrupts what was there."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sed.fileio import atomic_open, write_csv, write_json, write_text
from sed.launch.slurm import job_script_path


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


def _run_with_file_size_limit(code: str, limit: int, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a python whose writes past ``limit`` bytes of a file fail (EFBIG): a disk
    that fills up in the middle of a write."""
    prelude = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"  # fail the write instead of dying
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + code], cwd=cwd, capture_output=True, text=True
    )


def test_write_failing_midway_keeps_the_old_file(tmp_path: Path) -> None:
    p = tmp_path / "results.json"
    write_json(p, {"old": True})
    before = p.read_bytes()
    code = f"from sed.fileio import write_json\nwrite_json({str(p)!r}, {{'x': 'y' * 100000}})\n"
    proc = _run_with_file_size_limit(code, 4096, tmp_path)
    assert proc.returncode != 0 and "File too large" in proc.stderr  # the write did fail
    assert p.read_bytes() == before
    assert list(tmp_path.iterdir()) == [p]


def test_slurm_job_script_survives_a_failed_rewrite(tmp_path: Path) -> None:
    # stage 2 submitted before: its job script is there; resubmitting with a longer command fails
    # while writing the new script (disk full), before sbatch runs
    log = tmp_path / "exp" / "train.log"
    script = tmp_path / job_script_path(Path("exp/train.log"))
    script.parent.mkdir(parents=True)
    script.write_text("#!/usr/bin/env bash\necho the previous job\n")
    before = script.read_bytes()
    code = (
        "from pathlib import Path\n"
        "from sed.launch.slurm import Job, submit\n"
        f"job = Job(command=['echo', 'x' * 100000], log=Path('exp/train.log'), "
        f"workdir=Path({str(tmp_path)!r}))\n"
        "submit(job, 'false')\n"
    )
    proc = _run_with_file_size_limit(code, 4096, tmp_path)
    assert proc.returncode != 0 and "File too large" in proc.stderr
    assert script.read_bytes() == before
    assert sorted(p.name for p in script.parent.iterdir()) == [script.name]
    assert not log.exists()


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    # mkstemp makes owner-only files; a shared experiment folder needs what open() would give
    write_text(tmp_path / "a.txt", "x")
    write_csv(tmp_path / "b.csv", pd.DataFrame({"x": [1]}))
    with open(tmp_path / "plain.txt", "w") as f:  # the reference: a plain open()
        f.write("x")
    want = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    if not want & 0o044:
        pytest.skip("the umask lets no one else read files: owner-only is then what open() gives")
    for name in ("a.txt", "b.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want

"""The command is ``sedkit`` (also ``python -m sed``): never ``sed``, which would shadow GNU sed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_python_m_sed_is_the_sedkit_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sed", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: sedkit <command>")
    for command in ("infer", "export", "results", "synth"):
        assert f"  {command} " in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "sed", "infr"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "sedkit: unknown command 'infr'" in bad.stderr


def test_no_console_script_shadows_gnu_sed() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    scripts = dict(re.findall(r'^([\w-]+) = "([^"]+)"', section, re.MULTILINE))
    assert "sed" not in scripts and scripts["sedkit"] == "sed.bin.cli:main"
    # the venv's bin/ (on PATH after . ./path.sh) has no sed of ours
    assert not (Path(sys.executable).parent / "sed").exists()


def test_subcommand_help_names_sedkit() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sed", "infer", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith("usage: sedkit infer")

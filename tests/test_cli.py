"""The command is ``sedkit`` (also ``python -m sed``): never ``sed``, which would shadow GNU sed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def _sedkit() -> list[str]:
    """The ``sedkit`` console script of this interpreter's environment, else its module."""
    script = Path(sys.executable).parent / "sedkit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sed.bin.cli"]


def _usage(argv: list[str]) -> str:
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()[0]


def test_help_names_the_program_as_it_was_run() -> None:
    """``sedkit serve --help`` says ``sedkit serve``, ``python -m sed.bin.serve --help`` says
    that (and a review subcommand under its parent's name)."""
    assert _usage([*_sedkit(), "serve", "--help"]).startswith("usage: sedkit serve [-h] --model")
    usage = _usage([sys.executable, "-m", "sed.bin.serve", "--help"])
    assert usage.startswith("usage: python -m sed.bin.serve [-h] --model")
    assert _usage([*_sedkit(), "review", "cut", "--help"]).startswith("usage: sedkit review cut")
    usage = _usage([sys.executable, "-m", "sed.bin.review", "cut", "--help"])
    assert usage.startswith("usage: python -m sed.bin.review cut")


ENTRY_POINTS = {  # module -> its sedkit command, if it is one
    "sed.bin.serve": "serve",
    "sed.bin.review": "review",
    "sed.bin.export": "export",
    "sed.bin.infer_files": "infer",
    "sed.bin.gbdt": None,
    "sed.bin.recipe": None,
    "sed.bin.zero_shot": None,
}


def test_every_entry_point_takes_its_name_from_how_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from sed.bin.cli import COMMANDS, PROG
    from sed.bin.common import SEDKIT

    assert SEDKIT == PROG

    for module, command in ENTRY_POINTS.items():
        get_parser = importlib.import_module(module).get_parser
        monkeypatch.setattr(sys, "argv", [f"/somewhere/{module.rsplit('.', 1)[1]}.py"])
        assert get_parser().prog == f"python -m {module}"
        if command is not None:
            assert COMMANDS[command][0] == module
            monkeypatch.setattr(sys, "argv", [f"sedkit {command}"])
            assert get_parser().prog == f"sedkit {command}"
        # another command that ran earlier in this process does not lend its name
        monkeypatch.setattr(sys, "argv", ["sedkit results"])
        assert get_parser().prog == f"python -m {module}"

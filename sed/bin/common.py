"""Helpers shared by the entry points: logging, config arguments, experiment metadata."""

from __future__ import annotations

import argparse
import logging
import platform
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sed.fileio import write_text

if TYPE_CHECKING:
    from sed.config import Config

# sed.config (yaml, the config schema) and importlib.metadata are imported where they are used:
# entry points that must start fast (sedkit infer on the lite path, recipe env) import this
# module for prog_name and setup_logging

SEDKIT = "sedkit"  # the command's name (sed.bin.cli.PROG)
PACKAGES = ("torch", "torchaudio", "numpy", "pandas", "h5py", "soundfile", "scikit-learn", "sed")


def prog_name(module: str) -> str:
    """An entry point's program name for its usage line: ``sedkit <command>`` when it runs as
    that command (:mod:`sed.bin.cli` sets ``sys.argv[0]`` to it before calling ``main``), else
    ``python -m <module>``.

    Call it when the parser is built, not at import: ``sedkit`` imports the command's module
    before it sets ``sys.argv[0]``.

    Args:
        module: the entry point's module, e.g. ``"sed.bin.serve"`` (not ``__name__``, which is
            ``"__main__"`` under ``python -m``).
    """
    argv0 = sys.argv[0] if sys.argv else ""
    # the command table of the sedkit command that set argv[0], looked up rather than imported
    # (entry points import sed.bin.common only); argv[0] outlives the command in a process that
    # runs several (tests), so it counts only when its command is this module
    cli = sys.modules.get("sed.bin.cli")
    if cli is not None and argv0.startswith(f"{SEDKIT} "):
        name = argv0[len(SEDKIT) + 1 :]
        if cli.COMMANDS.get(name, ("",))[0] == module:
            return argv0
    return f"python -m {module}"


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conf", required=True, help="experiment YAML (e.g. conf/cnn/demo.yaml)")
    parser.add_argument(
        "--conf_override",
        action="append",
        default=[],
        help='dotted overrides, e.g. "train.max_steps=200 optim.lr=1e-3" (repeatable)',
    )


def config_from_args(args: argparse.Namespace) -> tuple[Config, dict[str, str]]:
    """Load the config or exit with status 2 and the error message (no traceback)."""
    from sed.config import ConfigError, load_config

    try:
        return load_config(args.conf, args.conf_override)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def git_info(root: Path) -> dict:
    """Commit, dirty flag and diff of the working tree at ``root`` (empty if not a git checkout)."""

    def run(*cmd: str) -> str:
        return subprocess.run(
            ["git", *cmd], cwd=root, capture_output=True, text=True, check=True
        ).stdout

    try:
        commit = run("rev-parse", "HEAD").strip()
        diff = run("diff", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None, "diff": ""}
    return {"commit": commit, "dirty": bool(diff.strip()), "diff": diff}


def package_versions() -> dict[str, str]:
    import importlib.metadata

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def experiment_meta(argv: list[str]) -> dict:
    """Command line, git state, versions and host, for ``meta.json`` beside the results."""
    git = git_info(Path.cwd())
    return {
        "command": " ".join([Path(sys.argv[0]).name, *argv]),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "versions": package_versions(),
        "host": socket.gethostname(),
        "started": datetime.now().isoformat(timespec="seconds"),
        "_diff": git["diff"],
    }


def write_diff(expdir: Path, meta: dict) -> None:
    diff = meta.pop("_diff", "")
    if diff:
        write_text(expdir / "git.diff", diff)


def now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (job counts such as ``--nj``)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value

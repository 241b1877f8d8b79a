"""The ``sedkit`` command (also ``python -m sed``): one entry point whose subcommands are the
package's tools.

``sedkit <command> [options]``; ``sedkit <command> --help`` explains each. The command is not
called ``sed``: with the virtualenv active it would shadow GNU sed for every shell script.
Subcommand modules are imported only when chosen, so ``sedkit --help`` is instant and one broken
optional dependency does not disable the other commands.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

PROG = "sedkit"

# command -> (module with ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "results": ("sed.results", "gather results.json files into RESULTS.md / results.csv; set LB"),
    "infer": ("sed.bin.infer_files", "run a trained experiment or ONNX model on audio files"),
    "export": ("sed.bin.export", "export a trained fold model to ONNX"),
    "synth": ("sed.data.synth", "generate a synthetic corpus in a Kaggle layout (see --help)"),
    "serve": ("sed.bin.serve", "serve a trained model over HTTP (streamed NDJSON results)"),
    "review": ("sed.bin.review", "cut detections into segments, review them, merge into a corpus"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", f"'{PROG} <command> --help' shows a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"{PROG}: unknown command '{name}'\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    # argparse in the subcommand shows "sedkit <command>" as its program name
    sys.argv[0] = f"{PROG} {name}"
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""The import graph of the package: data flows one way (manifests -> dumps -> datasets -> models
-> predictions -> outputs), so training and inference never import each other in a circle, and
``sedkit infer`` on an exported model does not load the training stack."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from test_sed_infer import chirps, make_experiment

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sed"

# Package-level edges that still close a cycle, and why. Each must still exist (remove the entry
# once its cycle is gone); any other cycle fails the test.
KNOWN_CYCLE_EDGES: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path) -> set[str]:
    """The ``sed`` modules a module imports anywhere in its source (also inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from ..y import z
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # "from sed.infer import stream" imports the module sed.infer.stream
            found.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in found if m in MODULES}


def group(module: str) -> str:
    """The node of the package graph: a subpackage (``sed.infer``) or a top-level module."""
    parts = module.split(".")
    if len(parts) == 1:
        return module
    return ".".join(parts[:2])


def package_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], list[str]]]:
    """``{package: packages it imports}`` and, per edge, the modules that make it."""
    edges: dict[str, set[str]] = {}
    makers: dict[tuple[str, str], list[str]] = {}
    for name, path in MODULES.items():
        for dep in imported_modules(name, path):
            a, b = group(name), group(dep)
            if a != b and a != "sed" and b != "sed":
                edges.setdefault(a, set()).add(b)
                makers.setdefault((a, b), []).append(name)
    return edges, makers


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports_inside_functions() -> None:
    """The parser finds function-level and relative imports (else the checks below would be
    blind to the lazy imports sed uses to keep start-up fast)."""
    deps = imported_modules("sed.infer.files", MODULES["sed.infer.files"])
    assert "sed.infer.onnx_backend" in deps  # imported inside load_model
    assert "sed.models.loading" in deps


def test_training_and_inference_do_not_import_each_other_in_a_circle() -> None:
    edges, makers = package_graph()
    assert "sed.infer" in edges.get("sed.train", set())  # validation runs the inference engine
    back = makers.get(("sed.infer", "sed.train"), [])
    assert not back, f"inference modules import sed.train: {back}"
    for comp in cycles(edges):
        assert "sed.train" not in comp and "sed.bin" not in comp, comp


def test_no_package_cycle_beyond_the_known_ones() -> None:
    edges, makers = package_graph()
    for (a, b), why in KNOWN_CYCLE_EDGES.items():
        assert b in edges.get(a, set()), f"{a} -> {b} is gone: drop it from KNOWN_CYCLE_EDGES"
        assert why
    pruned = {a: {b for b in bs if (a, b) not in KNOWN_CYCLE_EDGES} for a, bs in edges.items()}
    found = cycles(pruned)
    detail = {
        f"{a} -> {b}": makers[(a, b)]
        for comp in found
        for a in comp
        for b in sorted(pruned.get(a, ()))
        if b in comp
    }
    assert not found, f"package import cycles: {found}; edges: {detail}"


def test_no_module_imports_the_entry_points() -> None:
    """``sed/bin/`` modules are entry points: the library never imports them (only the command
    dispatches to them, ``python -m sed`` through sed.bin.cli, and they share sed.bin.common)."""
    offenders = {
        name: sorted(
            d
            for d in imported_modules(name, path)
            if d.startswith("sed.bin") and (name, d) != ("sed.__main__", "sed.bin.cli")
        )
        for name, path in MODULES.items()
        if not name.startswith("sed.bin")
    }
    assert not {k: v for k, v in offenders.items() if v}
    within = {
        name: sorted(
            d
            for d in imported_modules(name, path)
            if d.startswith("sed.bin.") and d != "sed.bin.common"
        )
        for name, path in MODULES.items()
        if name.startswith("sed.bin.") and name != "sed.bin.cli"
    }
    assert not {k: v for k, v in within.items() if v}


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from sed.bin.cli import main as sed_main

    root = tmp_path_factory.mktemp("onnx")
    expdir = make_experiment(root, folds=(0,))
    out = root / "model.onnx"
    assert sed_main(["export", "--expdir", str(expdir), "--fold", "0", "--out", str(out)]) == 0
    wav = root / "a.wav"
    sf.write(wav, chirps(3.0, 16000, seed=2), 16000)
    return out, wav


def test_sed_infer_with_onnx_leaves_the_training_stack_unloaded(
    onnx_model: tuple[Path, Path], tmp_path: Path
) -> None:
    model, wav = onnx_model
    code = (
        "import json, sys\n"
        "from sed.bin.cli import main\n"
        f"rc = main(['infer', {str(model)!r}, {str(wav)!r}, '--outdir', {str(tmp_path)!r},"
        " '--no_progress', '--threads', '1'])\n"
        "prefixes = ('sed', 'torch.utils.tensorboard')\n"
        "mods = sorted(m for m in sys.modules if m.startswith(prefixes))\n"
        "print(json.dumps({'rc': rc, 'modules': mods}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0
    loaded = result["modules"]
    assert "sed.infer.lite.run" in loaded  # the run went through the torch-free ONNX path
    assert not [m for m in loaded if m == "torch" or m.startswith("torch.")]
    assert not [m for m in loaded if m == "sed.train" or m.startswith("sed.train.")]
    assert not [m for m in loaded if m.startswith("torch.utils.tensorboard")]
    assert (tmp_path / "clip_scores.csv").exists()

"""Architecture: packages import only packages of their own layer or below, and no two packages import each other.

The layer table is data (``LAYERS``); docs/architecture.md explains it. Both module-level and function-level
(lazy) imports count: a lazy import still makes the lower layer depend on the higher one.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = SRC / "rftwin"

# Layer number -> packages (first component under ``rftwin``; ``rftwin`` is the top-level ``__init__``).
LAYERS: dict[int, tuple[str, ...]] = {
    0: ("rftwin", "pathset", "runtime", "progress", "io", "lazy"),  # the PathSet contract and process-wide utilities
    1: ("physics", "materials"),  # pure torch: channel engine, material models
    2: ("trace", "scene"),  # the only Sionna users
    3: ("data", "twin_schema", "twin_io"),  # files: measurements, sidecars, twin folders (validation)
    4: ("calibrate", "fields", "bcm", "priors", "baselines"),  # fitting: objective, optimisers, priors, models
    5: ("twin", "predict", "evaluate", "plan", "dynamic", "ris", "dataset", "report", "convergence_plot",
        "demo"),  # uses of a twin
    6: ("studies", "validate"),  # studies and paper reproductions
    7: ("cli",),  # command line: parses options and calls the layers below
}
LAYER_OF = {p: n for n, pkgs in LAYERS.items() for p in pkgs}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rftwin"


def import_edges() -> list[tuple[str, str, int]]:
    """(importing module, imported rftwin module, line) for every import statement anywhere in a module."""
    edges = []
    for path in sorted(PKG.rglob("*.py")):
        mod = _module_name(path)
        base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    up = base[: len(base) - (node.level - 1)]
                    targets = [".".join(up + ([node.module] if node.module else []))]
                else:
                    targets = [node.module or ""]
            else:
                continue
            edges += [(mod, t, node.lineno) for t in targets if t == "rftwin" or t.startswith("rftwin.")]
    return edges


def test_layer_table_names_every_package():
    packages = {_package(_module_name(p)) for p in PKG.rglob("*.py")}
    missing = sorted(packages - set(LAYER_OF))
    assert not missing, f"packages not in the layer table of tests/architecture/test_layers.py: {missing}"


def test_imports_go_down_the_layers():
    bad = [f"{m} (layer {LAYER_OF[_package(m)]}) imports {t} (layer {LAYER_OF[_package(t)]}) at line {ln}"
           for m, t, ln in import_edges()
           if _package(m) in LAYER_OF and _package(t) in LAYER_OF
           and LAYER_OF[_package(t)] > LAYER_OF[_package(m)]]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_cycles_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], str] = {}
    for m, t, ln in import_edges():
        a, b = _package(m), _package(t)
        if a != b:
            graph[a].add(b)
            where.setdefault((a, b), f"{m}:{ln} -> {t}")
    cycles = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                loop = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                cycles.append(" -> ".join(loop) + "  (" + "; ".join(where[(x, y)] for x, y in zip(loop, loop[1:]))
                              + ")")
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles between packages:\n" + "\n".join(cycles)


def test_physics_and_materials_load_no_tracer():
    script = ("import sys, rftwin.physics, rftwin.materials\n"
              "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sionna', 'mitsuba', 'drjit')\n"
              "             or m.startswith(('rftwin.trace', 'rftwin.scene')))\n"
              "print('\\n'.join(bad))\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(SRC)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"importing rftwin.physics and rftwin.materials loaded:\n{r.stdout}"


def test_tests_import_no_private_names():
    bad = []
    for path in sorted(Path(__file__).resolve().parents[1].rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rftwin"):
                bad += [f"{path.name}:{node.lineno} {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_")]
    assert not bad, "tests import private names (test through the public API or make the name public):\n" + \
        "\n".join(bad)

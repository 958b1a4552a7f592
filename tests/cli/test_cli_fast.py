"""Argument errors of every command come back before torch, Sionna or Mitsuba load (so in well under a second).

Each case runs ``rftwin`` in a fresh interpreter under a small wrapper that, at exit, prints which of the heavy
modules are in ``sys.modules``: "fast" is tested by what was imported, not by the wall clock of a shared machine.
``benchmarks/bench_cli.py`` measures the times.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from _cli_probe import MARK, WRAPPER, heavy_modules
from rftwin.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
LINKS = str(ROOT / "examples" / "links.csv")
MEAS = str(ROOT / "examples" / "measurements_v1.csv")


def run_cli(args: list[str], tmp: Path) -> tuple[int, str, list[str]]:
    """Exit code, stdout + stderr (without the marker line) and the heavy modules loaded, of ``rftwin ARGS``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb",
           "RFTWIN_CACHE": str(tmp / "cache"), "RFTWIN_PROGRESS": "0"}
    p = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True, cwd=tmp, env=env,
                       timeout=120)
    lines = (p.stdout + p.stderr).splitlines()
    heavy = heavy_modules(lines)
    assert heavy is not None, f"no marker line: rftwin {' '.join(args)}\n{p.stdout}\n{p.stderr}"
    return p.returncode, "\n".join(ln for ln in lines if not ln.startswith(MARK)), heavy


# (command path, arguments with one bad value, text the error must contain: the option or argument it names)
CASES: list[tuple[str, list[str], str]] = [
    ("calibrate", ["calibrate", "room", MEAS, "--out", "c", "--optimizer", "nope"], "--optimizer"),
    ("calibrate", ["calibrate", "room", MEAS, "--out", "c", "--prior-spread", "2"], "--prior-spread"),
    ("predict", ["predict", "room", LINKS, "--out", "p.csv", "--window", "nope"], "--window"),
    ("predict", ["predict", "room", LINKS, "--out", "p.csv", "--tx-array", "0x2"], "--tx-array"),
    ("predict", ["predict", "room", LINKS, "--out", "p.csv", "--device", "gpu"], "--device"),
    ("predict", ["predict", "room", "nope.csv", "--out", "p.csv"], "LINKS"),
    ("demo", ["demo", "--trials", "0"], "--trials"),
    ("demo", ["demo", "--receivers", "0"], "--receivers"),
    ("demo", ["demo", "--init", "nope"], "--init"),
    ("demo", ["demo", "--sweeps", "-1"], "--sweeps"),
    ("demo", ["demo", "--samples-per-src", "0"], "--samples-per-src"),
    ("demo", ["demo", "--prior-spread", "1.5"], "--prior-spread"),
    ("radiomap", ["radiomap", "room", "--tx", "1 1 1", "--cell", "-1", "--out", "rm"], "--cell"),
    ("radiomap", ["radiomap", "room", "--tx", "1 1", "--out", "rm"], "--tx"),
    ("beams", ["beams", "room", LINKS, "--tx-array", "0x0", "--out", "b.csv"], "--tx-array"),
    ("beams", ["beams", "room", LINKS, "--codebook", "dft:0", "--out", "b.csv"], "--codebook"),
    ("beams", ["beams", "room", LINKS, "--mac-efficiency", "2", "--out", "b.csv"], "--mac-efficiency"),
    ("update", ["update", "room", "--trajectory", "/nonexist.csv", "--links", LINKS, "--out", "u"], "--trajectory"),
    ("update", ["update", "room", "--trajectory", LINKS, "--links", LINKS, "--out", "u", "--margin-m", "-1"],
     "--margin-m"),
    ("update", ["update", "room", "--mesh", "nobody.ply", "--trajectory", LINKS, "--links", LINKS, "--out", "u"],
     "--mesh"),
    ("plan", ["plan", "room", "--budget", "0", "--out", "p.csv"], "--budget"),
    ("plan", ["plan", "room", "--budget", "3", "--out", "p.csv", "--candidates", "nope.csv"], "--candidates"),
    ("materials-map", ["materials-map", "room", "--object", "nope", "--out", "mm", "--spacing", "0"], "--spacing"),
    ("materials-map", ["materials-map", "room", "--object", "nope", "--out", "mm", "--angle", "95"], "--angle"),
    ("evaluate", ["evaluate", "room", MEAS, "--out", "ev", "--methods", "twin,nope"], "--methods"),
    ("evaluate", ["evaluate", "room", "nope.csv", "--out", "ev"], "TRUTH"),
    ("evaluate", ["evaluate", "room", MEAS, "--out", "ev", "--scenario", "mars"], "--scenario"),
    ("import-scene", ["import-scene", "in.ply", "--labels", "l.yaml", "--out", "imp", "--up", "x"], "--up"),
    ("import-scene", ["import-scene", "in.ply", "--labels", "l.yaml", "--out", "imp"], "INPUTS"),
    ("bench", ["bench", "--reps", "0"], "--reps"),
    ("bench priors", ["bench", "priors", "--optimizer", "sgd"], "--optimizer"),
    ("bench wedt", ["bench", "wedt", "--d2d-rx", "0"], "--d2d-rx"),
    ("bench wedt", ["bench", "wedt", "--scenes", "mars"], "--scenes"),
    ("bench validate", ["bench", "validate", "--part", "nope"], "--part"),
    ("doctor", ["doctor", "--bogus"], "--bogus"),
    ("ris", ["ris", "room", "--candidates", "c.csv", "--target", "0,1,0,1,1", "--tx", "1 1 1", "--bits", "9"],
     "--bits"),
    ("ris", ["ris", "room", "--candidates", "c.csv", "--target", "0,1,0,1,1", "--tx", "1 1 1"], "--candidates"),
    ("ris", ["ris", "room", "--candidates", LINKS, "--target", "nope.csv", "--tx", "1 1 1"], "--target"),
    ("dataset", ["dataset", "room", "--tx", "1,1,1", "--rx", "2,2,1", "--out", "ds", "--links-per-shard", "0"],
     "--links-per-shard"),
    ("dataset", ["dataset", "room", "--tx", "1,1,1", "--rx", "2,2,1", "--out", "ds", "--max-depth", "-1"],
     "--max-depth"),
    # malformed --memory-budget, antenna pattern / polarization names, a missing MEASUREMENTS file
    ("predict", ["predict", "room", LINKS, "--out", "p.csv", "--memory-budget", "lots"], "--memory-budget"),
    ("dataset", ["dataset", "room", "--tx", "1,1,1", "--rx", "2,2,1", "--out", "ds", "--memory-budget", "0"],
     "--memory-budget"),
    ("demo", ["demo", "--memory-budget", "2XB"], "--memory-budget"),
    ("calibrate", ["calibrate", "room", MEAS, "--out", "c", "--memory-budget", "-1GiB"], "--memory-budget"),
    ("predict", ["predict", "room", LINKS, "--out", "p.csv", "--tx-array", "2x2,pattern=horn"], "--tx-array"),
    ("predict", ["predict", "room", LINKS, "--out", "p.csv", "--rx-array", "1x1,polarization=L"], "--rx-array"),
    ("beams", ["beams", "room", LINKS, "--tx-array", "4x4,pattern=patch", "--out", "b.csv"], "--tx-array"),
    ("calibrate", ["calibrate", "room", "nope.csv", "--out", "c"], "MEASUREMENTS"),
    # dataset field names and position syntax, a proxy label, a SCENE / TWIN that names nothing
    ("dataset", ["dataset", "room", "--tx", "1,1,1", "--rx", "2,2,1", "--out", "ds", "--fields", "gain,nope"],
     "--fields"),
    ("dataset", ["dataset", "room", "--tx", "1,1", "--rx", "2,2,1", "--out", "ds"], "--tx"),
    ("dataset", ["dataset", "room", "--tx", "1,1,1", "--rx", "random:x", "--out", "ds"], "--rx"),
    ("update", ["update", "room", "--trajectory", LINKS, "--links", LINKS, "--out", "u", "--label", "concret"],
     "--label"),
    ("calibrate", ["calibrate", "no_such_scene", MEAS, "--out", "c"], "SCENE"),
    ("predict", ["predict", "no_such_scene.xml", LINKS, "--out", "p.csv"], "SCENE"),
    ("beams", ["beams", "no_twin_here", LINKS, "--out", "b.csv"], "TWIN"),
    ("dataset", ["dataset", "no_twin_here", "--tx", "1,1,1", "--rx", "2,2,1", "--out", "ds"], "TWIN"),
    ("update", ["update", "no_twin_here", "--trajectory", LINKS, "--links", LINKS, "--out", "u"], "TWIN"),
    ("ris", ["ris", "no_twin_here", "--candidates", LINKS, "--target", "0,1,0,1,1", "--tx", "1 1 1"], "TWIN"),
    ("evaluate", ["evaluate", "no_twin_here", MEAS, "--out", "ev"], "TWIN"),
    ("plan", ["plan", "no_such_scene", "--budget", "3", "--out", "p.csv"], "SCENE"),
    ("radiomap", ["radiomap", "no_twin_here", "--tx", "1 1 1", "--out", "rm"], "TWIN"),
]


def all_commands() -> list[str]:
    """Every command path of the CLI: 'predict', ..., 'bench', 'bench priors', ..."""
    root = typer.main.get_command(app)
    out = []
    for name, cmd in root.commands.items():
        out.append(name)
        out += [f"{name} {sub}" for sub in getattr(cmd, "commands", {})]
    return sorted(out)


def test_every_command_has_a_bad_argument_case():
    assert set(all_commands()) - {c for c, _, _ in CASES} == set()


@pytest.mark.parametrize("cmd,args,option", CASES, ids=[" ".join(a[:1] + a[-2:]) for _, a, _ in CASES])
def test_argument_error_before_heavy_imports(cmd, args, option, tmp_path):
    rc, text, heavy = run_cli(args, tmp_path)
    assert rc == 2, f"rftwin {' '.join(args)}: exit {rc}\n{text}"
    assert option in text, text
    assert "Traceback" not in text, text
    assert heavy == [], f"rftwin {' '.join(args)} loaded {heavy} before reporting the error"
    assert {p.name for p in tmp_path.iterdir()} == set(), "an argument error wrote something"


def test_wrapper_sees_heavy_modules(tmp_path):
    """The check can fail: an error that needs the scene loads Sionna, and the wrapper reports it."""
    rc, text, heavy = run_cli(["materials-map", "room", "--object", "nope", "--out", "mm"], tmp_path)
    assert rc == 2 and "no object 'nope'" in text, text
    assert "torch" in heavy and "mitsuba" in heavy


@pytest.mark.parametrize("cmd", [""] + all_commands())
def test_help_loads_nothing_heavy(cmd, tmp_path):
    rc, text, heavy = run_cli([*cmd.split(), "--help"], tmp_path)
    assert rc == 0 and "Usage" in text, text
    assert heavy == []


def _library_constant(modules: tuple[str, ...], name: str):
    for mod in modules:
        try:
            return getattr(importlib.import_module(mod), name)
        except ModuleNotFoundError:
            continue
    raise AssertionError(f"{name} not found in {modules}")


def test_cli_copies_of_library_choices_agree():
    """Choices the CLI checks before importing the library are the library's."""
    from rftwin.cli import bench_priors, evaluate_cmd, plan_cmd

    assert evaluate_cmd.METHODS == _library_constant(("rftwin.evaluate.run",), "METHODS")
    assert plan_cmd.TABLE_SUFFIXES == _library_constant(("rftwin.plan.workflow",), "TABLE_SUFFIXES")
    assert bench_priors.OPTIMIZERS == _library_constant(("rftwin.studies.placement",), "OPTIMIZERS")


def test_demo_table_fits_80_columns():
    """The demo's table of a real result record (benchmarks/results/demo.json, written by `rftwin demo --json`),
    and of one with long names and no uncertainty, fits an 80-column terminal and shows every value."""
    from rftwin.cli.demo import demo_table

    j = json.loads((ROOT / "benchmarks" / "results" / "demo.json").read_text())
    lines = demo_table(j)
    assert max(len(ln) for ln in lines) <= 80, "\n".join(ln for ln in lines if len(ln) > 80)
    text = "\n".join(lines)
    for o in j["objects"]:
        row_eps = next(ln for ln in lines if ln.startswith(o["object"] + " ") and f"{o['eps_est']:.4f}" in ln)
        assert f"{o['eps_true']:.4f}" in row_eps and f"{o['eps_rel_error']:.1e}" in row_eps
        row_sig = next(ln for ln in lines if ln.startswith(o["object"] + " ") and f"{o['sigma_est']:.5f}" in ln)
        assert f"{o['sigma_true']:.5f}" in row_sig and f"{o['sigma_rel_error']:.1e}" in row_sig
    assert f"MRE ε_r = {j['mre_eps']:.2e}" in text and j["plot"] in text.replace("\n", " ")
    long = dict(j, plot="/a/rather/long/folder/name/that/goes/on/and/on/rftwin_demo/convergence.png",
                noise_db_for_uncertainty=None,
                objects=[dict(o, object="an_object_with_a_very_long_name_" + o["object"], label="reinforced concrete",
                              eps_std=None, sigma_std=None) for o in j["objects"]])
    lines = demo_table(long)
    assert max(len(ln) for ln in lines) <= 80, "\n".join(ln for ln in lines if len(ln) > 80)
    for o in long["objects"]:  # long names keep a line of their own, twice (eps_r and sigma blocks)
        assert sum(ln == f"{o['object']} ({o['label']}):" for ln in lines) == 2

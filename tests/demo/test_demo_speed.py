"""The demo's configuration (DemoConfig nests a CalibrationSpec) and the re-trace stop rule: a re-trace that finds
exactly the paths of the trace before it ends the re-trace rounds. Real Sionna traces of two room links."""
import json

import numpy as np
import pytest

from rftwin.calibrate.spec import CalibrationSpec, SpecError
from rftwin.calibrate.workflow import calibrate_scene, same_paths
from rftwin.demo import DemoConfig, check_demo_spec, demo_spec
from rftwin.materials import prior_from_labels, with_relative_ranges
from rftwin.progress import Stopwatch
from rftwin.scene import room
from rftwin.trace import SolverSettings, trace
from rftwin.trace.simulate import reference_path_gain_db

TX = np.array([[0.0, 0.0, 2.5], [-4.0, 4.0, 2.0]])
RX = np.array([[2.0, -1.0, 1.5], [3.0, -0.5, 1.0]])
SETTINGS = SolverSettings(max_depth=2, samples_per_src=20_000, seed=7)


def test_demo_config_nests_the_spec_and_it_round_trips(tmp_path):
    cfg = DemoConfig()
    assert isinstance(cfg.spec, CalibrationSpec) and cfg.spec.prior.kind == "none"  # a least-squares fit
    m, o, s = cfg.spec.model, cfg.spec.optimiser, cfg.spec.solver
    assert (m.starts, m.refine, m.sweeps, m.prior_spread, m.bounded, o.retrace) == (32, 33, 0, 0.2, True, 2)
    assert (s.max_depth, s.samples_per_src, s.seed) == (4, 500_000, 7)
    assert cfg.settings == SolverSettings(max_depth=4, samples_per_src=500_000, seed=7)
    assert cfg.first_trace_samples == 100_000
    cfg.spec.write(tmp_path / "spec.json")
    back = CalibrationSpec.read(tmp_path / "spec.json")
    assert back.to_dict() == cfg.spec.to_dict()
    check_demo_spec(back)  # what the demo wrote, the demo accepts
    assert DemoConfig(back).settings == cfg.settings
    two = demo_spec(8, 3, solver={"max_depth": 2})
    assert (two.model.starts, two.model.refine, two.solver.seed, two.solver.max_depth) == (8, 9, 3, 2)


def test_cli_defaults_are_the_config_defaults():
    """`rftwin demo` without options runs DemoConfig(): the command's option defaults are the config's."""
    import typer

    from rftwin.cli.main import app

    cmd = typer.main.get_command(app).commands["demo"]
    d = {p.name: p.default for p in cmd.params}
    cfg = DemoConfig()
    m, o, s = cfg.spec.model, cfg.spec.optimiser, cfg.spec.solver
    assert (d["samples_per_src"], d["first_samples"], d["max_depth"], d["seed"]) == (
        s.samples_per_src, cfg.first_trace_samples, s.max_depth, s.seed)
    assert (d["starts"], d["sweeps"], d["retrace"], d["prior_spread"], d["bounded"], d["init"]) == (
        m.starts, m.sweeps, o.retrace, m.prior_spread, m.bounded, m.init)
    assert (d["trials"], d["receivers"], d["optimizer"], d["max_iter"]) == (cfg.trials, cfg.receivers, o.optimizer,
                                                                            o.max_iter)


def test_demo_refuses_spec_fields_it_does_not_use():
    with pytest.raises(SpecError, match=r"--prior: the demo keeps 'none' \(got 'labels'\)"):
        DemoConfig(demo_spec(prior={"kind": "labels"}))
    with pytest.raises(SpecError, match="--groups"):
        DemoConfig(demo_spec(model={"groups": "label"}))


def test_demo_writes_its_spec(tmp_path, monkeypatch):
    """`rftwin demo --out DIR` leaves the spec it calibrated with (a tiny run: 2 x 2 links, depth 1, 1e4 rays)."""
    from typer.testing import CliRunner

    from rftwin.cli.main import app

    monkeypatch.setenv("RFTWIN_CACHE", str(tmp_path / "cache"))
    r = CliRunner().invoke(app, ["demo", "--json", "--out", str(tmp_path / "out"), "--trials", "2", "--receivers",
                                 "2", "--starts", "2", "--retrace", "1", "--sweeps", "0", "--max-depth", "1",
                                 "--samples-per-src", "10000", "--seed", "3"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.output[r.output.index("{"):])
    assert j["spec"] == str(tmp_path / "out" / "spec.json")
    spec = CalibrationSpec.read(j["spec"])
    assert (spec.model.starts, spec.model.sweeps, spec.optimiser.retrace, spec.solver.max_depth,
            spec.solver.samples_per_src, spec.solver.seed) == (2, 0, 1, 1, 10_000, 3)
    names = [s["stage"] for s in j["stages"]]
    assert names[:4] == ["scene", "simulation (Sionna)", "trace 0 (Sionna)", "calibration round 0"], names
    assert all(s["seconds"] >= 0 for s in j["stages"])


def test_same_paths_compares_path_records_in_any_order():
    ps = trace(room(), TX, RX, SETTINGS, cache_dir=False, progress=False)
    assert ps.num_paths > 5
    perm = np.random.default_rng(0).permutation(ps.num_paths)
    assert same_paths(ps, ps.select_paths(perm))
    assert not same_paths(ps, ps.select_paths(perm[1:]))  # one path less
    other = ps.select_paths(perm)
    i = int(np.nonzero(other.obj[:, 0].numpy() >= 0)[0][0])  # a path with an interaction
    other.obj[i, 0] = (other.obj[i, 0] + 1) % len(ps.object_names)  # ... on another object
    assert not same_paths(ps, other) and same_paths(ps, ps.select_paths(perm))


def test_retrace_stops_when_no_new_paths_appear():
    """Measurements simulated at the label materials: the fit stays there, the first re-trace finds the paths of
    the first trace, and the rounds end after it (two traces instead of four) with the uncertainty report."""
    twin = room()
    labels = [o.label for o in twin.objects]
    ps = trace(twin, TX, RX, SETTINGS, cache_dir=False, progress=False)
    from rftwin.calibrate import CalibrationConfig, Targets

    targets = Targets.build(np.arange(2), np.full(2, twin.scene.frequency[0]), reference_path_gain_db(ps))
    prior = with_relative_ranges(prior_from_labels(labels, float(twin.scene.frequency[0])), 0.2)
    watch = Stopwatch()
    res, out = calibrate_scene(twin, TX, RX, targets, prior, CalibrationConfig(max_iter=5), SETTINGS, num_starts=1,
                               retrace=3, progress=False, cache_dir=False, bounded=True, stopwatch=watch)
    assert [s["stage"] for s in watch.stages] == ["trace 0 (Sionna)", "calibration round 0", "trace 1 (Sionna)"]
    assert res.uncertainty is not None and same_paths(out, ps)


def test_later_rounds_must_be_known():
    twin = room()
    prior = prior_from_labels([o.label for o in twin.objects], float(twin.scene.frequency[0]))
    from rftwin.calibrate import Targets

    targets = Targets.build(np.arange(2), np.full(2, twin.scene.frequency[0]), np.full(2, -70.0))
    with pytest.raises(ValueError, match="later_rounds must be one of sweep, restart, carry, not 'again'"):
        calibrate_scene(twin, TX, RX, targets, prior, settings=SETTINGS, later_rounds="again", progress=False,
                        cache_dir=False)

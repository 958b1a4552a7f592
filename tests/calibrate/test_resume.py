"""Checkpoint / resume: a calibration interrupted after k iterations and resumed ends exactly where an
uninterrupted run ends (issue #3 robustness)."""
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import _floor_wall as fw
from rftwin.calibrate import CalibrationConfig, Targets, calibrate, parse_terms
from rftwin.cli.main import app
from rftwin.materials.per_object import PerObjectMaterials
from rftwin.physics.channel import path_gain, path_power
from rftwin.physics.features import delay_moments
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace

ROOT = Path(__file__).resolve().parents[2]



@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    twin = load("floor_wall")
    tx, rx = fw.links(5, seed=11)
    eps0, sig0 = fw.itu_materials(twin)
    twin.set_materials(eps0 * 1.05, sig0 * 0.9)
    ps = trace(twin, tx, rx, SolverSettings(max_depth=2, samples_per_src=30_000),
               cache_dir=tmp_path_factory.mktemp("cache"))
    a = ps.a_ref[None, None]
    g = 10 * np.log10(path_gain(a, ps.link, ps.num_links)[0, 0].numpy())
    _, ds = delay_moments(path_power(a), ps.tau_s, ps.link, ps.num_links, empty=0.0)
    t = Targets.build(np.arange(len(tx)), np.full(len(tx), 3.5e9), g + 3.0, delay_spread_s=ds[0, 0].numpy())
    starts_e = eps0[None] * np.array([[1.0, 1.0], [0.8, 1.3], [1.2, 0.9]])
    starts_s = sig0[None] * np.array([[1.0, 1.0], [2.0, 0.5], [0.7, 1.5]])
    return dict(ps=ps, t=t, e=starts_e, s=starts_s, thickness=[o.thickness_m for o in twin.objects])


class _Killed(Exception):
    pass


@pytest.mark.parametrize("cfg", [
    CalibrationConfig(max_iter=40, refine_starts=2, estimate_offset=True),
    CalibrationConfig(optimizer="adam", lr=0.05, max_iter=25, refine_starts=2, offset="ema",
                      terms=parse_terms("path_gain:smape,delay_spread:smape")),
    CalibrationConfig(optimizer="lbfgs", max_iter=8, refine_starts=3, terms=parse_terms("path_gain,delay_spread:mse")),
    CalibrationConfig(max_iter=40, refine_starts=3, prune_every=2, estimate_offset=True),
], ids=["lm-closed_form", "adam-ema", "lbfgs", "lm-pruned"])
def test_interrupted_run_resumes_to_the_same_result(problem, tmp_path, cfg):
    p = problem

    def model():
        return PerObjectMaterials(p["e"], p["s"], p["thickness"])

    ref = calibrate(p["ps"], model(), p["t"], cfg, progress=False, uncertainty=False)
    ck = tmp_path / "run.pt"
    k = min(4, ref.iterations - 1)

    def kill(it, row):
        if it == k:
            raise _Killed

    with pytest.raises(_Killed):
        calibrate(p["ps"], model(), p["t"], cfg, progress=False, uncertainty=False, checkpoint=ck,
                  checkpoint_every=2, callback=kill)
    assert ck.is_file() and not list(tmp_path.glob(".run.pt.*"))  # atomic: no temporary left behind
    res = calibrate(p["ps"], model(), p["t"], cfg, progress=False, uncertainty=False, checkpoint=ck,
                    checkpoint_every=2, resume=True)
    assert res.resumed_at == k - k % 2  # the last checkpoint before the kill
    assert res.iterations == ref.iterations and len(res.history) == len(ref.history)
    np.testing.assert_allclose(res.eps_r, ref.eps_r, rtol=1e-9)
    np.testing.assert_allclose(res.sigma, ref.sigma, rtol=1e-9)
    assert res.offset_db == pytest.approx(ref.offset_db, abs=1e-9)
    assert res.loss == pytest.approx(ref.loss, rel=1e-9, abs=1e-15)
    # resuming a finished run returns it without iterating; another problem's checkpoint is refused
    again = calibrate(p["ps"], model(), p["t"], cfg, progress=False, uncertainty=False, checkpoint=ck, resume=True)
    np.testing.assert_allclose(again.eps_r, ref.eps_r, rtol=1e-9)
    other = PerObjectMaterials(p["e"] * 1.01, p["s"], p["thickness"])
    with pytest.raises(ValueError, match="different calibration problem"):
        calibrate(p["ps"], other, p["t"], cfg, progress=False, uncertainty=False, checkpoint=ck, resume=True)


def test_cli_checkpoint_every_and_resume(tmp_path):
    meas = ROOT / "examples/measurements_v1.csv"
    common = ["calibrate", "room", str(meas), "--max-depth", "2", "--samples-per-src", "30000", "--starts", "3",
              "--refine", "2", "--retrace", "0", "--fit", "eps_r,sigma", "--estimate-offset"]
    r = CliRunner()
    full = r.invoke(app, common + ["--out", str(tmp_path / "full"), "--max-iter", "6"])
    assert full.exit_code == 0, full.output
    part = tmp_path / "part"
    res = r.invoke(app, common + ["--out", str(part), "--max-iter", "3", "--checkpoint-every", "1"])
    assert res.exit_code == 0, res.output
    assert (part / "checkpoint" / "round0.pt").is_file()
    res = r.invoke(app, common + ["--out", str(part), "--max-iter", "6", "--resume"])
    assert res.exit_code == 0, res.output
    a = json.loads((tmp_path / "full" / "calibration.json").read_text())
    b = json.loads((part / "calibration.json").read_text())
    assert b["resumed_at_iteration"] == 3 and a["resumed_at_iteration"] is None
    assert a["traced_mechanisms"] == b["traced_mechanisms"] and "diffuse_reflection" not in a["traced_mechanisms"]
    for name, rec in a["objects"].items():
        assert b["objects"][name]["relative_permittivity"] == pytest.approx(rec["relative_permittivity"], rel=1e-9)
        assert b["objects"][name]["conductivity"] == pytest.approx(rec["conductivity"], rel=1e-9)
    bad = r.invoke(app, common + ["--out", str(tmp_path / "none"), "--resume"])
    assert bad.exit_code == 2 and "no checkpoints" in bad.output
    bad = r.invoke(app, common + ["--out", str(tmp_path / "x"), "--fit", "eps_r,roughness"])
    assert bad.exit_code == 2 and "roughness" in bad.output

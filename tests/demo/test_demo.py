"""`rftwin demo` end to end on a reduced configuration (few links, shallow trace): JSON keys, plot, box prior."""
import json

import numpy as np
from typer.testing import CliRunner

from rftwin.cli.main import app


def test_demo_json_plot_and_bounded_estimates(tmp_path, monkeypatch):
    monkeypatch.setenv("RFTWIN_CACHE", str(tmp_path / "cache"))
    r = CliRunner().invoke(app, ["demo", "--json", "--out", str(tmp_path / "out"), "--receivers", "6",
                                 "--starts", "4", "--retrace", "1", "--max-depth", "2",
                                 "--samples-per-src", "100000"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.output[r.output.index("{"):])
    for k in ("mre_sigma", "mre_eps", "seconds", "iterations", "num_links", "objects", "plot"):
        assert k in j
    assert j["num_links"] == 18 and (tmp_path / "out" / "convergence.png").stat().st_size > 0
    assert np.isfinite(j["mre_eps"]) and np.isfinite(j["mre_sigma"])
    for o in j["objects"]:  # the box prior: label x [0.8, 1.2]
        assert 0.8 * o["eps_init"] * (1 - 1e-9) <= o["eps_est"] <= 1.2 * o["eps_init"] * (1 + 1e-9)
        assert 0.8 * o["sigma_init"] * (1 - 1e-9) <= o["sigma_est"] <= 1.2 * o["sigma_init"] * (1 + 1e-9)
    assert j["loss"] < 1e-2  # noise-free RSS: the fit reproduces the measurements closely


def test_prior_spread_out_of_range_is_a_clear_error(tmp_path):
    for cmd in (["demo", "--out", str(tmp_path / "o")],
                ["calibrate", "room", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "c")]):
        r = CliRunner().invoke(app, cmd + ["--prior-spread", "1.5"])
        assert r.exit_code == 2 and "--prior-spread must lie in (0, 1)" in r.output, r.output
        assert not (tmp_path / "c").exists()

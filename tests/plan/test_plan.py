"""Measurement planning on the benchmark room: candidate positions, Jacobians, greedy D-optimal design."""
import itertools

import numpy as np
import pytest
import torch

import rftwin  # noqa: F401 - LLVM set-up before anything imports Dr.Jit
from rftwin.plan import (
    ParameterPrior,
    evaluate_design,
    greedy_design,
    link_sensitivity,
    plan_links,
    random_designs,
    tx_groups,
)
from rftwin.plan.design import gain_db_function
from rftwin.scene import room
from rftwin.scene.candidates import (
    SceneGeometry,
    candidate_grid,
    farthest_point_subset,
    point_triangle_distance,
    winding_number,
)
from rftwin.trace import SolverSettings, trace

F = 3.5e9
N_TX, N_RX = 8, 5  # 40 candidate links


@pytest.fixture(scope="module")
def setup():
    twin = room(F)
    geo = SceneGeometry.from_twin(twin)
    c_tx = candidate_grid(twin, 1.0, (1.5,), geometry=geo)
    c_rx = candidate_grid(twin, 1.0, (1.0,), geometry=geo)
    tx = c_tx[farthest_point_subset(c_tx, N_TX, seed=1)]
    rx = c_rx[farthest_point_subset(c_rx, N_RX, seed=2)]
    T, R = np.repeat(tx, N_RX, 0), np.tile(rx, (N_TX, 1))
    ps = trace(twin, T, R, SolverSettings(max_depth=3, samples_per_src=100_000), cache_dir=False, progress=False)
    prior = ParameterPrior.from_twin(twin, log_std_eps=0.3, log_std_sigma=0.7)
    sens = link_sensitivity(ps, prior, F)
    return twin, geo, ps, prior, sens


def test_geometry_helpers(setup):
    twin, geo, *_ = setup
    cube = geo.tris[geo.names.index("box_wood")]  # x in [-3.5, -2.5], y in [2, 4], z in [0.001, 1.001]
    w = winding_number(np.array([[-3.0, 3.0, 0.5], [-3.0, 3.0, 1.5], [0.0, 0.0, 0.5]]), cube)
    np.testing.assert_allclose(np.abs(w), [1.0, 0.0, 0.0], atol=1e-9)
    d = point_triangle_distance(np.array([[-3.0, 3.0, 1.5], [-2.0, 3.0, 0.5], [-2.0, 5.0, 0.5]]), cube)
    np.testing.assert_allclose(d, [0.499, 0.5, np.hypot(0.5, 1.0)], atol=1e-5)
    pts = candidate_grid(twin, spacing_m=0.5, heights_m=(0.5, 1.5), clearance_m=0.25, geometry=geo)
    assert len(pts) > 500 and set(np.round(pts[:, 2], 6)) == {0.5, 1.5}
    assert np.all(pts[:, :2] > -4.5 - 1e-9) and np.all(pts[:, :2] < 4.5 + 1e-9)
    assert np.all(geo.inside(pts) < 0)
    assert np.all(geo.distance(pts)[0] >= 0.25)
    # the low layer has holes where the four boxes stand, the high one does not
    assert (pts[:, 2] == 0.5).sum() < (pts[:, 2] == 1.5).sum()


def test_jacobian_matches_finite_differences(setup):
    _, _, ps, prior, sens = setup
    assert sens.jacobian.shape == (N_TX * N_RX, 18) and np.all(np.isfinite(sens.gain_db))
    fn = gain_db_function(ps, prior, sens.params, F)
    th0 = torch.tensor(prior.theta0(sens.params))[None]
    h = 1e-5
    cols = [sens.param_names.index(n) for n in ("wall_east.eps_r", "floor.eps_r", "wall_north.sigma",
                                                "box_marble.eps_r")]
    E = torch.zeros(len(cols), th0.shape[1], dtype=torch.float64)
    E[range(len(cols)), cols] = h
    with torch.no_grad():
        fd = ((fn(th0 + E) - fn(th0 - E)) / (2 * h)).numpy().T  # [L, len(cols)]
    np.testing.assert_allclose(sens.jacobian[:, cols], fd, rtol=1e-5, atol=1e-7)
    assert np.abs(sens.jacobian[:, cols[0]]).max() > 0.1  # walls matter
    # forward mode (default here: 18 parameters < 40 links) and reverse mode agree
    rev = link_sensitivity(ps.select_links(range(6)), prior, F, mode="reverse")
    np.testing.assert_allclose(rev.jacobian, sens.jacobian[:6], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("offset", [None, 3.0])
def test_greedy_updates_match_direct_computation(setup, offset):
    _, _, _, prior, sens = setup
    s0 = prior.std(sens.params)
    res = greedy_design(sens.jacobian, s0, 10, noise_db=1.0, offset_std_db=offset, param_names=sens.param_names)
    ld, sd = evaluate_design(sens.jacobian, s0, res.selected, 1.0, offset)
    assert res.logdet == pytest.approx(ld, rel=1e-10, abs=1e-8)
    np.testing.assert_allclose(res.posterior_std, sd, rtol=1e-8)
    assert res.logdet_prior == pytest.approx(-2 * np.log(s0).sum())
    assert res.gain_nats.sum() == pytest.approx(res.information_nats)
    assert np.all(res.gain_nats > 0) and len(set(res.selected)) == 10
    assert np.all(res.posterior_std <= s0 + 1e-12)
    if offset is None:  # log det is submodular: greedy gains shrink step by step (not so with a nuisance offset,
        assert np.all(np.diff(res.gain_nats) <= 1e-9)  # where links help each other by pinning the offset)
    # conditioning on measured links: the same links are not chosen again
    res2 = greedy_design(sens.jacobian, s0, 3, 1.0, offset_std_db=offset, measured=res.selected[:5])
    assert not set(res2.selected) & set(res.selected[:5])
    assert res2.selected == res.selected[5:8]


def test_planner_beats_random_links(setup):
    _, _, _, prior, sens = setup
    s0 = prior.std(sens.params)
    n, noise = 8, 1.0
    res = greedy_design(sens.jacobian, s0, n, noise)
    ld_r, sd_r = random_designs(sens.jacobian, s0, n, n_trials=40, noise_db=noise, seed=0)
    rel_g = np.mean(res.posterior_std / s0)
    rel_r = np.mean(sd_r / s0, axis=1)
    print(f"\nlinks: greedy logdet {res.logdet:.2f}, random {ld_r.mean():.2f} +- {ld_r.std():.2f} "
          f"(max {ld_r.max():.2f}); mean posterior/prior std greedy {rel_g:.4f}, random {rel_r.mean():.4f}")
    assert res.logdet > np.quantile(ld_r, 0.95)
    assert rel_g < rel_r.mean()
    # the same with an unknown power offset
    res_o = greedy_design(sens.jacobian, s0, n, noise, offset_std_db=5.0)
    ld_o, _ = random_designs(sens.jacobian, s0, n, n_trials=40, noise_db=noise, offset_std_db=5.0, seed=1)
    assert res_o.logdet > np.quantile(ld_o, 0.95)


def test_planner_beats_random_tx_configurations(setup):
    _, _, ps, prior, sens = setup
    s0 = prior.std(sens.params)
    groups, txp = tx_groups(ps)
    assert len(groups) == N_TX and all(len(g) == N_RX for g in groups) and txp.shape == (N_TX, 3)
    res = greedy_design(sens.jacobian, s0, 2, noise_db=1.0, groups=groups)
    assert len(res.selected_groups) == 2 and len(res.selected) == 2 * N_RX
    all_pairs = [evaluate_design(sens.jacobian, s0, np.concatenate([groups[a], groups[b]]), 1.0)[0]
                 for a, b in itertools.combinations(range(N_TX), 2)]
    print(f"\nTx pairs: greedy {res.logdet:.2f}, all {len(all_pairs)} pairs mean {np.mean(all_pairs):.2f}, "
          f"best {np.max(all_pairs):.2f}")
    assert res.logdet >= np.quantile(all_pairs, 0.75)
    assert res.logdet >= np.max(all_pairs) - 0.5  # close to the exhaustive optimum


def test_planner_choice_is_better_on_simulated_measurements(setup):
    """Beyond its own criterion: draw true materials from a narrow prior, simulate measurements with the
    non-linear engine plus noise, estimate with the linear-Gaussian posterior mean; the planner's links give
    smaller errors than random links, and the predicted posterior std matches the empirical error."""
    twin, _, ps, _, _ = setup
    prior = ParameterPrior.from_twin(twin, log_std_eps=0.015, log_std_sigma=0.035)
    sens = link_sensitivity(ps, prior, F)
    s0, th0, noise, n = prior.std(sens.params), prior.theta0(sens.params), 0.1, 8
    rng = np.random.default_rng(0)
    th = th0 + rng.standard_normal((300, len(s0))) * s0
    with torch.no_grad():
        y = gain_db_function(ps, prior, sens.params, F)(torch.tensor(th)).numpy()
    y = y + noise * rng.standard_normal(y.shape)

    def errors(links):
        J = sens.jacobian[links]
        C = np.linalg.inv(np.diag(1 / s0 ** 2) + J.T @ J / noise ** 2)
        est = th0 + (C @ J.T @ (y[:, links] - sens.gain_db[links]).T).T / noise ** 2
        return np.sqrt(np.mean((est - th) ** 2, 0)) / s0, np.sqrt(np.diag(C)) / s0

    res = greedy_design(sens.jacobian, s0, n, noise)
    emp_g, pred_g = errors(res.selected)
    emp_r = [errors(np.random.default_rng(100 + k).choice(ps.num_links, n, replace=False))[0].mean()
             for k in range(20)]
    print(f"\nsimulated: greedy rel. RMS error {emp_g.mean():.3f} (predicted {pred_g.mean():.3f}), "
          f"random {np.mean(emp_r):.3f} (min {np.min(emp_r):.3f})")
    assert 0.85 < emp_g.mean() / pred_g.mean() < 1.15
    assert emp_g.mean() < np.mean(emp_r)
    assert np.mean(np.array(emp_r) > emp_g.mean()) >= 0.8


def test_plan_links_end_to_end(setup):
    _, _, ps, prior, sens = setup
    gmin = float(np.quantile(sens.gain_db, 0.25))
    res = plan_links(ps, prior, F, 4, noise_db=2.0, min_gain_db=gmin, measured=[0, 1])
    assert all(sens.gain_db[i] >= gmin for i in res.selected) and not {0, 1} & set(res.selected)
    assert res.sensitivity is not None and res.table()[0]["parameter"] == res.param_names[0]
    cfg = plan_links(ps, prior, F, 2, noise_db=2.0, by_transmitter=True, offset_std_db=5.0)
    assert len(cfg.selected_groups) == 2 and len(cfg.selected) == 2 * N_RX
    # information averaged over prior draws (robust to non-linearity)
    rob = plan_links(ps, prior, F, 6, noise_db=2.0, n_prior_samples=4, seed=0)
    Js = rob.sensitivity.jacobian_samples
    assert Js.shape == (4, ps.num_links, 18)
    ld_r, _ = random_designs(Js, prior.std(rob.sensitivity.params), 6, n_trials=20, noise_db=2.0, seed=3)
    assert rob.logdet == pytest.approx(evaluate_design(Js, prior.std(rob.sensitivity.params), rob.selected, 2.0)[0])
    assert rob.logdet > np.quantile(ld_r, 0.9)
    # metal / fixed parameters drop out of the design
    fixed = ParameterPrior(names=prior.names, eps_r=prior.eps_r, sigma=prior.sigma,
                           log_std_eps=np.where(np.arange(9) < 4, 0.0, 0.3), log_std_sigma=0.0,
                           thickness_m=prior.thickness_m)
    assert len(fixed.free_parameters()) == 5
    with pytest.raises(ValueError):
        greedy_design(sens.jacobian, prior.std(sens.params), ps.num_links + 1)


def test_plan_command_writes_a_plan(tmp_path):
    import json

    import pandas as pd

    from rftwin.data import read_links
    from rftwin.plan.workflow import plan_command

    out = tmp_path / "plan.csv"
    d = plan_command("room", 3, out, prior="labels", n_tx_candidates=3, n_rx_candidates=4, noise_db=1.0)
    assert json.loads((tmp_path / "plan.json").read_text()) == d
    assert d["n_candidates"] == 12 and len(d["selected"]) == 3 and d["information_nats"] > 0
    assert {r["parameter"] for r in d["parameters"]} >= {"wall_east.eps_r", "box_wood.sigma"}
    for s in d["selected"]:
        assert np.isfinite(s["predicted_gain_db"]) and s["gain_nats"] > 0 and len(s["tx"]) == 3
    for r in d["parameters"]:  # linearised physical std = value scale x log-space std, never above the prior
        assert r["posterior_std_value"] <= r["prior_std_value"] * (1 + 1e-9) and r["prior_value"] > 0
    # the links file is a valid `rftwin predict` links file with the plan's columns
    lk = read_links(out)
    assert lk.num_links == 3 and np.all(lk.frequency_hz == 3.5e9)
    df = pd.read_csv(out)
    assert list(df["step"]) == [1, 2, 3] and list(df["link_id"]) == [s["link_id"] for s in d["selected"]]
    np.testing.assert_allclose(lk.tx_pos, [s["tx"] for s in d["selected"]])


def test_plan_cli_with_candidates_file(tmp_path):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from rftwin.cli.main import app

    tx = np.array([[-2.0, 0.0, 1.5], [2.0, 1.0, 1.5]])
    rx = np.array([[0.0, 4.0, 1.0], [0.0, -4.0, 1.0], [4.0, 0.0, 2.0], [-4.0, -1.0, 1.2], [1.0, 1.0, 0.5]])
    T, R = np.repeat(tx, len(rx), 0), np.tile(rx, (len(tx), 1))
    cand = pd.DataFrame({"link_id": [f"cand{i}" for i in range(len(T))], "tx_x": T[:, 0], "tx_y": T[:, 1],
                         "tx_z": T[:, 2], "rx_x": R[:, 0], "rx_y": R[:, 1], "rx_z": R[:, 2],
                         "frequency_hz": 3.5e9})
    cfile = tmp_path / "cand.csv"
    cand.to_csv(cfile, index=False)
    labels = tmp_path / "labels.yaml"
    labels.write_text("floor: concrete\nwall_east: brick\n")
    runner = CliRunner()
    out = tmp_path / "chosen.csv"
    r = runner.invoke(app, ["plan", "room", "--candidates", str(cfile), "--budget", "1", "--by-transmitter",
                            "--out", str(out), "--prior", str(labels), "--noise-db", "1.5", "--offset-std-db", "3",
                            "--max-depth", "2", "--samples-per-src", "20000", "--report", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    assert "expected posterior std" in r.output and "wall_east.eps_r" in r.output
    df = pd.read_csv(out)
    assert len(df) == len(rx) and df["link_id"].str.startswith("cand").all()
    assert len({(a, b, c) for a, b, c in zip(df.tx_x, df.tx_y, df.tx_z)}) == 1 and set(df["step"]) == {1}
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["selected_transmitters"] is not None and rep["offset_std_db"] == 3.0 and rep["noise_db"] == 1.5
    floor = next(p for p in rep["parameters"] if p["parameter"] == "floor.eps_r")
    assert floor["prior_value"] == pytest.approx(5.24, rel=1e-6)  # from the labels file: concrete
    # bad input: a candidate inside a box names the file and row; an unknown prior says what is expected
    cand.loc[3, ["rx_x", "rx_y", "rx_z"]] = [-3.0, 3.0, 0.5]
    cand.to_csv(cfile, index=False)
    r = runner.invoke(app, ["plan", "room", "--candidates", str(cfile), "--budget", "2", "--out", str(out)])
    assert r.exit_code == 2 and "cand.csv" in r.output and "row 4" in r.output and "box_wood" in r.output
    r = runner.invoke(app, ["plan", "room", "--budget", "2", "--out", str(out), "--prior", "vlm"])
    assert r.exit_code == 2 and "unknown prior 'vlm'" in r.output
    r = runner.invoke(app, ["plan", "room", "--budget", "2", "--out", str(tmp_path / "x.json")])
    assert r.exit_code == 2 and ".csv or .parquet" in r.output


def test_study_expert_positions_placements_and_summary(setup):
    """The seed-004 study's fixed parts, without its long trace: expert receivers are valid positions in the room,
    placements pick the right number of links per trial, and the summary's ratios are baseline / ours."""
    from rftwin.studies.placement import (
        EXPERT_RX,
        StudyConfig,
        StudyData,
        format_summary,
        iterations_to_mre,
        placement_links,
        summarize,
    )

    twin, geo, *_ = setup
    assert geo.check(EXPERT_RX, clearance_m=0.3) == [""] * len(EXPERT_RX)
    for box in ("box_wood", "box_chipboard", "box_concrete", "box_marble"):  # one receiver in front of each box
        assert point_triangle_distance(EXPERT_RX, geo.tris[geo.names.index(box)]).min() < 0.75
    grid = [np.arange(0, 50), np.arange(100, 150), np.arange(200, 250)]
    expert = [np.arange(50, 58), np.arange(150, 158), np.arange(250, 258)]
    data = StudyData(paths=None, measured_db=np.zeros(258), grid_links=grid, expert_links=expert, eps_true=None,
                     sigma_true=None, names=[], labels=[], thickness=np.zeros(0), trace_seconds=0.0)
    planner = [list(g[:8]) for g in grid]
    for kind in ("random", "planner", "expert"):
        links = placement_links(kind, 3, data, planner, seed=1)
        assert len(links) == 9 and len(set(links)) == 9
        for m in range(3):
            assert np.isin(links[3 * m:3 * m + 3], grid[m] if kind != "expert" else expert[m]).all()
    assert list(placement_links("expert", 3, data, None, 0)[3:6]) == [153, 154, 155]  # rotated per trial
    cfg = StudyConfig(n_receivers=(3,), inits=("label", "uniform"), placements=("planner", "random"),
                      optimizers=("lm",), fits=(("sigma",),))
    rows = []
    for init, place, it, mre in [("label", "planner", 10, 1e-4), ("uniform", "planner", 40, 1e-1),
                                 ("label", "random", 20, 1e-3), ("uniform", "random", 40, 1e-1)]:
        curve = dict(iteration=list(range(it + 1)), loss=[1.0] * (it + 1),
                     mre_sigma=list(np.geomspace(0.1, mre, it + 1)), mre_eps=[0.0] * (it + 1))
        rows.append(dict(fit="sigma", optimizer="lm", n_receivers=3, init=init, placement=place, rep=0,
                         iterations=it, converged=True, seconds=it / 10, mre_eps=0.0, mre_sigma=mre, curve=curve))
    s = summarize(rows, cfg)["fit sigma, lm"]
    r = s["ratios_baseline_over_ours"]["init uniform vs label, planner placement"]
    assert r["iterations"] == pytest.approx(4.0) and r["mre_sigma"] == pytest.approx(1e3) and "mre_eps" not in r
    assert s["ratios_baseline_over_ours"]["placement random vs planner, label init"]["mre_sigma"] == pytest.approx(10)
    assert iterations_to_mre(rows[0]) is not None and iterations_to_mre(rows[1]) is None
    assert any("iter to 1%" in line for line in format_summary({"summary": {"fit sigma, lm": s}}))

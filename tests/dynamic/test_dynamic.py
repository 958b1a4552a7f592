"""Dynamic scenes: region tests, the seed-002 section 6.7 case (a person crossing a 4 m link) with local re-tracing
against a full re-trace, and ``rftwin update`` with its input errors."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from rftwin.cli.main import app
from rftwin.dynamic.proxy import ProxySpec, proxy_triangles
from rftwin.dynamic.region import (
    affected_links,
    first_order_reflection_length,
    new_path_bound,
    segments_hit_boxes,
    segments_hit_triangles,
)
from rftwin.dynamic.update import run_update
from rftwin.scene import room
from rftwin.trace import SolverSettings

F = 28e9
SETTINGS = SolverSettings(max_depth=2, samples_per_src=50_000)
# the 4 m link of seed 002 section 6.7 (link 0) and three links elsewhere in the room
TX = np.array([[-2.0, -1.0, 1.2], [-2.0, -1.0, 1.2], [3.5, 3.0, 1.5], [-4.0, 3.5, 2.0]])
RX = np.array([[2.0, -1.0, 1.2], [-3.0, 3.0, 1.5], [4.0, 1.0, 1.0], [-3.5, 1.5, 1.0]])
YS = np.linspace(-2.0, 0.0, 9)  # a person (0.4 x 0.3 x 1.8 m box) walks across the 4 m link at x = 0
POS = np.stack([np.zeros_like(YS), YS, np.full_like(YS, 0.91)], 1)


def test_segment_box_and_new_path_bound():
    lo, hi = torch.tensor([[-0.2, -0.2, 0.0]]), torch.tensor([[0.2, 0.2, 1.8]])
    p0 = torch.tensor([[-2.0, 0.0, 1.0], [-2.0, 0.5, 1.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    p1 = torch.tensor([[2.0, 0.0, 1.0], [2.0, 0.5, 1.0], [0.0, 0.0, 2.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    assert segments_hit_boxes(p0, p1, lo, hi).reshape(-1).tolist() == [True, False, False, False]
    # widened by 0.35 m the parallel segment 0.5 m off the axis (0.3 m from the box) is hit
    assert segments_hit_boxes(p0, p1, lo, hi, 0.35).reshape(-1).tolist() == [True, True, True, False]
    b = new_path_bound(p0[:1], p1[:1], lo, hi, F)
    assert float(b) == pytest.approx((299_792_458.0 / F / (4 * np.pi * 3.6)) ** 2)


def test_segment_triangles_and_first_order_reflection():
    tri = torch.as_tensor(proxy_triangles(ProxySpec(mesh="box:0.4x0.4x1.8")))  # centred at the origin
    p0 = torch.tensor([[-2.0, 0.0, 0.0], [-2.0, 0.5, 0.0], [-2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    p1 = torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.5, 0.0], [-0.3, 0.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    assert segments_hit_triangles(p0, p1, tri).tolist() == [True, False, False, True]
    # the x = -0.2 face mirrors tx = (-2, -1, 0) to (1.6, -1, 0): the image-rx line crosses it at y = 0
    tx = torch.tensor([[-2.0, -1.0, 0.0], [-2.0, -1.0, 0.0]], dtype=torch.float64)
    rx = torch.tensor([[-2.0, 1.0, 0.0], [-2.0, 5.0, 0.0]], dtype=torch.float64)
    length = first_order_reflection_length(tx, rx, tri)
    assert float(length[0]) == pytest.approx(float(np.hypot(3.6, 2.0)))
    assert float(length[1]) == np.inf  # the specular point (y = 1) lies beside the 0.4 m face


@pytest.fixture(scope="module")
def walks():
    out = {}
    for key, kw in ((False, {"method": "region"}), (True, {"full_retrace": True}),
                    ("geometric", {"method": "geometric"}),
                    ("geometric1", {"method": "geometric", "geometric_order": 1}), ("image", {"method": "image"})):
        tw = room(F)
        out[key] = run_update(tw, None, TX, RX, np.full(len(TX), F), ProxySpec(), np.arange(len(YS), dtype=float),
                              POS, SETTINGS, progress=False, cache_dir=False, **kw)
    return out


def test_geometric_update_equals_full_retrace(walks):
    """Links without a path via the person keep the static twin's paths minus those the person blocks (exact
    segment / triangle test); only links a path via the person can reach are re-traced (all orders by default:
    conservative; first order only: fewer links, the crossed link still exact)."""
    geo, full = walks["geometric"], walks[True]
    a = geo.series.pivot(index="step", columns="link", values="path_gain_db").to_numpy()
    b = full.series.pivot(index="step", columns="link", values="path_gain_db").to_numpy()
    assert np.abs(a - b).max() < 0.05
    assert geo.series.loc[geo.series.link == 0, "retraced"].all()  # the crossed link has paths via the person
    g1 = walks["geometric1"]
    assert g1.steps["links_retraced"].iloc[1:].sum() < walks[False].steps["links_retraced"].iloc[1:].sum()
    a1 = g1.series.pivot(index="step", columns="link", values="path_gain_db").to_numpy()
    np.testing.assert_allclose(a1[:, 0], b[:, 0], atol=1e-9)
    with pytest.raises(ValueError, match="method 'geometric' needs a trace without diffraction"):
        run_update(room(F), None, TX[:1], RX[:1], np.full(1, F), ProxySpec(), np.arange(2.0), POS[:2],
                   SolverSettings(max_depth=1, samples_per_src=1000, diffraction=True), progress=False,
                   cache_dir=False, method="geometric")
    # the default ("auto") is the image method, and the region test where the trace diffracts
    auto = run_update(room(F), None, TX[:1], RX[:1], np.full(1, F), ProxySpec(), np.arange(2.0), POS[:2],
                      SolverSettings(max_depth=1, samples_per_src=1000, diffraction=True), progress=False,
                      cache_dir=False)
    assert auto.steps["image_paths"].sum() == 0 and auto.steps["links_retraced"].iloc[1] == 1


def test_image_update_equals_full_retrace_without_sionna(walks):
    """The exact local update: static paths the person does not block + every path via the person by the image
    method; equal to the full re-trace within the tracer's sampling noise, the crossed link to 1e-3 dB, and no
    link goes back to Sionna after the static trace (a body transmits nothing, the room's objects are opaque
    enough for no refraction path to matter). Its steps take a fraction of a full re-trace's."""
    img, full = walks["image"], walks[True]
    a = img.series.pivot(index="step", columns="link", values="path_gain_db").to_numpy()
    b = full.series.pivot(index="step", columns="link", values="path_gain_db").to_numpy()
    assert np.abs(a - b).max() < 0.05
    np.testing.assert_allclose(a[:, 0], b[:, 0], atol=1e-3)
    assert int(img.steps["links_retraced"].sum()) == 0 and float(img.steps["trace_seconds"].sum()) < 0.01
    assert (img.steps["image_paths"] > 0).any()
    sl = img.series[img.series.link == 0].set_index("step")["shadow_loss_db"]
    assert sl.idxmax() == int(np.argmin(np.abs(YS + 1.0))) and sl.max() > 10
    assert img.steps["seconds"].iloc[1:].median() < 0.5 * full.steps["seconds"].iloc[1:].median()
    # delay spread: identical on the crossed link; elsewhere too except where the image method has a weak, late
    # path that the trace's 5e4 rays missed (tests/dynamic/test_dynamic_image.py: Sionna finds it with 1e6 rays)
    da = img.series.pivot(index="step", columns="link", values="delay_spread_s").to_numpy()
    db = full.series.pivot(index="step", columns="link", values="delay_spread_s").to_numpy()
    assert np.abs(da[:, 0] - db[:, 0]).max() < 1e-12
    assert np.nanmedian(np.abs(da - db) / db) < 1e-6


def test_person_crossing_a_4m_link_local_equals_full_retrace(walks):
    loc, full = walks[False], walks[True]
    a = loc.series.pivot(index="step", columns="link", values="path_gain_db")
    b = full.series.pivot(index="step", columns="link", values="path_gain_db")
    # the crossed link: re-traced at every step, identical to the full re-trace
    assert loc.series.loc[loc.series.link == 0, "retraced"].all()
    np.testing.assert_allclose(a[0], b[0], atol=1e-9)
    # the others: kept where the person is far from their paths; equal within the region test's tolerance
    assert (~loc.series.loc[loc.series.step > 0, "retraced"]).sum() >= 10
    assert np.abs(a.to_numpy() - b.to_numpy()).max() < 0.05
    da = loc.series.pivot(index="step", columns="link", values="delay_spread_s")
    db = full.series.pivot(index="step", columns="link", values="delay_spread_s")
    assert np.abs(da.to_numpy() - db.to_numpy()).max() < 0.05 * np.nanmax(db.to_numpy())
    # shadow loss: a deep fade (> 10 dB) only while the body is on the line of sight (y = -1)
    sl = loc.series[loc.series.link == 0].set_index("step")["shadow_loss_db"]
    assert sl.idxmax() == int(np.argmin(np.abs(YS + 1.0))) and sl.max() > 10
    assert sl.iloc[0] < 3 and sl.iloc[-1] < 3
    assert loc.steps["links_retraced"].iloc[1:].mean() < len(TX)


def test_affected_links_flags_the_crossed_link_only_near_it(walks):
    ps = walks[False].pathset
    far = torch.tensor([[3.0, -4.0, 0.0]]), torch.tensor([[3.4, -3.7, 1.8]])
    on_los = torch.tensor([[-0.2, -1.15, 0.0]]), torch.tensor([[0.2, -0.85, 1.8]])
    hit = affected_links([ps], *on_los, F)
    assert bool(hit[0])
    power = torch.full((ps.num_links,), 1e-7)
    assert bool(affected_links([ps], *on_los, F, link_power=power, new_path_tolerance_db=0.1).all())
    assert not bool(affected_links([ps], *far, F)[0])


def _files(tmp_path):
    links = tmp_path / "links.csv"
    rows = ["link_id,tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz"]
    rows += [f"l{i},{t[0]},{t[1]},{t[2]},{r[0]},{r[1]},{r[2]},{F}" for i, (t, r) in enumerate(zip(TX, RX))]
    links.write_text("\n".join(rows) + "\n")
    traj = tmp_path / "traj.csv"
    traj.write_text("t_s,x,y,z\n" + "\n".join(f"{i * 0.5},0,{y},0.91" for i, y in enumerate(YS[::4])) + "\n")
    return links, traj


def test_update_cli_end_to_end(tmp_path):
    links, traj = _files(tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["update", "room", "--mesh", "cylinder:0.2x1.8", "--trajectory", str(traj),
                                 "--links", str(links), "--out", str(out), "--max-depth", "2", "--samples-per-src",
                                 "20000", "--diffraction"])
    assert r.exit_code == 0, r.output
    ts = pd.read_csv(out / "timeseries.csv")
    assert list(ts.columns[:3]) == ["step", "t_s", "link_id"] and len(ts) == 3 * len(TX)
    assert set(ts.link_id) == {f"l{i}" for i in range(len(TX))}
    summ = json.loads((out / "summary.json").read_text())
    assert summ["max_shadow_loss_db"]["l0"] > 5  # the cylinder stands on the 4 m link at y = -1
    assert len(pd.read_csv(out / "steps.csv")) == 3


@pytest.mark.parametrize("kind, needle", [
    ("outside", "row 2 (line 3), column 'x': the proxy at (7, -1, 0.91) m"),
    ("time", "row 2 (line 3), column 't_s': times must increase strictly"),
    ("nan", "row 1 (line 2), column 'y'"),
    ("label", "label 'skin': unknown material"),
    ("mesh_missing", "mesh 'nobody.ply': no such file"),
    ("mesh_bad", "cannot be loaded"),
    ("mesh_type", "unsupported type '.xyz'"),
    ("box", "mesh 'box:0.4x0.3': expected 3 positive sizes"),
])
def test_update_cli_errors(tmp_path, kind, needle):
    links, traj = _files(tmp_path)
    mesh, label = "box:0.4x0.3x1.8", "body"
    if kind == "outside":
        traj.write_text("x,y,z\n0,-1,0.91\n7,-1,0.91\n")
    elif kind == "time":
        traj.write_text("t_s,x,y,z\n1,0,-1,0.91\n1,0,-0.5,0.91\n")
    elif kind == "nan":
        traj.write_text("x,y,z\n0,nan,0.91\n")
    elif kind == "label":
        label = "skin"
    elif kind == "mesh_missing":
        mesh = "nobody.ply"
    elif kind == "mesh_bad":
        bad = tmp_path / "person.ply"
        bad.write_text("ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n")
        mesh = str(bad)
    elif kind == "mesh_type":
        mesh = str(tmp_path / "p.xyz")
        (tmp_path / "p.xyz").write_text("0 0 0\n")
    elif kind == "box":
        mesh = "box:0.4x0.3"
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["update", "room", "--mesh", mesh, "--label", label, "--trajectory", str(traj),
                                 "--links", str(links), "--out", str(out), "--max-depth", "1", "--samples-per-src",
                                 "1000"])
    msg = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert needle in msg, msg
    assert "Traceback" not in r.output and not out.exists()


def test_trace_of_links_without_any_path():
    """A re-traced link may have no path at all (a person blocking the only one): the tracer must return an empty
    PathSet (Dr.Jit aborted on the size-0 antenna rotation before)."""
    from rftwin.trace import trace

    st = SolverSettings(max_depth=0, samples_per_src=1000)  # line of sight only, through box_chipboard: none
    ps = trace(room(F), np.array([[2.0, 3.0, 0.5]]), np.array([[4.0, 3.0, 0.5]]), st, cache_dir=False,
               progress=False)
    assert ps.num_paths == 0 and ps.num_links == 1 and ps.f_tx.shape == (0, 1, 2)


def test_update_cli_geometric_needs_no_diffraction(tmp_path):
    links, traj = _files(tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["update", "room", "--trajectory", str(traj), "--links", str(links), "--out",
                                 str(out), "--method", "geometric", "--diffraction"])
    assert r.exit_code == 2, r.output
    assert "--method geometric needs a trace without diffraction" in " ".join(r.output.split())
    assert not out.exists()
    r = CliRunner().invoke(app, ["update", "room", "--trajectory", str(traj), "--links", str(links), "--out",
                                 str(out), "--method", "image", "--diffraction"])
    assert r.exit_code == 2 and "--method image needs a trace without diffraction" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["update", "room", "--trajectory", str(traj), "--links", str(links), "--out",
                                 str(out), "--method", "images"])
    assert r.exit_code == 2 and "--method 'images': expected auto, region, image or geometric" in " ".join(
        r.output.split())
    assert not out.exists()


def test_update_cli_default_is_the_image_method(tmp_path):
    links, traj = _files(tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["update", "room", "--trajectory", str(traj), "--links", str(links), "--out",
                                 str(out), "--max-depth", "2", "--samples-per-src", "20000"])
    assert r.exit_code == 0, r.output
    summ = json.loads((out / "summary.json").read_text())
    assert summ["method"] == "image" and summ["max_shadow_loss_db"]["l0"] > 10  # the box stands on the link
    steps = pd.read_csv(out / "steps.csv")
    assert {"move_seconds", "local_seconds", "trace_seconds", "engine_seconds", "image_paths"} <= set(steps.columns)
    assert steps["links_retraced"].sum() == 0


def test_update_leaves_the_twin_unchanged(tmp_path):
    """The proxy goes into the scene for the update and out again: the twin's objects and a prediction afterwards
    are those of before."""
    from rftwin.scene import load
    from rftwin.trace import SolverSettings, trace
    from rftwin.trace.simulate import reference_path_gain_db

    twin = load("room")
    names = list(twin.names)
    tx, rx = np.array([[-2.0, 0.0, 1.5]]), np.array([[2.0, 0.0, 1.5]])
    st = SolverSettings(max_depth=1, samples_per_src=5000)
    before = reference_path_gain_db(trace(twin, tx, rx, st, cache_dir=False, progress=False))
    run_update(twin, None, tx, rx, np.array([3.5e9]), ProxySpec(), np.array([0.0, 1.0]),
               np.array([[0.0, -0.5, 0.9], [0.0, 0.0, 0.9]]), st, progress=False, cache_dir=False)
    assert twin.names == names and "proxy" not in twin.scene.objects
    after = reference_path_gain_db(trace(twin, tx, rx, st, cache_dir=False, progress=False))
    np.testing.assert_allclose(after, before, atol=1e-9)

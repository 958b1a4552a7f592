"""RIS model (rftwin.ris): anomalous mirror vs the closed form, zero-phase RIS vs Sionna RT on a metal plate,
phase quantisation, blocking by an obstacle (real ray casting), input errors and the ``rftwin ris`` command."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from rftwin.cli.main import app
from rftwin.ris.closed_forms import plate_specular_gain, quantisation_loss_db
from rftwin.ris.geometry import RisPose, ris_visibility, stack_poses
from rftwin.ris.inputs import box_points, read_candidates, read_target
from rftwin.ris.physics import (
    C0,
    RisSpec,
    anomalous_angle_deg,
    element_positions,
    far_field_gain,
    focus_phases,
    gradient_phases,
    quantise_phases,
    reflection,
    ris_channel,
    wavenumber,
)

F = 6.6e9
SPEC = RisSpec(16, 16, 0.32, 0.32, bits=None)


def _frame():
    z = torch.zeros(3, dtype=torch.float64)
    n, u, v = (torch.tensor(a, dtype=torch.float64) for a in ((1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)))
    return z, n, u, v


def _db(x) -> float:
    return float(10 * torch.log10(torch.as_tensor(x)))


@pytest.mark.parametrize("theta_i, theta_r", [(30.0, 0.0), (0.0, 30.0), (45.0, -20.0)])
def test_anomalous_mirror_direction_and_peak_gain(theta_i, theta_r):
    """A linear phase gradient steers the far-field peak to the generalised-Snell angle; peak gain and main lobe
    equal the closed-form array factor (N M dx dy)^2 cos(theta_i) cos(theta_r) / (16 pi^2 r_t^2 r_r^2)."""
    c, n, u, v = _frame()
    el = element_positions(c, u, v, SPEC)
    R = 100.0
    g = wavenumber(F) * (math.sin(math.radians(theta_i)) - math.sin(math.radians(theta_r)))
    assert anomalous_angle_deg(theta_i, g, F) == pytest.approx(theta_r, abs=1e-9)
    tx = torch.tensor([[R * math.cos(math.radians(theta_i)), -R * math.sin(math.radians(theta_i)), 0.0]],
                      dtype=torch.float64)
    th = torch.arange(-80.0, 80.0, 0.02, dtype=torch.float64)
    rx = torch.stack([R * torch.cos(torch.deg2rad(th)), R * torch.sin(torch.deg2rad(th)), 0 * th], -1)
    G = ris_channel(tx, rx, el, n, reflection(gradient_phases(SPEC, g)), SPEC, F).abs() ** 2
    peak = float(th[G.argmax()])
    hpbw = math.degrees(0.886 * (C0 / F) / (SPEC.width_m * math.cos(math.radians(theta_r))))
    assert abs(peak - theta_r) < 0.05 * hpbw  # cos(theta_r) of the element pattern pulls the peak by < 0.2 deg
    cf = far_field_gain(SPEC, theta_i, th, R, R, g, F)
    assert abs(peak - float(th[cf.argmax()])) <= 0.02 + 1e-9
    closed = (SPEC.num_elements * SPEC.element_area_m2) ** 2 * math.cos(math.radians(theta_i)) \
        * math.cos(math.radians(theta_r)) / (16 * math.pi**2 * R**4)
    i = int(torch.argmin((th - theta_r).abs()))
    assert abs(_db(G[i]) - _db(closed)) < 0.05  # measured <= 0.003 dB at 100 m
    lobe = (th - theta_r).abs() < hpbw / 2
    assert float((10 * torch.log10(G[lobe] / cf[lobe])).abs().max()) < 0.05


def test_zero_phase_ris_matches_sionna_metal_plate(tmp_path):
    """Sionna RT's specular path off a 1.28 m metal plate (image method) vs a zero-phase RIS of the same size
    (64 x 64 elements of 2 cm); smaller plates vs the physical-optics Fresnel closed form."""
    from rftwin.scene.load import load
    from rftwin.trace import SolverSettings, trace
    from rftwin.validate.scenes import Plate, write_scene

    d, th = 1.0, 30.0
    tx = np.array([[d * math.cos(math.radians(th)), -d * math.sin(math.radians(th)), 0.0]])
    rx = np.array([[d * math.cos(math.radians(th)), d * math.sin(math.radians(th)), 0.0]])
    xml = write_scene([Plate("plate", (0.0, 0.0, 0.0), (1.28, 1.28), 1.0, 1e7, 0.01, tilt_deg=90.0)], tmp_path)
    ps = trace(load(xml, F), tx, rx, SolverSettings(max_depth=1, samples_per_src=20_000, los=False,
                                                    refraction=False), cache_dir=False, progress=False)
    sionna_db = _db((ps.a_ref.abs() ** 2).sum())
    image_db = 20 * math.log10(C0 / F / (4 * math.pi * 2 * d))
    assert sionna_db == pytest.approx(image_db, abs=0.05)
    c, n, u, v = _frame()
    for m in (64, 24, 16, 8):
        spec = RisSpec(m, m, 0.02 * m, 0.02 * m, bits=None)
        h = ris_channel(torch.tensor(tx), torch.tensor(rx), element_positions(c, u, v, spec), n,
                        torch.ones(spec.num_elements, dtype=torch.complex128), spec, F)
        ris_db = _db(h.abs() ** 2)
        if m <= 24:  # paraxial closed form: plates up to ~1.5 first-Fresnel-zone radii (measured <= 0.07 dB)
            po_db = 10 * math.log10(plate_specular_gain(0.02 * m, 0.02 * m, d, d, th, F))
            assert abs(ris_db - po_db) < 0.2, (m, ris_db, po_db)
        if m == 64:  # the plate covers ~18 first Fresnel zones: the image method holds
            assert abs(ris_db - sionna_db) < 0.5, (ris_db, sionna_db)  # measured 0.23 dB
        if m == 16:  # the 0.32 m RIS covers about the first Fresnel zone only: up to +6 dB over the image
            assert ris_db - sionna_db > 2.0


def test_phase_quantisation():
    phi = torch.linspace(0, 2 * math.pi, 1001, dtype=torch.float64)[:-1]
    for b in (1, 2, 3):
        q = quantise_phases(phi, b)
        levels = torch.unique(torch.round(q / (2 * math.pi / 2**b)))
        assert len(levels) == 2**b
        err = torch.remainder(q - phi + math.pi, 2 * math.pi) - math.pi
        assert float(err.abs().max()) <= math.pi / 2**b + 1e-12
    assert torch.equal(quantise_phases(phi, None), phi)
    # near-field focusing of a 16 x 16 RIS on one point: 2-bit / 1-bit lose about the uniform-error loss
    c, n, u, v = _frame()
    el = element_positions(c, u, v, SPEC)
    tx = torch.tensor([[3.0, -2.0, 0.5]], dtype=torch.float64)
    fp = torch.tensor([2.0, 1.5, -0.3], dtype=torch.float64)
    phi = focus_phases(tx[0], fp, el, F)
    g = {b: _db(ris_channel(tx, fp[None], el, n, reflection(quantise_phases(phi, b)), SPEC, F).abs() ** 2)
         for b in (None, 1, 2)}
    assert abs((g[None] - g[2]) - quantisation_loss_db(2)) < 0.5
    assert abs((g[None] - g[1]) - quantisation_loss_db(1)) < 1.5
    # focusing beats any other point nearby
    others = fp[None] + torch.tensor([[0.3, 0, 0], [0, 0.3, 0], [0, 0, 0.3]], dtype=torch.float64)
    h_o = ris_channel(tx, others, el, n, reflection(phi), SPEC, F).abs() ** 2
    assert float(h_o.max()) < 10 ** (g[None] / 10)


def test_blocking_by_an_obstacle_removes_the_ris_path(tmp_path):
    """A metal screen between Tx and the RIS blocks every Tx -> element segment (real Mitsuba ray casting); a
    receiver beside it keeps the RIS path only where its own segments are free."""
    from rftwin.scene.load import load
    from rftwin.validate.scenes import Plate, write_scene

    # screen at x = 1.5, spanning y in [-2.5, -0.5]: between the RIS (origin, facing +x) and Tx at (3, -2, 0)
    xml = write_scene([Plate("screen", (1.5, -1.5, 0.0), (2.0, 2.0), 1.0, 1e7, 0.01, tilt_deg=90.0)], tmp_path)
    tw = load(xml, F)
    spec = RisSpec(16, 16, 0.32, 0.32, bits=2)
    pose = RisPose.from_normal((0.0, 0.0, 0.0), (1.0, 0.0, 0.0))
    el, n = stack_poses([pose], spec)
    rx = np.array([[3.0, 2.0, 0.0], [3.0, -2.0, 0.2]])
    for tx, blocked in ((np.array([3.0, -2.0, 0.0]), True), (np.array([3.0, 0.5, 0.0]), False)):
        vis = ris_visibility(tw, tx, rx, el)  # [1, 2, E]
        assert vis.shape == (1, 2, spec.num_elements)
        txt = torch.tensor(tx, dtype=torch.float64)
        phi = quantise_phases(focus_phases(txt, torch.tensor(rx[0]), el[0], F), spec.bits)
        h = ris_channel(txt.expand(1, 3), torch.tensor(rx), el[0], n[0], reflection(phi), spec, F, vis[0])
        h_free = ris_channel(txt.expand(1, 3), torch.tensor(rx), el[0], n[0], reflection(phi), spec, F)
        if blocked:
            assert not vis.any() and float(h.abs().max()) == 0.0 and float(h_free.abs()[0]) > 0
        else:
            assert bool(vis[0, 0].all())  # rx[0] sees the RIS, and so does the Tx
            assert not vis[0, 1].any()  # rx[1] is behind the screen
            assert float(h.abs()[0]) == pytest.approx(float(h_free.abs()[0]))
            assert float(h.abs()[1]) == 0.0


def test_input_errors(tmp_path):
    from rftwin.data import MeasurementError

    p = tmp_path / "c.csv"
    bbox = (np.array([-5.0, -5, 0]), np.array([5.0, 5, 3]))
    cases = {
        "x,y,z\n0,0,1\n": "needs at least one of the columns yaw_deg or nx",
        "x,y,z,yaw_deg\n0,0,1,90\n0,abc,1,90\n": "row 2 (line 3), column 'y'",
        "x,y,z,nx,ny,nz\n0,0,1,0,0,0\n": "the normal (nx, ny, nz) is zero",
        "candidate_id,x,y,z,yaw_deg\na,0,0,1,0\na,1,0,1,0\n": "duplicate candidate_id 'a'",
        "x,y,z,yaw_deg\n0,9,1,0\n": "outside the scene's bounding box",
        "x,y,z,yaw_deg,nx,ny,nz\n0,0,1,0,1,0,0\n": "either yaw_deg or nx, ny, nz",
    }
    for text, needle in cases.items():
        p.write_text(text)
        with pytest.raises(MeasurementError) as ei:
            read_candidates(p, bbox)
        assert needle in str(ei.value), (text, str(ei.value))
    p.write_text("candidate_id,x,y,z,yaw_deg\na,0,0,1,90\nb,1,0,1,0\n")
    ids, poses = read_candidates(p, bbox)
    assert ids == ["a", "b"] and np.allclose(poses[0].normal, (0, 1, 0)) and np.allclose(poses[0].v, (0, 0, 1))
    assert np.allclose(np.cross(poses[1].u, poses[1].v), poses[1].normal)
    with pytest.raises(ValueError, match="expected a file of points or a box 'X0,X1,Y0,Y1,Z'"):
        read_target("1,2,3")
    with pytest.raises(ValueError, match="X1 > X0"):
        read_target("2,1,0,1,1")
    assert box_points("0,1,0,0.4,1.2", 0.2).shape == (10, 3)
    with pytest.raises(MeasurementError, match="no such file"):
        read_target(str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="bits"):
        RisSpec(bits=9)
    with pytest.raises(ValueError, match="element counts"):
        RisSpec(num_rows=0)


def _cli_files(tmp_path):
    cand = tmp_path / "cand.csv"
    cand.write_text("candidate_id,x,y,z,yaw_deg\n" + "".join(f"c{i},{-0.4 + 0.2 * i},-4.99,1.5,90\n"
                                                             for i in range(5)))
    return cand


def test_ris_cli_end_to_end(tmp_path):
    cand = _cli_files(tmp_path)
    out = tmp_path / "out"
    # Tx west of the wooden box (-3, 3), target area east of it at box height: shadowed from the Tx
    r = CliRunner().invoke(app, ["ris", "room", "--candidates", str(cand), "--target", "-2.2,-1.4,2.4,3.6,0.6",
                                 "--tx", "-4.5 3 0.6", "--out", str(out), "--max-depth", "2",
                                 "--samples-per-src", "20000", "--frequency", "6.6e9"])
    assert r.exit_code == 0, r.output
    t = pd.read_csv(out / "ris_ranking.csv")
    assert list(t["rank"]) == [1, 2, 3, 4, 5] and set(t.candidate_id) == {f"c{i}" for i in range(5)}
    assert (t.mean_gain_db.diff().dropna() <= 1e-9).all() and (t.mean_gain_db > 0).all()
    doc = json.loads((out / "ris.json").read_text())
    assert doc["best_candidate"] == t.candidate_id[0] and doc["target_points"] == 24
    assert (out / "ris_gain_maps.png").stat().st_size > 1000
    assert len(pd.read_csv(out / "ris_target_points.csv")) == 24


@pytest.mark.parametrize("args, needle", [
    (["--target", "1,2"], "--target: expected a file of points or a box"),
    (["--tx", "1 2"], "--tx: expected three numbers"),
    (["--elements", "16by16"], "--elements: expected AxB"),
    (["--bits", "9"], "--bits must be 0 (continuous) .. 8"),
    (["--target", "-2,-1,0,1,9"], "--target: point 1"),
])
def test_ris_cli_errors(tmp_path, args, needle):
    cand = _cli_files(tmp_path)
    out = tmp_path / "out"
    base = {"--target": "-2,-1,0,1,1", "--tx": "-4 0 2"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    r = CliRunner().invoke(app, ["ris", "room", "--candidates", str(cand), "--out", str(out),
                                 *[x for kv in base.items() for x in kv]])
    msg = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert needle in msg, msg
    assert "Traceback" not in r.output and not out.exists()


def test_focus_best_of_focal_points_never_worse_than_centre():
    """``--focus best``: the chosen focal point's mean gain over the area is >= the centroid's; ranking order."""
    from rftwin.ris.planning import focal_candidates, rank, ris_powers

    spec = RisSpec(16, 16, 0.32, 0.32, bits=2)
    poses = [RisPose.from_yaw((x, 4.99, 1.5), -90.0) for x in (7.8, 8.4, 9.0)]
    el, n = stack_poses(poses, spec)
    pts = box_points("5.3,6.7,0.4,1.8,1.2", 0.2)
    tx = np.array([3.0, 3.5, 2.0])
    foc = focal_candidates(pts, "best")
    assert 2 <= len(foc) <= 10 and np.allclose(foc, focal_candidates(pts, "best"))
    assert any(np.allclose(f, pts.mean(0)) for f in foc)
    ref = np.full(len(pts), 10 ** (-80 / 10))
    best = rank(ris_powers(tx, el, n, pts, foc, spec, F), ref)
    centre = rank(ris_powers(tx, el, n, pts, focal_candidates(pts, "center"), spec, F), ref)
    assert np.all(best.mean_gain_db >= centre.mean_gain_db - 1e-12)
    assert np.all(np.diff(best.mean_gain_db[best.order]) <= 0)
    with pytest.raises(ValueError, match="no path to any target point"):
        rank(ris_powers(tx, el, n, pts, foc, spec, F), np.zeros(len(pts)))

"""Material groups: objects of a group share parameters (label classes, a groups file, per object)."""
import json

import numpy as np
import pytest
import torch

from rftwin.calibrate import CalibrationConfig, Targets, calibrate
from rftwin.calibrate.path_jacobian import path_gain_jacobian
from rftwin.materials import PerObjectMaterials, prior_from_labels
from rftwin.materials.groups import (
    GroupedMaterials,
    GroupsError,
    groups_by_label,
    material_model,
    read_groups_file,
    resolve_groups,
)
from rftwin.physics.channel import link_sum, path_power
from rftwin.physics.engine import path_coefficients
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace

S = SolverSettings(max_depth=2, samples_per_src=50_000, seed=2)


def _room_links(n=24, seed=4):
    rng = np.random.default_rng(seed)
    tx = np.array([[0.0, 0.0, 2.5], [-3.0, 3.0, 1.5]])
    rx = np.c_[rng.uniform(-4.0, 4.0, (n, 2)), np.full(n, 1.2)]
    ok = ~((np.abs(rx[:, 0] - 3.0) < 1.6) & (np.abs(rx[:, 1] + 3.0) < 1.6))  # keep clear of the boxes
    rx = rx[ok]
    return np.repeat(tx, len(rx), 0), np.tile(rx, (2, 1))


def test_label_groups_tie_parameters_and_recover_class_values():
    twin = load("room")
    names, labels = twin.names, [o.label for o in twin.objects]
    g = groups_by_label(names, labels)
    assert g.num_groups == 5 and g.table(names)["brick"] == ["floor", "wall_east", "wall_north", "wall_south",
                                                             "wall_west"]
    prior = prior_from_labels(labels, 3.5e9)
    # truth: every class 12 % / 20 % away from its label, the same for all objects of a class
    eps_t, sig_t = prior.eps_r * 1.12, prior.sigma * 0.8
    tx, rx = _room_links()
    twin.set_materials(eps_t, sig_t)
    ps = trace(twin, tx, rx, S, cache_dir=False)
    meas = 10 * np.log10(link_sum(path_power(ps.a_ref[None]), ps.link, ps.num_links)[0].numpy())
    t = Targets.build(np.arange(len(tx)), np.full(len(tx), 3.5e9), meas)
    thick = [o.thickness_m for o in twin.objects]
    model = material_model(g, prior.eps_r[None], prior.sigma[None], thick)
    assert isinstance(model, GroupedMaterials)
    assert sum(p.numel() for p in model.parameters()) == 2 * 5  # 5 classes, not 9 objects
    res = calibrate(ps, model, t, CalibrationConfig(max_iter=200), progress=False)
    brick = g.members(g.names.index("brick"))
    assert np.ptp(res.eps_r[brick]) == 0 and np.ptp(res.sigma[brick]) == 0  # tied
    assert res.loss < 1e-4
    # the brick class (floor + 4 walls, 2 parameters instead of 10) is recovered; the boxes, which few paths touch,
    # are not identifiable from 24 gains (see docs/calibration.md) and are not checked
    assert np.abs(res.eps_r[brick] / eps_t[brick] - 1).max() < 1e-3
    assert np.abs(res.sigma[brick] / sig_t[brick] - 1).max() < 1e-2
    assert res.uncertainty is not None and res.uncertainty.eps_std.shape == (9,)
    # the grouped model gives the same per-object values and Jacobian as the per-object model at tied values
    per = PerObjectMaterials(res.eps_r[None], res.sigma[None], thick)
    f = torch.tensor([3.5e9], dtype=torch.float64)
    a_g = path_coefficients(ps, res.model(f), f)
    a_p = path_coefficients(ps, per(f), f)
    torch.testing.assert_close(a_g, a_p)
    theta = torch.cat([p.detach() for p in res.model.parameters()], 1)
    _, J = path_gain_jacobian(ps, res.model, t, ["u", "v"], [5, 5], theta)
    _, Jp = path_gain_jacobian(ps, per, t, ["u", "v"], [9, 9], torch.cat([per.u.detach(), per.v.detach()], 1))
    gi = torch.as_tensor(g.index)
    summed = torch.zeros(J.shape, dtype=J.dtype).index_add_(-1, torch.cat([gi, gi + 5]), Jp)
    torch.testing.assert_close(J, summed)  # d/d(group) = sum over its objects


def test_groups_file_globs_and_errors(tmp_path):
    names = ["box_chipboard", "box_concrete", "box_marble", "box_wood", "floor", "wall_east", "wall_north",
             "wall_south", "wall_west"]
    labels = ["chipboard", "concrete", "marble", "wood", "brick", "brick", "brick", "brick", "brick"]
    f = tmp_path / "groups.yaml"
    f.write_text("groups: [walls, boxes]\nobjects:\n  'wall_*': walls\n  'box_*': boxes\n")
    g = read_groups_file(f, names, labels)
    assert g.table(names) == {"boxes": names[:4], "object:floor": ["floor"], "walls": names[5:]} or \
        set(g.table(names)) == {"boxes", "walls", "object:floor"}
    assert resolve_groups(str(f), names, labels).num_groups == 3
    j = tmp_path / "groups.json"
    j.write_text(json.dumps({"objects": {"floor": "ground", "wall_*": "walls"}, "unmatched": "label"}))
    g2 = read_groups_file(j, names, labels)
    assert "label:marble" in g2.names and g2.index[names.index("floor")] != g2.index[names.index("wall_east")]
    assert resolve_groups("object", names, labels) is None
    m = material_model(groups_by_label(names[4:5], labels[4:5]), np.array([[3.9]]), np.array([[0.03]]), [0.1])
    assert type(m) is PerObjectMaterials  # one object per group: the plain per-object model
    bad = [("groups: [walls]\nobjects:\n  'wall_*': wals\n", r"objects\['wall_\*'\]: unknown group 'wals'"),
           ("objects:\n  'roof*': roofs\n", r"objects\['roof\*'\]: matches no scene object"),
           ("objects:\n  'wall_*': a\n  'wall_e*': b\n", "wall_east' is matched by"),
           ("objects:\n  'wall_*': walls\nunmatched: error\n", "object 'box_chipboard' matches no pattern"),
           ("objects: {}\n", "non-empty mapping"),
           ("objets:\n  a: b\n", "expected a mapping with key 'objects'"),
           ("objects:\n  'wall_*': walls\ncolour: red\n", r"unknown key\(s\) \['colour'\]"),
           ("groups: [walls, roofs]\nobjects:\n  'wall_*': walls\n", r"groups \['roofs'\]: no object"),
           ("objects: [unclosed\n", "not valid YAML"),
           ("!!python/object/apply:os.system ['echo hacked']\n", "not valid YAML")]
    for text, msg in bad:
        f.write_text(text)
        with pytest.raises(GroupsError, match=msg) as ei:
            read_groups_file(f, names, labels)
        assert str(f) in str(ei.value)
    with pytest.raises(GroupsError, match="not found"):
        read_groups_file(tmp_path / "missing.yaml", names, labels)


def test_cli_calibrate_with_label_groups_and_bad_groups_file(tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner

    from rftwin.cli.main import app

    meas = Path(__file__).resolve().parents[2] / "examples/measurements_v1.csv"
    common = ["--max-depth", "2", "--samples-per-src", "20000", "--starts", "2", "--refine", "1", "--max-iter", "10",
              "--retrace", "0"]
    cal = tmp_path / "cal"
    r = CliRunner().invoke(app, ["calibrate", "room", str(meas), "--out", str(cal), "--groups", "label"] + common)
    assert r.exit_code == 0, r.output
    doc = json.loads((cal / "materials.json").read_text())["objects"]
    walls = [doc[n]["relative_permittivity"] for n in ("floor", "wall_east", "wall_north", "wall_south", "wall_west")]
    assert np.ptp(walls) == 0
    groups = json.loads((cal / "calibration.json").read_text())["groups"]
    assert groups["brick"] == ["floor", "wall_east", "wall_north", "wall_south", "wall_west"]
    bad = tmp_path / "g.yaml"
    bad.write_text("groups: [walls]\nobjects:\n  'wall_*': wal\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["calibrate", "room", str(meas), "--out", str(out), "--groups", str(bad)] + common)
    assert r.exit_code == 2 and "g.yaml" in r.output and "unknown group 'wal'" in r.output
    assert "Traceback" not in r.output and not out.exists()

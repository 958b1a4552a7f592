"""Label correction with material groups (issue #17): a group whose objects share a wrong label is switched as
one, from the evidence of every class refined continuously. Real Sionna traces of a small two-cabinet room."""
from pathlib import Path

import numpy as np
import pytest

from rftwin.calibrate import Targets
from rftwin.calibrate.bayes import BayesConfig, ObjectPriors
from rftwin.calibrate.inference import BayesSetup, calibrate_posterior
from rftwin.materials import itu_eps_sigma
from rftwin.materials.class_prior import itu_table
from rftwin.materials.groups import groups_by_label
from rftwin.physics.channel import path_gain
from rftwin.scene import load
from rftwin.scene.room import BoxSpec, room_xml
from rftwin.scene.sampling import random_positions
from rftwin.trace import SolverSettings, trace

F = 3.5e9
SETTINGS = SolverSettings(max_depth=2, samples_per_src=30_000, seed=3)
CABINETS = (BoxSpec("cabinet_a", "wood", (-1.2, 1.0), (0.8, 1.2, 1.9)),
            BoxSpec("cabinet_b", "wood", (1.3, -1.0), (0.8, 1.2, 1.9)))


def _itu(classes):
    return (np.array([max(itu_eps_sigma(c, F)[0], 1.0) for c in classes]),
            np.array([itu_eps_sigma(c, F)[1] for c in classes]))


def _gain_db(ps):
    with np.errstate(divide="ignore"):
        return 10 * np.log10(path_gain(ps.a_ref[None, None], ps.link, ps.num_links)[0, 0].numpy())


@pytest.fixture(scope="module")
def cabinet_room(tmp_path_factory):
    p = Path(tmp_path_factory.mktemp("scene")) / "cabinets.xml"
    p.write_text(room_xml(size_xy=6.0, height=2.8, wall_material="brick", floor_material="concrete",
                          boxes=CABINETS))
    twin = load(p)
    rng = np.random.default_rng(11)
    tx = random_positions(twin, 3, rng, (1.8, 2.4))
    rx = random_positions(twin, 60, rng, (0.8, 1.8))
    return twin, tx[np.arange(60) % 3], rx


def test_group_of_metal_cabinets_labelled_wood_is_switched_to_metal(cabinet_room):
    twin, tx, rx = cabinet_room
    labels = [o.label for o in twin.objects]
    cab = [twin.names.index(b.name) for b in CABINETS]
    assert [labels[k] for k in cab] == ["wood", "wood"]
    truth = ["metal" if k in cab else c for k, c in enumerate(labels)]
    e, s = _itu(truth)
    twin.set_materials(e, s)
    y = _gain_db(trace(twin, tx, rx, SETTINGS, cache_dir=False, progress=False))
    y = y + np.random.default_rng(2).normal(0.0, 0.5, len(y))
    twin.set_materials(*_itu(labels))
    ps = trace(twin, tx, rx, SETTINGS, cache_dir=False, progress=False)
    ok = np.isfinite(y)
    t = Targets.build(np.arange(len(y))[ok], np.full(ok.sum(), F), y[ok])
    groups = groups_by_label(twin.names, labels)  # brick walls, concrete floor, the two wooden cabinets
    assert groups.num_groups == 3
    setup = BayesSetup(ObjectPriors(twin.names, labels, itu_table(F), F), BayesConfig(folds=0))
    res = calibrate_posterior(ps, t, setup, [o.thickness_m for o in twin.objects], num_starts=4, groups=groups)
    inf = res.inference
    assert [inf["classes"][k] for k in cab] == ["metal", "metal"]
    (sw,) = inf["label_switches"]
    assert (sw["group"], sw["label"], sw["from"], sw["to"]) == ("wood", "wood", "wood", "metal")
    assert sorted(sw["objects"]) == ["cabinet_a", "cabinet_b"]
    assert sw["probability_from"] <= 0.05
    # class posteriors per group (keyed by group name), normalised, the label's decisively low
    post = inf["class_posteriors"]
    assert set(post) == set(groups.names)
    assert sum(post["wood"].values()) == pytest.approx(1.0)
    assert post["wood"]["wood"] <= 0.05 and max(post["wood"], key=post["wood"].get) == "metal"
    assert max(post["brick"], key=post["brick"].get) == "brick"
    # the group's two objects share one metal-like conductivity; the right labels stay
    assert res.sigma[cab[0]] == res.sigma[cab[1]] and res.sigma[cab[0]] > 1e5
    assert all(inf["classes"][k] == labels[k] for k in range(len(labels)) if k not in cab)
    # the parameters the data determine are at most the free ones (one (eps_r, sigma) pair per group), not the
    # prior's per-object rows: counted per object they left the noise estimate too few degrees of freedom
    assert 0.0 < inf["effective_parameters"] <= 2 * groups.num_groups + 1e-9


def test_many_objects_per_group_leave_the_noise_estimate_its_degrees_of_freedom(tmp_path):
    """24 wooden boxes, 4 brick walls and a concrete floor in three label groups, 30 links at 1 dB: the
    data determine at most the groups' 6 parameters, so the noise estimate keeps ~24 degrees of freedom and
    recovers the injected noise (counting the prior's 58 per-object rows as parameters left it 1 and a noise of
    several dB, which froze the twin at its labels)."""
    boxes = tuple(BoxSpec(f"box_{i}", "wood", (-2.5 + 1.0 * (i % 6), -2.0 + 1.3 * (i // 6)), (0.3, 0.3, 0.6))
                  for i in range(24))
    p = tmp_path / "boxes.xml"
    p.write_text(room_xml(size_xy=8.0, height=2.8, wall_material="brick", floor_material="concrete", boxes=boxes))
    twin = load(p)
    labels = [o.label for o in twin.objects]
    rng = np.random.default_rng(5)
    n = 30
    tx = random_positions(twin, 3, rng, (2.0, 2.6))[np.arange(n) % 3]
    rx = random_positions(twin, n, rng, (0.8, 1.8))
    e, s = _itu(labels)
    lam = {"wood": (1.3, 2.0), "brick": (0.9, 0.6), "concrete": (1.1, 1.5)}  # the truth: per class
    twin.set_materials(e * [lam[c][0] for c in labels], s * [lam[c][1] for c in labels])
    y = _gain_db(trace(twin, tx, rx, SETTINGS, cache_dir=False, progress=False))
    y = y + np.random.default_rng(6).normal(0.0, 1.0, n)
    twin.set_materials(e, s)
    ps = trace(twin, tx, rx, SETTINGS, cache_dir=False, progress=False)
    ok = np.isfinite(y)
    t = Targets.build(np.arange(n)[ok], np.full(ok.sum(), F), y[ok])
    groups = groups_by_label(twin.names, labels)
    assert groups.num_groups == 3 and len(labels) == 29
    setup = BayesSetup(ObjectPriors(twin.names, labels, itu_table(F), F),
                       BayesConfig(folds=0, label_correction=False))
    inf = calibrate_posterior(ps, t, setup, [o.thickness_m for o in twin.objects], num_starts=2,
                              groups=groups).inference
    assert 0.0 < inf["effective_parameters"] <= 2 * groups.num_groups + 1e-9
    assert inf["noise"]["path_gain"] == pytest.approx(1.0, rel=0.25)

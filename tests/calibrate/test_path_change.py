"""What a re-trace changes in the traced paths (rftwin.calibrate.workflow.path_change), on real Sionna traces."""
from __future__ import annotations

import numpy as np
import torch

import _floor_wall as fw
from rftwin.calibrate.problem import Targets, simulate_path_gain_db
from rftwin.calibrate.workflow import path_change
from rftwin.materials import PerObjectMaterials, itu_eps_sigma
from rftwin.report import path_change_lines
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace

F = 3.5e9


def test_a_retrace_at_other_materials_finds_other_paths_and_says_how_much_they_change_the_gain():
    """The floor and wall traced at their labels and again with both made of metal (no refraction into metal):
    the links whose paths differ are counted, and the gain change is taken at one and the same materials, so it
    equals the difference of the engine's gains on the two path sets; a trace compared with itself changes
    nothing."""
    twin = load("floor_wall")
    tx, rx = fw.links(12, seed=3)
    st = SolverSettings(max_depth=2, samples_per_src=20_000)
    labels = [o.label for o in twin.objects]
    e = np.array([itu_eps_sigma(lab, F)[0] for lab in labels])
    s = np.array([itu_eps_sigma(lab, F)[1] for lab in labels])
    a = trace(twin, tx, rx, st, cache_dir=False, progress=False)
    twin.set_materials(np.ones_like(e), np.full_like(s, 1e7))
    b = trace(twin, tx, rx, st, cache_dir=False, progress=False)
    model = PerObjectMaterials(e[None], s[None], [o.thickness_m for o in twin.objects])
    same = path_change(a, a, model, F)
    assert same["links_with_other_paths"] == 0 and same["gain_change_rms_db"] == 0.0
    c = path_change(a, b, model, F)
    assert c["links"] == len(tx) and 0 < c["links_with_other_paths"] <= len(tx)
    t = Targets.build(np.arange(len(tx)), np.full(len(tx), F), np.zeros(len(tx)))
    with torch.no_grad():
        ga, gb = (simulate_path_gain_db(p, model, t)[0].numpy() for p in (a, b))
    both = (ga > -250) & (gb > -250)
    assert c["links_reached_by_one_trace"] == int(((ga > -250) ^ (gb > -250)).sum())
    assert np.isclose(c["gain_change_rms_db"], np.sqrt(np.mean((gb - ga)[both] ** 2)), rtol=1e-9)
    assert c["gain_change_rms_db"] > 0.0
    text = "\n".join(path_change_lines([{"retrace": 1, **c}]))
    assert f"{c['links_with_other_paths']} of {len(tx)}" in text and "--no-refraction" in text

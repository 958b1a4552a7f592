"""The exact local update (``method="image"``): the image method against hand-computed paths and against Sionna
(every path Sionna finds via the person, with the same points and coefficients), transmission bounds, and the
walk of seed 002 section 6.7 against a full re-trace (in tests/dynamic/test_dynamic.py, fixture ``walks``)."""
import math

import numpy as np
import pytest
import torch

from rftwin.dynamic.exact import ImageUpdate, link_path_power, transmission_bound
from rftwin.dynamic.images import ImageMethod, facets_of, sequences
from rftwin.dynamic.proxy import BODY, ProxySpec, insert_proxy, proxy_triangles
from rftwin.pathset import NONE, REFRACTION, SPECULAR
from rftwin.physics.engine import MaterialValues, path_coefficients
from rftwin.physics.slab import complex_permittivity, slab_coefficients
from rftwin.scene import room
from rftwin.trace import SolverSettings, trace
from rftwin.twin_io import material_values

F = 28e9


def _wall(x: float, obj: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An open square wall in the plane x = ``x`` (y, z in [-5, 5]): two triangles of object ``obj``."""
    v = torch.tensor([[x, -5.0, -5.0], [x, 5.0, -5.0], [x, 5.0, 5.0], [x, -5.0, 5.0]], dtype=torch.float64)
    tri = torch.stack([v[[0, 1, 2]], v[[0, 2, 3]]])
    return tri, torch.full((2,), obj), torch.arange(2)


def _box(center, obj: int):
    tri = torch.as_tensor(proxy_triangles(ProxySpec(mesh="box:0.4x0.4x0.4"))) + torch.tensor(center)
    return facets_of(tri, torch.full((len(tri),), obj), torch.arange(len(tri)), torch.ones(len(tri), dtype=bool))


def test_sequences_and_facets():
    s = sequences(3, 2)
    assert s.tolist() == [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]  # no facet twice in a row
    fac = _box([0.0, 0.0, 0.0], 1)
    assert fac.count == 6 and fac.tri.shape[1] == 2  # a cube: six facets of two triangles
    # outward sides: +x facet points to +x
    i = int(torch.nonzero((fac.normal[:, 0].abs() > 0.5) & (fac.offset * fac.normal[:, 0] > 0)).reshape(-1)[0])
    assert float(fac.outward[i] * fac.normal[i, 0]) == 1.0


def test_convex_blocks_passes_through_not_tangent():
    """Clipping against a closed convex proxy: a segment through the cube is blocked; one tangent to a face or
    along an edge, or ending on a face (a reflection point) is not - as in a trace."""
    from rftwin.dynamic.images import convex_blocks

    fac = _box([0.0, 0.0, 0.0], 1)
    n_out, o_out = fac.normal * fac.outward[:, None], fac.offset * fac.outward
    p0 = torch.tensor([[-1.0, 0.0, 0.0], [-1.0, 0.2, 0.0], [-1.0, 0.2, 0.2], [-1.0, 0.1, 0.0], [-1.0, 0.3, 0.0]],
                      dtype=torch.float64)
    p1 = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.2, 0.0], [1.0, 0.2, 0.2], [-0.2, 0.1, 0.0], [1.0, 0.3, 0.0]],
                      dtype=torch.float64)
    assert convex_blocks(p0, p1, n_out, o_out).tolist() == [True, False, False, False, False]


def test_image_method_hand_computed_paths():
    """A cube (0.4 m, centred at the origin) and an open wall at x = -3; tx = (-1, -0.1, 0), rx = (-1, 0.1, 0).
    Depth 2: the cube's x = -0.2 face reflects tx to rx at (-0.2, 0, 0); tx -> wall -> cube (the image of tx in
    the wall, (-5, -0.1, 0), seen through the face from rx mirrored in it, (0.6, 0.1, 0)) and the reverse order.
    A panel at x = -0.6 (y < 0) crossed by the first-order path's incoming segment turns it into refraction +
    reflection; the reverse-order path crosses the panel twice and needs depth 4."""
    wall, wobj, wprim = _wall(-3.0, 0)
    tx = torch.tensor([[-1.0, -0.1, 0.0]], dtype=torch.float64)
    rx = torch.tensor([[-1.0, 0.1, 0.0]], dtype=torch.float64)
    cube = _box([0.0, 0.0, 0.0], 1)
    pp = ImageMethod(tx, rx, facets_of(wall, wobj, wprim), wall, wobj, wprim, 2, 2).paths(cube)
    n = (pp.itype != NONE).sum(1)
    assert sorted(n.tolist()) == [1, 2, 2] and (pp.itype[pp.itype != NONE] == SPECULAR).all()
    torch.testing.assert_close(pp.points[n == 1][0, 0], torch.tensor([-0.2, 0.0, 0.0], dtype=torch.float64))
    y_c = -0.1 + 0.2 * 4.8 / 5.6  # tx -> wall -> cube: where (-5, -0.1) -> (0.6, 0.1) crosses x = -0.2
    y_w = y_c + (-0.1 - y_c) * 2.8 / 4.8  # and where the segment back to (-5, -0.1) crosses x = -3
    wc = pp.points[(n == 2) & (pp.obj[:, 0] == 0)]
    assert len(wc) == 1
    torch.testing.assert_close(wc[0], torch.tensor([[-3.0, y_w, 0.0], [-0.2, y_c, 0.0]], dtype=torch.float64))
    assert int(((n == 2) & (pp.obj[:, 0] == 1)).sum()) == 1  # cube -> wall
    # the panel (object 2, open) at x = -0.6, y in [-0.8, 0], z in [-1, 1]
    panel = torch.tensor([[[-0.6, -0.8, -1.0], [-0.6, 0.0, -1.0], [-0.6, -0.8, 1.0]],
                          [[-0.6, 0.0, -1.0], [-0.6, 0.0, 1.0], [-0.6, -0.8, 1.0]]], dtype=torch.float64)
    tri = torch.cat([wall, panel])
    obj, prim = torch.tensor([0, 0, 2, 2]), torch.tensor([0, 1, 0, 1])
    kinds = {}
    for depth in (2, 4):
        p = ImageMethod(tx, rx, facets_of(tri, obj, prim), tri, obj, prim, 3, depth).paths(cube)
        kinds[depth] = sorted(tuple(t for t in row if t != NONE) for row in p.itype.tolist())
        if depth == 2:
            r = p.points[p.itype[:, 0] == REFRACTION][0]
            torch.testing.assert_close(r[0], torch.tensor([-0.6, -0.05, 0.0], dtype=torch.float64))
            assert p.obj[p.itype[:, 0] == REFRACTION][0].tolist() == [2, 1]
    R, S = REFRACTION, SPECULAR
    assert kinds[2] == sorted([(R, S), (S, S)])  # tx -> wall -> cube stays clear; cube -> wall needs 4
    assert (R, S, R, S) in kinds[4] and (R, S) in kinds[4]  # (and longer paths between wall and cube)


def test_transmission_bound_of_the_body_and_a_thin_slab():
    th = torch.tensor([[[BODY["thickness"], 0.01]]], dtype=torch.float64)
    mv = MaterialValues(torch.tensor([[[BODY["relative_permittivity"], 6.0]]], dtype=torch.float64),
                        torch.tensor([[[BODY["conductivity"], 0.01]]], dtype=torch.float64), th)
    t2 = transmission_bound(mv, np.array([F]))
    assert float(t2[0]) < 1e-30  # 0.2 m of skin at 28 GHz transmits nothing
    eta = complex_permittivity(torch.tensor(6.0, dtype=torch.float64), torch.tensor(0.01, dtype=torch.float64),
                               torch.tensor(F, dtype=torch.float64))
    _, _, t_te, _ = slab_coefficients(torch.tensor(1.0, dtype=torch.float64), eta, torch.tensor(0.01),
                                      torch.tensor(299_792_458.0 / F, dtype=torch.float64))
    assert float(t2[1]) >= float(t_te.abs() ** 2) - 1e-12 and float(t2[1]) <= 1.0


@pytest.mark.parametrize("y", [-1.0, -0.4])
def test_image_method_finds_every_sionna_path_via_the_person(y):
    """With the person on or beside the 4 m link among ten links (depth 3): every path Sionna finds via the person
    is built by the image method with the same objects and points (1 mm), and the engine on the built records
    equals Sionna's coefficients of those paths; the image method may find more (Sionna's ray sampling misses
    some) and the path gains agree within the tracer's sampling noise."""
    st = SolverSettings(max_depth=3, samples_per_src=100_000)
    tw = room(F)
    rng = np.random.default_rng(1)
    tx = np.concatenate([[[-2.0, -1.0, 1.2]], np.repeat([[-4.6, 0.3, 2.5]], 9, 0)])
    rx = np.concatenate([[[2.0, -1.0, 1.2]], np.stack([rng.uniform(-1, 4.5, 9), rng.uniform(-4.5, 1, 9),
                                                        rng.uniform(0.8, 2.0, 9)], 1)])
    ps0 = trace(tw, tx, rx, st, cache_dir=False, progress=False)
    pos = np.array([0.0, y, 0.91])
    insert_proxy(tw, ProxySpec(), pos)
    k = len(tw.objects) - 1
    uf, row = np.array([F]), np.zeros(len(tx), dtype=np.int64)
    mv = material_values(tw, None, uf)
    up = ImageUpdate(tw, ps0, link_path_power(ps0, mv, uf, row), proxy_triangles(ProxySpec()), k, mv, uf, row, 3)
    geo, extra = up.step(pos)
    ps = trace(tw, tx, rx, st, cache_dir=False, progress=False)
    via_s = ((ps.obj == k) & (ps.itype != NONE)).any(1)
    via_i = ((geo.obj == k) & (geo.itype != NONE)).any(1)
    assert int(via_s.sum()) >= 3
    a_img = path_coefficients(geo, mv, F)[0, 0, :, 0, 0]
    idx_i = torch.nonzero(via_i).reshape(-1)
    for i in torch.nonzero(via_s).reshape(-1).tolist():
        same = idx_i[(geo.link[idx_i] == ps.link[i]) & (geo.obj[idx_i] == ps.obj[i]).all(1)
                     & (geo.itype[idx_i] == ps.itype[i]).all(1)]
        assert len(same), f"Sionna's path {i} (link {int(ps.link[i])}, objects {ps.obj[i].tolist()}) not built"
        d = (geo.point[same] - ps.point[i]).abs().amax((1, 2))
        j = same[int(d.argmin())]
        assert float(d.min()) < 1e-3
        ref = ps.a_ref[i, 0, 0].to(torch.complex128)
        assert abs(complex(a_img[j] - ref)) <= 1e-3 * abs(complex(ref)), (i, complex(a_img[j]), complex(ref))
    assert int(via_i.sum()) >= int(via_s.sum())
    assert float(extra.max()) < 1e-20  # nothing through the body that could matter
    g_s = 10 * torch.log10(torch.zeros(ps.num_links, dtype=torch.float64).index_add_(
        0, ps.link, path_coefficients(ps, mv, F)[0, 0, :, 0, 0].abs() ** 2))
    g_i = 10 * torch.log10(torch.zeros(geo.num_links, dtype=torch.float64).index_add_(0, geo.link, a_img.abs() ** 2))
    assert float((g_s - g_i).abs().max()) < 0.08  # the tracer's own sampling noise at 1e5 rays (docs)
    assert math.isfinite(float(g_i[0]))


def test_paths_only_the_image_method_finds_are_real():
    """Paths via the person that the image method builds and a 5e4-ray trace misses are found by Sionna with 1e6
    rays (the four links of tests/dynamic/test_dynamic.py, the person at y = 0, depth 2): the image method is not less
    complete than the trace it replaces, and what it adds is real."""
    tx = np.array([[-2.0, -1.0, 1.2], [-2.0, -1.0, 1.2], [3.5, 3.0, 1.5], [-4.0, 3.5, 2.0]])
    rx = np.array([[2.0, -1.0, 1.2], [-3.0, 3.0, 1.5], [4.0, 1.0, 1.0], [-3.5, 1.5, 1.0]])
    tw = room(F)
    ps0 = trace(tw, tx, rx, SolverSettings(max_depth=2, samples_per_src=50_000), cache_dir=False, progress=False)
    pos = np.array([0.0, 0.0, 0.91])
    insert_proxy(tw, ProxySpec(), pos)
    k = len(tw.objects) - 1
    uf, row = np.array([F]), np.zeros(len(tx), dtype=np.int64)
    mv = material_values(tw, None, uf)
    up = ImageUpdate(tw, ps0, link_path_power(ps0, mv, uf, row), proxy_triangles(ProxySpec()), k, mv, uf, row, 2)
    geo, _ = up.step(pos)

    def via(ps):
        sel = torch.nonzero(((ps.obj == k) & (ps.itype != NONE)).any(1)).reshape(-1).tolist()
        return [(int(ps.link[i]), tuple(ps.obj[i].tolist()), ps.point[i]) for i in sel]

    def missing(a, b):  # paths of a without a path of b with the same link, objects and points (1 mm)
        return [p for p in a if not any(p[0] == q[0] and p[1] == q[1] and float((p[2] - q[2]).abs().max()) < 1e-3
                                        for q in b)]

    img = via(geo)
    few = via(trace(tw, tx, rx, SolverSettings(max_depth=2, samples_per_src=50_000), cache_dir=False,
                    progress=False))
    many = via(trace(tw, tx, rx, SolverSettings(max_depth=2, samples_per_src=1_000_000), cache_dir=False,
                     progress=False))
    assert not missing(few, img) and not missing(many, img) and not missing(img, many)
    assert len(missing(img, few)) >= 1  # what the 5e4-ray trace missed


def test_cylinder_walk_image_equals_full_retrace():
    """A cylinder (24 side facets of 5 cm: a 5e4-ray trace misses paths via them; steps where every candidate path
    via it is blocked) walks across the 4 m link at depth 3: the image update equals the full re-trace within
    0.05 dB, and where it does not, it is at least as close as the full re-trace to a 1e6-ray trace."""
    from rftwin.dynamic.update import run_update

    tx = np.array([[-2.0, -1.0, 1.2], [-4.6, 0.3, 2.5], [-4.6, 0.3, 2.5], [4.6, -4.0, 2.5]])
    rx = np.array([[2.0, -1.0, 1.2], [1.0, -3.0, 1.5], [3.0, 2.0, 1.0], [-1.0, 2.0, 1.4]])
    ys = np.arange(-1.95, 0.0, 0.2)  # not tangent to the 4 m link (a cylinder at y = -1.2 touches it at y = -1)
    pos = np.stack([0 * ys, ys, 0 * ys + 0.91], 1)
    st = SolverSettings(max_depth=3, samples_per_src=50_000)
    spec = ProxySpec(mesh="cylinder:0.2x1.8")
    res = {m: run_update(room(F), None, tx, rx, np.full(4, F), spec, ys, pos, st, progress=False, cache_dir=False,
                         **kw) for m, kw in (("image", {"method": "image"}), ("full", {"full_retrace": True}))}
    g = {m: r.series.pivot(index="step", columns="link", values="path_gain_db").to_numpy() for m, r in res.items()}
    diff = np.abs(g["image"] - g["full"])
    assert np.median(diff) < 1e-3
    for step, link in np.argwhere(diff > 0.05):  # a few (step, link) pairs
        tw = room(F)
        insert_proxy(tw, spec, pos[step])
        ps = trace(tw, tx[link:link + 1], rx[link:link + 1], SolverSettings(max_depth=3, samples_per_src=1_000_000),
                   cache_dir=False, progress=False)
        a = path_coefficients(ps, material_values(tw, None, np.array([F])), F)
        ref = 10 * np.log10(float((a.abs() ** 2).sum()))
        assert abs(g["image"][step, link] - ref) <= abs(g["full"][step, link] - ref) + 0.01, (step, link, ref)
    assert int(res["image"].steps["links_retraced"].sum()) == 0
    assert res["image"].series.loc[res["image"].series.link == 0, "shadow_loss_db"].max() > 10

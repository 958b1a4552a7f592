"""Diffuse reflection, cross-polarisation and UTD diffraction in the channel engine vs Sionna RT 2.2.

Parity with materials different from those used while tracing is checked by replaying Sionna's own
``FieldCalculator`` on the traced path buffer after changing the scene's radio materials (re-tracing would draw
different diffuse paths, since the sampling probabilities depend on the materials). Small traces only.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import rftwin  # noqa: F401 - sets DRJIT_LIBLLVM_PATH before Sionna is imported
from rftwin.materials.roughness import ROUGHNESS_CLASSES, roughness_class, roughness_class_from_ra, scattering_prior
from rftwin.pathset import DIFFRACTION, DIFFUSE, REFRACTION, SPECULAR, PathSet, concat
from rftwin.physics.channel import path_gain
from rftwin.physics.diffuse import BACKSCATTERING, DIRECTIVE, LAMBERTIAN, backscattering_pattern
from rftwin.physics.engine import MaterialValues, link_path_gain, path_coefficients
from rftwin.runtime import sionna_rt
from rftwin.scene.load import load, room
from rftwin.trace import tracer as T
from rftwin.trace.tracer import SolverSettings, trace

TOL = 1e-4  # max |a - a_sionna| / max |a_sionna| per link
F64 = torch.float64

SCENES = {
    "room": dict(tx=[0.5, 0.3, 2.0], rx=[[2.0, -3.0, 1.5], [-3.0, 2.0, 1.2], [3.8, 3.8, 0.5], [-4.0, -3.5, 2.4]]),
    "simple_wedge": dict(tx=[-10.0, 10.0, 1.0], rx=[[10.0, 5.0, 2.0], [-5.0, -10.0, 2.0], [20.0, 3.0, -1.0],
                                                    [-3.0, -20.0, 4.0]]),
    "simple_street_canyon": dict(tx=[-30.0, 0.0, 10.0], rx=[[15.0, -2.0, 1.5], [-10.0, 6.0, 1.5],
                                                            [35.0, 4.0, 1.5], [0.0, -25.0, 1.5]]),
}
CONFIGS = {
    "diffuse": dict(diffuse_reflection=True),
    "diffraction": dict(diffraction=True, edge_diffraction=True),
    "all": dict(diffuse_reflection=True, diffraction=True, edge_diffraction=True),
}
SAMPLES = {"room": 50_000, "simple_wedge": 20_000, "simple_street_canyon": 30_000}
# material draws replayed per configuration: (seed, per-object scattering patterns, K_x > 0)
VARIANTS = {"diffuse": ((1, False, False), (2, False, True), (3, True, True)),
            "diffraction": ((1, False, False),),
            "all": ((3, True, True),)}


# ----------------------------------------------------------------------------------------------- helpers
class _CaptureBuffers:
    """Keeps Sionna's per-path buffer of every solver call made by :func:`trace` (for field replays)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __enter__(self) -> _CaptureBuffers:
        self.solve_paths, self._b2n = T.solve_paths, T.buffer_to_numpy

        def b2n(buf, *args, **kw):
            self.calls[-1]["buf"] = buf
            return self._b2n(buf, *args, **kw)

        def solve(twin, tx, rx, settings):
            self.calls.append(dict(tx=tx, rx=rx, settings=settings))
            return self.solve_paths(twin, tx, rx, settings)

        T.solve_paths, T.buffer_to_numpy = solve, b2n
        return self

    def __exit__(self, *exc) -> None:
        T.solve_paths, T.buffer_to_numpy = self.solve_paths, self._b2n


def sionna_replay(case: dict) -> torch.Tensor:
    """Sionna's coefficients [N, R, T] for the traced paths under the scene's *current* radio materials."""
    import drjit as dr  # noqa: PLC0415
    import mitsuba as mi  # noqa: PLC0415
    from sionna.rt.path_solvers.field_calculator import FieldCalculator  # noqa: PLC0415

    (call,) = case["calls"]
    buf, ut, ur, st = call["buf"], call["tx"], call["rx"], call["settings"]
    sc = case["twin"].scene

    def pts(x):
        return mi.Point3f(*(np.ascontiguousarray(x[:, i], dtype=np.float32) for i in range(3)))

    # every path of the final buffer is valid; a previous replay may have flagged zero-coefficient paths
    buf.valid = dr.full(dr.mask_t(mi.Float), True, buf.buffer_size)
    FieldCalculator()(wavelength=sc.wavelength, paths=buf, samples_per_src=st.samples_per_src,
                      diffraction=st.diffraction, src_positions=pts(ut), tgt_positions=pts(ur),
                      src_orientations=pts(np.zeros_like(ut)), tgt_orientations=pts(np.zeros_like(ur)),
                      src_antenna_patterns=sc.tx_array.antenna_pattern.patterns,
                      tgt_antenna_patterns=sc.rx_array.antenna_pattern.patterns)
    a = np.stack([np.stack([np.array(x.real) + 1j * np.array(x.imag) for x in row], -1) for row in buf.a], 1)
    # buffer order -> PathSet order (one solver call: every link is a (tx, rx) cell of the grid)
    tx_pos, rx_pos = case["tx"], case["rx"]
    _, ti = np.unique(tx_pos, axis=0, return_inverse=True)
    _, ri = np.unique(rx_pos, axis=0, return_inverse=True)
    grid = np.full((len(ut), len(ur)), -1)
    grid[ti.reshape(-1), ri.reshape(-1)] = np.arange(len(tx_pos))
    link = grid[np.array(buf.source_indices), np.array(buf.target_indices)]
    keep = link >= 0
    return torch.from_numpy(a[keep][np.argsort(link[keep], kind="stable")]).to(torch.complex128)


def link_rel_error(ps: PathSet, a: torch.Tensor, ref: torch.Tensor) -> float:
    """max over links of max_paths |a - ref| / max_paths |ref| (a, ref [N, R, T])."""
    z = torch.zeros(ps.num_links, dtype=F64)
    err = z.scatter_reduce(0, ps.link, (a - ref).abs().amax(dim=(1, 2)), "amax")
    scale = z.scatter_reduce(0, ps.link, ref.abs().amax(dim=(1, 2)), "amax")
    return float((err / scale.clamp_min(1e-300)).max())


def draw_materials(twin, seed: int, patterns: bool, xpd: bool) -> dict[str, np.ndarray]:
    """Random per-object values, equal within a shared Sionna radio material (one value per material)."""
    names = [twin.scene.objects[o.name].radio_material.name for o in twin.objects]
    _, gi = np.unique(names, return_inverse=True)
    G = int(gi.max()) + 1
    rng = np.random.default_rng(seed)
    v = dict(eps_r=rng.uniform(1.5, 9.0, G), sigma=rng.uniform(0.005, 1.0, G), thickness=rng.uniform(0.05, 0.4, G),
             scattering=rng.uniform(0.1, 0.9, G), xpd=rng.uniform(0.05, 0.6, G) if xpd else np.zeros(G),
             pattern=np.full(G, LAMBERTIAN), alpha_r=np.ones(G), alpha_i=np.ones(G), lambda_=np.ones(G))
    if patterns:
        for g in range(G):
            kind = (g + seed) % 3
            v["pattern"][g] = kind
            if kind == DIRECTIVE:
                v["alpha_r"][g] = 3 + g
            elif kind == BACKSCATTERING:
                v["alpha_r"][g], v["alpha_i"][g], v["lambda_"][g] = 4, 2 + g, 0.35
    return {k: x[gi.reshape(-1)] for k, x in v.items()}


def apply_materials(twin, v: dict[str, np.ndarray]) -> MaterialValues:
    """Write ``v`` into the Sionna scene and return the matching engine MaterialValues."""
    import drjit as dr  # noqa: PLC0415

    rt = sionna_rt()
    twin.set_materials(eps_r=v["eps_r"], sigma=v["sigma"], scattering=v["scattering"], xpd=v["xpd"])
    for i, o in enumerate(twin.objects):
        rm = twin.scene.objects[o.name].radio_material
        rm.thickness = float(v["thickness"][i])
        kind = int(v["pattern"][i])
        if kind == LAMBERTIAN:
            rm.scattering_pattern = rt.LambertianPattern()
        elif kind == DIRECTIVE:
            rm.scattering_pattern = rt.DirectivePattern(alpha_r=int(v["alpha_r"][i]))
        else:
            rm.scattering_pattern = rt.BackscatteringPattern(alpha_r=int(v["alpha_r"][i]),
                                                             alpha_i=int(v["alpha_i"][i]),
                                                             lambda_=float(v["lambda_"][i]))
            dr.make_opaque(rm.scattering_pattern.lambda_)
        # opaque values: Dr.Jit reuses the compiled field kernel across material changes
        dr.make_opaque(rm.relative_permittivity, rm.conductivity, rm.thickness, rm.scattering_coefficient,
                       rm.xpd_coefficient)
    t = {k: torch.tensor(v[k], dtype=F64) for k in ("eps_r", "sigma", "thickness", "scattering", "xpd", "alpha_r",
                                                    "alpha_i", "lambda_")}
    return MaterialValues(t["eps_r"], t["sigma"], t["thickness"], t["scattering"], t["xpd"],
                          pattern=torch.tensor(v["pattern"], dtype=torch.long), alpha_r=t["alpha_r"],
                          alpha_i=t["alpha_i"], lambda_=t["lambda_"])


def trace_time_materials(twin) -> MaterialValues:
    o = twin.objects

    def t(k):
        return torch.tensor([getattr(x, k) for x in o], dtype=F64)

    return MaterialValues(t("relative_permittivity"), t("conductivity"), t("thickness_m"), t("scattering_coefficient"),
                          t("xpd_coefficient"))


def _trace_case(scene: str, config: str, lit_region: bool = True) -> dict:
    twin = room() if scene == "room" else load(scene)
    K = len(twin.objects)
    twin.set_materials(scattering=[0.35] * K, xpd=[0.15] * K)  # S > 0 at trace time: diffuse paths exist
    spec = SCENES[scene]
    rx = np.asarray(spec["rx"], dtype=float)
    tx = np.tile(np.asarray(spec["tx"], dtype=float), (len(rx), 1))
    settings = SolverSettings(max_depth=3, samples_per_src=SAMPLES[scene], diffraction_lit_region=lit_region,
                              **CONFIGS[config])
    with _CaptureBuffers() as cap:
        ps = trace(twin, tx, rx, settings, cache_dir=False, progress=False)
    o = twin.objects
    v0 = dict(eps_r=np.array([x.relative_permittivity for x in o]), sigma=np.array([x.conductivity for x in o]),
              thickness=np.array([x.thickness_m for x in o]),
              scattering=np.array([x.scattering_coefficient for x in o]),
              xpd=np.array([x.xpd_coefficient for x in o]), pattern=np.full(K, LAMBERTIAN), alpha_r=np.ones(K),
              alpha_i=np.ones(K), lambda_=np.ones(K))
    return dict(twin=twin, ps=ps, tx=tx, rx=rx, calls=cap.calls, freq=float(twin.scene.frequency[0]), v0=v0)


_CASES: dict[tuple, dict] = {}


def case_for(scene: str, config: str, lit_region: bool = True) -> dict:
    key = (scene, config, lit_region)
    if key not in _CASES:
        _CASES[key] = _trace_case(scene, config, lit_region)
    return _CASES[key]


@pytest.fixture(autouse=True, scope="module")
def _drop_cases():
    yield
    _CASES.clear()


# ------------------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize("scene", list(SCENES))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_parity_with_sionna(scene: str, config: str) -> None:
    c = case_for(scene, config)
    ps, twin = c["ps"], c["twin"]
    present = set(ps.meta["mechanisms_present"])
    if config in ("diffuse", "all"):
        assert "diffuse_reflection" in present, present
    if config in ("diffraction", "all"):
        assert "diffraction" in present, present
    assert set(ps.meta["mechanisms"]) >= {k for k, v in CONFIGS[config].items() if v}
    # trace-time materials: engine vs Sionna's own coefficients stored at trace time
    a0 = path_coefficients(ps, apply_materials(twin, c["v0"]), c["freq"])[0, 0]
    assert link_rel_error(ps, a0, ps.a_ref.to(torch.complex128)) < TOL
    assert torch.equal(sionna_replay(c), ps.a_ref.to(torch.complex128))  # replay reproduces the trace
    # new materials: plain lambertian (K_x = 0), XPD, XPD + per-object scattering patterns
    for seed, patterns, xpd in VARIANTS[config]:
        mat = apply_materials(twin, draw_materials(twin, seed, patterns, xpd))
        ref = sionna_replay(c)
        a = path_coefficients(ps, mat, c["freq"])[0, 0]
        err = link_rel_error(ps, a, ref)
        assert err < TOL, (scene, config, seed, err)
        if seed == VARIANTS[config][-1][0]:  # each mechanism's paths on their own (links' scale from all paths)
            z = torch.zeros(ps.num_links, dtype=F64)
            scale = z.scatter_reduce(0, ps.link, ref.abs().amax(dim=(1, 2)), "amax")
            for code in (SPECULAR, DIFFUSE, REFRACTION, DIFFRACTION):
                sel = (ps.itype == code).any(1)
                if sel.any():
                    d = (a[sel] - ref[sel]).abs().amax(dim=(1, 2)) / scale[ps.link[sel]]
                    assert float(d.max()) < TOL, (scene, config, code, float(d.max()))


def test_diffraction_shadow_region_only() -> None:
    """diffraction_lit_region=False (trace option) on the wedge, with edge diffraction."""
    c = case_for("simple_wedge", "diffraction", lit_region=False)
    ps = c["ps"]
    assert "diffraction" in ps.meta["mechanisms_present"]
    assert ps.meta["settings"]["diffraction_lit_region"] is False
    mat = apply_materials(c["twin"], draw_materials(c["twin"], 5, False, False))
    assert link_rel_error(ps, path_coefficients(ps, mat, c["freq"])[0, 0], sionna_replay(c)) < TOL


def test_los_specular_refraction_unchanged() -> None:
    """The original LoS / specular / refraction parity on the room with 8 links."""
    twin = room()
    rng = np.random.default_rng(0)
    tx = np.tile([[0.5, 0.3, 2.0]], (8, 1))
    rx = np.c_[rng.uniform(-4, 4, (8, 2)), np.full(8, 1.5)]
    ps = trace(twin, tx, rx, SolverSettings(max_depth=3, samples_per_src=50_000), cache_dir=False, progress=False)
    assert set(ps.meta["mechanisms_present"]) <= {"los", "specular_reflection", "refraction"}
    a = path_coefficients(ps, trace_time_materials(twin), float(twin.scene.frequency[0]))[0, 0]
    assert link_rel_error(ps, a, ps.a_ref.to(torch.complex128)) < 1e-5
    assert torch.allclose(ps.tube_length_m, ps.length_m)


# ---------------------------------------------------------------------------------------------- gradients
def _grad_problem():
    c = case_for("room", "all")
    ps, twin = c["ps"], c["twin"]
    K = len(twin.objects)
    rng = np.random.default_rng(11)
    p0 = {"eps_r": rng.uniform(2.0, 6.0, K), "sigma": rng.uniform(0.01, 0.3, K), "scattering": rng.uniform(0.2, 0.8, K),
          "xpd": rng.uniform(0.1, 0.5, K), "alpha_r": rng.uniform(1.5, 5.0, K), "lambda_": rng.uniform(0.2, 0.8, K)}
    p0 = {k: torch.tensor(v, dtype=F64) for k, v in p0.items()}
    kinds = torch.tensor([LAMBERTIAN, DIRECTIVE, BACKSCATTERING] * 3, dtype=torch.long)[:K]

    def loss(p: dict[str, torch.Tensor], chunk: int | None = None) -> torch.Tensor:
        mat = MaterialValues(p["eps_r"], p["sigma"], torch.full((K,), 0.12, dtype=F64), p["scattering"], p["xpd"],
                             pattern=kinds, alpha_r=p["alpha_r"], alpha_i=torch.full((K,), 3.0, dtype=F64),
                             lambda_=p["lambda_"])
        a = path_coefficients(ps, mat, c["freq"], chunk_size=chunk)
        return torch.log(path_gain(a, ps.link, ps.num_links)).sum()

    return loss, p0


def test_gradients_match_finite_differences() -> None:
    loss, p0 = _grad_problem()
    p = {k: v.clone().requires_grad_(True) for k, v in p0.items()}
    loss(p).backward()
    for name in p0:
        for k in range(len(p0[name])):
            h = 1e-6 * max(1.0, abs(float(p0[name][k])))
            pp = {n: v.clone() for n, v in p0.items()}
            pm = {n: v.clone() for n, v in p0.items()}
            pp[name][k] += h
            pm[name][k] -= h
            fd = float(loss(pp) - loss(pm)) / (2 * h)
            ad = float(p[name].grad[k])
            assert abs(fd - ad) <= 1e-5 * max(abs(fd), abs(ad)) + 1e-9, (name, k, fd, ad)


def test_chunked_engine_matches() -> None:
    loss, p0 = _grad_problem()
    p1 = {k: v.clone().requires_grad_(True) for k, v in p0.items()}
    l1 = loss(p1)
    l1.backward()
    p2 = {k: v.clone().requires_grad_(True) for k, v in p0.items()}
    l2 = loss(p2, chunk=333)
    l2.backward()
    assert torch.allclose(l1, l2, rtol=1e-12)
    for k in p0:
        assert torch.allclose(p1[k].grad, p2[k].grad, rtol=1e-8, atol=1e-12), k
    c = case_for("room", "all")
    ps = c["ps"]
    mat = trace_time_materials(c["twin"])
    mat.eps_r.requires_grad_(True)
    g_full = path_gain(path_coefficients(ps, mat, c["freq"]), ps.link, ps.num_links)
    (gf,) = torch.autograd.grad(g_full.sum(), mat.eps_r)
    g_chunk = link_path_gain(ps, mat, c["freq"], chunk_size=500)
    (gc,) = torch.autograd.grad(g_chunk.sum(), mat.eps_r)
    assert torch.allclose(g_full, g_chunk, rtol=1e-12) and torch.allclose(gf, gc, rtol=1e-10)


def test_backscattering_pattern_is_normalised() -> None:
    """f_s integrates to 1 over the reflection hemisphere (also for non-integer lobe exponents)."""
    nt, nph = 200, 200
    th = (torch.arange(nt, dtype=F64) + 0.5) * (math.pi / 2) / nt
    ph = (torch.arange(nph, dtype=F64) + 0.5) * 2 * math.pi / nph
    T_, P_ = torch.meshgrid(th, ph, indexing="ij")
    ko = torch.stack([torch.sin(T_) * torch.cos(P_), torch.sin(T_) * torch.sin(P_), torch.cos(T_)], -1)
    dw = torch.sin(T_) * (math.pi / 2 / nt) * (2 * math.pi / nph)
    for theta_i in (0.2, 0.9, 1.3):
        ki = torch.tensor([math.sin(theta_i), 0.0, -math.cos(theta_i)], dtype=F64)
        ks = ki * torch.tensor([1.0, 1.0, -1.0], dtype=F64)
        for ar, ai, lam in ((3.0, 5.0, 0.4), (2.5, 1.7, 0.8)):
            f = backscattering_pattern(torch.full_like(T_, math.cos(theta_i)), ko @ ks, -(ko @ ki),
                                       torch.tensor(ar, dtype=F64), torch.tensor(ai, dtype=F64),
                                       torch.tensor(lam, dtype=F64))
            assert abs(float((f * dw).sum()) - 1.0) < 2e-3


# ----------------------------------------------------------------------------------------------- calibration
def test_calibrate_scattering_coefficients() -> None:
    """Recover S of two objects from path gains simulated by Sionna (diffuse reflection on)."""
    c = case_for("room", "diffuse")
    ps, twin = c["ps"], c["twin"]
    names = twin.names
    K = len(names)
    base = dict(eps_r=np.array([o.relative_permittivity for o in twin.objects]),
                sigma=np.array([o.conductivity for o in twin.objects]),
                thickness=np.array([o.thickness_m for o in twin.objects]), scattering=np.full(K, 0.35),
                xpd=np.full(K, 0.15), pattern=np.full(K, LAMBERTIAN), alpha_r=np.ones(K), alpha_i=np.ones(K),
                lambda_=np.ones(K))
    idx = [names.index("floor"), names.index("wall_north")]
    s_true = np.array([0.7, 0.1])
    truth = dict(base)
    truth["scattering"] = base["scattering"].copy()
    truth["scattering"][idx] = s_true
    apply_materials(twin, truth)
    a_meas = sionna_replay(c)
    meas_db = 10 * torch.log10(torch.zeros(ps.num_links, dtype=F64).index_add(0, ps.link,
                                                                                (a_meas.abs() ** 2).mean(dim=(1, 2))))
    mat0 = apply_materials(twin, base)  # engine starts from the (wrong) trace-time values
    w = torch.full((2,), math.log(0.35 / 0.65), dtype=F64, requires_grad=True)  # S = sigmoid(w)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=60, line_search_fn="strong_wolfe", tolerance_grad=1e-14,
                            tolerance_change=1e-18)
    sel = torch.tensor(idx)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        s = mat0.scattering.index_put((sel,), torch.sigmoid(w))
        mat = MaterialValues(mat0.eps_r, mat0.sigma, mat0.thickness, s, mat0.xpd)
        g = path_gain(path_coefficients(ps, mat, c["freq"]), ps.link, ps.num_links)[0, 0]
        loss = 1e4 * ((10 * torch.log10(g) - meas_db) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    s_hat = torch.sigmoid(w).detach().numpy()
    assert np.abs(s_hat - s_true).max() < 0.01, s_hat


# ---------------------------------------------------------------------------------------- PathSet records
def test_pathset_records_roundtrip(tmp_path) -> None:
    c = case_for("room", "all")
    ps = c["ps"]
    assert ps.meta["samples_per_src"] == SAMPLES["room"]
    assert ps.w_in is not None and ps.utd_rot is not None and ps.solid_angle is not None
    dif = ps.itype == DIFFUSE
    assert bool((ps.solid_angle[dif] > 0).all())
    assert bool((ps.tube_length_m <= ps.length_m + 1e-9).all())
    assert bool((ps.tube_length_m[dif.any(1)] < ps.length_m[dif.any(1)]).all())
    # s + s' = path length when the diffraction is the last interaction (otherwise Sionna 2.2's s also counts
    # a segment to the stale vertex slot of the first unused depth, which is replicated for parity)
    nint = ps.mask.sum(1)
    last_is_d = (ps.itype[torch.arange(ps.num_paths), (nint - 1).clamp_min(0)] == DIFFRACTION) & (nint > 0)
    assert bool(last_is_d.any())
    assert torch.allclose((ps.s_m + ps.s_prime_m)[last_is_d], ps.length_m[last_is_d], rtol=1e-6)
    ps.save(tmp_path / "p.npz")
    q = PathSet.load(tmp_path / "p.npz")
    for n, t in ps.tensor_fields().items():
        assert torch.equal(t, getattr(q, n)), n
    mat = trace_time_materials(c["twin"])
    a = path_coefficients(ps, mat, c["freq"])
    sub = ps.select_links([2, 0])
    assert sub.num_links == 2 and sub.utd_rot.shape[0] == sub.num_paths
    a_sub = path_coefficients(sub, mat, c["freq"])
    ref = torch.cat([a[..., ps.link == 2, :, :], a[..., ps.link == 0, :, :]], 2)
    assert torch.allclose(a_sub, ref)
    pad = ps.padded()
    assert pad["w_in"].shape[:2] == pad["path_mask"].shape and pad["utd_wide"].dtype == torch.bool
    # concat with a PathSet lacking the optional records (e.g. an old cache entry): neutral defaults
    old = ps.select_links([1])
    old = PathSet(**{n: getattr(old, n) for n in ("tx_pos", "rx_pos", "link", "length_m", "k_tx", "k_rx", "f_tx",
                                                  "f_rx", "a_ref", "itype", "obj", "prim", "point", "normal", "cos_i",
                                                  "rot_in", "rot_out", "prob")}, meta=dict(old.meta))
    old = old.select_paths(~((old.itype == DIFFUSE) | (old.itype == DIFFRACTION)).any(1))
    both = concat([ps, old])
    assert both.num_links == ps.num_links + 1 and both.w_in.shape[0] == both.num_paths
    a_both = path_coefficients(both, mat, c["freq"])
    assert torch.allclose(a_both[..., :ps.num_paths, :, :], a)
    f32 = ps.to(dtype=torch.float32)
    assert f32.w_in.dtype == torch.float32 and f32.utd_wide.dtype == torch.bool


def test_path_budget_overflow_warns() -> None:
    twin = room()
    twin.set_materials(scattering=[0.3] * len(twin.objects))
    rx = np.asarray(SCENES["room"]["rx"][:3])
    tx = np.tile([[0.5, 0.3, 2.0]], (3, 1))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ps = trace(twin, tx, rx, SolverSettings(max_depth=2, samples_per_src=20_000, max_num_paths_per_src=300,
                                                diffuse_reflection=True), cache_dir=False, progress=False)
    assert ps.meta["overflowed_sources"] == 1
    assert any("max_num_paths_per_src" in str(w.message) for w in rec)


def test_old_pathset_with_diffuse_is_rejected() -> None:
    c = case_for("room", "diffuse")
    ps = c["ps"]
    old = PathSet(**{n: getattr(ps, n) for n in ("tx_pos", "rx_pos", "link", "length_m", "k_tx", "k_rx", "f_tx",
                                                 "f_rx", "a_ref", "itype", "obj", "prim", "point", "normal", "cos_i",
                                                 "rot_in", "rot_out", "prob")})
    with pytest.raises(ValueError, match="re-trace"):
        path_coefficients(old, trace_time_materials(c["twin"]), c["freq"])


# -------------------------------------------------------------------------------------------- roughness prior
def test_roughness_prior_table() -> None:
    assert [c.level for c in ROUGHNESS_CLASSES] == [1, 2, 3, 4, 5]
    mean, (lo, hi) = scattering_prior("brick")
    assert (mean, lo, hi) == pytest.approx((0.4, 0.3, 0.5))
    assert scattering_prior("Wall Plasterboard")[1] == (0.07, 0.10)
    assert roughness_class(4).example == "ceiling plasterboard"
    assert roughness_class_from_ra(12.0).name == "rough"
    assert scattering_prior(2.5)[1] == (0.10, 0.20)
    with pytest.raises(KeyError):
        roughness_class("velvet")

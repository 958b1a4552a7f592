"""Antenna arrays on cached paths: per-element channels of the engine vs Sionna RT's ``paths.a`` with the same
arrays, codebooks and beam gains."""
import math

import numpy as np
import pytest
import torch

from rftwin.physics import MaterialValues, path_coefficients
from rftwin.physics.arrays import ArraySpec, beam_gains, element_channels
from rftwin.physics.codebook import dft_weights, expand_patterns, steering_weights
from rftwin.runtime import sionna_rt
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace
from rftwin.trace.arrays import array_geometry, planar_array, with_arrays

SETTINGS = SolverSettings(max_depth=3, samples_per_src=100_000)
TX = np.array([[-1.0, 0.5, 1.0]])
RX = np.array([[1.0, -0.3, 1.2], [0.7, 1.5, 0.9], [-1.5, 1.5, 0.5]])
FREQ = 5.8e9
TX_ARRAY = ArraySpec(num_rows=2, num_cols=3, pattern="tr38901", polarization="VH", orientation=(0.3, -0.2, 0.1))
RX_ARRAY = ArraySpec(num_rows=1, num_cols=4, vertical_spacing=0.7, horizontal_spacing=0.6, pattern="dipole",
                     polarization="V", orientation=(math.pi, 0.0, 0.0))


def _values(twin):
    e = torch.tensor([o.relative_permittivity for o in twin.objects], dtype=torch.float64)
    s = torch.tensor([o.conductivity for o in twin.objects], dtype=torch.float64)
    d = torch.tensor([o.thickness_m for o in twin.objects], dtype=torch.float64)
    return MaterialValues(e[None, None], s[None, None], d[None, None])


def _sionna_paths(twin, synthetic: bool, tx=TX, rx=RX, freq=FREQ):
    """Sionna's own solve of the same links with the arrays on the devices: a [rx, R, P, T'] and path keys."""
    rt = sionna_rt()
    sc = twin.scene
    for n in list(sc.transmitters) + list(sc.receivers):
        sc.remove(n)
    sc.tx_array, sc.rx_array = planar_array(TX_ARRAY), planar_array(RX_ARRAY)
    sc.add(rt.Transmitter(name="tx0", position=[float(v) for v in tx[0]], orientation=list(TX_ARRAY.orientation)))
    for i, p in enumerate(rx):
        sc.add(rt.Receiver(name=f"rx{i}", position=[float(v) for v in p], orientation=list(RX_ARRAY.orientation)))
    s = SETTINGS
    paths = rt.PathSolver()(sc, max_depth=s.max_depth, samples_per_src=s.samples_per_src,
                            max_num_paths_per_src=s.max_num_paths_per_src, los=s.los, refraction=s.refraction,
                            specular_reflection=s.specular_reflection, seed=s.seed, synthetic_array=synthetic)
    re, im = paths.a
    a = np.array(re) + 1j * np.array(im)  # [rx, R', tx, T', P]
    inter, objs, prims = (np.array(x) for x in (paths.interactions, paths.objects, paths.primitives))
    if not synthetic:  # each element pair has its own delay: put the delay phase into a
        a = a * np.exp(-2j * np.pi * freq * np.array(paths.tau))
    for n in list(sc.transmitters) + list(sc.receivers):
        sc.remove(n)
    return a, inter, objs, prims


def _keys_sionna(twin, inter, objs, prims, r, idx=()):
    """Per path slot of receiver r: (link, itypes, object indices, primitives); None for empty slots."""
    id2i = twin.id_to_index()
    out = []
    sel = (slice(None), r) + idx + (0,)
    it, ob, pr = inter[sel], objs[sel], prims[sel]  # [D, P]
    for p in range(it.shape[-1]):
        t = tuple(int(x) for x in it[:, p])
        o = tuple(id2i.get(int(ob[d, p]), -1) if t[d] else -1 for d in range(len(t)))
        q = tuple(int(pr[d, p]) if t[d] else -1 for d in range(len(t)))
        out.append((r, t, o, q))
    return out


def _keys(ps):
    return [(int(ps.link[i]), tuple(ps.itype[i].tolist()), tuple(ps.obj[i].tolist()), tuple(ps.prim[i].tolist()))
            for i in range(ps.num_paths)]


ROOM_TX = np.array([[0.0, 0.0, 1.5]])
ROOM_RX = np.array([[3.0, 1.0, 1.0], [-4.0, -1.0, 2.0]])


@pytest.mark.parametrize("scene, tx, rx, freq", [("floor_wall", TX, RX, FREQ), ("room", ROOM_TX, ROOM_RX, 3.5e9)])
def test_element_channels_match_sionna_synthetic_arrays(scene, tx, rx, freq):
    twin = load(scene, freq)
    ps = trace(twin, np.repeat(tx, len(rx), 0), rx, SETTINGS, cache_dir=False)
    psa = with_arrays(ps, TX_ARRAY, RX_ARRAY, freq)
    assert psa.f_tx.shape[1] == 2 and psa.f_rx.shape[1] == 1
    a = path_coefficients(psa, _values(twin), freq)  # [1, 1, N, R, T]
    h = element_channels(psa, a, freq)[0, 0]  # [N, 1 x 4, 2 x 6]
    assert h.shape[1:] == (RX_ARRAY.num_ports, TX_ARRAY.num_ports)
    a_s, inter, objs, prims = _sionna_paths(twin, True, tx, rx, freq)
    assert a_s.shape[1] == RX_ARRAY.num_ports and a_s.shape[3] == TX_ARRAY.num_ports
    ours = {k: i for i, k in enumerate(_keys(ps))}
    matched = 0
    for r in range(len(rx)):
        keys = _keys_sionna(twin, inter, objs, prims, r)
        rows = [(p, ours[k]) for p, k in enumerate(keys) if k in ours and np.abs(a_s[r, :, 0, :, p]).max() > 0]
        assert len(rows) >= 0.9 * int((ps.link == r).sum())
        ref = np.stack([a_s[r, :, 0, :, p] for p, _ in rows])  # [n, R', T']
        got = h[[i for _, i in rows]].numpy()
        rel = np.abs(got - ref) / np.abs(ref).max()
        assert np.quantile(rel, 0.99) <= 1e-4, (r, np.quantile(rel, 0.99))
        assert rel.max() <= 1e-3, (r, rel.max())
        matched += len(rows)
    assert matched >= 0.9 * ps.num_paths


def test_synthetic_array_close_to_per_element_tracing():
    """Sionna tracing every element separately: the plane-wave phases of the synthetic array hold to first
    order in (aperture / distance); compare per-element LoS coefficients (the LoS path has one slot per element
    pair)."""
    twin = load("floor_wall", FREQ)
    ps = trace(twin, np.repeat(TX, len(RX), 0), RX, SETTINGS, cache_dir=False)
    psa = with_arrays(ps, TX_ARRAY, RX_ARRAY, FREQ)
    h = element_channels(psa, path_coefficients(psa, _values(twin), FREQ), FREQ)[0, 0].numpy()
    h = h * np.exp(-2j * np.pi * FREQ * psa.tau_s.numpy())[:, None, None]
    a_s, inter, objs, prims = _sionna_paths(twin, synthetic=False)
    los = (ps.itype == 0).all(1)
    checked = 0
    for r in range(len(RX)):
        hit = torch.nonzero(los & (ps.link == r)).reshape(-1)
        if not len(hit):
            continue
        i = int(hit[0])
        ref = np.zeros(h.shape[1:], dtype=complex)
        for rp in range(ref.shape[0]):
            for tp in range(ref.shape[1]):
                slot = np.nonzero((inter[:, r, rp, 0, tp, :] == 0).all(0) & (np.abs(a_s[r, rp, 0, tp]) > 0))[0]
                assert len(slot) == 1
                ref[rp, tp] = a_s[r, rp, 0, tp, slot[0]]
        rel = np.abs(h[i] - ref) / np.abs(ref).max()
        assert rel.max() < 0.15, (r, rel.max())  # aperture ~ 2 lambda at ~2 m: phase-front curvature
        assert np.abs(np.abs(h[i]) - np.abs(ref)).max() / np.abs(ref).max() < 0.05
        checked += 1
    assert checked >= 1


def test_array_geometry_is_sionnas_planar_array():
    spec = ArraySpec(num_rows=2, num_cols=2, vertical_spacing=0.5, horizontal_spacing=0.5)
    geo = array_geometry(spec, 60e9)
    lam = 299_792_458.0 / 60e9
    np.testing.assert_allclose(np.sort(geo["positions_m"][:, 1]), np.array([-0.25, -0.25, 0.25, 0.25]) * lam,
                               atol=1e-9)
    assert np.allclose(geo["positions_m"][:, 0], 0.0)


def test_beam_gains_equal_weighted_element_channels_and_peak_at_array_gain():
    twin = load("floor_wall", FREQ)
    ps = trace(twin, np.repeat(TX, len(RX), 0), RX, SETTINGS, cache_dir=False)
    spec = ArraySpec(num_rows=2, num_cols=4)
    psa = with_arrays(ps, spec, spec, FREQ)
    a = path_coefficients(psa, _values(twin), FREQ)
    geo = array_geometry(spec, FREQ)
    w = dft_weights(torch.tensor(geo["normalized"]), 2, 4, 0.5, 0.5, oversampling=2, side="tx")
    w_rx = dft_weights(torch.tensor(geo["normalized"]), 2, 4, 0.5, 0.5, oversampling=1, side="rx")
    g = beam_gains(psa, a[0, 0], FREQ, w, w_rx, chunk_size=7)  # [L, Br, Bt]
    assert g.shape == (len(RX), 8, 32)
    # brute force through the per-element channels
    h = element_channels(psa, a, FREQ)[0, 0]  # [N, 8, 8]
    eff = torch.einsum("br,nrt,ct->nbc", w_rx.conj(), h, w)
    ref = torch.zeros_like(g).index_add_(0, psa.link, eff.abs() ** 2)
    torch.testing.assert_close(g, ref, rtol=1e-10, atol=0.0)
    # a steering beam pair along the LoS collects M_t M_r times the LoS path power
    los = torch.nonzero((psa.itype == 0).all(1)).reshape(-1)
    pos = torch.tensor(geo["positions_m"])
    i = int(los[0])
    wt = steering_weights(pos, psa.k_tx[i:i + 1], FREQ, "tx")
    wr = steering_weights(pos, psa.k_rx[i:i + 1], FREQ, "rx")
    one = psa.select_paths(los[:1])
    g_los = beam_gains(one, a[0, 0, los[:1]], FREQ, wt, wr)[int(psa.link[i])]
    np.testing.assert_allclose(float(g_los), 64 * float(a[0, 0, i].abs().pow(2).sum()), rtol=1e-9)
    # dual polarisation: one beam per pattern and spatial weight
    assert expand_patterns(w, 2).shape == (64, 16)


@pytest.mark.parametrize("kw, match", [
    (dict(num_rows=0), "num_rows"), (dict(num_cols=2.5), "num_cols"), (dict(vertical_spacing=-1), "vertical"),
    (dict(pattern="horn"), "pattern 'horn'"), (dict(polarization="X"), "polarization 'X'"),
    (dict(orientation=(0, 0)), "orientation")])
def test_array_spec_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        ArraySpec(**kw)


def test_arrays_are_kept_through_pathset_files(tmp_path):
    twin = load("floor_wall", FREQ)
    ps = trace(twin, np.repeat(TX, len(RX), 0), RX, SETTINGS, cache_dir=False)
    psa = with_arrays(ps, TX_ARRAY, RX_ARRAY, FREQ)
    psa.save(tmp_path / "ps.npz")
    back = type(psa).load(tmp_path / "ps.npz")
    assert back.meta["tx_array"]["num_rows"] == 2 and back.meta["rx_array"]["pattern"] == "dipole"
    a = path_coefficients(psa, _values(twin), FREQ)
    torch.testing.assert_close(element_channels(back, path_coefficients(back, _values(twin), FREQ), FREQ),
                               element_channels(psa, a, FREQ))
    assert torch.isnan(back.a_ref).all()  # Sionna's trace-time coefficients belong to the traced antennas

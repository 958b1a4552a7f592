"""Channel features: hand-computed values on small synthetic channels, gradients, and a real Sionna trace."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import rftwin  # noqa: F401 - sets up LLVM before Sionna
from rftwin.physics import features as F
from rftwin.physics.channel import path_power
from rftwin.physics.engine import path_coefficients
from rftwin.predict.predict import channel_features
from rftwin.scene import room
from rftwin.trace import SolverSettings, trace
from rftwin.twin_io import material_values

T64 = torch.float64


def t(x, dtype=T64):
    return torch.tensor(x, dtype=dtype)


# ----------------------------------------------------------------------------------- synthetic, by hand
def test_gain_and_delay_moments_by_hand():
    # link 0: powers 1 and 0.25 at 0 and 10 ns; link 1: no paths; link 2: one path
    p, tau, link = t([1.0, 0.25, 0.5]), t([0.0, 10e-9, 30e-9]), torch.tensor([0, 0, 2])
    g = F.path_gain_db(p, link, 3)
    assert g[0].item() == pytest.approx(10 * math.log10(1.25))
    assert g[1].item() == pytest.approx(-300.0)
    mean, rms = F.delay_moments(p, tau, link, 3)
    assert mean[0].item() == pytest.approx(2e-9, rel=1e-12)  # 0.25 * 10 / 1.25
    assert rms[0].item() == pytest.approx(4e-9, rel=1e-9)  # sqrt((1 * 4 + 0.25 * 64) / 1.25) ns
    assert math.isnan(mean[1].item()) and math.isnan(rms[1].item())
    assert mean[2].item() == pytest.approx(30e-9) and rms[2].item() == pytest.approx(0.0, abs=1e-15)
    # absolute delays of microseconds keep nanosecond spreads in float32 (two-pass)
    _, rms32 = F.delay_moments(p[:2].float(), (tau[:2] + 3e-6).float(), link[:2], 1)
    assert rms32[0].item() == pytest.approx(4e-9, rel=2e-2)


def test_k_factor_by_hand():
    p = t([1.0, 0.25, 0.25, 0.5, 0.2, 0.3, 2.0])
    link = torch.tensor([0, 0, 0, 1, 1, 1, 3])
    los = torch.tensor([True, False, False, False, False, False, False])
    k = F.k_factor_db(p, link, 4, los)
    assert k[0].item() == pytest.approx(10 * math.log10(1.0 / 0.5))  # LoS vs the rest
    assert k[1].item() == pytest.approx(0.0, abs=1e-12)  # NLoS: strongest (0.5) vs 0.2 + 0.3
    assert math.isnan(k[2].item())  # no paths
    assert k[3].item() == math.inf  # a single path
    # without a LoS flag the strongest path is the reference everywhere
    assert F.k_factor_db(p, link, 4)[0].item() == pytest.approx(10 * math.log10(1.0 / 0.5))
    # a weak LoS path still is the reference when flagged
    k2 = F.k_factor_db(t([0.1, 1.0]), torch.tensor([0, 0]), 1, torch.tensor([True, False]))
    assert k2[0].item() == pytest.approx(-10.0)


def test_angular_spread_by_hand():
    link = torch.tensor([0, 0])
    # two equal paths at +-10 deg: circular std sqrt(-2 ln cos 10deg); 3GPP: 10 deg
    for az in ([-10.0, 10.0], [170.0, -170.0]):  # the wrap at 180 deg does not matter
        circ = F.angular_spread_deg(t([1.0, 1.0]), t(az), link, 1, "circular")
        assert circ[0].item() == pytest.approx(math.degrees(math.sqrt(-2 * math.log(math.cos(math.radians(10))))))
        g = F.angular_spread_deg(t([1.0, 1.0]), t(az), link, 1, "3gpp")
        assert g[0].item() == pytest.approx(10.0, rel=1e-9)
    # powers 1 and 3 at 0 and 90 deg: mean 67.5, var (67.5^2 + 3 * 22.5^2) / 4 -> 38.97 deg (the other cut: 116.9)
    g = F.angular_spread_deg(t([1.0, 3.0]), t([0.0, 90.0]), link, 1, "3gpp")
    assert g[0].item() == pytest.approx(math.sqrt((67.5 ** 2 + 3 * 22.5 ** 2) / 4), rel=1e-9)
    # a single path, and a link without paths
    one = F.angular_spread_deg(t([1.0]), t([45.0]), torch.tensor([1]), 2, "3gpp")
    assert one[1].item() == pytest.approx(0.0, abs=1e-6) and math.isnan(one[0].item())
    with pytest.raises(ValueError, match="circular"):
        F.angular_spread_deg(t([1.0]), t([0.0]), torch.tensor([0]), 1, "linear")


def test_3gpp_spread_matches_brute_force_over_rotations():
    gen = torch.Generator().manual_seed(3)
    n, L = 40, 4
    p = torch.rand(2, n, generator=gen, dtype=T64)  # leading batch dimension
    az = torch.rand(n, generator=gen, dtype=T64) * 360 - 180
    link = torch.randint(0, L, (n,), generator=gen)
    got = F.angular_spread_deg(p, az, link, L, "3gpp")
    for b in range(2):
        for lk in range(L):
            m = link == lk
            best = math.inf
            for shift in np.arange(0, 360, 0.1):
                a = np.mod(az[m].numpy() + shift + 180, 360) - 180
                w = p[b, m].numpy()
                mu = (w * a).sum() / w.sum()
                best = min(best, math.sqrt((w * (a - mu) ** 2).sum() / w.sum()))
            assert got[b, lk].item() == pytest.approx(best, abs=0.05)


def test_features_are_differentiable():
    p = t([1.0, 0.3, 0.2, 0.7, 0.4]).requires_grad_()
    tau = t([10e-9, 15e-9, 31e-9, 12e-9, 20e-9])
    az = t([10.0, 80.0, -120.0, 30.0, 50.0])
    link = torch.tensor([0, 0, 0, 1, 1])
    los = torch.tensor([True, False, False, False, False])

    def fn(x):
        mean, rms = F.delay_moments(x, tau, link, 2)
        return torch.cat([mean * 1e9, rms * 1e9, F.k_factor_db(x, link, 2, los),
                          F.angular_spread_deg(x, az, link, 2, "circular"),
                          F.angular_spread_deg(x, az, link, 2, "3gpp")])

    assert torch.autograd.gradcheck(fn, (p,), eps=1e-6, atol=1e-5)


def test_direction_angles_and_inverse():
    k = t([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [-1.0, 0.0, -1.0]])
    az, el = F.direction_angles(k)
    assert az[0].item() == pytest.approx(90.0) and el[0].item() == pytest.approx(0.0)
    assert el[1].item() == pytest.approx(90.0)
    assert az[2].item() == pytest.approx(180.0) and el[2].item() == pytest.approx(-45.0)
    u = F.unit_vectors(az, el)
    assert torch.allclose(u, k / k.norm(dim=-1, keepdim=True), atol=1e-12)


def test_cfr_and_band_limited_delays_on_grid_paths():
    # two paths exactly on the lag grid (1/W = 5 ns): the IDFT has exactly two non-zero taps
    W, K, fc = 200e6, 64, 3.5e9
    amp = torch.tensor([1.0 * np.exp(0.3j), 0.5 * np.exp(-1.1j)], dtype=torch.complex128)
    tau, link = t([0.0, 10e-9]), torch.tensor([0, 0])
    H = F.cfr_from_paths(amp, tau, link, 1, fc, W, K)  # [1, K]
    fk = (np.arange(K) - K // 2) * W / K
    want = (amp.numpy()[:, None] * np.exp(-2j * np.pi * (fc + fk)[None, :] * tau.numpy()[:, None])).sum(0)
    np.testing.assert_allclose(H[0].numpy(), want, rtol=1e-12, atol=1e-12)
    h = F.cir_from_cfr(H[0])
    lags = F.cir_lags(K)
    nz = torch.nonzero(h.abs() > 1e-9).reshape(-1)
    assert lags[nz].tolist() == [0, 2]
    assert h[nz].abs().numpy() == pytest.approx([1.0, 0.5])
    p, mean, rms = F.cfr_delay_features(H[0], W)
    assert p.item() == pytest.approx(1.25)  # = mean |H|^2 = sum |a|^2 for distinct lags
    assert mean.item() == pytest.approx(2e-9) and rms.item() == pytest.approx(4e-9)
    # same as from the paths
    m2, r2 = F.delay_moments(amp.abs() ** 2, tau, link, 1)
    assert mean.item() == pytest.approx(m2.item()) and rms.item() == pytest.approx(r2.item())
    # per-link carriers and delay normalisation
    H2 = F.cfr_from_paths(amp, tau + 40e-9, torch.tensor([0, 1]), 2, t([3.5e9, 5.8e9]), W, K, normalize_delays=True)
    assert torch.allclose(H2[1], amp[1] * torch.ones(K, dtype=torch.complex128))
    # the window keeps the gain unbiased
    pw, _, _ = F.cfr_delay_features(H[0], W, window="hann")
    assert pw.item() == pytest.approx(1.25, rel=0.05)


# --------------------------------------------------------------------------------------- real Sionna trace
@pytest.fixture(scope="module")
def traced():
    twin = room()
    tx = np.array([[0.0, 0.0, 2.5], [0.0, 0.0, 2.5], [-4.0, 4.0, 2.0]])
    rx = np.array([[2.0, -1.0, 1.5], [-2.0, 1.0, 1.2], [3.0, -0.5, 1.0]])
    ps = trace(twin, tx, rx, SolverSettings(max_depth=3, samples_per_src=20_000), cache_dir=False, progress=False)
    a = path_coefficients(ps, material_values(twin, None, np.array([3.5e9])), 3.5e9)[0]  # [1, N, R, T]
    return ps, a, tx, rx


def test_features_of_traced_paths(traced):
    ps, a, tx, rx = traced
    f = channel_features(ps, a)
    assert set(f) >= {"path_gain_db", "mean_delay_s", "delay_spread_s", "k_factor_db", "angular_spread_deg"}
    for v in f.values():
        assert v.shape == (1, 3) and torch.isfinite(v).all()
    # conventions: the LoS path arrives from the transmitter, departs towards the receiver
    los = (ps.itype == 0).all(1)
    assert int(los.sum()) == 3
    d = (tx - rx) / np.linalg.norm(tx - rx, axis=1, keepdims=True)
    np.testing.assert_allclose(ps.k_rx[los].numpy(), d[ps.link[los].numpy()], atol=1e-6)
    np.testing.assert_allclose(ps.k_tx[los].numpy(), -d[ps.link[los].numpy()], atol=1e-6)
    # the K-factor uses the LoS path and agrees with a direct computation
    p = path_power(a)[0]
    for lk in range(3):
        m = ps.link == lk
        pl = p[m & los].sum()
        assert f["k_factor_db"][0, lk].item() == pytest.approx(10 * math.log10(pl / (p[m].sum() - pl)))
    assert (f["delay_spread_s"] > 1e-9).all() and (f["delay_spread_s"] < 100e-9).all()
    assert (f["angular_spread_deg"] > 1).all() and (f["angular_spread_deg"] < 104).all()


def _coherent_reference(ps, amp, carrier, merge_s):
    """Path-based delay moments after coherently summing paths closer than ``merge_s`` (one resolvable tap)."""
    out = []
    tau, link, am = ps.tau_s.numpy(), ps.link.numpy(), amp.numpy()
    for lk in range(ps.num_links):
        i = np.nonzero(link == lk)[0]
        o = np.argsort(tau[i])
        tt, ab = tau[i][o], (am[i] * np.exp(-2j * np.pi * carrier * tau[i]))[o]
        grp = np.concatenate([[0], np.cumsum(np.diff(tt) > merge_s)])
        pw = np.array([abs(ab[grp == g].sum()) ** 2 for g in np.unique(grp)])
        tg = np.array([tt[grp == g].mean() for g in np.unique(grp)])
        mean = (pw * tg).sum() / pw.sum()
        out.append((pw.sum(), mean, math.sqrt((pw * (tg - mean) ** 2).sum() / pw.sum())))
    return np.array(out)


def test_band_limited_features_converge_to_path_features(traced):
    ps, a, _, _ = traced
    amp = a[0, :, 0, 0]
    # the engine CFR on the grid is sum_i a_i exp(-j 2 pi (f_c + f_k) tau_i) (Sionna's convention)
    H = F.cfr_from_paths(amp, ps.tau_s, ps.link, 3, 3.5e9, 200e6, 256)
    fk = torch.as_tensor((np.arange(256) - 128) * 200e6 / 256)
    terms = amp[:, None] * torch.exp(-2j * math.pi * (3.5e9 + fk)[None, :] * ps.tau_s.to(torch.float64)[:, None])
    ref = torch.zeros(3, 256, dtype=terms.dtype).index_add(0, ps.link, terms)
    assert torch.allclose(H, ref, rtol=1e-10, atol=1e-12)
    # wide band (4 GHz, 1024 subcarriers: 0.25 ns taps, +-128 ns window), Hann window against leakage
    W, K = 4e9, 1024
    H = F.cfr_from_paths(amp, ps.tau_s, ps.link, 3, 3.5e9, W, K)
    p, mean, rms = F.cfr_delay_features(H, W, window="hann")
    pf = channel_features(ps, a)
    # paths closer than a tap add coherently (the room's symmetric paths coincide in delay): reference merges them
    want = _coherent_reference(ps, amp, 3.5e9, 1.0 / W)
    np.testing.assert_allclose(10 * np.log10(p.numpy()), 10 * np.log10(want[:, 0]), atol=0.1)
    np.testing.assert_allclose(mean.numpy(), want[:, 1], atol=0.2e-9)
    np.testing.assert_allclose(rms.numpy(), want[:, 2], rtol=0.05)
    # and, within the coherent-combining difference, the incoherent path features
    np.testing.assert_allclose(mean.numpy(), pf["mean_delay_s"][0].numpy(), atol=1e-9)
    np.testing.assert_allclose(rms.numpy(), pf["delay_spread_s"][0].numpy(), rtol=0.1)
    np.testing.assert_allclose(10 * np.log10(p.numpy()), pf["path_gain_db"][0].numpy(), atol=0.5)
    # seed 003's default grid without a window: leakage of off-grid paths inflates the spread (documented)
    H0 = F.cfr_from_paths(amp, ps.tau_s, ps.link, 3, 3.5e9, 200e6, 256)
    _, _, rms0 = F.cfr_delay_features(H0, 200e6)
    assert (rms0 > pf["delay_spread_s"][0]).all()

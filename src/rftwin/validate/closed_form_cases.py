"""rftwin's predictions against closed forms, through the public API only.

Every case writes a tiny Sionna XML scene (:mod:`rftwin.validate.scenes`), loads it with
:func:`rftwin.scene.load.load` and predicts the links with :func:`rftwin.predict.predict.predict_channels`
(one isotropic, vertically polarised element at both ends, as for every rftwin prediction). Path gains come from
the prediction table; complex per-path amplitudes (for phases and coherent sums) from its CIR output
(``WidebandGrid(kind="cir")``: one tap per path, baseband amplitude a exp(-j 2 pi f tau)). The references are
:mod:`rftwin.validate.closed_forms`. Each case returns a list of flat row dicts.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rftwin.validate import closed_forms as cf
from rftwin.validate.scenes import KnifeEdge, Plate, write_scene


@dataclass(frozen=True)
class CaseSettings:
    """Solver sampling of the closed-form cases (single interactions: depth 1)."""

    samples_per_src: int = 100_000
    seed: int = 42


@dataclass(frozen=True)
class SlabMaterial:
    name: str
    eps_r: float
    sigma_s_per_m: float
    thickness_m: float


#: slab materials of the P.2040 check (concrete-, glass- and wood-like values; fixed in frequency)
SLAB_MATERIALS = (SlabMaterial("concrete-like", 5.0, 0.05, 0.2), SlabMaterial("glass-like", 6.3, 0.005, 0.01),
                  SlabMaterial("wood-like", 2.0, 0.01, 0.03))
SLAB_FREQUENCIES_HZ = (1e9, 3.5e9, 28e9)
SLAB_ANGLES_DEG = (15.0, 45.0, 70.0, 85.0)


def _predict(plates, tx, rx, freq, settings, knives=()):
    """Trace + engine through the public prediction API; returns (table, per-row (delays [P], amplitudes [P]))."""
    from rftwin.predict.predict import WidebandGrid, predict_channels  # noqa: PLC0415
    from rftwin.scene.load import load  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="rftwin-validate-") as tmp:
        xml = write_scene(list(plates), Path(tmp), knives=list(knives))
        twin = load(xml, float(np.min(freq)))
        ids = [str(i) for i in range(len(tx))]
        pred = predict_channels(twin, None, np.asarray(tx, float), np.asarray(rx, float), np.asarray(freq, float),
                                settings, progress=False, link_ids=ids, wideband=WidebandGrid(kind="cir"))
    taps = [(pred.wideband[i].delay_s, pred.wideband[i].amplitude) for i in ids]
    return pred.table, taps


def _solver(cs: CaseSettings, **kw):
    from rftwin.trace.tracer import SolverSettings  # noqa: PLC0415

    return SolverSettings(max_depth=1, samples_per_src=cs.samples_per_src, seed=cs.seed, **kw)


def _phase_diff_deg(a, b) -> float:
    return float(np.degrees(np.angle(a * np.conj(b))))


# ------------------------------------------------------------------------------------------------- Friis
def friis_case(cs: CaseSettings = CaseSettings(), distances_m=(1.0, 10.0, 100.0, 1000.0),
               frequencies_hz=(2.4e9, 28e9, 60e9)) -> list[dict]:
    """Line of sight only, in a scene whose one object (a 1 m^2 plate 5 km away) takes no part."""
    d, f = np.meshgrid(np.asarray(distances_m, float), np.asarray(frequencies_hz, float), indexing="ij")
    d, f = d.ravel(), f.ravel()
    tx = np.zeros((len(d), 3)) + [0.0, 0.0, 1.5]
    rx = tx + np.stack([d, np.zeros_like(d), np.zeros_like(d)], 1)
    far = [Plate("far_plate", (0.0, 5000.0, 0.0), (1.0, 1.0), 3.0, 0.01, 0.1)]
    table, taps = _predict(far, tx, rx, f, _solver(cs, specular_reflection=False, refraction=False))
    ref = cf.friis_gain_db(d, f)
    rows = []
    for i in range(len(d)):
        rows.append({"frequency_hz": f[i], "distance_m": d[i], "friis_db": float(ref[i]),
                     "rftwin_db": float(table.path_gain_db[i]), "num_paths": int(table.num_paths[i]),
                     "delay_error_s": float(taps[i][0][0] - d[i] / cf.C0) if len(taps[i][0]) else float("nan")})
        rows[-1]["error_db"] = rows[-1]["rftwin_db"] - rows[-1]["friis_db"]
    return rows


# -------------------------------------------------------------------------------------------- P.2040 slab
def _slab_geometry(kind: str, pol: str, theta: np.ndarray, r: float = 5.0):
    """Tx / Rx positions [n, 3], the plate and its normal for one (reflect|transmit, TE|TM) configuration.
    TE: a vertical wall (normal +x), plane of incidence horizontal, the vertical field is perpendicular to it.
    TM: a horizontal plate (normal +z), plane of incidence vertical, the theta-hat field lies in it."""
    z = np.zeros_like(theta)
    s, c = r * np.sin(theta), r * np.cos(theta)
    if pol == "TE":
        normal = (1.0, 0.0, 0.0)
        tx = np.stack([c, -s, z], 1) if kind == "reflect" else np.stack([-c, -s, z], 1)
        rx = np.stack([c, s, z], 1)
        tilt = 90.0
    else:
        normal = (0.0, 0.0, 1.0)
        tx = np.stack([-s, z, c], 1)
        rx = np.stack([s, z, c], 1) if kind == "reflect" else np.stack([s, z, -c], 1)
        tilt = 0.0
    return tx, rx, normal, tilt


def slab_case(cs: CaseSettings = CaseSettings(), materials=SLAB_MATERIALS, frequencies_hz=SLAB_FREQUENCIES_HZ,
              angles_deg=SLAB_ANGLES_DEG) -> list[dict]:
    """One specular reflection (or one transmission) on a 40 m x 40 m slab, 5 m from each end, at every
    (material, frequency, angle of incidence, TE/TM): |coefficient| (dB) and phase vs ITU-R P.2040."""
    rows = []
    th0, f0 = np.meshgrid(np.radians(np.asarray(angles_deg, float)), np.asarray(frequencies_hz, float),
                          indexing="ij")
    th0, f0 = th0.ravel(), f0.ravel()
    for m in materials:
        for kind in ("reflect", "transmit"):
            for pol in ("TE", "TM"):
                tx, rx, normal, tilt = _slab_geometry(kind, pol, th0)
                plate = Plate("slab", (0.0, 0.0, 0.0), (40.0, 40.0), m.eps_r, m.sigma_s_per_m, m.thickness_m,
                              tilt_deg=tilt)
                settings = _solver(cs, los=kind == "transmit", specular_reflection=kind == "reflect",
                                   refraction=kind == "transmit")
                table, taps = _predict([plate], tx, rx, f0, settings)
                ref, theta, length = cf.slab_path_amplitude(tx, rx, (0.0, 0.0, 0.0), normal, f0, m.eps_r,
                                                           m.sigma_s_per_m, m.thickness_m, kind)
                spread = cf.friis_gain_db(length, f0)
                for i in range(len(f0)):
                    d_s, a = taps[i]
                    row = {"material": m.name, "eps_r": m.eps_r, "sigma_s_per_m": m.sigma_s_per_m,
                           "thickness_m": m.thickness_m, "kind": kind, "polarization": pol,
                           "frequency_hz": float(f0[i]), "theta_deg": float(np.degrees(theta[i])),
                           "num_paths": int(table.num_paths[i]),
                           "p2040_db": float(cf.db(abs(ref[i]) ** 2) - spread[i])}
                    if len(a) == 1:
                        row["rftwin_db"] = float(table.path_gain_db[i] - spread[i])
                        row["error_db"] = row["rftwin_db"] - row["p2040_db"]
                        row["phase_error_deg"] = _phase_diff_deg(a[0], ref[i])
                    rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- two-ray
TWO_RAY_DISTANCES_M = (5.0, 10.0, 20.0, 30.0, 40.0, 44.0, 46.0, 48.0, 52.0, 60.0, 80.0, 120.0, 200.0, 500.0,
                       1000.0)


#: two-ray set-up: carrier, antenna heights, ground slab (eps_r, sigma [S/m], thickness [m])
TWO_RAY_SETUP = {"frequency_hz": 2.4e9, "tx_height_m": 10.0, "rx_height_m": 2.0, "eps_r": 15.0,
                 "sigma_s_per_m": 0.035, "thickness_m": 1.0}


def two_ray_case(cs: CaseSettings = CaseSettings(), distances_m=TWO_RAY_DISTANCES_M,
                 frequency_hz: float = TWO_RAY_SETUP["frequency_hz"],
                 tx_height_m: float = TWO_RAY_SETUP["tx_height_m"], rx_height_m: float = TWO_RAY_SETUP["rx_height_m"],
                 eps_r: float = TWO_RAY_SETUP["eps_r"], sigma_s_per_m: float = TWO_RAY_SETUP["sigma_s_per_m"],
                 thickness_m: float = TWO_RAY_SETUP["thickness_m"]) -> list[dict]:
    """Direct + ground-reflected ray over a flat ground slab (1100 m x 60 m): the coherent path gain (sum of the
    CIR taps) vs the two-ray model with the P.2040 TM coefficient; the Brewster dip at the grazing angle
    atan((h_t + h_r) / d) ~ pi/2 - atan(sqrt(eps_r))."""
    d = np.asarray(distances_m, float)
    tx = np.stack([np.zeros_like(d), np.zeros_like(d), np.full_like(d, tx_height_m)], 1)
    rx = np.stack([d, np.zeros_like(d), np.full_like(d, rx_height_m)], 1)
    ground = Plate("ground", (500.0, 0.0, 0.0), (1100.0, 60.0), eps_r, sigma_s_per_m, thickness_m)
    f = np.full(len(d), frequency_hz)
    table, taps = _predict([ground], tx, rx, f, _solver(cs, refraction=False))
    direct, refl = cf.two_ray_field(d, tx_height_m, rx_height_m, frequency_hz, eps_r, sigma_s_per_m, thickness_m)
    rows = []
    for i in range(len(d)):
        a = taps[i][1]
        coh = float(cf.db(abs(a.sum()) ** 2)) if len(a) else float("nan")
        rows.append({"distance_m": float(d[i]), "grazing_deg": float(np.degrees(np.arctan2(tx_height_m + rx_height_m,
                                                                                           d[i]))),
                     "num_paths": int(table.num_paths[i]), "two_ray_db": float(cf.db(abs(direct[i] + refl[i]) ** 2)),
                     "rftwin_db": coh, "rftwin_incoherent_db": float(table.path_gain_db[i]),
                     "reflected_vs_direct_db": float(cf.db(abs(refl[i] / direct[i]) ** 2))})
        rows[-1]["error_db"] = rows[-1]["rftwin_db"] - rows[-1]["two_ray_db"]
    return rows


# ------------------------------------------------------------------------------------------- knife edge
KNIFE_HEIGHTS_M = (-1.0, -0.5, -0.2, 0.0, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 3.0)


def knife_edge_case(cs: CaseSettings = CaseSettings(), heights_m=KNIFE_HEIGHTS_M, frequency_hz: float = 3.5e9,
                    d1_m: float = 10.0, d2_m: float = 10.0, eps_r: float = 1.0, sigma_s_per_m: float = 1e7,
                    polarizations=("hard", "soft")) -> list[dict]:
    """Tx and Rx d1 / d2 from a thin metal wedge (4 deg opening), both h into its shadow side of the edge
    (h < 0: on the lit side). "hard": the edge horizontal (along y at z = 0, screen below), so the vertical
    field is perpendicular to it; "soft": the same wedge turned so the edge is vertical (along z, screen towards
    -y), field parallel to the edge. rftwin/Sionna: first-order UTD diffraction of that edge (plus the line of
    sight where it is not blocked), summed coherently; loss = Friis(d1 + d2) - that gain. P.526: J(nu) from the
    Fresnel integrals and its approximation. Taps longer than the edge path by > 0.5 m (none expected) are
    ignored."""
    h = np.asarray(heights_m, float)
    nu = cf.fresnel_kirchhoff_nu(h, d1_m, d2_m, frequency_hz)
    edge_len = np.sqrt(d1_m ** 2 + h ** 2) + np.sqrt(d2_m ** 2 + h ** 2)
    free = cf.friis_gain_db(d1_m + d2_m, frequency_hz)
    j_fk = cf.knife_edge_loss_db(nu)
    j_ap = cf.knife_edge_loss_approx_db(nu)
    settings = _solver(cs, specular_reflection=False, refraction=False, diffraction=True, edge_diffraction=False)
    f = np.full(len(h), frequency_hz)
    zero = np.zeros_like(h)
    rows = []
    for pol in polarizations:
        if pol not in ("hard", "soft"):
            raise ValueError(f"polarization must be 'hard' or 'soft', not {pol!r}")
        off = np.stack([zero, zero, -h], 1) if pol == "hard" else np.stack([zero, -h, zero], 1)
        tx = off + [-d1_m, 0.0, 0.0]
        rx = off + [d2_m, 0.0, 0.0]
        screen = KnifeEdge("screen", 0.0, 50.0, 60.0, eps_r, sigma_s_per_m, 0.01, vertical=pol == "soft")
        table, taps = _predict([], tx, rx, f, settings, knives=[screen])
        for i in range(len(h)):
            d_s, a = taps[i]
            keep = d_s * cf.C0 < edge_len[i] + 0.5
            gain = float(cf.db(abs(a[keep].sum()) ** 2)) if keep.any() else float("nan")
            # our own UTD (PEC wedge, K-P + Luebbers) where the edge path is alone (h >= 0): E perp edge = hard
            other = "soft" if pol == "hard" else "hard"
            ref, ref_other = ((float(cf.utd_knife_loss_db(h[i], d1_m, d2_m, frequency_hz, screen.half_angle_deg, q))
                               for q in (pol, other)) if h[i] >= 0 else (float("nan"), float("nan")))
            grouped = {f"grouped_{tag}_db": (float(cf.utd_knife_loss_grouped_db(h[i], d1_m, d2_m, frequency_hz,
                                                                                screen.half_angle_deg, 1.0, rn))
                                             if h[i] >= 0 else float("nan"))
                       for tag, rn in (("same_sign", 1.0), ("opposite_sign", -1.0))}
            rows.append({"polarization": pol, "h_m": float(h[i]), "nu": float(nu[i]), **grouped,
                         "num_paths": int(table.num_paths[i]), "num_paths_used": int(keep.sum()),
                         "rftwin_utd_db": free - gain, "p526_fresnel_db": float(j_fk[i]),
                         "p526_approx_db": float(j_ap[i]), "utd_reference_db": ref,
                         "utd_other_polarization_db": ref_other})
            rows[-1]["utd_minus_p526_db"] = rows[-1]["rftwin_utd_db"] - rows[-1]["p526_fresnel_db"]
            rows[-1]["rftwin_minus_utd_reference_db"] = rows[-1]["rftwin_utd_db"] - ref
    return rows

"""Regenerate the v2 example files (measurements_v2.csv, wideband_v2.h5, wideband_taps_v2.npz, mpcs_v2.csv).

They are *synthetic* "measurements": the benchmark room (``rftwin.scene.room()``, ITU materials) traced with Sionna RT
(depth 3, 1e5 rays), evaluated with rftwin's engine and perturbed with seeded noise (0.5 dB on powers, 0.3 ns on
delays, 1 deg on angles) the way a channel sounder's estimates scatter. Run from the repository root:

    .venv/bin/python examples/make_examples_v2.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import rftwin  # noqa: F401 - sets up LLVM before Sionna
from rftwin.data import mpcs_from_arrays, read_links, simulate_wideband, write_wideband
from rftwin.data.wideband import Wideband
from rftwin.io import write_table
from rftwin.physics.channel import path_power
from rftwin.physics.engine import path_coefficients
from rftwin.physics.features import direction_angles
from rftwin.predict.predict import channel_features
from rftwin.scene import room
from rftwin.trace import SolverSettings, trace
from rftwin.twin_io import material_values, unique_links

HERE = Path(__file__).resolve().parent
LINKS = """link_id,tx_id,tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz,tx_power_dbm
M001,AP1,0.0,0.0,2.5,2.0,-1.0,1.5,3.5e9,20.0
M002,AP1,0.0,0.0,2.5,-2.0,1.0,1.2,3.5e9,20.0
M003,AP1,0.0,0.0,2.5,4.0,0.5,1.5,3.5e9,20.0
M004,AP1,0.0,0.0,2.5,2.0,-1.0,1.5,5.8e9,20.0
M005,AP1,0.0,0.0,2.5,-2.0,1.0,1.2,5.8e9,20.0
M006,AP2,-4.0,4.0,2.0,1.0,3.5,1.5,3.5e9,17.0
M007,AP2,-4.0,4.0,2.0,3.0,-0.5,1.0,3.5e9,17.0
M008,AP2,-4.0,4.0,2.0,3.0,-0.5,1.0,5.8e9,17.0
"""


def main() -> None:
    rng = np.random.default_rng(2026)
    twin = room()
    tmp = HERE / ".links_v2.csv"
    tmp.write_text(LINKS)
    try:
        lk = read_links(tmp, twin)
    finally:
        tmp.unlink()
    utx, urx, rl = unique_links(lk.tx_pos, lk.rx_pos)
    ps = trace(twin, utx, urx, SolverSettings(max_depth=3, samples_per_src=100_000), cache_dir=False)
    uf, rf = np.unique(lk.frequency_hz, return_inverse=True)
    a = path_coefficients(ps, material_values(twin, None, uf), torch.as_tensor(uf))[0]
    feats = {k: v[rf, rl].numpy() for k, v in channel_features(ps, a).items()}
    m = len(lk)
    df = lk.df[["link_id", "tx_id", "tx_x", "tx_y", "tx_z", "rx_x", "rx_y", "rx_z", "frequency_hz"]].copy()
    df["path_gain_db"] = np.round(feats["path_gain_db"] + rng.normal(0, 0.5, m), 2)
    df["delay_spread_s"] = np.round(feats["delay_spread_s"] * (1 + rng.normal(0, 0.03, m)), 11)
    df["mean_delay_s"] = np.round(feats["mean_delay_s"] + rng.normal(0, 0.3e-9, m), 11)
    df["k_factor_db"] = np.round(feats["k_factor_db"] + rng.normal(0, 0.5, m), 2)
    df["angular_spread_deg"] = np.round(feats["angular_spread_deg"] + rng.normal(0, 1.0, m), 1)
    text = ("# rftwin measurements v2: benchmark room (rftwin.scene.room()), two APs, 3.5 and 5.8 GHz, iso antennas;\n"
            "# synthetic (Sionna RT trace + engine + seeded noise), see examples/make_examples_v2.py\n")
    write_table(HERE / "measurements_v2.csv", df)
    (HERE / "measurements_v2.csv").write_text(text + (HERE / "measurements_v2.csv").read_text())

    wb = simulate_wideband(ps, a, uf, lk.link_id, rl, rf, kind="cfr")  # W = 200 MHz, K = 256
    for r in wb.links.values():
        r.cfr = r.cfr * np.exp(0.5 / 20 * np.log(10) * rng.normal()) + (rng.normal(0, 1e-5, 256)
                                                                         + 1j * rng.normal(0, 1e-5, 256)) * 1e-3
    write_wideband(HERE / "wideband_v2.h5", wb)

    taps = simulate_wideband(ps, a, uf, lk.link_id, rl, rf, kind="cir", bandwidth_hz=50e6, num_subcarriers=1024)
    keep = {k: taps.links[k] for k in ("M001", "M006")}
    for r in keep.values():
        strongest = np.argsort(-np.abs(r.amplitude))[:8]
        r.delay_s, r.amplitude = r.delay_s[strongest], r.amplitude[strongest]
    write_wideband(HERE / "wideband_taps_v2.npz", Wideband(keep))

    # MPCs of two links: the 6 strongest traced paths, perturbed as a sounder's estimates
    p = path_power(a)[0].numpy()  # 3.5 GHz
    aoa_az, aoa_el = (x.numpy() for x in direction_angles(ps.k_rx))
    aod_az, aod_el = (x.numpy() for x in direction_angles(ps.k_tx))
    tau = ps.tau_s.numpy()
    cols = {n: [] for n in ("link_id", "delay_s", "power_db", "aoa_az", "aoa_el", "aod_az", "aod_el")}
    for lid in ("M001", "M006"):
        link = rl[lk.link_id.index(lid)]
        idx = np.nonzero(ps.link.numpy() == link)[0]
        idx = idx[np.argsort(-p[idx])][:6]
        idx = idx[np.argsort(tau[idx])]
        n = len(idx)
        cols["link_id"] += [lid] * n
        cols["delay_s"] += list(np.round(tau[idx] + rng.normal(0, 0.3e-9, n), 12))
        cols["power_db"] += list(np.round(10 * np.log10(p[idx]) + rng.normal(0, 0.5, n), 2))
        for k, v in (("aoa_az", aoa_az), ("aoa_el", aoa_el), ("aod_az", aod_az), ("aod_el", aod_el)):
            cols[k] += list(np.round(v[idx] + rng.normal(0, 1.0, n), 1))
    t = mpcs_from_arrays(cols["link_id"], cols["delay_s"], cols["power_db"], azimuth_arrival_deg=cols["aoa_az"],
                         elevation_arrival_deg=cols["aoa_el"], azimuth_departure_deg=cols["aod_az"],
                         elevation_departure_deg=cols["aod_el"])
    write_table(HERE / "mpcs_v2.csv", t.df)
    (HERE / "mpcs_v2.csv").write_text("# rftwin multipath components: links M001 and M006 of measurements_v2.csv "
                                      "(synthetic, see make_examples_v2.py)\n" + (HERE / "mpcs_v2.csv").read_text())


if __name__ == "__main__":
    main()

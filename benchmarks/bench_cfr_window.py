"""Band-limited RMS delay spread (seed 003 eq. 23-24) against the delay spread of the paths, with and without a
window on the CFR (docs/measurements.md, "Band-limited CIR").

Run: .venv/bin/python benchmarks/bench_cfr_window.py  (writes benchmarks/results/cfr_window.json)
"""
import json
from pathlib import Path

import numpy as np
import torch

import rftwin  # noqa: F401  (sets DRJIT_LIBLLVM_PATH)
from rftwin.io import write_json
from rftwin.physics.engine import path_coefficients
from rftwin.physics.features import cfr_delay_features, cfr_from_paths, delay_moments
from rftwin.scene import room
from rftwin.trace import SolverSettings, trace
from rftwin.twin_io import material_values

F = 3.5e9
TX = np.array([[-1.0, 0.0, 1.5]] * 3)
RX = np.array([[2.0, 1.0, 1.2], [-2.0, -3.5, 1.0], [4.0, -1.0, 2.0]])
GRIDS = ((200e6, 256), (4e9, 1024))


def main() -> dict:
    twin = room(F)
    ps = trace(twin, TX, RX, SolverSettings(max_depth=3, samples_per_src=1_000_000), progress=False)
    with torch.no_grad():
        a = path_coefficients(ps, material_values(twin, None, np.array([F])), F)[0, 0, :, 0, 0]  # [N]
        p = a.real ** 2 + a.imag ** 2
        _, ds_paths = delay_moments(p, ps.tau_s, ps.link, ps.num_links)
        out = {"links": len(TX), "path_delay_spread_ns": (ds_paths * 1e9).tolist(), "band_limited": []}
        for bw, k in GRIDS:
            H = cfr_from_paths(a, ps.tau_s, ps.link, ps.num_links, F, bw, k)
            for window in (None, "hann"):
                _, _, ds = cfr_delay_features(H, bw, window=window)
                out["band_limited"].append({"bandwidth_hz": bw, "subcarriers": k, "window": window or "none",
                                            "delay_spread_ns": (ds * 1e9).tolist()})
    return out


if __name__ == "__main__":
    r = main()
    write_json(Path(__file__).parent / "results" / "cfr_window.json", r)
    print(json.dumps(r, indent=1))

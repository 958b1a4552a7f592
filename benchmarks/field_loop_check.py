"""Field training on a small split-wall case: prints the kept loss, path-gain RMSE and iteration counts.

Run it at two commits to compare field training across a change (docs/fields.md: the one calibration loop and the
former field-only loop of commit d58118b give the same loss and RMSE to 10 digits).
Usage: .venv/bin/python benchmarks/field_loop_check.py
"""
from __future__ import annotations

import numpy as np


def main() -> None:
    from rftwin.fields import FieldTrainConfig, HashGridField, train_field
    from rftwin.materials import itu_power_law
    from rftwin.runtime import configure_torch_threads
    from rftwin.scene.split_wall import SPLIT_UNIT, SplitWallSpec, split_wall
    from rftwin.studies.split_wall import simulate_measurements
    from rftwin.trace import SolverSettings

    configure_torch_threads()
    freqs = np.array([2.4e9, 3.5e9])
    sw = split_wall(SplitWallSpec())
    rng = np.random.default_rng(0)
    tx = np.array([[-2.0, -1.0, 1.5], [2.0, -1.5, 1.2]])
    rx = np.column_stack([rng.uniform(-3.7, 3.7, 10), rng.uniform(0.5, 2.7, 10), rng.uniform(0.5, 2.5, 10)])
    meas = simulate_measurements(sw, "wood", np.repeat(tx, len(rx), 0), np.tile(rx, (len(tx), 1)), freqs,
                                 SolverSettings(max_depth=2, samples_per_src=20000))
    ps = meas.ps
    labels, e0, s0 = sw.unit_prior(3.5e9, {SPLIT_UNIT: "wood"})
    abcd = np.array([[getattr(itu_power_law(lab, 3.5e9), k) for k in "abcd"] for lab in labels])
    pts = ps.point.reshape(-1, 3)
    box = (pts.min(0).values.numpy() - 0.5, pts.max(0).values.numpy() + 0.5)
    fld = HashGridField(box, [0.1] * len(e0), e0, s0, levels=4, finest_resolution=32, log2_table_size=12, seed=0,
                        readout={"kind": "power_law"}, reference_frequency_hz=3.5e9, prior_abcd=abcd)
    cfg = FieldTrainConfig(adam_iterations=120, lr_mlp=3e-3, lr_hash=1e-2, lbfgs_iterations=10, mpc_weight=4.0,
                           mpc_floor_db=-150.0)
    res = train_field(ps, fld, meas.targets(np.arange(ps.num_links)), cfg, progress=False)
    print(f"loss {res.loss:.10g}  rmse_db {res.rmse_db:.10g}  adam {res.adam_iterations}  "
          f"lbfgs {res.lbfgs_iterations}  seconds {res.seconds:.1f}")


if __name__ == "__main__":
    main()

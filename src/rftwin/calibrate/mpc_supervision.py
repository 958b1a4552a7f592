"""Per-MPC power supervision for calibration: measured multipath components re-matched to every new trace.

The MPC -> traced-path assignment depends on the trace (path order and set change at each re-trace), so
:func:`rftwin.calibrate.workflow.calibrate_scene` takes an :class:`MPCSupervision` as its targets and calls it
with each new PathSet.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from rftwin.calibrate.problem import Targets, simulate_features
from rftwin.data.mpc import match_mpcs_to_rows


class MPCSupervision:
    """Per-MPC power targets rebuilt for every trace: ``__call__(ps)`` matches the measured MPCs (``link_id`` =
    a row of the measurements table) to the traced paths of ``ps`` by delay and angle
    (:func:`rftwin.data.mpc.match_mpcs_to_rows`) and returns the row targets plus the matched (path, power) pairs,
    each at the carrier of its row. The last match and targets are kept (``match``, ``targets``)."""

    def __init__(self, meas, row_link, mpcs, row_kw: dict, **gates):
        ref = gates.get("delay_reference", "absolute")
        if ref not in ("absolute", "first"):
            raise ValueError(f"--mpc-delay-reference must be 'absolute' or 'first', not '{ref}'")
        if not all(gates.get(k, 1.0) > 0 for k in ("delay_gate_s", "angle_gate_deg")):
            raise ValueError("--mpc-delay-gate and --mpc-angle-gate must be > 0")
        self.meas, self.row_link, self.mpcs, self.row_kw, self.gates = meas, row_link, mpcs, row_kw, gates
        pos = {k: i for i, k in enumerate(meas.link_id)}
        mpcs.check_links(list(meas.link_id))
        self.mpc_frequency_hz = np.asarray(meas.frequency_hz, dtype=np.float64)[[pos[k] for k in mpcs.link_id]]
        self.match = None
        self.targets = None

    def __call__(self, ps):
        m = match_mpcs_to_rows(self.mpcs, self.meas.link_id, self.row_link, ps, **self.gates)
        if not len(m):
            raise ValueError(f"{self.mpcs.source}: none of the {len(self.mpcs)} MPCs matches a traced path within "
                             f"the gates ({self.gates.get('delay_gate_s', 5e-9) * 1e9:g} ns, "
                             f"{self.gates.get('angle_gate_deg', 10.0):g} deg); check the positions, the delay "
                             "reference (--mpc-delay-reference first for relative delays) and the gates")
        self.match = m
        self.targets = Targets.build(self.row_link, self.meas.frequency_hz, self.meas.path_gain_db,
                                     mpc_path=m.path_index, mpc_power_db=m.measured_power_db,
                                     mpc_frequency_hz=self.mpc_frequency_hz[m.mpc_row], **self.row_kw)
        return self.targets

    def outputs(self, ps, res) -> tuple[object, dict]:
        """Per-MPC table (a DataFrame: matched path, errors, fitted power incl. the gain offset) and a per-link
        summary (dict)."""
        m, t = self.match, self.targets
        q = len(self.mpcs)
        with torch.no_grad():
            fitted = simulate_features(ps, res.model, t, {"mpc_power"}).mpc_power_db[0].numpy() + res.offset_db
        cols = {c: self.mpcs.df[c].to_numpy() for c in self.mpcs.df.columns}
        df = pd.DataFrame(cols)
        df["matched"] = np.zeros(q, bool)
        df.loc[m.mpc_row, "matched"] = True
        for name, v, fill in (("path_index", m.path_index, -1), ("delay_error_s", m.delay_error_s, np.nan),
                              ("aoa_error_deg", m.aoa_error_deg, np.nan), ("aod_error_deg", m.aod_error_deg, np.nan),
                              ("fitted_power_db", fitted, np.nan)):
            col = np.full(q, fill, dtype=np.int64 if fill == -1 else np.float64)
            col[m.mpc_row] = v
            df[name] = col
        df["residual_db"] = df["fitted_power_db"] - df["power_db"]
        per = df.groupby("link_id", sort=False)["matched"].agg(["size", "sum"])
        summary = {"file": str(self.mpcs.source), "mpcs": q, "matched": int(len(m)),
                   "gates": {"delay_s": self.gates.get("delay_gate_s"), "angle_deg": self.gates.get("angle_gate_deg"),
                             "delay_reference": self.gates.get("delay_reference", "absolute")},
                   "rms_residual_db": float(np.sqrt(np.mean(df["residual_db"].dropna() ** 2))) if len(m) else None,
                   "per_link": {str(k): {"mpcs": int(r["size"]), "matched": int(r["sum"])}
                                for k, r in per.iterrows()}}
        return df, summary


__all__ = ["MPCSupervision"]

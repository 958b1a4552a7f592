"""Channel prediction for new links from a scene or a calibrated twin (trace once, evaluate the engine)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from rftwin.physics.channel import delay_moments, path_gain, to_db
from rftwin.physics.engine import path_coefficients
from rftwin.scene.load import TwinScene
from rftwin.trace.tracer import SolverSettings, trace
from rftwin.twin_io import material_values, unique_links


def predict_links(twin: TwinScene, doc: dict | None, tx_pos: np.ndarray, rx_pos: np.ndarray,
                  frequency_hz: np.ndarray, settings: SolverSettings = SolverSettings(), progress: bool = True,
                  cache_dir=None) -> pd.DataFrame:
    """Path gain [dB], mean delay and RMS delay spread [s] (power-weighted over paths) of every row."""
    utx, urx, row_link = unique_links(tx_pos, rx_pos)
    ps = trace(twin, utx, urx, settings, cache_dir=cache_dir, progress=progress)
    uf, row_f = np.unique(np.asarray(frequency_hz, dtype=np.float64), return_inverse=True)
    mv = material_values(twin, doc, uf)
    with torch.no_grad():
        a = path_coefficients(ps, mv, torch.as_tensor(uf))
        g = to_db(path_gain(a, ps.link, ps.num_links))[0]  # [F, L]
        mean, ds = delay_moments(a, ps.tau_s, ps.link, ps.num_links)
    rf, rl = row_f.reshape(-1), row_link
    npaths = ps.paths_per_link().numpy()[rl]
    none = npaths == 0  # no propagation path found: gain undefined, not "-300 dB"
    gain = np.where(none, np.nan, g[rf, rl].numpy())
    return pd.DataFrame({"path_gain_db": gain, "mean_delay_s": mean[0][rf, rl].numpy(),
                         "delay_spread_s": ds[0][rf, rl].numpy(), "num_paths": npaths})

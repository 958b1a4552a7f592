"""Shared set-up of the MPC and wideband tests: two room links traced by Sionna RT and the engine's coefficients
at the scene's (ITU) materials."""
import numpy as np
import torch

from rftwin.physics.engine import path_coefficients
from rftwin.scene import room
from rftwin.trace import SolverSettings, trace
from rftwin.twin_io import material_values

TX = np.array([[0.0, 0.0, 2.5], [-4.0, 4.0, 2.0]])
RX = np.array([[2.0, -1.0, 1.5], [3.0, -0.5, 1.0]])


def traced_pair(frequencies_hz: np.ndarray):
    """(PathSet of the two links, coefficients [F, N, R, T] at ``frequencies_hz`` [F] (Hz))."""
    twin = room()
    ps = trace(twin, TX, RX, SolverSettings(max_depth=3, samples_per_src=20_000), cache_dir=False, progress=False)
    f = np.asarray(frequencies_hz, dtype=np.float64)
    return ps, path_coefficients(ps, material_values(twin, None, f), torch.as_tensor(f))[0]

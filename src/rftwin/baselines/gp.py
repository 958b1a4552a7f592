"""Gaussian-process interpolation of path gain over position (scikit-learn), a purely statistical baseline.

Inputs per link: receiver position (m), plus transmitter position when the training links have several
transmitters, plus log10 frequency when they have several frequencies. Kernel: constant x Matern(nu=1.5,
one length scale per input, ARD) + white noise; the target is standardised (``normalize_y``). The GP's
prior mean is the training mean, so far from the training links it falls back to the mean gain: it has no
propagation model and cannot extrapolate (that is the point of the comparison).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GPPathGain:
    """A fitted GP (see :func:`fit_gp`); ``use_tx``/``use_freq``: which inputs besides the receiver position."""

    model: object  # sklearn.gaussian_process.GaussianProcessRegressor
    use_tx: bool
    use_freq: bool
    n_train: int

    def _x(self, tx_pos, rx_pos, frequency_hz) -> np.ndarray:
        return _features(tx_pos, rx_pos, frequency_hz, self.use_tx, self.use_freq)

    def predict(self, tx_pos: np.ndarray, rx_pos: np.ndarray, frequency_hz, return_std: bool = False):
        """Path gain [M] (dB) (and its predictive std [M] (dB) with ``return_std``)."""
        x = self._x(tx_pos, rx_pos, frequency_hz)
        return self.model.predict(x, return_std=return_std)

    def kernel(self) -> str:
        return str(self.model.kernel_)


def _features(tx_pos, rx_pos, frequency_hz, use_tx: bool, use_freq: bool) -> np.ndarray:
    rx = np.asarray(rx_pos, dtype=float).reshape(-1, 3)
    cols = [rx]
    if use_tx:
        cols.append(np.asarray(tx_pos, dtype=float).reshape(-1, 3))
    if use_freq:
        f = np.broadcast_to(np.asarray(frequency_hz, dtype=float), (len(rx),))
        cols.append(np.log10(f)[:, None])
    return np.concatenate(cols, axis=1)


def fit_gp(tx_pos: np.ndarray, rx_pos: np.ndarray, frequency_hz, path_gain_db, seed: int = 0,
           restarts: int = 2) -> GPPathGain:
    """Fit the GP to measured path gains (finite entries only; at least 3 links).

    Length scales start at a quarter of the receivers' spread and are bounded to [1 cm, 1 km]; the noise level
    to [1e-6, 10] (in units of the standardised target). ``restarts`` optimiser restarts, seeded by ``seed``.
    """
    from sklearn.gaussian_process import GaussianProcessRegressor  # noqa: PLC0415
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel  # noqa: PLC0415

    tx = np.asarray(tx_pos, dtype=float).reshape(-1, 3)
    rx = np.asarray(rx_pos, dtype=float).reshape(-1, 3)
    g = np.asarray(path_gain_db, dtype=float).reshape(-1)
    f = np.broadcast_to(np.asarray(frequency_hz, dtype=float), g.shape)
    ok = np.isfinite(g) & np.all(np.isfinite(tx), 1) & np.all(np.isfinite(rx), 1) & np.isfinite(f)
    if ok.sum() < 3:
        raise ValueError(f"GP interpolation needs at least 3 measured links, found {int(ok.sum())}")
    tx, rx, g, f = tx[ok], rx[ok], g[ok], f[ok]
    use_tx = len(np.unique(np.round(tx, 6), axis=0)) > 1
    use_freq = len(np.unique(f)) > 1
    x = _features(tx, rx, f, use_tx, use_freq)
    spread = np.maximum(np.std(x, axis=0), 1e-2)
    kernel = (ConstantKernel(1.0, (1e-3, 1e3))
              * Matern(length_scale=np.maximum(spread / 4, 0.05), length_scale_bounds=(1e-2, 1e3), nu=1.5)
              + WhiteKernel(noise_level=0.1, noise_level_bounds=(1e-6, 10.0)))
    model = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=restarts,
                                     random_state=seed)
    import warnings  # noqa: PLC0415

    with warnings.catch_warnings():  # bounds reached on tiny training sets: not an error for a baseline
        warnings.simplefilter("ignore")
        model.fit(x, g)
    return GPPathGain(model=model, use_tx=use_tx, use_freq=use_freq, n_train=len(g))


__all__ = ["GPPathGain", "fit_gp"]

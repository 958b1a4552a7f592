"""Global initialisation of per-object materials by coordinate-wise grid sweeps on cached paths.

The dB loss of a slab material is multimodal in eps_r: the slab reflection coefficient oscillates with the
electrical thickness sqrt(eps_r) d f / c, so gradient methods started at the label prior often stop in a
neighbouring minimum (minima ~1 apart in eps_r for 0.1 m brick at 3.5 GHz), and eps_r and sigma of one object
trade off against each other. The path gain of a link is an incoherent sum of path powers, so with every other
object held fixed the loss as a function of one object's (eps_r, sigma) needs only the paths that touch that
object: each sweep step evaluates a whole 2-D grid of candidates in one batched pass over that subset. A few
sweeps over all objects (Gauss-Seidel order, most-travelled objects first) move the start towards the basin of
the global minimum within the search box; a local optimiser (Levenberg-Marquardt) then finishes. This is a
heuristic: strongly coupled objects can still end in a local minimum.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rftwin.calibrate.losses import db_offset
from rftwin.pathset import PathSet
from rftwin.physics.channel import link_sum, path_power, to_db
from rftwin.physics.engine import MaterialValues, path_coefficients
from rftwin.progress import track


@dataclass
class SweepResult:
    eps_r: np.ndarray  # [K]
    sigma: np.ndarray  # [K] S/m
    loss_db2: float  # MSE (dB^2) at the result
    history: list[float]  # loss after each sweep
    evaluations: int  # candidate materials evaluated


def _path_power(ps: PathSet, eps: torch.Tensor, sig: torch.Tensor, thickness: torch.Tensor,
                freqs: torch.Tensor) -> torch.Tensor:
    """Per-path power [B, F, N] for per-object eps/sigma [B, K]."""
    mv = MaterialValues(eps[:, None, :], sig[:, None, :], thickness.reshape(1, 1, -1))
    with torch.no_grad():
        return path_power(path_coefficients(ps, mv, freqs, check=False))


def coordinate_sweep(ps: PathSet, link: np.ndarray, frequency_hz: np.ndarray, path_gain_db: np.ndarray,
                     eps_r: np.ndarray, sigma: np.ndarray, thickness_m: np.ndarray,
                     eps_bounds: np.ndarray, sigma_bounds: np.ndarray, grid: int = 48, sigma_grid: int = 12,
                     sweeps: int = 3, estimate_offset: bool = False, progress: bool = True) -> SweepResult:
    """Minimise the dB MSE of path gain over per-object (eps_r, sigma) by cyclic per-object grid searches.

    ``link`` [M] PathSet link index and ``frequency_hz`` [M] of the measured ``path_gain_db`` [M] rows;
    ``eps_r``, ``sigma``, ``thickness_m`` [K] the start; ``eps_bounds``/``sigma_bounds`` [K, 2] the search box
    (log-spaced grids of ``grid`` x ``sigma_grid`` points; the current value is always a candidate, so the loss
    never increases).
    Objects with no path are left unchanged.
    """
    dt = torch.float64
    ps = ps.to(dtype=dt)
    uf, fi = np.unique(np.asarray(frequency_hz, np.float64), return_inverse=True)
    freqs = torch.as_tensor(uf, dtype=dt)
    li, fi = torch.as_tensor(np.asarray(link), dtype=torch.long), torch.as_tensor(fi)
    meas = torch.as_tensor(np.asarray(path_gain_db, np.float64), dtype=dt)
    eps = torch.as_tensor(np.asarray(eps_r, np.float64), dtype=dt).clone()
    sig = torch.as_tensor(np.asarray(sigma, np.float64), dtype=dt).clone()
    th = torch.as_tensor(np.asarray(thickness_m, np.float64), dtype=dt)
    K, L = eps.shape[0], ps.num_links
    touches = [(ps.obj == k).any(1) for k in range(K)]
    order = sorted((k for k in range(K) if bool(touches[k].any())), key=lambda k: -int(touches[k].sum()))
    subsets = {k: ps.select_paths(torch.nonzero(touches[k]).squeeze(1)) for k in order}
    power = _path_power(ps, eps[None], sig[None], th, freqs)[0]  # [F, N]

    def loss_of(link_power: torch.Tensor) -> torch.Tensor:  # [B, F, L] -> [B]
        sim = to_db(link_power[:, fi, li])
        if estimate_offset:
            sim = sim + db_offset(sim, meas)[:, None]
        return ((sim - meas) ** 2).mean(-1)

    current = float(loss_of(link_sum(power, ps.link, L)[None])[0])
    history, evals = [current], 0
    eg = torch.as_tensor(np.geomspace(eps_bounds[:, 0] - 1.0, eps_bounds[:, 1] - 1.0, grid), dtype=dt) + 1.0
    sg = torch.as_tensor(np.geomspace(sigma_bounds[:, 0], sigma_bounds[:, 1], sigma_grid), dtype=dt)
    steps = [(sw, k) for sw in range(sweeps) for k in order]
    for _, k in track(steps, "global sweep", enabled=progress):
        sub, mask = subsets[k], touches[k]
        ce = torch.cat([eps[k:k + 1], eg[:, k].repeat_interleave(sigma_grid)])
        cs = torch.cat([sig[k:k + 1], sg[:, k].repeat(grid)])
        E, S = eps.repeat(len(ce), 1), sig.repeat(len(ce), 1)
        E[:, k], S[:, k] = ce, cs
        p_k = _path_power(sub, E, S, th, freqs)  # [B, F, N_k]
        rest = link_sum(power[:, ~mask], ps.link[~mask], L)  # [F, L]
        losses = loss_of(rest[None] + link_sum(p_k, sub.link, L))
        evals += len(ce)
        b = int(torch.argmin(losses))
        if float(losses[b]) < current:
            eps[k], sig[k] = ce[b], cs[b]
            power[:, mask] = p_k[b]
            current = float(losses[b])
        if k == order[-1]:
            history.append(current)
    return SweepResult(eps.numpy(), sig.numpy(), current, history, evals)


__all__ = ["SweepResult", "coordinate_sweep"]

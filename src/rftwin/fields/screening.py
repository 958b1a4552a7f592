"""Coarse global search before gradient training: piecewise-constant material screening on spatial cells.

Path gain is a strongly oscillating function of eps_r (slab Fabry-Perot resonances; see SIONNA_NOTES
"Identifiability"), so a field started at one prior value cannot move a region whose true permittivity lies a few
resonances away (gradient training stalls in a local minimum). Screening splits every object's interaction points
into cubic cells of ``cell_m`` metres and, cell by cell (most-visited first, ``sweeps`` times), tries a grid of
candidate (eps_r, sigma) values at the reference frequency, keeping the one with the lowest dB-MSE of path gain
(all candidates of a cell in one batched engine call, other cells fixed: coordinate descent). The result
initialises the field (:meth:`MaterialField.set_cell_prior`), which gradient training then refines (e.g. moves
the boundary inside a cell). Candidates are a generic grid (not the true material list); frequency exponents
(b, d) stay at the object priors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rftwin.calibrate.losses import db_offset
from rftwin.calibrate.problem import Targets
from rftwin.pathset import NONE, PathSet
from rftwin.physics.engine import MaterialValues, link_gain_db
from rftwin.progress import track


@dataclass
class ScreeningConfig:
    cell_m: float = 1.0
    eps_grid: tuple[float, ...] = (1.5, 2.0, 2.7, 3.5, 4.5, 5.5, 7.0, 9.0)
    sigma_factors: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)  # x the object's prior sigma
    sweeps: int = 2
    min_interactions: int = 4  # cells with fewer interactions keep the object prior
    objects: tuple[int, ...] | None = None  # object indices to screen (None: all)
    estimate_offset: bool = False
    candidate_batch: int = 16


@dataclass
class CellPrior:
    """Screened cells: ``keys`` [C, 4] (object, ix, iy, iz), ``eps_r``/``sigma`` [C] at the reference frequency,
    interactions per cell ``count`` [C], the loss before and after (dB^2)."""

    cell_m: float
    keys: np.ndarray
    eps_r: np.ndarray
    sigma: np.ndarray
    count: np.ndarray
    loss_before: float
    loss_after: float


def cell_keys(points: torch.Tensor, obj: torch.Tensor, lo: torch.Tensor, cell_m: float,
              shape: tuple[int, int, int]) -> torch.Tensor:
    """(object, ix, iy, iz) [P, 4] of points [P, 3] in cells of ``cell_m`` from ``lo`` (clamped to ``shape``)."""
    idx = torch.floor((points - lo) / cell_m).long()
    hi = torch.tensor(shape, dtype=torch.long, device=idx.device) - 1
    idx = torch.minimum(torch.clamp(idx, min=0), hi)
    return torch.cat([obj.long()[:, None], idx], 1)


def screen_cells(ps: PathSet, targets: Targets, thickness, prior_abcd: np.ndarray, bbox_lo, bbox_hi,
                 reference_frequency_hz: float, cfg: ScreeningConfig = ScreeningConfig(),
                 progress: bool = True) -> CellPrior:
    """Coordinate-descent screening of per-cell (eps_r, sigma) candidates; see the module docstring.

    ``prior_abcd`` [K, 4] power laws of the objects (f in GHz); ``thickness`` [K] (m).
    """
    dt, dev = ps.cos_i.dtype, ps.cos_i.device
    lo_np, hi_np = np.asarray(bbox_lo, dtype=np.float64), np.asarray(bbox_hi, dtype=np.float64)
    lo = torch.as_tensor(lo_np, dtype=dt, device=dev)
    shape = tuple(int(x) for x in np.maximum(np.ceil((hi_np - lo_np) / cfg.cell_m), 1))
    mask = ps.itype != NONE
    keys = cell_keys(ps.point[mask], ps.obj[mask], lo, cfg.cell_m, shape)
    uk, inv, counts = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
    abcd = torch.as_tensor(np.asarray(prior_abcd, dtype=np.float64), dtype=dt, device=dev)
    obj_i = ps.obj[mask].long()
    pa, pb, pc, pd = (abcd[obj_i, j].clone() for j in range(4))  # per-interaction power law [P]
    f = targets.frequencies_hz.to(dtype=dt, device=dev)
    lf = torch.log(f / 1e9)[:, None]  # [F, 1]
    fr = np.log(reference_frequency_hz / 1e9)
    thick = torch.as_tensor(np.asarray(thickness, dtype=np.float64), dtype=dt, device=dev)[ps.obj.clamp_min(0)]
    thick = thick[None, None]
    rows = torch.isfinite(targets.path_gain_db)
    meas = targets.path_gain_db[rows]
    N, D = mask.shape

    def losses(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """dB-MSE [J] for J per-interaction power-law sets (a, c [J, P]; b, d shared)."""
        eps = torch.clamp(a[:, None, :] * torch.exp(pb[None, None, :] * lf[None]), min=1.0)  # [J, F, P]
        sig = c[:, None, :] * torch.exp(pd[None, None, :] * lf[None])
        J, F = eps.shape[:2]
        e_full = torch.full((J, F, N, D), 2.0, dtype=dt, device=dev).masked_scatter(mask.expand(J, F, N, D), eps)
        s_full = torch.zeros((J, F, N, D), dtype=dt, device=dev).masked_scatter(mask.expand(J, F, N, D), sig)
        mv = MaterialValues(e_full, s_full, thick, per_object=False)
        with torch.no_grad():
            g = link_gain_db(ps, mv, f, check=False)  # [J, F, L]
        sim = g[:, targets.freq_index, targets.link][:, rows]
        if cfg.estimate_offset:
            sim = sim + db_offset(sim, meas[None].expand_as(sim))[:, None]
        return ((sim - meas) ** 2).mean(-1)

    before = float(losses(pa[None], pc[None])[0])
    # candidates are (eps_r, sigma) at the reference frequency; per interaction a, c change and b, d stay
    todo = [i for i in torch.argsort(counts, descending=True).tolist()
            if int(counts[i]) >= cfg.min_interactions
            and (cfg.objects is None or int(uk[i, 0]) in set(cfg.objects))]
    cell_eps = {i: None for i in todo}
    cell_sig = {i: None for i in todo}
    current = before
    prior_sig_obj = abcd[:, 2] * torch.exp(abcd[:, 3] * fr)
    for _ in range(cfg.sweeps):
        for i in track(todo, "screening cells", enabled=progress):
            sel = inv == i
            k = int(uk[i, 0])
            cands = [(e, float(prior_sig_obj[k]) * s) for e in cfg.eps_grid for s in cfg.sigma_factors]
            best = (current, None)
            for s0 in range(0, len(cands), cfg.candidate_batch):
                chunk = cands[s0:s0 + cfg.candidate_batch]
                a = pa.expand(len(chunk), -1).clone()
                c = pc.expand(len(chunk), -1).clone()
                for j, (e, s) in enumerate(chunk):
                    a[j, sel] = e * torch.exp(-pb[sel] * fr)
                    c[j, sel] = s * torch.exp(-pd[sel] * fr)
                lv = losses(a, c)
                j = int(torch.argmin(lv))
                if float(lv[j]) < best[0]:
                    best = (float(lv[j]), chunk[j])
            if best[1] is not None:
                e, s = best[1]
                pa[sel] = e * torch.exp(-pb[sel] * fr)
                pc[sel] = s * torch.exp(-pd[sel] * fr)
                cell_eps[i], cell_sig[i] = e, s
                current = best[0]
    done = [i for i in todo if cell_eps[i] is not None]
    return CellPrior(cfg.cell_m, uk[done].cpu().numpy(), np.array([cell_eps[i] for i in done]),
                     np.array([cell_sig[i] for i in done]), counts[done].cpu().numpy(), before, current)

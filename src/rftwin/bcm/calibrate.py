"""Uncertainty-aware calibration of a material model against a Bayesian channel map (seed 003, Sec. III-B).

Works with any ``torch.nn.Module`` material model: ``forward(frequency_hz) -> MaterialValues`` (per object, e.g.
:class:`rftwin.materials.PerObjectMaterials`, or per interaction of the full PathSet) or
``forward(ps, frequency_hz) -> MaterialValues`` evaluated on the interaction points of the batch's paths (the
neural fields of :mod:`rftwin.fields`). The dense target links are traced once; every iteration draws a
batch of them, computes path gain (dB) and RMS delay spread (ns) with the differentiable engine, and minimises the
NLL (eq. 25) under the BCM, with the global gain bias estimated per batch and smoothed by EMA (eqs. 26-27).
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from rftwin.bcm.map import ChannelMap
from rftwin.bcm.nll import EmaBias, batch_gain_bias, bcm_nll, gaussian_nll
from rftwin.pathset import PathSet
from rftwin.physics.channel import path_gain, path_power, to_db
from rftwin.physics.engine import MaterialValues, path_coefficients
from rftwin.physics.features import delay_moments
from rftwin.progress import track


@dataclass
class NllConfig:
    iterations: int = 300
    lr: float = 0.05  # Adam learning rate
    batch_size: int | None = 64  # target links per iteration (None: all)
    ema: float = 0.9  # lambda of eq. 27
    gain_bias: bool = True  # estimate the global gain bias beta (else beta = 0)
    balance: bool = True  # eta_alpha = 1 / initial mean squared z-score of alpha (both terms start equal)
    eta_gain: float = 1.0  # extra weights on top of the balancing
    eta_delay: float = 1.0
    seed: int = 0


@dataclass
class NllResult:
    bias_db: float
    eta: dict
    iterations: int
    seconds: float
    loss: float  # final eq.-25 loss over all targets
    history: list[dict] = field(default_factory=list)


def link_channel_parameters(ps: PathSet, mv: MaterialValues, frequency_hz: float
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Path gain (dB) and RMS delay spread (ns) of every link, [B, L] each, at one frequency."""
    a = path_coefficients(ps, mv, frequency_hz, check=False)[:, 0]  # [B, N, R, T]
    g = to_db(path_gain(a, ps.link, ps.num_links))
    _, ds = delay_moments(path_power(a), ps.tau_s, ps.link, ps.num_links, empty=0.0)
    return g, ds * 1e9


class LinkBatcher:
    """Cheap PathSets of link subsets (paths must be sorted by link, as :func:`rftwin.trace.trace` returns them)."""

    def __init__(self, ps: PathSet):
        if ps.num_paths and not bool(torch.all(ps.link[1:] >= ps.link[:-1])):
            order = torch.argsort(ps.link, stable=True)
            ps = replace(ps.select_paths(order), link=ps.link[order])
        self.ps = ps
        self.counts = torch.bincount(ps.link, minlength=ps.num_links)
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def __call__(self, links: torch.Tensor) -> tuple[PathSet, torch.Tensor]:
        """(PathSet of ``links`` in that order, indices of its paths in the full PathSet)."""
        c = self.counts[links]
        total = int(c.sum())
        first = torch.repeat_interleave(torch.cumsum(c, 0) - c, c, output_size=total)
        idx = torch.repeat_interleave(self.starts[links], c, output_size=total) + torch.arange(total) - first
        sub = self.ps.select_paths(idx)
        return replace(sub, tx_pos=self.ps.tx_pos[links], rx_pos=self.ps.rx_pos[links],
                       link=torch.repeat_interleave(torch.arange(len(links)), c, output_size=total)), idx


def takes_pathset(model: torch.nn.Module) -> bool:
    """True for material models evaluated on a PathSet's interaction points (``forward(ps, frequency_hz)``, e.g.
    :class:`rftwin.fields.MaterialField`), False for ``forward(frequency_hz)`` models (per object)."""
    return len(inspect.signature(model.forward).parameters) >= 2


def materials_for(model: torch.nn.Module, ps: PathSet, frequency_hz: float) -> MaterialValues:
    """MaterialValues of ``model`` for the paths of ``ps`` at one frequency (either kind of model)."""
    f = torch.tensor([frequency_hz], dtype=torch.float64)
    return model(ps, f) if takes_pathset(model) else model(f)


def _materials(model: torch.nn.Module, f: float, idx: torch.Tensor | None, psb: PathSet) -> MaterialValues:
    if takes_pathset(model):
        return model(psb, torch.tensor([f], dtype=torch.float64))
    mv = model(torch.tensor([f], dtype=torch.float64))
    return mv if (idx is None or mv.per_object) else mv.select_paths(idx)


def calibrate_nll(ps: PathSet, model: torch.nn.Module, bcm: ChannelMap, frequency_hz: float,
                  cfg: NllConfig | None = None, progress: bool = True) -> NllResult:
    """Fit the free parameters of ``model`` so the engine's link features of ``ps`` (one link per BCM target, same
    order) are likely under the BCM. Links without traced paths are left out."""
    if len(bcm.gain_db) != ps.num_links:
        raise ValueError(f"the BCM has {len(bcm.gain_db)} targets but the PathSet {ps.num_links} links")
    cfg = cfg or NllConfig()
    t0 = time.perf_counter()
    dt = ps.cos_i.dtype
    batcher = LinkBatcher(ps)
    usable = torch.nonzero(batcher.counts > 0).squeeze(1)
    if usable.numel() == 0:
        raise ValueError("no target link has a traced path")
    gm, gv = (torch.as_tensor(x, dtype=dt) for x in (bcm.gain_db, bcm.gain_var))
    dm, dv = (torch.as_tensor(x, dtype=dt) for x in (bcm.delay_spread_ns, bcm.delay_spread_var))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the material model has no free parameters")
    opt = torch.optim.Adam(params, lr=cfg.lr)
    rng = torch.Generator().manual_seed(cfg.seed)

    with torch.no_grad():
        g0, d0 = link_channel_parameters(ps, _materials(model, frequency_hz, None, ps), frequency_hz)
        g0, d0 = g0[0, usable], d0[0, usable]
        beta0 = float(batch_gain_bias(g0, gm[usable])) if cfg.gain_bias else 0.0
        eta = {"gain_db": cfg.eta_gain, "delay_spread_ns": cfg.eta_delay}
        if cfg.balance:
            zg = float((((g0 + beta0 - gm[usable]) ** 2) / gv[usable]).mean())
            zd = float((((d0 - dm[usable]) ** 2) / dv[usable]).mean())
            eta = {"gain_db": cfg.eta_gain / max(zg, 1e-6), "delay_spread_ns": cfg.eta_delay / max(zd, 1e-6)}
    ema = EmaBias(cfg.ema, beta0 if cfg.gain_bias else 0.0)
    history: list[dict] = []
    B = usable.numel() if cfg.batch_size is None else min(cfg.batch_size, usable.numel())
    for it in track(range(1, cfg.iterations + 1), "calibrating (BCM NLL)", enabled=progress):
        links = usable if B == usable.numel() else usable[torch.randperm(usable.numel(), generator=rng)[:B]]
        psb, idx = batcher(links)
        opt.zero_grad()
        g, d = link_channel_parameters(psb, _materials(model, frequency_hz, idx, psb), frequency_hz)
        g, d = g[0], d[0]
        if cfg.gain_bias:
            ema.update(float(batch_gain_bias(g.detach(), gm[links])))
        loss = bcm_nll(g, d, gm[links], gv[links], dm[links], dv[links], eta["gain_db"], eta["delay_spread_ns"],
                       ema.value)
        loss.backward()
        opt.step()
        history.append({"iteration": it, "loss": float(loss.detach()), "bias_db": float(ema.value)})
    with torch.no_grad():
        g, d = link_channel_parameters(ps, _materials(model, frequency_hz, None, ps), frequency_hz)
        g, d = g[0, usable], d[0, usable]
        final = float(bcm_nll(g, d, gm[usable], gv[usable], dm[usable], dv[usable], eta["gain_db"],
                              eta["delay_spread_ns"], ema.value))
    return NllResult(bias_db=float(ema.value), eta=eta, iterations=cfg.iterations,
                     seconds=time.perf_counter() - t0, loss=final, history=history)


def nll_per_target(gain_db: np.ndarray, delay_ns: np.ndarray, bcm: ChannelMap) -> np.ndarray:
    """Per-target NLL of given link features under the BCM (diagnostics) [P]."""
    g = gaussian_nll(torch.as_tensor(gain_db), torch.as_tensor(bcm.gain_db), torch.as_tensor(bcm.gain_var))
    d = gaussian_nll(torch.as_tensor(delay_ns), torch.as_tensor(bcm.delay_spread_ns),
                     torch.as_tensor(bcm.delay_spread_var))
    return (g + d).numpy()


__all__ = ["LinkBatcher", "NllConfig", "NllResult", "calibrate_nll", "link_channel_parameters", "materials_for",
           "nll_per_target", "takes_pathset"]

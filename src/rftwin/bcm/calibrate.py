"""Uncertainty-aware calibration against a Bayesian channel map (seed 003, Sec. III-B): the BCM as a supervision
term of the one calibration loop.

The dense target links of the map are traced once. Eq. 25 (the NLL of the engine's path gain and RMS delay spread
under the map's Gaussian marginals) is, up to terms free of the materials, a weighted least-squares objective:
path gain and delay spread targets at the map's means with per-row weights 1 / variance (``Targets.feature_weight``),
the two terms weighted by eta_alpha x their mean weight (eta_alpha = 1 / the initial mean squared z-score of alpha
when balanced, so both terms start equal), and the global gain bias as the loop's EMA offset (eq. 27; the loop's
per-iteration estimate is the precision-weighted mean of the map's gains minus the engine's, eq. 26 weighted by
1 / variance). :func:`calibrate_nll` builds these targets and runs :func:`rftwin.calibrate.loop.calibrate` on
any material model (per object, grouped, or a neural field): full-batch Adam by default, so that it differs from
fitting the measured gains directly (the seed's Diff-RT) only in its supervision.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from rftwin.bcm.map import ChannelMap
from rftwin.bcm.nll import gaussian_nll
from rftwin.pathset import PathSet
from rftwin.physics.channel import path_gain, path_power, to_db
from rftwin.physics.engine import MaterialValues, path_coefficients
from rftwin.physics.features import delay_moments


@dataclass
class NllConfig:
    iterations: int = 300
    lr: float = 0.05  # Adam learning rate
    optimizer: str = "adam"  # adam | lbfgs | lm (lm: per-object models only)
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
    loss: float  # final eq.-25 loss (mean over the usable targets)
    history: list[dict] = field(default_factory=list)
    result: object = None  # the calibration loop's CalibrationResult (materials of a per-object model)
    config: object = None  # the CalibrationConfig it ran with


def link_channel_parameters(ps: PathSet, mv: MaterialValues, frequency_hz: float
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Path gain (dB) and RMS delay spread (ns) of every link, [B, L] each, at one frequency."""
    a = path_coefficients(ps, mv, frequency_hz, check=False)[:, 0]  # [B, N, R, T]
    g = to_db(path_gain(a, ps.link, ps.num_links))
    _, ds = delay_moments(path_power(a), ps.tau_s, ps.link, ps.num_links, empty=0.0)
    return g, ds * 1e9


def bcm_targets(ps: PathSet, bcm: ChannelMap, frequency_hz: float, model: torch.nn.Module, cfg: NllConfig):
    """(Targets, eta, loss-term weights) of the BCM term: one row per map target (= PathSet link),
    weights 1 / variance, links without traced paths left out (weight 0)."""
    from rftwin.calibrate.problem import Targets  # noqa: PLC0415

    if len(bcm.gain_db) != ps.num_links:
        raise ValueError(f"the BCM has {len(bcm.gain_db)} targets but the PathSet {ps.num_links} links")
    usable = (torch.bincount(ps.link, minlength=ps.num_links) > 0).numpy()
    if not usable.any():
        raise ValueError("no target link has a traced path")
    L = ps.num_links
    wg = np.where(usable, 1.0 / np.asarray(bcm.gain_var, dtype=np.float64), 0.0)
    wd = np.where(usable & np.isfinite(bcm.delay_spread_ns), 1.0 / np.asarray(bcm.delay_spread_var,
                                                                               dtype=np.float64), 0.0)
    def f64(x):
        return torch.as_tensor(np.asarray(x, dtype=np.float64))

    # built directly: a map's Gaussian mean may lie below 0 ns, which a measured delay spread may not
    t = Targets(torch.arange(L), torch.zeros(L, dtype=torch.long), f64([frequency_hz]), path_gain_db=f64(bcm.gain_db),
                delay_spread_s=f64(bcm.delay_spread_ns) * 1e-9, feature_weight={"path_gain": f64(wg),
                                                                               "delay_spread": f64(wd)})
    with torch.no_grad():
        g0, d0 = link_channel_parameters(ps, model(ps, torch.tensor([float(frequency_hz)])), frequency_hz)
    g0, d0 = g0[0].numpy()[usable], d0[0].numpy()[usable]
    beta0 = float(np.mean(bcm.gain_db[usable] - g0)) if cfg.gain_bias else 0.0
    eta = {"gain_db": cfg.eta_gain, "delay_spread_ns": cfg.eta_delay}
    if cfg.balance:
        zg = float(np.mean((g0 + beta0 - bcm.gain_db[usable]) ** 2 * wg[usable]))
        zd = float(np.mean(np.nan_to_num(d0 - bcm.delay_spread_ns[usable]) ** 2 * wd[usable]))
        eta = {"gain_db": cfg.eta_gain / max(zg, 1e-6), "delay_spread_ns": cfg.eta_delay / max(zd, 1e-6)}
    n = float(usable.sum())
    weights = {"path_gain": eta["gain_db"] * wg.sum() / n, "delay_spread": eta["delay_spread_ns"] * wd.sum() / n}
    return t, eta, weights


def calibrate_nll(ps: PathSet, model: torch.nn.Module, bcm: ChannelMap, frequency_hz: float,
                  cfg: NllConfig | None = None, progress: bool = True) -> NllResult:
    """Fit the free parameters of ``model`` (any material model) so the engine's link features of ``ps`` (one
    link per BCM target, same order) are likely under the BCM, with the one calibration loop."""
    from rftwin.calibrate.loop import CalibrationConfig, calibrate  # noqa: PLC0415
    from rftwin.calibrate.losses import LossTerm  # noqa: PLC0415

    cfg = cfg or NllConfig()
    torch.manual_seed(cfg.seed)
    t, eta, w = bcm_targets(ps, bcm, frequency_hz, model, cfg)
    terms = tuple(LossTerm(f, "mse_db" if f == "path_gain" else "mse", w[f]) for f in ("path_gain", "delay_spread")
                  if w[f] > 0)
    loop = CalibrationConfig(optimizer=cfg.optimizer, lr=cfg.lr, max_iter=cfg.iterations, terms=terms,
                             patience=cfg.iterations if cfg.optimizer == "adam" else None,  # adam: fixed budget
                             offset="ema" if cfg.gain_bias else "none", offset_ema=cfg.ema, refine_starts=1)
    res = calibrate(ps, model, t, loop, progress=progress, uncertainty=False)
    with torch.no_grad():
        g, d = link_channel_parameters(ps, model(ps, torch.tensor([float(frequency_hz)])), frequency_hz)
        ok = t.feature_weight["path_gain"] > 0
        has_d = t.feature_weight["delay_spread"] > 0
        bias = res.offset_db if cfg.gain_bias else 0.0
        gm, gv, dm, dv = (torch.as_tensor(np.asarray(x, dtype=np.float64)) for x in (
            bcm.gain_db, bcm.gain_var, bcm.delay_spread_ns, bcm.delay_spread_var))
        nll = eta["gain_db"] * gaussian_nll(g[0] + bias, gm, gv) + eta["delay_spread_ns"] * torch.where(
            has_d, gaussian_nll(d[0], torch.nan_to_num(dm), torch.where(has_d, dv, 1.0)), 0.0)
        final = float(nll[ok].mean())
    history = [{"iteration": r["iteration"], "loss": r["loss"], "bias_db": r["offset_db"]} for r in res.history[1:]]
    return NllResult(bias_db=float(bias), eta=eta, iterations=res.iterations, seconds=res.seconds, loss=final,
                     history=history, result=res, config=loop)


def nll_per_target(gain_db: np.ndarray, delay_ns: np.ndarray, bcm: ChannelMap) -> np.ndarray:
    """Per-target NLL of given link features under the BCM (diagnostics) [P]."""
    g = gaussian_nll(torch.as_tensor(gain_db), torch.as_tensor(bcm.gain_db), torch.as_tensor(bcm.gain_var))
    d = gaussian_nll(torch.as_tensor(delay_ns), torch.as_tensor(bcm.delay_spread_ns),
                     torch.as_tensor(bcm.delay_spread_var))
    return (g + d).numpy()


__all__ = ["NllConfig", "NllResult", "bcm_targets", "calibrate_nll", "link_channel_parameters", "nll_per_target"]

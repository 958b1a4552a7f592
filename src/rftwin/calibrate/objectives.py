"""The calibration objective: loss terms over the link features, the gain offset, the Gaussian MAP prior on the
transformed read-outs, and the stacked least-squares residuals."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from rftwin.calibrate.losses import DELAY_UNIT_S, LossTerm, cfr_relative_error, db_offset, mse_db, nae, smape
from rftwin.calibrate.problem import Features, Targets, simulate_features
from rftwin.materials.per_object import MaterialPrior, logit, unit_range
from rftwin.materials.protocol import penalty
from rftwin.pathset import PathSet

if TYPE_CHECKING:
    from rftwin.calibrate.loop import CalibrationConfig

_POWER_FEATURES = ("path_gain", "mpc_power", "cfr")  # features the gain offset applies to (in this preference)


def needed_features(t: Targets, cfg: CalibrationConfig) -> set[str]:
    """The features the loss terms of ``cfg`` (and its gain offset) need; ValueError when ``t`` lacks one."""
    feats = {term.feature for term in cfg.loss_terms}
    missing = feats - set(t.available())
    if missing:
        raise ValueError(f"loss terms use {sorted(missing)}, but the targets have no such measurements "
                         f"(available: {t.available()})")
    if cfg.offset_mode != "none":
        feats.add(offset_feature(t, cfg))
    return feats


def offset_feature(t: Targets, cfg: CalibrationConfig) -> str:
    """The power-like feature the gain offset is fitted on (path gain, MPC powers or CFR, in this preference)."""
    avail = set(t.available())
    used = [term.feature for term in cfg.loss_terms]
    for f in _POWER_FEATURES:
        if f in avail and f in used:
            return f
    for f in _POWER_FEATURES:
        if f in avail:
            return f
    raise ValueError("a gain offset needs power-like targets (path gain, MPC powers or CFR)")


def _cfr_power_db(h: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(torch.clamp((h.real ** 2 + h.imag ** 2).mean(-1), min=1e-300))


def closed_form_offset(feats: Features, t: Targets, cfg: CalibrationConfig) -> torch.Tensor:
    """Gain offset [B] (dB) minimising the dB MSE of the offset power feature (seed 003 eq. 26)."""
    f = offset_feature(t, cfg)
    w = t.row_weight(f)
    meas = t.values(f)
    if f == "cfr":
        sim, meas = _cfr_power_db(feats.cfr), _cfr_power_db(torch.where(w[:, None] > 0, meas, 1.0))
    else:
        sim = feats.get(f)
        meas = torch.where(w > 0, meas, torch.zeros((), dtype=meas.dtype))
    return db_offset(sim, meas, w)


def _term(term: LossTerm, feats: Features, t: Targets, off: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(loss [B], raw residuals [B, n] x sqrt(row weight) or None, residual scale 1/sqrt(sum w) or None)."""
    f, metric = term.feature, term.metric
    w = t.row_weight(f)
    ok = w > 0
    meas = t.values(f)
    sim = feats.get(f)
    if f == "cfr":
        sim = sim * (10.0 ** (off / 20.0)).to(sim.dtype)[:, None, None]
        e = cfr_relative_error(sim, meas, w)  # [B, M, K]
        raw = torch.view_as_real(e * torch.sqrt(w)[:, None].to(e.dtype)).flatten(1)
        scale = 1.0 / torch.sqrt(w.sum().clamp_min(1e-30))
        return (raw * raw).sum(-1) * scale ** 2, raw, scale
    if f in ("path_gain", "mpc_power"):
        sim = sim + off[:, None]
        below = t.below_floor() if f == "mpc_power" else None
        if below is not None:  # measured below the detection floor: only a simulated power above it is an error
            if metric != "mse_db":
                raise ValueError(f"an MPC detection floor needs the mse_db metric on mpc_power, got '{metric}'")
            r = torch.where(below, torch.relu(sim - t.mpc_floor_db), sim - torch.where(ok & ~below, meas, 0.0))
            raw = torch.where(ok, r, torch.zeros((), dtype=r.dtype)) * torch.sqrt(w)
            scale = 1.0 / torch.sqrt(w.sum().clamp_min(1e-30))
            return mse_db(r, torch.zeros((), dtype=r.dtype), w), raw, scale
        meas = torch.where(ok, meas, torch.zeros((), dtype=meas.dtype))
        if metric == "nae":
            return nae(10 ** (sim / 10), 10 ** (meas / 10), w), None, None
        if metric == "smape":
            return smape(10 ** (sim / 10), 10 ** (meas / 10), w), None, None
        r = sim - meas
    else:  # delays
        meas = torch.where(ok, meas, torch.full((), 1e-9, dtype=meas.dtype))
        if metric == "nae":
            return nae(sim, meas, w), None, None
        if metric == "smape":
            return smape(sim, meas, w), None, None
        r = (sim - meas) / DELAY_UNIT_S
    raw = torch.where(ok, r, torch.zeros((), dtype=r.dtype)) * torch.sqrt(w)
    scale = 1.0 / torch.sqrt(w.sum().clamp_min(1e-30))
    return mse_db(r, torch.zeros((), dtype=r.dtype), w), raw, scale


@dataclass
class PriorStats:
    """Gaussian MAP prior on the transformed read-outs at f_ref: log(eps_r - 1), log(sigma), logit(S),
    logit(K_xpd); mean ``mu`` and std ``sd`` [K] per quantity (std = a quarter of the prior range's width)."""

    mu: dict[str, torch.Tensor]
    sd: dict[str, torch.Tensor]
    frequency_hz: float
    shrinkage: float = 0.0  # within-class correlation rho of the objects' eps_r / sigma prior deviations
    classes: torch.Tensor | None = None  # [K] or [B, K] class index of every object (with shrinkage > 0)

    @classmethod
    def from_prior(cls, prior: MaterialPrior, fit: tuple[str, ...], dtype=torch.float64) -> PriorStats:
        mu, sd = {}, {}

        def put(name, m, lo, hi):
            mu[name] = torch.as_tensor(m, dtype=dtype)
            sd[name] = torch.as_tensor(np.maximum((np.asarray(hi) - np.asarray(lo)) / 4.0, 1e-3), dtype=dtype)

        if "eps_r" in fit:
            put("eps_r", np.log(prior.eps_r - 1.0), np.log(prior.eps_range[:, 0] - 1.0),
                np.log(prior.eps_range[:, 1] - 1.0))
        if "sigma" in fit:
            put("sigma", np.log(prior.sigma), np.log(prior.sigma_range[:, 0]), np.log(prior.sigma_range[:, 1]))
        for q in ("scattering", "xpd"):
            if q in fit:
                from rftwin.materials.per_object import DEFAULT_SCATTERING, DEFAULT_XPD

                v = getattr(prior, q)
                v = np.full(prior.num_objects, DEFAULT_SCATTERING if q == "scattering" else DEFAULT_XPD) \
                    if v is None else np.asarray(v)
                r = getattr(prior, f"{q}_range")
                r = unit_range(v) if r is None else np.asarray(r)
                put(q, logit(v), logit(r[:, 0]), logit(r[:, 1]))
        return cls(mu, sd, float(prior.frequency_hz))

    def penalty(self, model, ps: PathSet, feats: Features, rows: int, weight: float, residuals: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The prior's share of the loss [B], ``weight`` x the mean squared standardised residual, and (with
        ``residuals``) its least-squares block [B, P] whose squares sum to it (the prior protocol of
        :mod:`rftwin.materials.protocol`; ``ps``, ``feats`` and ``rows`` are not needed here)."""
        rp = self.residuals(model)
        return weight * (rp * rp).mean(-1), (rp * math.sqrt(weight / rp.shape[-1]) if residuals else None)

    def residuals(self, model) -> torch.Tensor:
        """Standardised prior residuals [B, P_prior] of ``model`` (any callable frequency -> MaterialValues).
        ``mu`` / ``sd`` entries may be [K] (shared by all starts) or [B, K] (one prior per start). Entries ``b`` and
        ``d`` (power-law exponents, :meth:`with_exponents`) act on the slopes of log eps_r and log sigma over one
        e-fold of frequency above the reference."""
        mv = model(torch.tensor([self.frequency_hz], dtype=next(iter(self.mu.values())).dtype))
        ro = {"eps_r": mv.eps_r[:, 0], "sigma": mv.sigma[:, 0]}
        if mv.scattering is not None:
            ro["scattering"] = mv.scattering[:, 0]
        if mv.xpd is not None:
            ro["xpd"] = mv.xpd[:, 0]
        tr = {"eps_r": lambda x: torch.log(torch.clamp(x - 1.0, min=1e-12)), "sigma": torch.log,
              "scattering": lambda x: torch.logit(x, eps=1e-12), "xpd": lambda x: torch.logit(x, eps=1e-12)}
        def tiled(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            # per-start priors [B, K] follow starts that forward-mode AD tiled G times ([G B, K])
            return x.repeat(like.shape[0] // x.shape[0], 1) if x.dim() == 2 and x.shape[0] != like.shape[0] else x

        parts = [(tr[q](ro[q]) - tiled(self.mu[q], ro[q])) / tiled(self.sd[q], ro[q]) for q in self.mu if q in ro]
        if self.shrinkage > 0 and self.classes is not None:
            qs = [q for q in self.mu if q in ro]
            parts = [self.whiten(z, tiled(self.classes, z)) if q in ("eps_r", "sigma") else z
                     for q, z in zip(qs, parts)]
        if "b" in self.mu:  # power-law exponents: slopes of log eps_r, log sigma over one e-fold of frequency
            f = torch.tensor([self.frequency_hz, self.frequency_hz * math.e], dtype=mv.eps_r.dtype)
            m2 = model(f)
            for q, v in (("b", torch.log(m2.eps_r[:, 1]) - torch.log(m2.eps_r[:, 0])),
                         ("d", torch.log(m2.sigma[:, 1]) - torch.log(m2.sigma[:, 0]))):
                parts.append((v - tiled(self.mu[q], v)) / tiled(self.sd[q], v))
        return torch.cat(parts, -1)

    def whiten(self, z: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Hierarchical (class + per-object deviation) prior: standardised deviations z [B, K] of the objects of
        one class are correlated with coefficient rho = ``shrinkage`` (x_k = theta_c + delta_k with
        var(theta_c) = rho s^2, var(delta_k) = (1 - rho) s^2: the marginal prior of each object is unchanged).
        Returns w [B, K] with |w|^2 = z^T Sigma^-1 z: (z - mean_c z) / sqrt(1 - rho) + mean_c z /
        sqrt(1 - rho + n_c rho), n_c the class size. ``classes`` [B, K] or [K]: class index of every object."""
        B, K = z.shape
        cls = classes.to(torch.long).expand(B, K)
        C = int(cls.max()) + 1
        idx = cls + C * torch.arange(B, device=z.device)[:, None]
        total = torch.zeros(B * C, dtype=z.dtype, device=z.device).index_add(0, idx.reshape(-1), z.reshape(-1))
        n = torch.zeros(B * C, dtype=z.dtype, device=z.device).index_add(0, idx.reshape(-1),
                                                                             torch.ones_like(z).reshape(-1))
        n_k = n[idx]
        zbar = total[idx] / n_k
        a = 1.0 - self.shrinkage
        return (z - zbar) / math.sqrt(a) + zbar / torch.sqrt(a + n_k * self.shrinkage)

    def with_exponents(self, b: np.ndarray, d: np.ndarray, sd_b: float = 0.5, sd_d: float = 1.0) -> PriorStats:
        """A copy that also holds Gaussian priors on the power-law exponents b, d [K] (used by multi-band models,
        whose exponents the reference-frequency read-outs do not constrain)."""
        dtype = next(iter(self.mu.values())).dtype
        mu = dict(self.mu, b=torch.as_tensor(np.nan_to_num(b), dtype=dtype),
                  d=torch.as_tensor(np.nan_to_num(d), dtype=dtype))
        sd = dict(self.sd, b=torch.full(mu["b"].shape[-1:], sd_b, dtype=dtype),
                  d=torch.full(mu["d"].shape[-1:], sd_d, dtype=dtype))
        return PriorStats(mu, sd, self.frequency_hz, self.shrinkage, self.classes)


def objective(ps: PathSet, model, t: Targets, cfg: CalibrationConfig, offset_state: torch.Tensor | None = None,
              prior=None, residuals: bool = False, parts: dict | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Loss [B], gain offset [B] (dB) and (with ``residuals``) the stacked scaled residuals [B, R] whose squares sum
    to the loss (least-squares terms only). ``model``: any material model (:mod:`rftwin.materials.protocol`);
    ``prior``: its prior (:class:`PriorStats`, :class:`rftwin.fields.prior.FieldPrior`), weighted by
    ``cfg.prior_weight``; the model's own regularisation (``penalty``) is added. ``offset_state`` fixes the offset
    (EMA mode); else it follows ``cfg.offset_mode``. ``parts`` (a dict) receives each term's unweighted loss [B]
    by feature, and ``prior`` / ``penalty``."""
    feats = simulate_features(ps, model, t, needed_features(t, cfg), cfg.chunk_size)
    return objective_from_features(feats, model, t, cfg, offset_state, prior, residuals, parts, ps)


def objective_from_features(feats: Features, model, t: Targets, cfg: CalibrationConfig,
                            offset_state: torch.Tensor | None = None, prior=None, residuals: bool = False,
                            parts: dict | None = None, ps: PathSet | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`objective` from the simulated features [B, M] of all rows (e.g. gathered shard by shard,
    :mod:`rftwin.calibrate.stream`); ``model`` is used by the prior and the penalty, ``ps`` by a field's prior."""
    B = next(v for v in (feats.path_gain_db, feats.delay_spread_s, feats.cfr, feats.mpc_power_db)
             if v is not None).shape[0]
    dtype = t.frequencies_hz.dtype
    if offset_state is not None:
        off = offset_state.to(dtype)
    elif cfg.offset_mode != "none":
        off = closed_form_offset(feats, t, cfg)
    else:
        off = torch.zeros(B, dtype=dtype)
    loss = torch.zeros(B, dtype=dtype)
    blocks = []
    for term in cfg.loss_terms:
        lt, raw, scale = _term(term, feats, t, off)
        loss = loss + term.weight * lt
        if parts is not None:
            parts[term.feature] = lt.detach()
        if residuals:
            blocks.append(raw * (math.sqrt(term.weight) * scale))
    if prior is not None and cfg.prior_weight > 0:
        rows = int((t.row_weight("path_gain") > 0).sum()) if t.path_gain_db is not None else t.num
        lp, block = prior.penalty(model, ps, feats, rows, cfg.prior_weight, residuals)
        loss = loss + lp
        if parts is not None:
            parts["prior"] = lp.detach()
        if residuals:
            blocks.append(block)
    reg = penalty(model, B, dtype)
    if reg is not None:
        loss = loss + reg
        if parts is not None:
            parts["penalty"] = reg.detach()
    return loss, off, (torch.cat(blocks, -1) if residuals else None)


def path_gain_loss(sim_db, t: Targets, cfg: CalibrationConfig):
    """Path-gain-only loss [B] and fitted offset [B] (dB) from simulated path gains ``sim_db`` [B, M] (dB) of B
    parameter sets at the M targets, as ``cfg.loss`` and ``cfg.offset_mode`` define it."""
    meas = t.path_gain_db
    off = db_offset(sim_db, meas, t.weight) if cfg.offset_mode != "none" \
        else torch.zeros(sim_db.shape[0], dtype=sim_db.dtype)
    s = sim_db + off[:, None]
    if cfg.loss == "mse_db":
        return mse_db(s, meas, t.weight), off
    if cfg.loss == "smape":
        return smape(10 ** (s / 10), 10 ** (meas / 10), t.weight), off
    return nae(10 ** (s / 10), 10 ** (meas / 10), t.weight), off


def residuals(ps: PathSet, model, t: Targets, cfg: CalibrationConfig, offset_state: torch.Tensor | None = None,
              prior: PriorStats | None = None) -> torch.Tensor:
    """Stacked scaled residuals [B, R] (sum of squares = loss; offset-corrected when configured)."""
    return objective(ps, model, t, cfg, offset_state, prior, residuals=True)[2]


__all__ = ["PriorStats", "closed_form_offset", "needed_features", "objective", "objective_from_features",
           "offset_feature", "path_gain_loss", "residuals"]

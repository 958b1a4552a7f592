"""Multi-start calibration of a material model on cached paths: Adam, L-BFGS or Levenberg-Marquardt, the seed-004
stopping rule, a jointly estimated global gain offset (closed form or EMA, seed 003 eqs. 26-27), an optional MAP
prior, checkpoint/resume, per-iteration history, and a Laplace (Gauss-Newton) uncertainty report."""
from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.autograd.forward_ad as fwad
from torch.func import functional_call

from rftwin.calibrate import path_jacobian
from rftwin.calibrate.checkpoint import load_checkpoint, save_checkpoint
from rftwin.calibrate.losses import (
    DELAY_UNIT_S,
    FEATURE_METRICS,
    LOSSES,
    LossTerm,
    cfr_relative_error,
    db_offset,
    mse_db,
    nae,
    smape,
)
from rftwin.calibrate.problem import DEFAULT_CHUNK, Features, Targets, simulate_features
from rftwin.materials.per_object import MaterialPrior, PerObjectMaterials, logit, unit_range
from rftwin.pathset import PathSet
from rftwin.progress import track

OPTIMIZERS = ("lm", "adam", "lbfgs")
OFFSET_MODES = ("none", "closed_form", "ema")
_POWER_FEATURES = ("path_gain", "mpc_power", "cfr")  # features the gain offset applies to (in this preference)
DUAL_MAX_LANES = 4_000_000  # LM Jacobian: at most this many (tangent x start x path) lanes per forward-AD pass


@dataclass
class CalibrationConfig:
    loss: str = "mse_db"  # path-gain metric when ``terms`` is None: mse_db | nae | smape
    optimizer: str = "lm"  # lm | adam | lbfgs
    lr: float = 1e-3  # Adam learning rate (seed 004) / L-BFGS step
    max_iter: int = 1000
    alpha: float = 1e-5  # stop: |loss change| < alpha ...
    beta: float = 1e-4  # ... and max |parameter change| (log-space) < beta ...
    patience: int | None = None  # ... for this many iterations (None: 50 for adam, 5 for lm/lbfgs)
    refine_starts: int = 4  # multi-start: screen all starts with one forward pass, refine this many
    estimate_offset: bool = False  # unknown absolute power reference: fit a global gain offset [dB] (closed form)
    noise_db: float | None = None  # measurement noise std for the uncertainty report (None: from residuals)
    terms: tuple[LossTerm, ...] | None = None  # weighted loss terms (None: path gain with ``loss``)
    offset: str | None = None  # none | closed_form | ema (None: closed_form if estimate_offset else none)
    offset_ema: float = 0.9  # lambda of the EMA offset update (seed 003 eq. 27)
    prior_weight: float = 0.0  # MAP prior: weight of the Gaussian prior on the transformed parameters (0: off)
    chunk_size: int = DEFAULT_CHUNK  # engine path chunk (memory bound for 1e6+ diffuse paths)
    lm_damping: float = 1.0  # initial Levenberg-Marquardt damping (x diag(J^T J)); small values overshoot basins
    prune_every: int = 0  # LM multi-start: every this many iterations keep the better half of the starts (0: off)

    def __post_init__(self):
        if self.terms is None:
            if self.loss not in FEATURE_METRICS["path_gain"]:
                raise ValueError(f"unknown loss '{self.loss}', expected one of {FEATURE_METRICS['path_gain']} "
                                 "(other features: give loss terms)")
        else:
            self.terms = tuple(self.terms)
            if not self.terms:
                raise ValueError("no loss terms given")
            if any(not isinstance(t, LossTerm) for t in self.terms):
                raise ValueError("terms must be LossTerm records (see rftwin.calibrate.losses.parse_terms)")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer '{self.optimizer}', expected one of {OPTIMIZERS}")
        if self.optimizer == "lm" and not all(t.least_squares for t in self.loss_terms):
            bad = [str(t) for t in self.loss_terms if not t.least_squares]
            raise ValueError(f"the Levenberg-Marquardt optimizer needs least-squares losses (mse_db, mse, nmse); "
                             f"got {bad}: use --optimizer adam or lbfgs")
        if self.offset is not None and self.offset not in OFFSET_MODES:
            raise ValueError(f"unknown offset mode '{self.offset}', expected one of {OFFSET_MODES}")
        if not 0.0 <= self.offset_ema < 1.0:
            raise ValueError(f"offset_ema must lie in [0, 1), got {self.offset_ema}")
        if self.prior_weight < 0:
            raise ValueError(f"prior_weight must be >= 0, got {self.prior_weight}")
        if self.prune_every < 0:
            raise ValueError(f"prune_every must be >= 0, got {self.prune_every}")

    @property
    def effective_patience(self) -> int:
        return self.patience if self.patience is not None else (50 if self.optimizer == "adam" else 5)

    @property
    def loss_terms(self) -> tuple[LossTerm, ...]:
        return self.terms if self.terms is not None else (LossTerm("path_gain", self.loss),)

    @property
    def offset_mode(self) -> str:
        return self.offset if self.offset is not None else ("closed_form" if self.estimate_offset else "none")


@dataclass
class Uncertainty:
    """Laplace approximation at the solution: per-object std of eps_r, sigma (and S, K_xpd when present) at the
    noise levels ``noise`` (per feature block; ``noise_db`` the power one)."""

    noise_db: float
    eps_std: np.ndarray
    sigma_std: np.ndarray
    eps_identified: np.ndarray
    sigma_identified: np.ndarray
    log_std: np.ndarray  # std of the free (transformed) parameters [P]
    scattering_std: np.ndarray | None = None
    xpd_std: np.ndarray | None = None
    scattering_identified: np.ndarray | None = None  # std < 0.05 (absolute; S and K_xpd lie in [0, 1])
    xpd_identified: np.ndarray | None = None
    noise: dict = field(default_factory=dict)


@dataclass
class CalibrationResult:
    eps_r: np.ndarray  # [K] at reference frequency
    sigma: np.ndarray  # [K] S/m
    power_law: np.ndarray  # [K, 4]
    loss: float
    iterations: int
    seconds: float
    best_start: int
    offset_db: float  # global gain offset added to the simulated powers (never absorbed by the materials)
    start_losses: np.ndarray
    history: list[dict] = field(default_factory=list)
    uncertainty: Uncertainty | None = None
    model: PerObjectMaterials | None = None
    scattering: np.ndarray | None = None  # [K] S (None when not part of the model)
    xpd: np.ndarray | None = None  # [K] K_xpd
    offset_mode: str = "none"
    terms: list[str] = field(default_factory=list)
    fit: tuple[str, ...] = ("eps_r", "sigma")
    mechanisms: list[str] = field(default_factory=list)  # traced mechanisms (set by calibrate_scene)
    resumed_at: int | None = None  # iteration a resumed run continued from
    converged: bool = True  # False: the round ended at the iteration cap, not by the stopping rule
    inference: dict | None = None  # posterior calibration report (noise, prior strength, labels, held-out check)

    def mre(self, eps_true: np.ndarray, sigma_true: np.ndarray) -> tuple[float, float]:
        return (float(np.mean(np.abs(self.eps_r - eps_true) / eps_true)),
                float(np.mean(np.abs(self.sigma - sigma_true) / sigma_true)))


# ------------------------------------------------------------------------------------------------ objective
def _needed(t: Targets, cfg: CalibrationConfig) -> set[str]:
    feats = {term.feature for term in cfg.loss_terms}
    missing = feats - set(t.available())
    if missing:
        raise ValueError(f"loss terms use {sorted(missing)}, but the targets have no such measurements "
                         f"(available: {t.available()})")
    if cfg.offset_mode != "none":
        feats.add(_offset_feature(t, cfg))
    return feats


def _offset_feature(t: Targets, cfg: CalibrationConfig) -> str:
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
    f = _offset_feature(t, cfg)
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
        if "b" in self.mu:  # power-law exponents: slopes of log eps_r, log sigma over one e-fold of frequency
            f = torch.tensor([self.frequency_hz, self.frequency_hz * math.e], dtype=mv.eps_r.dtype)
            m2 = model(f)
            for q, v in (("b", torch.log(m2.eps_r[:, 1]) - torch.log(m2.eps_r[:, 0])),
                         ("d", torch.log(m2.sigma[:, 1]) - torch.log(m2.sigma[:, 0]))):
                parts.append((v - tiled(self.mu[q], v)) / tiled(self.sd[q], v))
        return torch.cat(parts, -1)

    def with_exponents(self, b: np.ndarray, d: np.ndarray, sd_b: float = 0.5, sd_d: float = 1.0) -> PriorStats:
        """A copy that also holds Gaussian priors on the power-law exponents b, d [K] (used by multi-band models,
        whose exponents the reference-frequency read-outs do not constrain)."""
        dtype = next(iter(self.mu.values())).dtype
        mu = dict(self.mu, b=torch.as_tensor(np.nan_to_num(b), dtype=dtype),
                  d=torch.as_tensor(np.nan_to_num(d), dtype=dtype))
        sd = dict(self.sd, b=torch.full(mu["b"].shape[-1:], sd_b, dtype=dtype),
                  d=torch.full(mu["d"].shape[-1:], sd_d, dtype=dtype))
        return PriorStats(mu, sd, self.frequency_hz)


def objective(ps: PathSet, model, t: Targets, cfg: CalibrationConfig, offset_state: torch.Tensor | None = None,
              prior: PriorStats | None = None, residuals: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Loss [B], gain offset [B] (dB) and (with ``residuals``) the stacked scaled residuals [B, R] whose squares sum
    to the loss (least-squares terms only). ``offset_state`` fixes the offset (EMA mode); else it follows
    ``cfg.offset_mode``."""
    feats = simulate_features(ps, model, t, _needed(t, cfg), cfg.chunk_size)
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
        if residuals:
            blocks.append(raw * (math.sqrt(term.weight) * scale))
    if prior is not None and cfg.prior_weight > 0:
        rp = prior.residuals(model)
        loss = loss + cfg.prior_weight * (rp * rp).mean(-1)
        if residuals:
            blocks.append(rp * math.sqrt(cfg.prior_weight / rp.shape[-1]))
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


# ------------------------------------------------------------------------------------------- parameters
def trainable_params(model) -> list[torch.nn.Parameter]:
    """The parameters of ``model`` that calibration fits (each [B, K_i])."""
    return [p for p in model.parameters() if p.requires_grad]


def flat_params(params) -> torch.Tensor:
    """Parameters ``params`` (each [B, K_i]) concatenated into one detached [B, sum K_i] tensor."""
    return torch.cat([p.detach() for p in params], dim=1)


def set_flat_params(params, flat: torch.Tensor) -> None:
    """Write ``flat`` [B, sum K_i] back into ``params`` (inverse of :func:`flat_params`)."""
    i = 0
    with torch.no_grad():
        for p in params:
            k = p.shape[1]
            p.copy_(flat[:, i:i + k])
            i += k


def _projected_step(A: torch.Tensor, g: torch.Tensor, theta: torch.Tensor, step: torch.Tensor, params,
                    project: Callable[[], None]) -> torch.Tensor:
    """LM step [B, P] under a box (``project`` clips the parameters in place): components the box clipped are
    fixed at their clipped value and the free ones re-solved from the reduced normal equations
    A_ff s_f = -(g_f + A_fc s_c). Leaves the parameters at ``theta`` + the returned step."""
    project()
    clipped_step = flat_params(params) - theta
    c = ((clipped_step - step).abs() > 1e-12).to(A.dtype)  # [B, P] clipped components
    if not bool(c.any()):
        return clipped_step
    free = 1.0 - c
    A2 = A * free[:, :, None] * free[:, None, :] + torch.diag_embed(c)
    rhs = torch.where(c > 0, clipped_step, -(g + (A @ (clipped_step * c)[..., None]).squeeze(-1)))
    step = torch.nan_to_num(torch.linalg.solve(A2, rhs[..., None]).squeeze(-1)).clamp(-2.0, 2.0)
    set_flat_params(params, theta + step)
    project()
    return flat_params(params) - theta


def residuals(ps: PathSet, model, t: Targets, cfg: CalibrationConfig, offset_state: torch.Tensor | None = None,
              prior: PriorStats | None = None) -> torch.Tensor:
    """Stacked scaled residuals [B, R] (sum of squares = loss; offset-corrected when configured)."""
    return objective(ps, model, t, cfg, offset_state, prior, residuals=True)[2]


def forward_columns(ps: PathSet, model, t: Targets, cfg: CalibrationConfig, offset_state, prior, names, sizes,
                     theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Residuals [B, R] and Jacobian columns [P, B, R] by forward-mode AD (dual numbers).

    The engine is batched over starts, so G tangent directions are evaluated in one pass by repeating the B
    starts G times (start copy g carries the tangent e_g): one engine call of batch G B instead of G calls
    (much less per-call overhead than vmapped ``torch.func.jvp``). G is bounded by ``DUAL_MAX_LANES``.
    """
    B, P = theta.shape
    lanes = B * min(ps.num_paths, cfg.chunk_size or ps.num_paths)
    G = max(1, min(P, DUAL_MAX_LANES // max(lanes, 1)))
    eye = torch.eye(P, dtype=theta.dtype, device=theta.device)
    r0, cols = None, []
    for g0 in range(0, P, G):
        g = min(G, P - g0)
        state = None if offset_state is None else offset_state.repeat(g)
        with fwad.dual_level():
            d = path_jacobian.dual_state(model, names, sizes, theta, eye[g0:g0 + g])
            out = residuals(ps, lambda fr, d=d: functional_call(model, d, (fr,)), t, cfg, state, prior)
            primal, tangent = fwad.unpack_dual(out)
        r0 = primal[:B].detach() if r0 is None else r0
        cols.append(tangent.reshape(g, B, -1))
    return r0, torch.cat(cols)


def prior_block(model, prior: PriorStats, cfg: CalibrationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled prior residuals [B, Pp] (as stacked by :func:`objective`) and their Jacobian [B, Pp, P]; each start's
    residuals depend on its own parameters only, so one reverse pass per residual gives every start's row."""
    params = trainable_params(model)
    with torch.enable_grad():
        rp = prior.residuals(model)
        rp = rp * math.sqrt(cfg.prior_weight / rp.shape[-1])
        rows = []
        for i in range(rp.shape[1]):
            g = torch.autograd.grad(rp[:, i].sum(), params, retain_graph=True, allow_unused=True)
            rows.append(torch.cat([torch.zeros_like(p) if x is None else x for x, p in zip(g, params)], 1))
    return rp.detach(), torch.stack(rows, 1).detach()


def jacobian(ps: PathSet, model, t: Targets, cfg: CalibrationConfig, offset_state: torch.Tensor | None = None,
             prior: PriorStats | None = None, num_residuals: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Residuals r [B, R] and their Jacobian J [B, R, P] w.r.t. the free parameters (per start).

    Starts are independent, so one tangent (or cotangent) shared by all starts yields every start's column
    (row): forward mode costs P passes, reverse mode R passes; the cheaper one is used.
    """
    params = trainable_params(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    sizes = [p.shape[1] for p in params]
    theta = flat_params(params)
    B, P = theta.shape
    if num_residuals is None:
        with torch.no_grad():
            num_residuals = residuals(ps, model, t, cfg, offset_state, prior).shape[1]
    if path_jacobian.supports(cfg, model):  # one reverse pass over per-interaction materials
        r, J = path_jacobian.path_gain_residual_jacobian(ps, model, t, cfg, offset_state, names, sizes, theta)
        if prior is None or cfg.prior_weight == 0:
            return r, J
        rp, Jp = prior_block(model, prior, cfg)
        return torch.cat([r, rp], 1), torch.cat([J, Jp], 1)
    if P < num_residuals:  # forward mode: the tangents ride along the start dimension (see forward_columns)
        r, cols = forward_columns(ps, model, t, cfg, offset_state, prior, names, sizes, theta)
        return r, cols.permute(1, 2, 0)
    r = residuals(ps, model, t, cfg, offset_state, prior)
    R = r.shape[1]
    rows = []
    for i in range(R):  # reverse mode, one residual at a time (chunked engines are checkpointed)
        g = torch.autograd.grad(r[:, i].sum(), params, retain_graph=i < R - 1, allow_unused=True)
        rows.append(torch.cat([torch.zeros_like(p) if x is None else x for x, p in zip(g, params)], 1))
    return r.detach(), torch.stack(rows, 1)


# ------------------------------------------------------------------------------------------- uncertainty
_NOISE_FLOOR = {"path_gain": 0.1, "mpc_power": 0.1, "delay_spread": 0.1, "mean_delay": 0.1, "cfr": 1e-3}
_GAUSSIAN_METRIC = {"path_gain": "mse_db", "mpc_power": "mse_db", "delay_spread": "mse", "mean_delay": "mse",
                    "cfr": "nmse"}


def laplace(ps: PathSet, model: PerObjectMaterials, t: Targets, cfg: CalibrationConfig,
            prior_log_std: float = math.log(10.0)) -> Uncertainty:
    """Gauss-Newton/Laplace std of a single-start model: cov = (sum_b J_b^T J_b / s_b^2 + I / p^2)^-1 over the
    measured feature blocks b (Gaussian noise s_b: ``cfg.noise_db`` for powers, else the residual RMS), mapped to
    the physical read-outs by the delta method. Units of s_b: dB (powers), ns (delays), relative (CFR)."""
    params = trainable_params(model)
    P = sum(p.shape[1] for p in params)
    H = torch.zeros(P, P, dtype=params[0].dtype)
    noise = {}
    feats = list(dict.fromkeys(term.feature for term in cfg.loss_terms))
    off_mode = "closed_form" if cfg.offset_mode != "none" else "none"
    for feat in feats:
        c = replace(cfg, terms=(LossTerm(feat, _GAUSSIAN_METRIC[feat]),), offset=off_mode, optimizer="lbfgs",
                    prior_weight=0.0)
        r, J = jacobian(ps, model, t, c)
        w = t.row_weight(feat)
        sw = float(torch.sqrt(w.sum()))
        r, J = r[0] * sw, J[0] * sw  # raw residuals (natural units x sqrt(row weight))
        n = int((w > 0).sum()) * (2 * t.cfr_subcarriers if feat == "cfr" else 1)
        if cfg.noise_db is not None and feat in ("path_gain", "mpc_power"):
            s = cfg.noise_db
        else:
            s = max(float(torch.sqrt((r * r).sum() / max(n - P, 1))), _NOISE_FLOOR[feat])
        noise[feat] = s
        H = H + J.T @ J / s**2
    H = H + torch.eye(P, dtype=H.dtype) / prior_log_std**2
    cov = torch.linalg.inv(H)
    return uncertainty_from_cov(model, cov, noise)


def uncertainty_from_cov(model: PerObjectMaterials, cov: torch.Tensor, noise: dict[str, float]) -> Uncertainty:
    """Per-object std of the read-outs at f_ref from the covariance [P, P] of a single-start model's free
    parameters (delta method); quantities held fixed get std 0."""
    params = trainable_params(model)
    cov = cov.to(params[0].dtype)
    log_std = torch.sqrt(torch.clamp(torch.diagonal(cov), min=0.0))
    # delta method: read-outs (at f_ref) as functions of the free parameters
    ro = model.readout()
    keys = list(ro)
    flat = torch.cat([ro[k][0] for k in keys])
    eye = torch.eye(flat.numel(), dtype=flat.dtype)
    grads = torch.autograd.grad(flat, params, grad_outputs=eye, is_grads_batched=True, allow_unused=True)
    G = torch.cat([torch.zeros(flat.numel(), p.shape[1], dtype=flat.dtype) if g is None else g[:, 0]
                   for g, p in zip(grads, params)], 1)  # [Q K, P]
    std = torch.sqrt(torch.clamp(torch.einsum("ip,pq,iq->i", G, cov, G), min=0.0)).detach().cpu().numpy()
    K = model.thickness.shape[0]
    vals = {k: ro[k][0].detach().cpu().numpy() for k in keys}
    stds = {k: std[i * K:(i + 1) * K] for i, k in enumerate(keys)}
    fitted = set(model.fit)
    for k in keys:  # quantities held fixed have no uncertainty of their own
        if k not in fitted:
            stds[k] = np.zeros(K)
    e, sg = vals["eps_r"], vals["sigma"]
    s_std, x_std = stds.get("scattering"), stds.get("xpd")
    with np.errstate(invalid="ignore", divide="ignore"):
        return Uncertainty(noise.get("path_gain", next(iter(noise.values()), float("nan"))), stds["eps_r"],
                           stds["sigma"], stds["eps_r"] / e < 0.1, stds["sigma"] / sg < 0.1,
                           log_std.cpu().numpy(), s_std, x_std, None if s_std is None else s_std < 0.05,
                           None if x_std is None else x_std < 0.05, noise)


# ------------------------------------------------------------------------------------------- multi-start
def screen_starts(ps: PathSet, model: PerObjectMaterials, targets: Targets, cfg: CalibrationConfig,
                  keep: int, prior: PriorStats | None = None) -> PerObjectMaterials:
    """Evaluate all B starts in one batched forward pass and keep the ``keep`` lowest-loss ones (start 0, the
    prior itself, is always kept)."""
    if model.num_starts <= keep:
        return model
    with torch.no_grad():
        loss, _, _ = objective(ps, model, targets, cfg, prior=prior)
    loss = torch.nan_to_num(loss, nan=math.inf)
    order = [0] + [int(i) for i in torch.argsort(loss) if int(i) != 0][: keep - 1]
    model.reorder_starts(order)
    return model


def _fingerprint(ps: PathSet, model, t: Targets, cfg: CalibrationConfig) -> str:
    """Hash of everything a run's trajectory depends on (problem, configuration, starts)."""
    h = hashlib.sha256()
    c = replace(cfg, max_iter=0)  # the iteration limit may be raised when resuming
    h.update(repr(c).encode())
    for x in (ps.length_m, ps.obj.to(torch.float64), ps.cos_i):
        h.update(x.detach().cpu().numpy().tobytes())
    for name in ("link", "freq_index", "frequencies_hz", "path_gain_db", "weight", "delay_spread_s",
                 "mean_delay_s", "cfr", "mpc_path", "mpc_power_db"):
        v = getattr(t, name)
        if v is not None:
            h.update(name.encode() + v.detach().cpu().numpy().tobytes())
    for name, v in model.state_dict().items():
        h.update(name.encode() + v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def _save_checkpoint(path: Path, state: dict) -> None:
    save_checkpoint(path, state)  # data only (safetensors + JSON), staged then renamed


def _truth_dict(truth) -> dict[str, np.ndarray] | None:
    if truth is None:
        return None
    if isinstance(truth, dict):
        return {k: np.asarray(v, dtype=np.float64) for k, v in truth.items() if v is not None}
    return {"eps_r": np.asarray(truth[0], dtype=np.float64), "sigma": np.asarray(truth[1], dtype=np.float64)}


def calibrate(ps: PathSet, model: PerObjectMaterials, targets: Targets, cfg: CalibrationConfig | None = None,
              truth: tuple[np.ndarray, np.ndarray] | dict | None = None, progress: bool = True,
              uncertainty: bool = True, *, prior: MaterialPrior | PriorStats | None = None,
              checkpoint: str | Path | None = None,
              checkpoint_every: int = 0, resume: bool = False,
              callback: Callable[[int, dict], None] | None = None) -> CalibrationResult:
    """Fit the free parameters of ``model`` (all B starts at once) to ``targets``; keep the best start.

    ``truth``: true (eps_r, sigma) or a dict with any of eps_r, sigma, scattering, xpd [K] (history gets errors).
    ``prior``: the MaterialPrior (or ready PriorStats) of the MAP term (used when ``cfg.prior_weight > 0``).
    ``checkpoint``: file written atomically every ``checkpoint_every`` iterations and at the end; with ``resume``
    an existing checkpoint of the same problem is continued (bit-identical trajectory). ``callback(it, row)`` is
    called after every iteration (after the checkpoint).
    """
    t0 = time.perf_counter()
    cfg = CalibrationConfig() if cfg is None else cfg
    targets.check(ps)
    truth = _truth_dict(truth)
    if isinstance(prior, PriorStats):
        pstats = prior if cfg.prior_weight > 0 else None
    else:
        pstats = PriorStats.from_prior(prior, model.fit, targets.frequencies_hz.dtype) \
            if (prior is not None and cfg.prior_weight > 0) else None
    if cfg.prior_weight > 0 and pstats is None:
        raise ValueError("prior_weight > 0 needs the MaterialPrior (calibrate(..., prior=...))")
    model = screen_starts(ps, model, targets, cfg, cfg.refine_starts, pstats)
    params = trainable_params(model)
    if not params:
        raise ValueError("the material model has no free parameters")
    B = model.num_starts
    history: list[dict] = []
    patience = cfg.effective_patience
    ema = cfg.offset_mode == "ema"
    lam = cfg.offset_ema
    ckpt = Path(checkpoint) if checkpoint is not None else None
    fp = _fingerprint(ps, model, targets, cfg) if ckpt is not None else None

    def evaluate(state=None, need_res=False):
        return objective(ps, model, targets, cfg, state, pstats, residuals=need_res)

    def offset_hat() -> torch.Tensor:
        with torch.no_grad():
            c = replace(cfg, offset="closed_form")
            feats = simulate_features(ps, model, targets, _needed(targets, c), cfg.chunk_size)
            return closed_form_offset(feats, targets, c)

    def record(it: int, loss: torch.Tensor, off: torch.Tensor) -> dict:
        b = int(torch.argmin(torch.nan_to_num(loss, nan=math.inf)))
        v = model.values()
        row = {"iteration": it, "loss": float(loss[b]), "best_start": b,
               "seconds": time.perf_counter() - t0 + elapsed0, "offset_db": float(off[b])}
        for k, arr in v.items():
            row[k] = arr[b].tolist()
        if truth is not None:
            for k, tv in truth.items():
                if k in v:
                    est = np.asarray(row[k])
                    if k in ("eps_r", "sigma"):
                        row["mre_eps" if k == "eps_r" else "mre_sigma"] = float(np.mean(np.abs(est - tv) / tv))
                    else:
                        row[f"mae_{k}"] = float(np.mean(np.abs(est - tv)))
        history.append(row)
        return row

    opt = None
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr)
    elif cfg.optimizer == "lbfgs":
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=20, history_size=20, line_search_fn="strong_wolfe")
    mu = torch.full((B,), cfg.lm_damping, dtype=params[0].dtype)
    project = model.project_ if getattr(model, "bounded", False) else None
    elapsed0 = 0.0
    start_it, done, calm, resumed_at = 1, False, 0, None
    prev_loss, prev_theta = None, flat_params(params)
    beta = offset_hat() if ema else None
    num_res = None

    if ckpt is not None and resume and ckpt.exists():  # a folder in its place is an error, not a fresh start
        st = load_checkpoint(ckpt)  # never unpickles: a tampered file cannot run code
        if st.get("fingerprint") != fp:
            raise ValueError(f"{ckpt}: the checkpoint belongs to a different calibration problem or configuration "
                             "(scene, links, measurements, starts or options changed); remove it or drop --resume")
        kept = next(iter(st["model"].values())).shape[0] if st["model"] else B
        if kept < model.num_starts:  # the run had pruned starts: same shapes before loading
            model.reorder_starts(range(kept))
            params = trainable_params(model)
            B = kept
        with torch.no_grad():
            for name, v in st["model"].items():
                dict(list(model.named_parameters()) + list(model.named_buffers()))[name].copy_(v)
        if opt is not None and st["opt"] is not None:
            opt.load_state_dict(st["opt"])
        mu, calm, prev_loss, prev_theta = st["mu"], st["calm"], st["prev_loss"], st["prev_theta"]
        beta, history[:] = st["beta"], st["history"]
        start_it, done, elapsed0 = st["iteration"] + 1, st["done"], st["seconds"]
        loss, off = st["loss"], st["off"]
        resumed_at = st["iteration"]
    else:
        with torch.no_grad():
            loss, off, _ = evaluate(beta)
        record(0, loss, off)

    def save(it: int, finished: bool) -> None:
        if ckpt is None:
            return
        _save_checkpoint(ckpt, {
            "fingerprint": fp, "iteration": it, "done": finished,
            "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "opt": None if opt is None else opt.state_dict(), "mu": mu, "calm": calm, "prev_loss": prev_loss,
            "prev_theta": prev_theta, "beta": beta, "history": history,
            "seconds": time.perf_counter() - t0 + elapsed0, "loss": loss, "off": off})

    it = start_it - 1
    stop = bool(done)
    iters = range(start_it, cfg.max_iter + 1) if not done else range(0)
    for it in track(iters, f"calibrating ({cfg.optimizer}, {B} starts)", enabled=progress):
        if ema:  # seed 003 eq. 27: beta_t = lambda beta_{t-1} + (1 - lambda) beta_hat_t, fixed during the step
            beta = lam * beta + (1.0 - lam) * offset_hat()
        if cfg.optimizer == "adam":
            opt.zero_grad()
            lo, _, _ = evaluate(beta)
            lo.sum().backward()
            opt.step()
            if project is not None:
                project()
        elif cfg.optimizer == "lbfgs":
            def closure(state=beta):
                opt.zero_grad()
                lo, _, _ = evaluate(state)
                tot = lo.sum()
                tot.backward()
                return tot
            opt.step(closure)
            if project is not None:
                project()
        else:  # batched Levenberg-Marquardt on the stacked residuals
            r, J = jacobian(ps, model, targets, cfg, beta, pstats, num_res)
            num_res = r.shape[1]
            with torch.no_grad():  # the current loss by the same computation as the trial's (Jacobian passes
                cost, cur_off, _ = evaluate(beta)  # round differently; comparing across them never settles)
            JtJ = J.transpose(1, 2) @ J
            g = J.transpose(1, 2) @ r.unsqueeze(-1)
            theta = flat_params(params)
            diag = torch.diagonal(JtJ, dim1=1, dim2=2)
            # Marquardt scaling with a floor: a parameter the data do not see (J column ~ 0) gets damped like a
            # weakly seen one instead of taking unregularised steps across its range
            diag = torch.maximum(diag, 1e-9 * diag.amax(-1, keepdim=True)).clamp_min(1e-12)
            A = JtJ + torch.diag_embed(mu[:, None] * diag)
            step = torch.nan_to_num(-torch.linalg.solve(A, g).squeeze(-1)).clamp(-2.0, 2.0)
            set_flat_params(params, theta + step)
            if project is not None:  # box: clipped components stop at the bound, the others are re-solved
                step = _projected_step(A, g.squeeze(-1), theta, step, params, project)
            with torch.no_grad():
                trial, trial_off, _ = evaluate(beta)
            # per start: accept a strict improvement and trust the model more, or reject and damp more (accepting
            # equal losses would let a converged start alternate between both forever)
            better = trial < cost
            mu = torch.where(better, mu / 3.0, mu * 4.0).clamp(1e-9, 1e9)
            set_flat_params(params, theta + step * better[:, None].to(theta.dtype))
            # the trial evaluation is the new state where accepted; rejected starts keep their current one
            loss = torch.where(better, trial, cost)
            off = torch.where(better, trial_off, cur_off)
        if cfg.optimizer != "lm":
            with torch.no_grad():
                loss, off, _ = evaluate(beta)
        if cfg.prune_every and cfg.optimizer == "lm" and it % cfg.prune_every == 0 and model.num_starts > 1:
            keep = torch.argsort(torch.nan_to_num(loss, nan=math.inf))[: (model.num_starts + 1) // 2]
            model.reorder_starts(keep.tolist())
            params = trainable_params(model)
            mu, loss, off = mu[keep], loss[keep], off[keep]
            beta = None if beta is None else beta[keep]
            prev_theta = prev_theta[keep]
            prev_loss = None if prev_loss is None else prev_loss[keep]
            B = model.num_starts
        row = record(it, loss, off)
        theta_now = flat_params(params)
        best = int(torch.argmin(torch.nan_to_num(loss, nan=math.inf)))
        dl = abs(float(loss[best]) - float(prev_loss[best])) if prev_loss is not None else math.inf
        dp = float((theta_now[best] - prev_theta[best]).abs().max())
        stop = False
        if cfg.optimizer == "lm" and dp == 0.0:  # a rejected LM step is no evidence of convergence
            stop = float(mu[best]) >= 1e8
        else:
            calm = calm + 1 if (dl < cfg.alpha and dp < cfg.beta) else 0
            prev_loss, prev_theta = loss.detach().clone(), theta_now
            stop = calm >= patience
        if stop or it == cfg.max_iter:  # 'done' only when converged: a larger max_iter can continue a run
            save(it, stop)
        elif checkpoint_every and it % checkpoint_every == 0:
            save(it, False)
        if callback is not None:
            callback(it, row)
        if stop:
            break
    best = int(torch.argmin(torch.nan_to_num(loss, nan=math.inf)))
    single = model.select(best)
    pl = single.power_law_coefficients()[0]
    v = single.values()
    unc = laplace(ps, single, targets, cfg) if uncertainty else None
    return CalibrationResult(eps_r=v["eps_r"][0], sigma=v["sigma"][0], power_law=pl,
                             loss=float(loss[best]), iterations=it, seconds=time.perf_counter() - t0 + elapsed0,
                             best_start=best, offset_db=float(off[best]), start_losses=loss.detach().cpu().numpy(),
                             history=history, uncertainty=unc, model=single,
                             scattering=v["scattering"][0] if "scattering" in v else None,
                             xpd=v["xpd"][0] if "xpd" in v else None, offset_mode=cfg.offset_mode,
                             terms=[str(x) for x in cfg.loss_terms], fit=tuple(model.fit), resumed_at=resumed_at,
                             converged=bool(stop))


__all__ = ["LOSSES", "OFFSET_MODES", "OPTIMIZERS", "CalibrationConfig", "CalibrationResult", "PriorStats",
           "path_gain_loss", "prior_block", "uncertainty_from_cov",
           "Uncertainty", "calibrate", "closed_form_offset", "jacobian", "laplace", "objective", "residuals",
           "screen_starts"]

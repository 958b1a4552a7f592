"""Sampling-based posterior of the material parameters, for when the Laplace approximation is poor.

The Laplace (Gauss-Newton) report of :func:`rftwin.calibrate.laplace` is a Gaussian at the optimum. It misleads
when the data leave a parameter weakly determined: the likelihood then has flat directions, curved valleys and
one-sided tails (e.g. the conductivity of a low-loss wall barely changes any path gain once it is small enough),
or several optima. This module samples the posterior instead, on the cached paths (no re-tracing):

    log p(theta | y) = -1/2 sum_m r_m(theta)^2 / s^2  -  1/2 sum_p ((theta_p - mu_p) / tau_p)^2  + const

with r the path-gain residuals in dB of the measured rows (times sqrt(row weight); with ``estimate_offset`` a
global gain offset is profiled out in closed form, which for a flat offset prior equals marginalising it up to
a constant), s the noise std (dB),
theta the model's free log-parameters (u = log(eps_r - 1), v = log sigma, or the power-law ones) and a Gaussian
prior N(mu, tau^2) in those coordinates.

Sampler: C independent chains of preconditioned Metropolis-adjusted Langevin (``mala``) or random-walk Metropolis
(``rwm``), all chains evaluated in one batched engine call per step. The preconditioner starts as the Laplace
covariance and is re-estimated from the pooled chains half-way through the burn-in; the step size is adapted
during the burn-in towards the usual acceptance targets (0.57 MALA, 0.23 RWM) and then frozen, so the kept
samples come from a fixed, valid Markov kernel. Chains start over-dispersed (around the optimum at
``init_scale`` x the Laplace std, or from the prior), so disagreement between them - split R-hat > 1.1 - reveals
several modes or a posterior the chains could not cover.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import functional_call

from rftwin.calibrate.problem import Targets, simulate_path_gain_db
from rftwin.materials.per_object import PerObjectMaterials
from rftwin.pathset import PathSet
from rftwin.progress import track

METHODS = ("mala", "rwm", "nuts")
_TARGET_ACCEPT = {"mala": 0.57, "rwm": 0.234}
# Names of the free parameters of PerObjectMaterials and what they are.
_PARAM_KIND = {"u": "log(eps_r-1)", "v": "log(sigma)", "alpha": "log(a)", "b": "b", "gamma": "log(c)", "d": "d"}


@dataclass
class PosteriorSamples:
    """Posterior draws. ``theta`` [C, S, P]: C chains x S kept samples of the P free log-parameters named
    ``param_names`` ("object.kind"); ``eps_r``/``sigma`` [C, S, K] the implied values at the model's reference
    frequency (S/m for sigma); ``log_post`` [C, S]; ``acceptance`` [C] during sampling; ``rhat`` / ``ess`` [P]
    split R-hat and effective sample size; ``step_size`` the frozen step; ``noise_db`` the noise std used;
    ``laplace_log_std`` [P] the Laplace std at the start point for comparison; ``dropped_chains`` the indices of
    chains left out as stuck (see ``drop_below_nats``)."""

    param_names: list[str]
    object_names: list[str]
    theta: np.ndarray
    eps_r: np.ndarray
    sigma: np.ndarray
    log_post: np.ndarray
    acceptance: np.ndarray
    rhat: np.ndarray
    ess: np.ndarray
    method: str
    step_size: float
    noise_db: float
    laplace_log_std: np.ndarray
    fitted: dict[str, bool] = field(default_factory=dict)
    dropped_chains: list[int] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        """All split R-hat < 1.1 (chains agree; otherwise several modes or too short a run)."""
        return bool(np.all(self.rhat < 1.1))

    def log_std(self) -> np.ndarray:
        """Posterior std of each free log-parameter [P] (pooled over chains)."""
        return self.theta.reshape(-1, self.theta.shape[-1]).std(0, ddof=1)

    def chain_means(self) -> np.ndarray:
        """[C, P] per-chain means (far apart when the chains sit in different modes)."""
        return self.theta.mean(1)

    def summary(self, quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)) -> list[dict]:
        """Per object and fitted quantity: mean, std and quantiles of eps_r / sigma (S/m) over all kept draws."""
        rows = []
        for kind, vals in (("eps_r", self.eps_r), ("sigma", self.sigma)):
            if not self.fitted.get(kind, True):
                continue
            flat = vals.reshape(-1, vals.shape[-1])
            qs = np.quantile(flat, quantiles, axis=0)
            for k, name in enumerate(self.object_names):
                row = dict(object=name, quantity=kind, mean=float(flat[:, k].mean()), std=float(flat[:, k].std(ddof=1)))
                row.update({f"q{round(100 * q):02d}": float(qs[i, k]) for i, q in enumerate(quantiles)})
                rows.append(row)
        return rows

    def to_dict(self) -> dict:
        return dict(method=self.method, chains=int(self.theta.shape[0]), dropped_chains=self.dropped_chains,
                    samples_per_chain=int(self.theta.shape[1]),
                    noise_db=self.noise_db, step_size=self.step_size, converged=self.converged,
                    acceptance=[float(a) for a in self.acceptance],
                    parameters=[dict(parameter=n, log_std=float(s), laplace_log_std=float(l_), rhat=float(r),
                                     ess=float(e))
                                for n, s, l_, r, e in zip(self.param_names, self.log_std(), self.laplace_log_std,
                                                          self.rhat, self.ess)],
                    materials=self.summary())


def _arviz_per_parameter(x: np.ndarray, fn) -> np.ndarray:
    """``fn`` (an ArviZ diagnostic) of draws ``x`` [C, S, P] for every parameter: [P]."""
    import arviz as az  # noqa: PLC0415

    ds = az.convert_to_dataset({"theta": np.asarray(x, dtype=np.float64)})
    return np.asarray(fn(ds)["theta"].values, dtype=np.float64).reshape(x.shape[2])


def split_rhat(x: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat (Vehtari et al. 2021, ArviZ) of draws ``x`` [C, S, P]: [P]; ~1 when the
    chains agree (> 1.01 is a warning, > 1.1 a failure)."""
    if x.shape[1] < 4:
        return np.full(x.shape[2], np.nan)
    import arviz as az  # noqa: PLC0415

    return _arviz_per_parameter(x, lambda ds: az.rhat(ds, method="rank"))


def effective_sample_size(x: np.ndarray) -> np.ndarray:
    """Bulk effective sample size (ArviZ, rank-normalised) of draws ``x`` [C, S, P]: [P]."""
    import arviz as az  # noqa: PLC0415

    return _arviz_per_parameter(x, lambda ds: az.ess(ds, method="bulk"))


def _free(model: PerObjectMaterials) -> tuple[list[str], list[int], torch.Tensor]:
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the material model has no free parameters")
    if params[0].shape[0] != 1:
        raise ValueError(f"sample_posterior needs a single-start model (got {params[0].shape[0]} starts); "
                         "use CalibrationResult.model or PerObjectMaterials.select(i)")
    return names, [p.shape[1] for p in params], torch.cat([p.detach() for p in params], 1)[0]


def _replicate(model: PerObjectMaterials, n: int) -> PerObjectMaterials:
    """A copy of the single-start ``model`` with ``n`` identical starts (parameters and per-start buffers)."""
    rep = copy.deepcopy(model)
    with torch.no_grad():
        for name, t in list(rep.named_parameters()) + list(rep.named_buffers()):
            if name != "thickness" and t.dim() >= 1 and t.shape[0] == 1:
                t.data = t.data.expand(n, *t.shape[1:]).clone()
    return rep


def path_gain_residuals(ps: PathSet, model, targets: Targets, estimate_offset: bool = False) -> torch.Tensor:
    """dB residuals simulated - measured [B, M'] of the rows with a measured path gain (times sqrt(row weight));
    with ``estimate_offset`` the weighted-mean offset is removed (closed-form global gain offset)."""
    if targets.path_gain_db is None:
        raise ValueError("the targets hold no path gains: the sampled likelihood uses path gain (dB)")
    meas = targets.path_gain_db
    rows = torch.isfinite(meas)
    if not bool(rows.any()):
        raise ValueError("no measured path gain in the targets")
    r = (simulate_path_gain_db(ps, model, targets) - meas)[:, rows]
    w = torch.ones_like(meas[rows]) if targets.weight is None else targets.weight.to(meas.dtype)[rows]
    if estimate_offset:
        r = r - (r * w).sum(-1, keepdim=True) / w.sum()
    return r * torch.sqrt(w)


def sample_posterior(ps: PathSet, model: PerObjectMaterials, targets: Targets, *, noise_db: float | None = None,
                     estimate_offset: bool = False,
                     prior_log_std: float | np.ndarray = math.log(10.0), prior_mean: np.ndarray | None = None,
                     method: str = "mala", num_chains: int = 8, num_samples: int = 500, burn_in: int = 500,
                     thin: int = 1, init: str | np.ndarray = "laplace", init_scale: float = 2.0, seed: int = 0,
                     drop_below_nats: float | None = 20.0, object_names: list[str] | None = None,
                     progress: bool = True) -> PosteriorSamples:
    """Sample the posterior of the free parameters of the single-start ``model`` (e.g. a calibration result's
    ``model``) given ``targets`` on the cached paths ``ps``.

    ``noise_db``: measurement noise std (dB); None estimates it from the residuals at the model, RMS with
    M - P degrees of freedom (floored at 0.1 dB). ``estimate_offset``: unknown absolute power reference (profiled
    global offset). Prior: N(``prior_mean``, ``prior_log_std``^2) per free log-parameter (mean default: the
    model's values, i.e. the same weak prior the Laplace report uses). ``init``: ``laplace`` (model values +
    ``init_scale`` x Laplace std noise), ``prior`` (draws from the prior) or an array [num_chains, P].
    ``num_samples`` kept per chain after ``burn_in`` adaptation steps, keeping every ``thin``-th step.
    ``drop_below_nats``: chains whose mean log posterior lies more than this below the best chain's are stuck in
    a region of negligible mass (e.g. a far local optimum); they are left out of the returned draws and listed in
    ``dropped_chains`` (None keeps all).
    ``method``: ``mala`` / ``rwm`` (batched chains, hand-written) or ``nuts`` (Pyro's No-U-Turn sampler with a
    dense mass matrix adapted during ``burn_in``; the chains run one after the other).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}', expected one of {METHODS}")
    if num_chains < 2 or num_samples < 4 or burn_in < 0 or thin < 1:
        raise ValueError("need num_chains >= 2, num_samples >= 4, burn_in >= 0, thin >= 1")
    names, sizes, th_map = _free(model)
    P = int(th_map.shape[0])
    dtype = th_map.dtype
    gen = torch.Generator().manual_seed(int(seed))

    # noise and Laplace covariance at the start point
    rep1 = _replicate(model, 1)

    def resid(theta: torch.Tensor, m: PerObjectMaterials) -> torch.Tensor:
        d = dict(zip(names, torch.split(theta, sizes, 1)))
        return path_gain_residuals(ps, lambda *a: functional_call(m, d, a), targets, estimate_offset)

    with torch.no_grad():
        r0 = resid(th_map[None], rep1)[0]
    s = noise_db
    if s is None:
        s = max(float(torch.sqrt((r0 * r0).sum() / max(r0.shape[0] - P, 1))), 0.1)
    s = float(s)
    if not s > 0:
        raise ValueError(f"noise_db must be > 0, got {s}")
    tau = torch.as_tensor(np.broadcast_to(np.asarray(prior_log_std, dtype=np.float64), (P,)).copy(), dtype=dtype)
    if not torch.all(tau > 0):
        raise ValueError("prior_log_std must be > 0")
    mu = th_map.clone() if prior_mean is None else torch.as_tensor(np.asarray(prior_mean, np.float64), dtype=dtype)
    if mu.shape != (P,):
        raise ValueError(f"prior_mean must have {P} entries (free parameters), got {tuple(mu.shape)}")
    J = torch.autograd.functional.jacobian(lambda th: resid(th[None], rep1)[0], th_map).detach()  # [M, P]
    H = J.T @ J / s**2 + torch.diag(1.0 / tau**2)
    cov_lap = torch.linalg.inv(H)
    cov_lap = 0.5 * (cov_lap + cov_lap.T)
    lap_std = torch.sqrt(torch.clamp(torch.diagonal(cov_lap), min=0.0))

    C = int(num_chains)
    rep = _replicate(model, C)

    def log_post_batch(theta: torch.Tensor, m: PerObjectMaterials | None = None) -> torch.Tensor:
        """Log posterior [B] of states ``theta`` [B, P] (``m``: a model with B starts; default the C chains')."""
        r = resid(theta, rep if m is None else m)
        lp = -0.5 * (r * r).sum(-1) / s**2 - 0.5 * (((theta - mu) / tau) ** 2).sum(-1)
        return torch.where(torch.isfinite(lp), lp, torch.full_like(lp, -math.inf))

    def log_post(theta: torch.Tensor) -> torch.Tensor:
        return log_post_batch(theta)

    def value_and_grad(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if method == "rwm":
            with torch.no_grad():
                return log_post(theta), torch.zeros_like(theta)
        th = theta.detach().requires_grad_(True)
        lp = log_post(th)
        (g,) = torch.autograd.grad(torch.where(torch.isfinite(lp), lp, torch.zeros_like(lp)).sum(), th)
        return lp.detach(), torch.nan_to_num(g.detach(), nan=0.0, posinf=0.0, neginf=0.0)

    # initial states
    if isinstance(init, str):
        z = torch.randn(C, P, generator=gen, dtype=dtype)
        if init == "laplace":
            theta = th_map[None] + init_scale * z @ torch.linalg.cholesky(cov_lap).T
            theta[0] = th_map
        elif init == "prior":
            theta = mu[None] + z * tau[None]
        else:
            raise ValueError(f"init must be 'laplace', 'prior' or an array [{C}, {P}], got '{init}'")
    else:
        theta = torch.as_tensor(np.asarray(init, np.float64), dtype=dtype).clone()
        if theta.shape != (C, P):
            raise ValueError(f"init array must be [{C}, {P}], got {tuple(theta.shape)}")

    if method == "nuts":  # Pyro's NUTS, one chain after the other from the same over-dispersed starts
        reps: dict[int, PerObjectMaterials] = {1: rep1}

        def log_post_any(t: torch.Tensor) -> torch.Tensor:
            if t.shape[0] not in reps:
                reps[t.shape[0]] = _replicate(model, t.shape[0])
            return log_post_batch(t, reps[t.shape[0]])

        th, lps, acc, h = _nuts_chains(log_post_any, theta, num_samples, burn_in, thin, seed, progress)
    else:
        precond = cov_lap.clone()
        Lc = torch.linalg.cholesky(precond)
        Linv = torch.linalg.inv(Lc)
        h = (1.65 if method == "mala" else 2.38) / (P ** (1 / 6) if method == "mala" else math.sqrt(P))
        target = _TARGET_ACCEPT[method]
        lp, g = value_and_grad(theta)
        total = burn_in + num_samples * thin
        kept_theta, kept_lp = [], []
        acc_sum = torch.zeros(C, dtype=dtype)
        window: list[torch.Tensor] = []
        for it in track(range(total), f"sampling posterior ({method}, {C} chains)", enabled=progress):
            z = torch.randn(C, P, generator=gen, dtype=dtype)
            drift = 0.5 * h**2 * g @ precond  # precond is symmetric
            prop = theta + drift + h * z @ Lc.T
            lp_p, g_p = value_and_grad(prop)
            log_a = lp_p - lp
            if method == "mala":  # Hastings correction of the asymmetric Langevin proposal
                fwd = ((prop - theta - drift) @ Linv.T) / h
                bwd = ((theta - prop - 0.5 * h**2 * g_p @ precond) @ Linv.T) / h
                log_a = log_a - 0.5 * (bwd * bwd).sum(-1) + 0.5 * (fwd * fwd).sum(-1)
            u = torch.rand(C, generator=gen, dtype=dtype)
            accept = (torch.log(u) < log_a) & torch.isfinite(lp_p)
            theta = torch.where(accept[:, None], prop, theta)
            lp = torch.where(accept, lp_p, lp)
            g = torch.where(accept[:, None], g_p, g)
            if it < burn_in:  # adaptation (Robbins-Monro on log h; one covariance re-estimate half-way)
                rate = float(accept.to(dtype).mean())
                h *= math.exp((rate - target) / math.sqrt(it + 1.0))
                if it >= burn_in // 4:
                    window.append(theta.clone())
                if it == burn_in // 2 and len(window) > 10:
                    w = torch.cat(window).reshape(-1, P)
                    emp = torch.cov(w.T).reshape(P, P)
                    precond = 0.9 * emp + 0.1 * torch.diag(torch.diagonal(cov_lap))
                    precond = 0.5 * (precond + precond.T)
                    try:
                        Lc = torch.linalg.cholesky(precond)
                        h = (1.65 if method == "mala" else 2.38) / (P ** (1 / 6) if method == "mala" else math.sqrt(P))
                    except RuntimeError:  # not positive definite: keep the Laplace preconditioner
                        precond = cov_lap.clone()
                        Lc = torch.linalg.cholesky(precond)
                    Linv = torch.linalg.inv(Lc)
                    window.clear()
            else:
                acc_sum += accept.to(dtype)
                if (it - burn_in) % thin == thin - 1:
                    kept_theta.append(theta.clone())
                    kept_lp.append(lp.clone())
        th = torch.stack(kept_theta, 1)  # [C, S, P]
        lps = torch.stack(kept_lp, 1)
        acc = acc_sum / max(num_samples * thin, 1)
    dropped: list[int] = []
    if drop_below_nats is not None:
        m = lps.mean(1)
        keep = m >= m.max() - float(drop_below_nats)
        dropped = [int(i) for i in torch.nonzero(~keep).flatten()]
        th, lps, acc = th[keep], lps[keep], acc[keep]
    C, S = th.shape[0], th.shape[1]
    rep = _replicate(model, C)
    eps, sig = [], []
    with torch.no_grad():
        for j in range(S):
            d = dict(zip(names, torch.split(th[:, j], sizes, 1)))
            mv = functional_call(rep, d, (torch.tensor([model.f_ref_ghz * 1e9], dtype=dtype),))
            eps.append(mv.eps_r[:, 0].expand(C, -1))
            sig.append(mv.sigma[:, 0].expand(C, -1))
    th_np = th.numpy()
    pnames = []
    K = model.thickness.shape[0]
    objs = object_names or ps.object_names or [f"object{k}" for k in range(K)]
    for n, k in zip(names, sizes):
        pnames += [f"{objs[i]}.{_PARAM_KIND.get(n, n)}" for i in range(k)]
    return PosteriorSamples(param_names=pnames, object_names=list(objs), theta=th_np,
                            eps_r=torch.stack(eps, 1).numpy(), sigma=torch.stack(sig, 1).numpy(),
                            log_post=lps.numpy(), acceptance=acc.numpy(), rhat=split_rhat(th_np),
                            ess=effective_sample_size(th_np), method=method,
                            step_size=float(h), noise_db=s, laplace_log_std=lap_std.numpy(),
                            fitted={"eps_r": "eps_r" in model.fit, "sigma": "sigma" in model.fit},
                            dropped_chains=dropped)


def _nuts_chains(log_post_batch, init: torch.Tensor, num_samples: int, warmup: int, thin: int, seed: int,
                 progress: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Pyro NUTS chains from ``init`` [C, P] on the potential -log p: (draws [C, S, P], log p [C, S],
    acceptance [C], mean step size)."""
    import pyro  # noqa: PLC0415
    from pyro.infer import MCMC, NUTS  # noqa: PLC0415

    C, P = init.shape
    draws, acc, steps = [], [], []
    for c in track(range(C), f"sampling posterior (nuts, {C} chains)", enabled=progress):
        pyro.set_rng_seed(int(seed) + c)
        kernel = NUTS(potential_fn=lambda d: -log_post_batch(d["theta"][None])[0], full_mass=True,
                      target_accept_prob=0.8, max_tree_depth=8)
        mcmc = MCMC(kernel, num_samples=num_samples * thin, warmup_steps=max(warmup, 1),
                    initial_params={"theta": init[c].detach().clone()}, disable_progbar=True)
        mcmc.run()
        th = mcmc.get_samples()["theta"][thin - 1::thin].detach()  # [S, P]
        draws.append(th)
        diag = mcmc.diagnostics()
        acc.append(float(next(iter(diag.get("acceptance rate", {"c": float("nan")}).values()))))
        steps.append(float(kernel.step_size))
    th = torch.stack(draws)
    with torch.no_grad():  # in chunks of draws: one engine call over all draws would hold [S, paths] at once
        lp = torch.stack([torch.cat([log_post_batch(x) for x in torch.split(th[c], 64)]) for c in range(C)])
    return th, lp, torch.tensor(acc, dtype=th.dtype), float(np.mean(steps))


__all__ = ["METHODS", "PosteriorSamples", "effective_sample_size", "path_gain_residuals", "sample_posterior",
           "split_rhat"]

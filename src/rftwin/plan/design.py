"""Bayesian experimental design: which links to measure next to learn the material parameters best.

Model (linearised around the prior mean): the measured path gain of link l is y_l = g_l(theta) [+ o] + n_l with
g_l = 10 log10(path gain) (dB), n_l ~ N(0, noise_db^2), an optional unknown power offset o ~ N(0, offset_std_db^2)
shared by all links, and the log-space material parameters theta = (u_k, v_k), u_k = log(eps_r,k - 1),
v_k = log(sigma_k / (S/m)), with prior N(theta_0, diag(s^2)). With J = dg/dtheta [L, P] (torch autograd through
:func:`rftwin.physics.path_coefficients`) the posterior precision after measuring links S is
A_S = Sigma_prior^-1 + J_S^T J_S / noise^2, and the expected information gain is 1/2 log det(A_S Sigma_prior) nats
(D-optimal design). Links are added greedily with rank-one updates (matrix determinant lemma:
log det(A + x x^T / s^2) = log det A + log(1 + x^T A^-1 x / s^2)); whole transmitter configurations (groups of
links) with the block version. With an unknown offset the criterion is the information about the materials
only: log det A - log det A_oo (Schur complement), and posterior stds are marginal over the offset.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from rftwin.pathset import PathSet
from rftwin.physics.engine import MaterialValues, link_gain_db

EPS_KIND, SIGMA_KIND = "eps_r", "sigma"


@dataclass
class ParameterPrior:
    """Per-object prior, in object (PathSet ``obj`` index) order: ``eps_r`` [K], ``sigma`` [K] (S/m),
    ``log_std_eps`` [K] std of log(eps_r - 1), ``log_std_sigma`` [K] std of log(sigma) (0 = known/fixed),
    ``thickness_m`` [K] slab thickness (m); optional fixed ``scattering`` / ``xpd`` coefficients [K] (needed
    when the PathSet holds diffuse paths)."""

    names: list[str]
    eps_r: np.ndarray
    sigma: np.ndarray
    log_std_eps: np.ndarray
    log_std_sigma: np.ndarray
    thickness_m: np.ndarray
    scattering: np.ndarray | None = None
    xpd: np.ndarray | None = None

    def __post_init__(self) -> None:
        K = len(self.names)
        for n in ("eps_r", "sigma", "log_std_eps", "log_std_sigma", "thickness_m", "scattering", "xpd"):
            if getattr(self, n) is None:
                continue
            a = np.broadcast_to(np.asarray(getattr(self, n), dtype=np.float64), (K,)).copy()
            if not np.all(np.isfinite(a)):
                raise ValueError(f"ParameterPrior.{n} must be finite, got {a}")
            setattr(self, n, a)
        if np.any(self.eps_r < 1.0) or np.any(self.sigma < 0.0) or np.any(self.thickness_m <= 0.0):
            raise ValueError("need eps_r >= 1, sigma >= 0, thickness > 0")
        if np.any(self.log_std_eps < 0) or np.any(self.log_std_sigma < 0):
            raise ValueError("prior stds must be >= 0")

    @classmethod
    def from_twin(cls, twin, log_std_eps: float = 0.3, log_std_sigma: float = 0.7) -> ParameterPrior:
        """Centred on the scene's current materials, with the same log-space std for every object."""
        o = twin.objects
        s = np.array([x.scattering_coefficient for x in o])
        return cls(names=[x.name for x in o], eps_r=np.array([x.relative_permittivity for x in o]),
                   sigma=np.array([x.conductivity for x in o]), log_std_eps=np.full(len(o), log_std_eps),
                   log_std_sigma=np.full(len(o), log_std_sigma), thickness_m=np.array([x.thickness_m for x in o]),
                   scattering=s if np.any(s > 0) else None,
                   xpd=np.array([x.xpd_coefficient for x in o]) if np.any(s > 0) else None)

    @classmethod
    def from_material_priors(cls, names: Sequence[str], priors: Sequence, thickness_m) -> ParameterPrior:
        """From :class:`rftwin.priors.MaterialPrior` records (one per object, same order as ``names``)."""
        if len(priors) != len(names):
            raise ValueError(f"{len(priors)} priors for {len(names)} objects")
        return cls(names=list(names), eps_r=np.array([p.eps_r for p in priors]),
                   sigma=np.array([p.sigma for p in priors]), log_std_eps=np.array([p.log_std_eps for p in priors]),
                   log_std_sigma=np.array([p.log_std_sigma for p in priors]),
                   thickness_m=np.broadcast_to(np.asarray(thickness_m, float), (len(names),)))

    def free_parameters(self) -> list[tuple[int, str]]:
        """(object index, kind) of the uncertain parameters (std > 0 and a finite log value), eps first."""
        out = [(k, EPS_KIND) for k in range(len(self.names)) if self.log_std_eps[k] > 0 and self.eps_r[k] > 1.0]
        out += [(k, SIGMA_KIND) for k in range(len(self.names)) if self.log_std_sigma[k] > 0 and self.sigma[k] > 0]
        return out

    def theta0(self, params: Sequence[tuple[int, str]]) -> np.ndarray:
        return np.array([math.log(self.eps_r[k] - 1.0) if kind == EPS_KIND else math.log(self.sigma[k])
                         for k, kind in params])

    def std(self, params: Sequence[tuple[int, str]]) -> np.ndarray:
        return np.array([self.log_std_eps[k] if kind == EPS_KIND else self.log_std_sigma[k] for k, kind in params])


@dataclass
class LinkSensitivity:
    """Predicted gains ``gain_db`` [L] (dB; -inf for links without paths) and the Jacobian ``jacobian`` [L, P]
    (dB per unit log-parameter) at the prior mean, for the parameters ``params`` ((object index, kind), named
    ``param_names``). ``jacobian_samples`` [S, L, P] at S parameter vectors drawn from the prior (``theta_samples``
    [S, P]), when requested."""

    gain_db: np.ndarray
    jacobian: np.ndarray
    params: list[tuple[int, str]]
    param_names: list[str]
    jacobian_samples: np.ndarray | None = None
    theta_samples: np.ndarray | None = None


def gain_db_function(ps: PathSet, prior: ParameterPrior, params: Sequence[tuple[int, str]], frequency_hz: float):
    """theta [B, P] (log-space, float64) -> link gains [B, L] (dB) through the channel engine (differentiable)."""
    ps64 = ps.to(dtype=torch.float64)
    eps0 = torch.as_tensor(prior.eps_r, dtype=torch.float64)
    sig0 = torch.as_tensor(prior.sigma, dtype=torch.float64)
    thick = torch.as_tensor(prior.thickness_m, dtype=torch.float64)
    scat = None if prior.scattering is None else torch.as_tensor(prior.scattering, dtype=torch.float64)
    xpd = None if prior.xpd is None else torch.as_tensor(prior.xpd, dtype=torch.float64)
    ie = torch.tensor([k for k, kind in params if kind == EPS_KIND], dtype=torch.long)
    isg = torch.tensor([k for k, kind in params if kind == SIGMA_KIND], dtype=torch.long)
    pe = torch.tensor([i for i, (_, kind) in enumerate(params) if kind == EPS_KIND], dtype=torch.long)
    psg = torch.tensor([i for i, (_, kind) in enumerate(params) if kind == SIGMA_KIND], dtype=torch.long)

    def fn(theta: torch.Tensor) -> torch.Tensor:
        B = theta.shape[0]
        eps = eps0.expand(B, -1).index_put((torch.arange(B)[:, None], ie[None, :]), 1.0 + torch.exp(theta[:, pe]))
        sig = sig0.expand(B, -1).index_put((torch.arange(B)[:, None], isg[None, :]), torch.exp(theta[:, psg]))
        mat = MaterialValues(eps[:, None, :], sig[:, None, :], thick.expand(B, 1, -1),
                             scattering=None if scat is None else scat.expand(B, 1, -1),
                             xpd=None if xpd is None else xpd.expand(B, 1, -1))
        return link_gain_db(ps64, mat, float(frequency_hz), floor=1e-300)[:, 0, :]

    return fn


def _jacobian_reverse(fn, theta: np.ndarray, has_paths: np.ndarray) -> np.ndarray:
    """[B, L, P] by reverse mode: one backward pass per link for all B parameter vectors at once."""
    th = torch.as_tensor(theta, dtype=torch.float64).requires_grad_(True)
    g = fn(th)
    L = g.shape[1]
    J = np.zeros((th.shape[0], L, th.shape[1]))
    last = int(np.nonzero(has_paths)[0].max()) if has_paths.any() else -1
    for link in range(L):
        if has_paths[link]:
            (grad,) = torch.autograd.grad(g[:, link].sum(), th, retain_graph=link < last)
            J[:, link] = grad.numpy()
    return J


def _jacobian_forward(fn, theta: np.ndarray) -> np.ndarray:
    """[B, L, P] by forward mode (cost ~ P engine evaluations per parameter vector; cheaper when P < L)."""
    from torch.func import jacfwd  # noqa: PLC0415

    with warnings.catch_warnings():  # torch's first jvp use scripts its own decompositions (deprecation notice)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=DeprecationWarning)
        out = [jacfwd(lambda t: fn(t[None])[0])(torch.as_tensor(row, dtype=torch.float64)).numpy() for row in theta]
    return np.stack(out)


def link_sensitivity(ps: PathSet, prior: ParameterPrior, frequency_hz: float, n_prior_samples: int = 0,
                     seed: int = 0, mode: str = "auto") -> LinkSensitivity:
    """Gains and Jacobian of every link of ``ps`` w.r.t. the free log-parameters of ``prior`` (float64 autograd
    through the cached paths). With ``n_prior_samples`` > 0 the Jacobian is also evaluated at that many seeded
    draws from the prior. ``mode``: ``forward`` (torch.func.jacfwd, cost ~ number of parameters),
    ``reverse`` (one backward pass per link) or ``auto`` (forward when there are fewer parameters than links,
    reverse if forward mode is not supported by an operation)."""
    if mode not in ("auto", "forward", "reverse"):
        raise ValueError(f"mode must be auto, forward or reverse, got '{mode}'")
    params = prior.free_parameters()
    fn = gain_db_function(ps, prior, params, frequency_hz)
    th0 = prior.theta0(params)
    draws = np.random.default_rng(seed).standard_normal((n_prior_samples, len(params))) * prior.std(params) + th0
    theta = np.vstack([th0[None, :], draws])
    L = ps.num_links
    has_paths = (ps.paths_per_link() > 0).numpy()
    with torch.no_grad():
        gain = fn(torch.as_tensor(th0[None, :], dtype=torch.float64))[0].numpy().copy()
    gain[~has_paths] = -np.inf
    if not len(params):
        J = np.zeros((theta.shape[0], L, 0))
    elif mode == "reverse" or (mode == "auto" and len(params) >= L):
        J = _jacobian_reverse(fn, theta, has_paths)
    else:
        try:
            J = _jacobian_forward(fn, theta)
        except (RuntimeError, NotImplementedError):
            if mode == "forward":
                raise
            J = _jacobian_reverse(fn, theta, has_paths)
        J[:, ~has_paths] = 0.0
    names = [f"{prior.names[k]}.{kind}" for k, kind in params]
    return LinkSensitivity(gain_db=gain, jacobian=J[0], params=params, param_names=names,
                           jacobian_samples=J[1:] if n_prior_samples else None,
                           theta_samples=draws if n_prior_samples else None)


@dataclass
class DesignResult:
    """A chosen set of links. ``selected`` link indices in order of choice; ``selected_groups`` the chosen group
    indices (group mode) else None; ``gain_nats`` [steps] expected information gain of each step;
    ``logdet_prior``/``logdet`` log det of the material precision before / after; ``prior_std``/``posterior_std``
    [P] per parameter (log units, i.e. relative uncertainty of eps_r - 1 and sigma); ``param_names`` [P]."""

    selected: list[int]
    selected_groups: list[int] | None
    gain_nats: np.ndarray
    logdet_prior: float
    logdet: float
    prior_std: np.ndarray
    posterior_std: np.ndarray
    param_names: list[str]
    noise_db: float
    offset_std_db: float | None
    sensitivity: LinkSensitivity | None = field(default=None, repr=False)

    @property
    def information_nats(self) -> float:
        """Total expected information gain: 1/2 (logdet - logdet_prior)."""
        return 0.5 * (self.logdet - self.logdet_prior)

    def table(self) -> list[dict]:
        """Per-parameter rows: name, prior std, posterior std, reduction factor."""
        return [dict(parameter=n, prior_std=float(a), posterior_std=float(b), reduction=float(a / b) if b > 0 else 0.0)
                for n, a, b in zip(self.param_names, self.prior_std, self.posterior_std)]


class _Posterior:
    """Gaussian posterior over [theta, (offset)] under the linear-Gaussian measurement model, updated in place.

    A link contributes the rows X_l [S, P(+1)] = J[:, l, :] / sqrt(S) (S = 1: local design; S > 1: Fisher
    information averaged over S prior samples); an offset column holds 1 / sqrt(S).
    """

    def __init__(self, jac: np.ndarray, prior_std: np.ndarray, noise_db: float, offset_std_db: float | None):
        if noise_db <= 0:
            raise ValueError("noise_db must be > 0")
        self.P = len(prior_std)
        self.offset = offset_std_db is not None
        if self.offset and not offset_std_db > 0:
            raise ValueError("offset_std_db must be > 0 (or None for a known power reference)")
        S = jac.shape[0]
        X = np.transpose(jac, (1, 0, 2)) / math.sqrt(S)  # [L, S, P]
        if self.offset:
            X = np.concatenate([X, np.full(X.shape[:2] + (1,), 1.0 / math.sqrt(S))], 2)
        self.X = X
        var = np.concatenate([np.asarray(prior_std, float) ** 2, [offset_std_db ** 2] if self.offset else []])
        self.cov = np.diag(var)
        self.s2 = float(noise_db) ** 2
        self.logdet = float(-np.sum(np.log(var[:self.P])))  # log det of the material precision (Schur complement)
        self.a_oo = 1.0 / offset_std_db ** 2 if self.offset else 0.0

    def _offset_term(self, n_links: int) -> float:
        return math.log1p(n_links / (self.s2 * self.a_oo)) if self.offset else 0.0

    def gains(self, links: np.ndarray) -> np.ndarray:
        """Increase of the material log det if link l alone were added, for each of ``links``: [C]."""
        X = self.X[links]
        Q = np.einsum("csi,ij,ctj->cst", X, self.cov, X) / self.s2
        d = np.linalg.slogdet(np.eye(X.shape[1])[None] + Q)[1]
        return d - self._offset_term(1)

    def group_gain(self, links: np.ndarray) -> float:
        X = self.X[links].reshape(-1, self.X.shape[2])
        d = float(np.linalg.slogdet(np.eye(len(X)) + X @ self.cov @ X.T / self.s2)[1])
        return d - self._offset_term(len(links))

    def update(self, links: np.ndarray) -> float:
        """Condition on the links; returns the increase of the material log det."""
        links = np.atleast_1d(np.asarray(links, dtype=np.int64))
        d = self.group_gain(links)
        X = self.X[links].reshape(-1, self.X.shape[2])
        S = self.s2 * np.eye(len(X)) + X @ self.cov @ X.T
        K = np.linalg.solve(S, X @ self.cov)
        self.cov = self.cov - self.cov @ X.T @ K
        self.cov = 0.5 * (self.cov + self.cov.T)
        self.logdet += d
        if self.offset:
            self.a_oo += len(links) / self.s2
        return d

    def std(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov)[:self.P], 0.0, None))


def _as3d(jacobian: np.ndarray, P: int) -> np.ndarray:
    J = np.asarray(jacobian, dtype=np.float64)
    J = J[None] if J.ndim == 2 else J
    if J.ndim != 3 or J.shape[2] != P:
        raise ValueError(f"jacobian {np.shape(jacobian)} must be [L, {P}] or [S, L, {P}]")
    if not np.all(np.isfinite(J)):
        raise ValueError("jacobian has non-finite entries (links without paths must be excluded)")
    return J


def greedy_design(jacobian: np.ndarray, prior_std: np.ndarray, n_select: int, noise_db: float = 2.0,
                  groups: Sequence[Sequence[int]] | None = None, offset_std_db: float | None = None,
                  measured: Sequence[int] = (), candidates: Sequence[int] | None = None,
                  param_names: Sequence[str] | None = None) -> DesignResult:
    """Greedy D-optimal choice of ``n_select`` links (or groups of links).

    ``jacobian``: [L, P] (dB per log unit) at the prior mean, or [S, L, P] at S prior samples (the information
    is then averaged over them). ``groups``: candidate groups of link indices (e.g. all links of one
    transmitter); ``n_select`` then counts groups. ``measured``: links already measured (conditioned on first,
    not counted). ``candidates``: the link indices that may be chosen (default all). Each link / group is
    chosen at most once.
    """
    prior_std = np.asarray(prior_std, dtype=np.float64)
    J = _as3d(jacobian, len(prior_std))
    L = J.shape[1]
    post = _Posterior(J, prior_std, noise_db, offset_std_db)
    logdet_prior = post.logdet
    measured = np.asarray(measured, dtype=np.int64)
    if len(measured):
        post.update(measured)
    allowed = np.ones(L, dtype=bool) if candidates is None else np.isin(np.arange(L), candidates)
    allowed[measured] = False
    chosen: list[int] = []
    chosen_groups: list[int] | None = None
    gains: list[float] = []
    if groups is None:
        n_avail = int(allowed.sum())
        if n_select > n_avail:
            raise ValueError(f"asked for {n_select} links, only {n_avail} candidates")
        for _ in range(n_select):
            cand = np.nonzero(allowed)[0]
            best = int(cand[np.argmax(post.gains(cand))])
            gains.append(0.5 * post.update(best))
            chosen.append(best)
            allowed[best] = False
    else:
        grp = [np.asarray([i for i in gr if allowed[i]], dtype=np.int64) for gr in groups]
        avail = [k for k, gr in enumerate(grp) if len(gr)]
        if n_select > len(avail):
            raise ValueError(f"asked for {n_select} groups, only {len(avail)} non-empty candidate groups")
        chosen_groups = []
        for _ in range(n_select):
            scores = {k: post.group_gain(grp[k]) for k in avail if k not in chosen_groups}
            best = max(scores, key=lambda k: (scores[k], -k))
            gains.append(0.5 * post.update(grp[best]))
            chosen_groups.append(best)
            chosen.extend(int(i) for i in grp[best])
    names = list(param_names) if param_names is not None else [f"p{i}" for i in range(len(prior_std))]
    return DesignResult(selected=chosen, selected_groups=chosen_groups, gain_nats=np.array(gains),
                        logdet_prior=logdet_prior, logdet=post.logdet, prior_std=prior_std, posterior_std=post.std(),
                        param_names=names, noise_db=float(noise_db), offset_std_db=offset_std_db)


def evaluate_design(jacobian: np.ndarray, prior_std: np.ndarray, links: Sequence[int], noise_db: float = 2.0,
                    offset_std_db: float | None = None) -> tuple[float, np.ndarray]:
    """(log det of the material posterior precision, posterior std [P]) after measuring ``links``, computed
    directly (no greedy updates: the reference for :func:`greedy_design`). ``jacobian`` [L, P] or [S, L, P]."""
    var = np.asarray(prior_std, float) ** 2
    P = len(var)
    J = _as3d(jacobian, P)
    S = J.shape[0]
    X = J[:, np.asarray(links, dtype=np.int64), :].reshape(-1, P) / math.sqrt(S)
    if offset_std_db is not None:
        X = np.concatenate([X, np.full((len(X), 1), 1.0 / math.sqrt(S))], 1)
        var = np.concatenate([var, [offset_std_db ** 2]])
    A = np.diag(1.0 / var) + X.T @ X / noise_db ** 2
    cov_m = np.linalg.inv(A)[:P, :P]
    return float(-np.linalg.slogdet(cov_m)[1]), np.sqrt(np.diag(cov_m))


def random_designs(jacobian: np.ndarray, prior_std: np.ndarray, n_select: int, n_trials: int = 20,
                   noise_db: float = 2.0, groups: Sequence[Sequence[int]] | None = None,
                   offset_std_db: float | None = None, candidates: Sequence[int] | None = None,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Baseline: ``n_trials`` uniformly random choices of the same size; returns (logdet [n_trials], posterior
    std [n_trials, P])."""
    rng = np.random.default_rng(seed)
    L = np.shape(jacobian)[-2]
    pool = np.arange(L) if candidates is None else np.asarray(candidates, dtype=np.int64)
    out_ld, out_sd = [], []
    for _ in range(n_trials):
        if groups is None:
            links = rng.choice(pool, size=n_select, replace=False)
        else:
            gi = rng.choice(len(groups), size=n_select, replace=False)
            links = np.concatenate([np.intersect1d(np.asarray(groups[k], dtype=np.int64), pool) for k in gi])
        ld, sd = evaluate_design(jacobian, prior_std, links, noise_db, offset_std_db)
        out_ld.append(ld)
        out_sd.append(sd)
    return np.array(out_ld), np.array(out_sd)


def tx_groups(ps: PathSet, links: Sequence[int] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Group links by transmitter position: (list of link-index arrays, Tx positions [G, 3] (m))."""
    idx = np.arange(ps.num_links) if links is None else np.asarray(links, dtype=np.int64)
    tx = ps.tx_pos.detach().cpu().numpy()[idx]
    uniq, inv = np.unique(tx, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    return [idx[inv == g] for g in range(len(uniq))], uniq


def plan_links(ps: PathSet, prior: ParameterPrior, frequency_hz: float, n_select: int, noise_db: float = 2.0,
               by_transmitter: bool = False, offset_std_db: float | None = None, measured: Sequence[int] = (),
               min_gain_db: float | None = None, n_prior_samples: int = 0, seed: int = 0) -> DesignResult:
    """Choose the next ``n_select`` links (or, with ``by_transmitter``, transmitter configurations: all candidate
    links sharing a Tx) among the traced candidate links ``ps`` that maximise the information about the
    material parameters.

    Links without paths, or with predicted gain below ``min_gain_db`` (receiver sensitivity, dB), are never
    chosen. ``measured`` links are conditioned on first. ``noise_db``: measurement noise std (dB);
    ``offset_std_db``: prior std of an unknown common power offset (None = calibrated power reference).
    ``n_prior_samples`` > 0 averages the information over that many prior draws (robust to the strong
    non-linearity of slab reflection in eps_r) instead of linearising at the prior mean.
    """
    sens = link_sensitivity(ps, prior, frequency_hz, n_prior_samples, seed)
    usable = np.isfinite(sens.gain_db)
    if min_gain_db is not None:
        usable &= sens.gain_db >= min_gain_db
    cand = np.nonzero(usable)[0]
    J = sens.jacobian_samples if n_prior_samples else sens.jacobian
    J = np.where(usable[:, None] if J.ndim == 2 else usable[None, :, None], J, 0.0)
    groups = tx_groups(ps, cand)[0] if by_transmitter else None
    res = greedy_design(J, prior.std(sens.params), n_select, noise_db, groups=groups, offset_std_db=offset_std_db,
                        measured=measured, candidates=cand, param_names=sens.param_names)
    res.sensitivity = sens
    return res


__all__ = ["DesignResult", "LinkSensitivity", "ParameterPrior", "evaluate_design", "gain_db_function",
           "greedy_design", "link_sensitivity", "plan_links", "random_designs", "tx_groups"]

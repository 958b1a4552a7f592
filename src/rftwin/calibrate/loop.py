"""Multi-start calibration of a material model on cached paths: Adam, L-BFGS or Levenberg-Marquardt,
the seed-004 stopping rule, per-iteration history, and a Laplace (Gauss-Newton) uncertainty report."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import functional_call, jvp, vmap

from rftwin.calibrate.losses import LOSSES, db_offset, mse_db, nae
from rftwin.calibrate.problem import Targets, simulate_path_gain_db
from rftwin.materials.per_object import PerObjectMaterials
from rftwin.progress import track
from rftwin.trace.pathset import PathSet

OPTIMIZERS = ("lm", "adam", "lbfgs")


@dataclass
class CalibrationConfig:
    loss: str = "mse_db"  # mse_db | nae
    optimizer: str = "lm"  # lm | adam | lbfgs
    lr: float = 1e-3  # Adam learning rate (seed 004) / L-BFGS step
    max_iter: int = 1000
    alpha: float = 1e-5  # stop: |loss change| < alpha ...
    beta: float = 1e-4  # ... and max |parameter change| (log-space) < beta ...
    patience: int | None = None  # ... for this many iterations (None: 50 for adam, 5 for lm/lbfgs)
    refine_starts: int = 4  # multi-start: screen all starts with one forward pass, refine this many
    estimate_offset: bool = False  # unknown absolute power reference: fit a global gain offset [dB]
    noise_db: float | None = None  # measurement noise std for the uncertainty report (None: from residuals)

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss '{self.loss}', expected one of {LOSSES}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer '{self.optimizer}', expected one of {OPTIMIZERS}")
        if self.optimizer == "lm" and self.loss != "mse_db":
            raise ValueError("the Levenberg-Marquardt optimizer needs the least-squares loss 'mse_db'")

    @property
    def effective_patience(self) -> int:
        return self.patience if self.patience is not None else (50 if self.optimizer == "adam" else 5)


@dataclass
class Uncertainty:
    """Laplace approximation at the solution: per-object std of eps_r and sigma at noise ``noise_db``."""

    noise_db: float
    eps_std: np.ndarray
    sigma_std: np.ndarray
    eps_identified: np.ndarray
    sigma_identified: np.ndarray
    log_std: np.ndarray  # std of the free log-parameters [P]


@dataclass
class CalibrationResult:
    eps_r: np.ndarray  # [K] at reference frequency
    sigma: np.ndarray  # [K] S/m
    power_law: np.ndarray  # [K, 4]
    loss: float
    iterations: int
    seconds: float
    best_start: int
    offset_db: float
    start_losses: np.ndarray
    history: list[dict] = field(default_factory=list)
    uncertainty: Uncertainty | None = None
    model: PerObjectMaterials | None = None

    def mre(self, eps_true: np.ndarray, sigma_true: np.ndarray) -> tuple[float, float]:
        return (float(np.mean(np.abs(self.eps_r - eps_true) / eps_true)),
                float(np.mean(np.abs(self.sigma - sigma_true) / sigma_true)))


def _residual_loss(sim_db, t: Targets, cfg: CalibrationConfig):
    meas = t.path_gain_db
    off = db_offset(sim_db, meas, t.weight) if cfg.estimate_offset else torch.zeros(sim_db.shape[0], dtype=sim_db.dtype)
    s = sim_db + off[:, None]
    if cfg.loss == "mse_db":
        return mse_db(s, meas, t.weight), off
    return nae(10 ** (s / 10), 10 ** (meas / 10), t.weight), off


def _params(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _flat(params) -> torch.Tensor:
    return torch.cat([p.detach() for p in params], dim=1)


def _set_flat(params, flat: torch.Tensor) -> None:
    i = 0
    with torch.no_grad():
        for p in params:
            k = p.shape[1]
            p.copy_(flat[:, i:i + k])
            i += k


def residuals(ps: PathSet, model, t: Targets, cfg: CalibrationConfig) -> torch.Tensor:
    """Weighted dB residuals [B, M] (offset-corrected when configured)."""
    sim = simulate_path_gain_db(ps, model, t)
    if cfg.estimate_offset:
        sim = sim + db_offset(sim, t.path_gain_db, t.weight)[:, None]
    r = sim - t.path_gain_db
    return r if t.weight is None else r * torch.sqrt(t.weight)


def jacobian(ps: PathSet, model, t: Targets, cfg: CalibrationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Residuals r [B, M] and their Jacobian J [B, M, P] w.r.t. the free parameters (per start).

    Starts are independent, so one tangent (or cotangent) shared by all starts yields every start's column
    (row): forward mode costs P passes, reverse mode M passes; the cheaper one is used.
    """
    params = _params(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    sizes = [p.shape[1] for p in params]
    theta = _flat(params)
    B, P = theta.shape
    if P < t.num:
        def f(th):
            d = dict(zip(names, torch.split(th, sizes, 1)))
            return residuals(ps, lambda fr: functional_call(model, d, (fr,)), t, cfg)

        tangents = torch.eye(P, dtype=theta.dtype, device=theta.device)[:, None, :].expand(P, B, P)
        r, _ = jvp(f, (theta,), (tangents[0],))
        cols = vmap(lambda tv: jvp(f, (theta,), (tv,))[1])(tangents)  # [P, B, M]
        return r.detach(), cols.permute(1, 2, 0)
    r = residuals(ps, model, t, cfg)
    M = r.shape[1]
    eye = torch.eye(M, dtype=r.dtype).unsqueeze(1).expand(M, B, M)
    grads = torch.autograd.grad(r, params, grad_outputs=eye, is_grads_batched=True)
    J = torch.cat(list(grads), dim=2).permute(1, 0, 2)  # [M, B, P] -> [B, M, P]
    return r.detach(), J


def laplace(ps: PathSet, model: PerObjectMaterials, t: Targets, cfg: CalibrationConfig,
            prior_log_std: float = math.log(10.0)) -> Uncertainty:
    """Gauss-Newton/Laplace std of the parameters of a single-start model: cov = (J^T J / s^2 + I / p^2)^-1."""
    r, J = jacobian(ps, model, t, cfg)
    r, J = r[0], J[0]
    M, P = J.shape
    if cfg.noise_db is not None:
        s = cfg.noise_db
    else:
        dof = max(M - P, 1)
        s = max(float(torch.sqrt((r * r).sum() / dof)), 0.1)
    H = J.T @ J / s**2 + torch.eye(P, dtype=J.dtype) / prior_log_std**2
    cov = torch.linalg.inv(H)
    log_std = torch.sqrt(torch.clamp(torch.diagonal(cov), min=0.0)).cpu().numpy()
    K = model.thickness.shape[0]
    with torch.no_grad():
        e, sg = model.eps_sigma(model.f_ref_ghz * 1e9)
    e, sg = e[0, 0].cpu().numpy(), sg[0, 0].cpu().numpy()
    eps_std, sig_std = np.full(K, np.nan), np.full(K, np.nan)
    i = 0
    for name, p in model.named_parameters():
        k = p.shape[1]
        ls = log_std[i:i + k]
        if name in ("u",):
            eps_std = (e - 1.0) * ls
        elif name in ("alpha",):
            eps_std = e * ls
        elif name in ("v", "gamma"):
            sig_std = sg * ls
        i += k
    with np.errstate(invalid="ignore"):
        return Uncertainty(s, eps_std, sig_std, eps_std / e < 0.1, sig_std / sg < 0.1, log_std)


def screen_starts(ps: PathSet, model: PerObjectMaterials, targets: Targets, cfg: CalibrationConfig,
                  keep: int) -> PerObjectMaterials:
    """Evaluate all B starts in one batched forward pass and keep the ``keep`` lowest-loss ones (start 0, the
    prior itself, is always kept)."""
    if model.num_starts <= keep:
        return model
    with torch.no_grad():
        loss, _ = _residual_loss(simulate_path_gain_db(ps, model, targets), targets, cfg)
    order = [0] + [int(i) for i in torch.argsort(loss) if int(i) != 0][: keep - 1]
    with torch.no_grad():
        for p in list(model.parameters()) + [b for n, b in model.named_buffers() if n != "thickness"]:
            p.data = p.data[order].clone()
    return model


def calibrate(ps: PathSet, model: PerObjectMaterials, targets: Targets, cfg: CalibrationConfig = CalibrationConfig(),
              truth: tuple[np.ndarray, np.ndarray] | None = None, progress: bool = True,
              uncertainty: bool = True) -> CalibrationResult:
    """Fit the free parameters of ``model`` (all B starts at once) to ``targets``; keep the best start."""
    t0 = time.perf_counter()
    model = screen_starts(ps, model, targets, cfg, cfg.refine_starts)
    params = _params(model)
    if not params:
        raise ValueError("the material model has no free parameters")
    B = model.num_starts
    history: list[dict] = []
    patience = cfg.effective_patience
    calm = 0
    prev_loss, prev_theta = None, _flat(params)

    def evaluate() -> tuple[torch.Tensor, torch.Tensor]:
        sim = simulate_path_gain_db(ps, model, targets)
        return _residual_loss(sim, targets, cfg)

    def record(it: int, loss: torch.Tensor, off: torch.Tensor) -> None:
        b = int(torch.argmin(loss))
        with torch.no_grad():
            e, s = model.eps_sigma(model.f_ref_ghz * 1e9)
        row = dict(iteration=it, loss=float(loss[b]), best_start=b, seconds=time.perf_counter() - t0,
                   offset_db=float(off[b]), eps_r=e[b, 0].cpu().numpy().tolist(), sigma=s[b, 0].cpu().numpy().tolist())
        if truth is not None:
            ee, ss = np.asarray(row["eps_r"]), np.asarray(row["sigma"])
            row["mre_eps"] = float(np.mean(np.abs(ee - truth[0]) / truth[0]))
            row["mre_sigma"] = float(np.mean(np.abs(ss - truth[1]) / truth[1]))
        history.append(row)

    opt = None
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr)
    elif cfg.optimizer == "lbfgs":
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=20, history_size=20, line_search_fn="strong_wolfe")
    mu = torch.full((B,), 1e-2, dtype=params[0].dtype)

    with torch.no_grad():
        loss, off = evaluate()
    record(0, loss, off)
    it = 0
    for it in track(range(1, cfg.max_iter + 1), f"calibrating ({cfg.optimizer}, {B} starts)", enabled=progress):
        if cfg.optimizer == "adam":
            opt.zero_grad()
            loss, off = evaluate()
            loss.sum().backward()
            opt.step()
            with torch.no_grad():
                loss, off = evaluate()
        elif cfg.optimizer == "lbfgs":
            def closure():
                opt.zero_grad()
                lo, _ = evaluate()
                tot = lo.sum()
                tot.backward()
                return tot
            opt.step(closure)
            with torch.no_grad():
                loss, off = evaluate()
        else:  # batched Levenberg-Marquardt on the dB residuals
            r, J = jacobian(ps, model, targets, cfg)
            cost = (r * r).mean(-1)
            JtJ = J.transpose(1, 2) @ J
            g = J.transpose(1, 2) @ r.unsqueeze(-1)
            theta = _flat(params)
            diag = torch.diagonal(JtJ, dim1=1, dim2=2).clamp_min(1e-12)
            A = JtJ + torch.diag_embed(mu[:, None] * diag)
            step = torch.nan_to_num(-torch.linalg.solve(A, g).squeeze(-1)).clamp(-2.0, 2.0)
            _set_flat(params, theta + step)
            with torch.no_grad():
                trial, _ = evaluate()
            better = trial <= cost  # per start: accept and trust the model more, or reject and damp more
            mu = torch.where(better, mu / 3.0, mu * 4.0).clamp(1e-9, 1e9)
            _set_flat(params, theta + step * better[:, None].to(theta.dtype))
            with torch.no_grad():
                loss, off = evaluate()
        record(it, loss, off)
        theta_now = _flat(params)
        best = int(torch.argmin(loss))
        dl = abs(float(loss[best]) - float(prev_loss[best])) if prev_loss is not None else math.inf
        dp = float((theta_now[best] - prev_theta[best]).abs().max())
        if cfg.optimizer == "lm" and dp == 0.0:  # a rejected LM step is no evidence of convergence
            if float(mu[best]) >= 1e8:
                break
            continue
        calm = calm + 1 if (dl < cfg.alpha and dp < cfg.beta) else 0
        prev_loss, prev_theta = loss.detach().clone(), theta_now
        if calm >= patience:
            break
    best = int(torch.argmin(loss))
    single = model.select(best)
    pl = single.power_law_coefficients()[0]
    with torch.no_grad():
        e, s = single.eps_sigma(single.f_ref_ghz * 1e9)
    unc = laplace(ps, single, targets, cfg) if uncertainty else None
    return CalibrationResult(eps_r=e[0, 0].cpu().numpy(), sigma=s[0, 0].cpu().numpy(), power_law=pl,
                             loss=float(loss[best]), iterations=it, seconds=time.perf_counter() - t0,
                             best_start=best, offset_db=float(off[best]), start_losses=loss.detach().cpu().numpy(),
                             history=history, uncertainty=unc, model=single)


"""Multi-start calibration of a material model on cached paths: the driver. Adam, L-BFGS or Levenberg-Marquardt
(:mod:`~rftwin.calibrate.optimizers`) on the objective (:mod:`~rftwin.calibrate.objectives`: loss terms, a jointly
estimated global gain offset, closed form or EMA, seed 003 eqs. 26-27, an optional MAP prior), the seed-004 stopping
rule, checkpoint/resume (:mod:`~rftwin.calibrate.checkpoint`), per-iteration history, and a Laplace (Gauss-Newton)
uncertainty report (:mod:`~rftwin.calibrate.uncertainty`)."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from rftwin.calibrate.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from rftwin.calibrate.jacobians import flat_params, trainable_params, trial_pass
from rftwin.calibrate.losses import FEATURE_METRICS, LossTerm
from rftwin.calibrate.objectives import PriorStats, closed_form_offset, needed_features, objective
from rftwin.calibrate.optimizers import lm_step, make_optimizer, make_scheduler, polish_lbfgs, screen_starts
from rftwin.calibrate.path_jacobian import supports as one_pass_jacobian
from rftwin.calibrate.problem import DEFAULT_CHUNK, Targets, simulate_features
from rftwin.calibrate.stream import LinkShards, stream_for
from rftwin.calibrate.uncertainty import Uncertainty, laplace
from rftwin.materials.per_object import MaterialPrior, PerObjectMaterials
from rftwin.materials.protocol import MaterialModel
from rftwin.pathset import PathSet
from rftwin.progress import track

OPTIMIZERS = ("lm", "adam", "lbfgs")
OFFSET_MODES = ("none", "closed_form", "ema")
SCHEDULES = ("none", "plateau")


@dataclass
class CalibrationConfig:
    loss: str = "mse_db"  # path-gain metric when ``terms`` is None: mse_db | nae | smape
    optimizer: str = "lm"  # lm | adam | lbfgs
    lr: float = 1e-3  # Adam learning rate (seed 004) / L-BFGS step
    max_iter: int = 1000
    alpha: float = 1e-5  # stop: |loss change| < alpha ...
    beta: float = 1e-4  # ... and max |parameter change| (log-space) < beta ...
    patience: int | None = None  # ... for this many iterations (None: 50 for adam, 5 for lm/lbfgs)
    # LM also stops when every start's loss fell by less than stall_loss over the last stall_window iterations
    # (0: off; the posterior fits, whose loss is 2 x the negative log posterior, set it: bayes.posterior_config)
    stall_window: int = 0
    stall_loss: float = 0.0
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
    lr_hash: float | None = None  # Adam rate of a field's hash tables (None: ``lr``)
    schedule: str = "none"  # none | plateau (Adam: ReduceLROnPlateau on the loss)
    plateau_factor: float = 0.5
    plateau_patience: int = 50
    min_lr: float = 1e-6
    polish_lbfgs: int = 0  # after the main loop, one L-BFGS run of at most this many iterations (seed 000 Opt-B)
    polish_lr: float = 1.0
    keep_best: bool = False  # restore the lowest-loss state seen (Adam on a field wanders after its best)
    stop_on_interrupt: bool = False  # Ctrl-C ends the run and keeps its state (else it propagates)
    shard_paths: int | None = None  # stream over link shards of at most this many paths (None: from the budget)
    memory_budget: int | None = None  # bytes; sizes the link shards (None: rftwin.trace.budget.default_budget)

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
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule '{self.schedule}', expected one of {SCHEDULES}")
        if self.polish_lbfgs < 0:
            raise ValueError(f"polish_lbfgs must be >= 0, got {self.polish_lbfgs}")
        if self.lr <= 0 or (self.lr_hash is not None and self.lr_hash <= 0):
            raise ValueError("learning rates must be positive")

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
class CalibrationResult:
    eps_r: np.ndarray | None  # [K] at reference frequency (None: a field, whose read-outs are maps)
    sigma: np.ndarray | None  # [K] S/m
    power_law: np.ndarray | None  # [K, 4]
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
    rmse_db: float | None = None  # path-gain RMSE of the kept state (dB, offset applied; an mse_db path-gain term)
    interrupted: bool = False  # Ctrl-C ended the run (``stop_on_interrupt``)
    polish_iterations: int = 0  # L-BFGS iterations after the main loop
    path_changes: list[dict] = field(default_factory=list)  # what each re-trace changed (calibrate_scene)

    def mre(self, eps_true: np.ndarray, sigma_true: np.ndarray) -> tuple[float, float]:
        return (float(np.mean(np.abs(self.eps_r - eps_true) / eps_true)),
                float(np.mean(np.abs(self.sigma - sigma_true) / sigma_true)))


def stalled(recent: list[torch.Tensor], cfg: CalibrationConfig) -> bool:
    """LM's stall rule: the loss of every start (``recent``: losses [B] of the last iterations, oldest first) fell
    by less than ``cfg.stall_loss`` over the last ``cfg.stall_window`` iterations. Every start, not the best: the
    starts of a label-correction batch are separate candidates. Where the loss is 2 x the negative log
    posterior, a fall of 0.05 is a likelihood ratio of 1.025: the steps left only creep along a curved valley
    (slab resonances of strongly nonlinear facades: thousands of tiny accepted and rejected steps before the
    parameter rule of seed 004 holds), and the cap would gain little more at that rate."""
    w = cfg.stall_window
    if not w or cfg.optimizer != "lm" or len(recent) <= w:
        return False
    fall = torch.nan_to_num(recent[-1 - w] - recent[-1], nan=math.inf)
    return bool((fall < cfg.stall_loss).all())


def _truth_dict(truth) -> dict[str, np.ndarray] | None:
    if truth is None:
        return None
    if isinstance(truth, dict):
        return {k: np.asarray(v, dtype=np.float64) for k, v in truth.items() if v is not None}
    return {"eps_r": np.asarray(truth[0], dtype=np.float64), "sigma": np.asarray(truth[1], dtype=np.float64)}


def calibrate(ps: PathSet | LinkShards, model: MaterialModel, targets: Targets,
              cfg: CalibrationConfig | None = None, truth: tuple[np.ndarray, np.ndarray] | dict | None = None,
              progress: bool = True, uncertainty: bool = True, *, prior=None,
              checkpoint: str | Path | None = None,
              checkpoint_every: int = 0, resume: bool = False,
              callback: Callable[[int, dict], None] | None = None) -> CalibrationResult:
    """Fit the free parameters of ``model`` (all B starts at once) to ``targets``; keep the best start.

    ``model``: any material model of :mod:`rftwin.materials.protocol` (per-object, grouped, or a neural field;
    a field trains with Adam and/or L-BFGS, not Levenberg-Marquardt, and has no Laplace report).
    ``truth``: true (eps_r, sigma) or a dict with any of eps_r, sigma, scattering, xpd [K] (history gets errors).
    ``prior``: the model's prior (a MaterialPrior or ready PriorStats for per-object models, a
    :class:`rftwin.fields.prior.FieldPrior` for fields), weighted by ``cfg.prior_weight`` (0: off).
    ``checkpoint``: file written atomically every ``checkpoint_every`` iterations and at the end; with ``resume``
    an existing checkpoint of the same problem is continued (bit-identical trajectory). ``callback(it, row)`` is
    called after every iteration (after the checkpoint); it may add entries to ``row`` (the history row).
    ``ps`` may be link shards (:class:`rftwin.calibrate.stream.LinkShards`); a PathSet is streamed over link
    shards when the memory budget asks for it (:func:`rftwin.calibrate.stream.stream_for`; per-object and grouped
    models), with the same result.
    """
    t0 = time.perf_counter()
    cfg = CalibrationConfig() if cfg is None else cfg
    stream = stream_for(ps, model, targets, cfg)
    if isinstance(ps, LinkShards) and checkpoint is not None:
        raise ValueError("checkpoints need the calibration's PathSet, not link shards")
    if isinstance(ps, PathSet):
        targets.check(ps)
    else:
        ps.check(targets)
    truth = _truth_dict(truth)
    per_object = isinstance(model, PerObjectMaterials)
    if cfg.optimizer == "lm" and not per_object:
        raise ValueError(f"{type(model).__name__}: Levenberg-Marquardt needs a per-object model (a field has too "
                         "many parameters for normal equations); use optimizer adam or lbfgs")
    if isinstance(prior, MaterialPrior):
        pstats = PriorStats.from_prior(prior, model.fit, targets.frequencies_hz.dtype) \
            if cfg.prior_weight > 0 else None
    else:
        pstats = prior if cfg.prior_weight > 0 else None
    if cfg.prior_weight > 0 and pstats is None:
        raise ValueError("prior_weight > 0 needs the model's prior: a MaterialPrior or PriorStats (a FieldPrior for "
                         "a field), calibrate(..., prior=...)")
    model = screen_starts(ps, model, targets, cfg, cfg.refine_starts, pstats, stream)
    params = trainable_params(model)
    if not params:
        raise ValueError("the material model has no free parameters")
    B = model.num_starts
    history: list[dict] = []
    patience = cfg.effective_patience
    ema = cfg.offset_mode == "ema"
    lam = cfg.offset_ema
    ckpt = Path(checkpoint) if checkpoint is not None else None
    fp = fingerprint(ps, model, targets, cfg) if ckpt is not None else None
    parts: dict = {}
    gain_rmse = any(t.feature == "path_gain" and t.metric == "mse_db" for t in cfg.loss_terms)

    def evaluate(state=None, need_res=False):
        parts.clear()
        if stream is not None:
            return stream.objective(model, targets, cfg, state, pstats, parts)
        return objective(ps, model, targets, cfg, state, pstats, residuals=need_res, parts=parts)

    # LM on path gains alone: a trial's forward pass is also the next Jacobian's when the step is accepted
    trial = (lambda state: trial_pass(ps, model, targets, cfg, state, pstats, parts_cleared())) \
        if cfg.optimizer == "lm" and stream is None and not ema and one_pass_jacobian(cfg, model) else None
    lin = None  # the residuals and Jacobian at the current parameters, on demand (lm_step)

    def parts_cleared() -> dict:
        parts.clear()
        return parts

    def backward(state) -> torch.Tensor:  # loss [B]; d(sum of it)/dtheta accumulated into .grad
        if stream is not None:
            return stream.backward(model, targets, cfg, state, pstats)
        lo, _, _ = evaluate(state)
        lo.sum().backward()
        return lo

    def offset_hat() -> torch.Tensor:
        with torch.no_grad():
            c = replace(cfg, offset="closed_form")
            need = needed_features(targets, c)
            feats = simulate_features(ps, model, targets, need, cfg.chunk_size) if stream is None \
                else stream.features(model, targets, need, cfg.chunk_size)
            return closed_form_offset(feats, targets, c)

    def record(it: int, loss: torch.Tensor, off: torch.Tensor, phase: str) -> dict:
        b = int(torch.argmin(torch.nan_to_num(loss, nan=math.inf)))
        v = model.values()
        row = {"iteration": it, "phase": phase, "loss": float(loss[b]), "best_start": b,
               "seconds": time.perf_counter() - t0 + elapsed0, "offset_db": float(off[b])}
        if gain_rmse and "path_gain" in parts:
            row["rmse_db"] = math.sqrt(max(float(parts["path_gain"][b]), 0.0))
        if opt is not None and cfg.optimizer == "adam":
            row["lr"] = opt.param_groups[0]["lr"]
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
        if cfg.keep_best and row["loss"] < best_seen["loss"]:
            best_seen.update(loss=row["loss"], state={k: x.detach().clone() for k, x in model.state_dict().items()},
                             off=off.detach().clone(), all_loss=loss.detach().clone(), row=row)
        return row

    best_seen: dict = {"loss": math.inf}
    opt = make_optimizer(cfg, params, model)
    sched = make_scheduler(cfg, opt)
    mu = torch.full((B,), cfg.lm_damping, dtype=params[0].dtype)
    project = model.project_ if getattr(model, "bounded", False) else None
    elapsed0 = 0.0
    start_it, done, calm, resumed_at = 1, False, 0, None
    prev_loss, prev_theta = None, flat_params(params, B)
    beta = offset_hat() if ema else None
    num_res = None
    pending = None  # Adam: the loss of the current state with its graph (the last evaluation), for the next step
    recent: list[torch.Tensor] = []  # losses [B] of the last stall_window + 1 iterations (the stall rule)

    if ckpt is not None and resume and ckpt.exists():  # a folder in its place is an error, not a fresh start
        st = load_checkpoint(ckpt)  # never unpickles: a tampered file cannot run code
        if st.get("fingerprint") != fp:
            raise ValueError(f"{ckpt}: the checkpoint belongs to a different calibration problem or configuration "
                             "(scene, links, measurements, starts or options changed); remove it or drop --resume")
        kept = next(iter(st["model"].values())).shape[0] if st["model"] else B
        if per_object and kept < model.num_starts:  # the run had pruned starts: same shapes before loading
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
        if cfg.optimizer == "adam" and not ema and stream is None:
            loss, off, _ = evaluate(beta)
            pending = loss
            loss, off = loss.detach(), off.detach()
        else:
            with torch.no_grad():
                loss, off, _ = evaluate(beta)
        record(0, loss, off, "start")

    def save(it: int, finished: bool) -> None:
        if ckpt is None:
            return
        save_checkpoint(ckpt, {
            "fingerprint": fp, "iteration": it, "done": finished,
            "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "opt": None if opt is None else opt.state_dict(), "mu": mu, "calm": calm, "prev_loss": prev_loss,
            "prev_theta": prev_theta, "beta": beta, "history": history,
            "seconds": time.perf_counter() - t0 + elapsed0, "loss": loss, "off": off})

    it = start_it - 1
    stop = bool(done)
    interrupted = False
    iters = range(start_it, cfg.max_iter + 1) if not done else range(0)
    shards = "" if stream is None else f", {len(stream.shards)} link shards"
    try:
        for it in track(iters, f"calibrating ({cfg.optimizer}, {B} starts{shards})", enabled=progress):
            if ema:  # seed 003 eq. 27: beta_t = lambda beta_{t-1} + (1 - lambda) beta_hat_t, fixed during the step
                beta = lam * beta + (1.0 - lam) * offset_hat()
            if cfg.optimizer == "adam":
                opt.zero_grad(set_to_none=True)
                if pending is not None:
                    pending.sum().backward()
                else:
                    backward(beta)
                opt.step()
                if project is not None:
                    project()
                if ema or stream is not None:
                    pending = None
                    with torch.no_grad():
                        loss, off, _ = evaluate(beta)
                else:  # the new state's loss, graph kept: the next iteration steps on it (one pass per step)
                    pending, off, _ = evaluate(beta)
                    loss, off = pending.detach(), off.detach()
                if sched is not None:
                    sched.step(float(loss.sum()))
            elif cfg.optimizer == "lbfgs":
                def closure(state=beta):
                    opt.zero_grad()
                    return backward(state).sum()
                opt.step(closure)
                if project is not None:
                    project()
                with torch.no_grad():
                    loss, off, _ = evaluate(beta)
            else:  # batched Levenberg-Marquardt on the stacked residuals
                # the loss of the current state is that of the last evaluation (a fixed offset rule: the EMA
                # offset moves beta between steps)
                current = (loss, off, lin) if stream is None and not ema else None
                loss, off, mu, num_res, lin = lm_step(ps, model, targets, cfg, params, mu, beta, pstats, num_res,
                                                      project, evaluate, stream, current, trial)
            if cfg.prune_every and cfg.optimizer == "lm" and it % cfg.prune_every == 0 and model.num_starts > 1:
                keep = torch.argsort(torch.nan_to_num(loss, nan=math.inf))[: (model.num_starts + 1) // 2]
                if lin is not None:  # taken before the starts are reordered (the prior's rows read the model)
                    lin = (lambda kept: lambda: kept)(tuple(x[keep] for x in lin()))
                model.reorder_starts(keep.tolist())
                params = trainable_params(model)
                mu, loss, off = mu[keep], loss[keep], off[keep]
                beta = None if beta is None else beta[keep]
                prev_theta = prev_theta[keep]
                recent = [x[keep] for x in recent]
                prev_loss = None if prev_loss is None else prev_loss[keep]
                B = model.num_starts
            row = record(it, loss, off, cfg.optimizer)
            theta_now = flat_params(params, B)
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
            if cfg.stall_window:
                recent = (recent + [loss.detach().clone()])[-(cfg.stall_window + 1):]
                stop = stop or stalled(recent, cfg)
            if stop or it == cfg.max_iter:  # 'done' only when converged: a larger max_iter can continue a run
                save(it, stop)
            elif checkpoint_every and it % checkpoint_every == 0:
                save(it, False)
            if callback is not None:
                callback(it, row)
            if stop:
                break
        pending = None
        polished = 0
        if cfg.polish_lbfgs and not done:
            polished = polish_lbfgs(cfg, params, lambda: backward(beta).sum())
            with torch.no_grad():
                loss, off, _ = evaluate(beta)
            row = record(it + polished, loss, off, "lbfgs")
            if callback is not None:
                callback(it + polished, row)
    except KeyboardInterrupt:
        if not cfg.stop_on_interrupt:
            raise
        interrupted, pending, polished = True, None, 0
    if cfg.keep_best and best_seen.get("state") is not None and best_seen["loss"] < float(
            torch.nan_to_num(loss, nan=math.inf).min()):
        model.load_state_dict(best_seen["state"])
        loss, off = best_seen["all_loss"], best_seen["off"]
        parts.clear()
        if "rmse_db" in best_seen["row"]:
            parts["path_gain"] = torch.full_like(loss, best_seen["row"]["rmse_db"] ** 2)
    best = int(torch.argmin(torch.nan_to_num(loss, nan=math.inf)))
    rmse = math.sqrt(max(float(parts["path_gain"][best]), 0.0)) if gain_rmse and "path_gain" in parts else None
    common = dict(loss=float(loss[best]), iterations=it, seconds=time.perf_counter() - t0 + elapsed0,
                  best_start=best, offset_db=float(off[best]), start_losses=loss.detach().cpu().numpy(),
                  history=history, offset_mode=cfg.offset_mode, terms=[str(x) for x in cfg.loss_terms],
                  resumed_at=resumed_at, converged=bool(stop), rmse_db=rmse, interrupted=interrupted,
                  polish_iterations=polished)
    if not per_object:  # a field: its read-outs are maps (rftwin.fields.maps), its uncertainty is not Laplace's
        return CalibrationResult(eps_r=None, sigma=None, power_law=None, model=model, fit=("eps_r", "sigma"),
                                 **common)
    single = model.select(best)
    v = single.values()
    unc = laplace(ps, single, targets, cfg, stream=stream) if uncertainty else None
    return CalibrationResult(eps_r=v["eps_r"][0], sigma=v["sigma"][0], power_law=single.power_law_coefficients()[0],
                             uncertainty=unc, model=single,
                             scattering=v["scattering"][0] if "scattering" in v else None,
                             xpd=v["xpd"][0] if "xpd" in v else None, fit=tuple(model.fit), **common)


__all__ = ["OFFSET_MODES", "OPTIMIZERS", "SCHEDULES", "CalibrationConfig", "CalibrationResult", "calibrate"]

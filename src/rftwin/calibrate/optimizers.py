"""Optimiser steps of the calibration loop: multi-start screening, the batched Levenberg-Marquardt step (with a
box projection), and the torch optimisers (Adam, L-BFGS)."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from rftwin.calibrate.jacobians import flat_params, jacobian, set_flat_params
from rftwin.calibrate.objectives import PriorStats, objective
from rftwin.calibrate.problem import Targets
from rftwin.calibrate.stream import Stream
from rftwin.materials.per_object import PerObjectMaterials
from rftwin.pathset import PathSet

if TYPE_CHECKING:
    from rftwin.calibrate.loop import CalibrationConfig

Linearise = Callable[[], tuple[torch.Tensor, torch.Tensor]]  # residuals [B, R] and Jacobian [B, R, P] on demand


def screen_starts(ps: PathSet, model: PerObjectMaterials, targets: Targets, cfg: CalibrationConfig,
                  keep: int, prior: PriorStats | None = None, stream: Stream | None = None) -> PerObjectMaterials:
    """Evaluate all B starts in one batched forward pass (shard by shard with ``stream``) and keep the ``keep``
    lowest-loss ones (start 0, the prior itself, is always kept)."""
    if model.num_starts <= keep:
        return model
    with torch.no_grad():
        loss, _, _ = objective(ps, model, targets, cfg, prior=prior) if stream is None \
            else stream.objective(model, targets, cfg, None, prior)
    loss = torch.nan_to_num(loss, nan=math.inf)
    order = [0] + [int(i) for i in torch.argsort(loss) if int(i) != 0][: keep - 1]
    model.reorder_starts(order)
    return model


def projected_step(A: torch.Tensor, g: torch.Tensor, theta: torch.Tensor, step: torch.Tensor, params,
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


def make_optimizer(cfg: CalibrationConfig, params: list[torch.nn.Parameter], model=None
                   ) -> torch.optim.Optimizer | None:
    """The torch optimiser of ``cfg.optimizer`` over ``params`` (Adam with ``cfg.lr``, over the model's
    ``param_groups(cfg.lr, cfg.lr_hash)`` when it has them (a field's hash tables learn at their own rate), or
    L-BFGS with a strong Wolfe line search); None for Levenberg-Marquardt (:func:`lm_step`)."""
    if cfg.optimizer == "adam":
        groups = getattr(model, "param_groups", None)
        if groups is not None:
            return torch.optim.Adam(groups(cfg.lr, cfg.lr if cfg.lr_hash is None else cfg.lr_hash))
        return torch.optim.Adam(params, lr=cfg.lr)
    if cfg.optimizer == "lbfgs":
        return torch.optim.LBFGS(params, lr=1.0, max_iter=20, history_size=20, line_search_fn="strong_wolfe")
    return None


def make_scheduler(cfg: CalibrationConfig, opt: torch.optim.Optimizer | None):
    """ReduceLROnPlateau on the loss for ``cfg.schedule == "plateau"`` (Adam), else None."""
    if cfg.schedule != "plateau" or opt is None or cfg.optimizer != "adam":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.plateau_factor,
                                                      patience=cfg.plateau_patience, min_lr=cfg.min_lr)


def polish_lbfgs(cfg: CalibrationConfig, params: list[torch.nn.Parameter], total: Callable[[], torch.Tensor]
                 ) -> int:
    """Seed 000's Opt-B: one L-BFGS run (strong Wolfe line search) of at most ``cfg.polish_lbfgs`` iterations;
    ``total()`` returns the summed loss after accumulating its gradient into the parameters. Returns the
    iterations it took."""
    opt = torch.optim.LBFGS(params, lr=cfg.polish_lr, max_iter=cfg.polish_lbfgs, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad(set_to_none=True)
        return total()

    opt.step(closure)
    return int(opt.state[opt.param_groups[0]["params"][0]].get("n_iter", 0))


def lm_step(ps: PathSet, model: PerObjectMaterials, targets: Targets, cfg: CalibrationConfig,
            params: list[torch.nn.Parameter], mu: torch.Tensor, beta: torch.Tensor | None,
            pstats: PriorStats | None, num_res: int | None, project: Callable[[], None] | None,
            evaluate: Callable, stream: Stream | None = None,
            current: tuple[torch.Tensor, torch.Tensor, Linearise | None] | None = None,
            trial: Callable | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, Linearise | None]:
    """One batched Levenberg-Marquardt iteration on the stacked residuals of all B starts (Marquardt-scaled
    damping ``mu`` [B]; ``project`` clips to a box, :func:`projected_step`). ``evaluate(beta)`` returns the
    objective's (loss [B], offset [B], _). With ``stream`` the normal equations are accumulated over its link
    shards (:meth:`rftwin.calibrate.stream.Stream.normal_equations`; J is never formed). Leaves the parameters at
    the accepted steps; returns the loss [B], the offset [B] (dB), the new damping [B], the residual count and
    the next step's linearisation (or None).
    ``current``: (loss [B], offset [B], linearisation or None) of the current parameters, as the last step
    returned them (unstreamed only), so that the step does not evaluate them again. ``trial(beta)``: like
    ``evaluate`` but also returns a function giving the residuals and Jacobian at the evaluated parameters from
    the same forward pass (:func:`rftwin.calibrate.jacobians.trial_pass`): an accepted trial is then the next
    step's linearisation point without another forward pass."""
    lin = None if current is None else current[2]
    if stream is None:
        r, J = lin() if lin is not None else jacobian(ps, model, targets, cfg, beta, pstats, num_res)
        num_res = r.shape[1]
        if current is None:  # the current loss by the same computation as the trial's (Jacobian passes round
            with torch.no_grad():  # differently; comparing across them never settles)
                cost, cur_off, _ = evaluate(beta)
        else:
            cost, cur_off = current[:2]
        JtJ = J.transpose(1, 2) @ J
        g = J.transpose(1, 2) @ r.unsqueeze(-1)
    else:  # the offset of the current point first: the residuals of every shard are taken at it
        with torch.no_grad():
            cost, cur_off, _ = evaluate(beta)
        closed = beta is None and cfg.offset_mode != "none"
        JtJ, g = stream.normal_equations(model, targets, cfg, beta if beta is not None else
                                         (cur_off if closed else None), closed, pstats)
        g = g.unsqueeze(-1)
    theta = flat_params(params)
    diag = torch.diagonal(JtJ, dim1=1, dim2=2)
    # Marquardt scaling with a floor: a parameter the data do not see (J column ~ 0) gets damped like a
    # weakly seen one instead of taking unregularised steps across its range
    diag = torch.maximum(diag, 1e-9 * diag.amax(-1, keepdim=True)).clamp_min(1e-12)
    A = JtJ + torch.diag_embed(mu[:, None] * diag)
    step = torch.nan_to_num(-torch.linalg.solve(A, g).squeeze(-1)).clamp(-2.0, 2.0)
    set_flat_params(params, theta + step)
    if project is not None:  # box: clipped components stop at the bound, the others are re-solved
        step = projected_step(A, g.squeeze(-1), theta, step, params, project)
    with torch.no_grad():
        new, new_off, trial_lin = (trial if trial is not None and stream is None else evaluate)(beta)
    # per start: accept a strict improvement and trust the model more, or reject and damp more (accepting
    # equal losses would let a converged start alternate between both forever)
    better = new < cost
    mu = torch.where(better, mu / 3.0, mu * 4.0).clamp(1e-9, 1e9)
    set_flat_params(params, theta + step * better[:, None].to(theta.dtype))
    # the trial evaluation is the new state where accepted; rejected starts keep their current one
    loss = torch.where(better, new, cost)
    off = torch.where(better, new_off, cur_off)
    nxt = None
    if trial is not None and stream is None:  # the next linearisation: the trial's where accepted, else this one
        if bool(better.all()):
            nxt = trial_lin
        elif not bool(better.any()):
            nxt = lambda: (r, J)  # noqa: E731
        else:
            nxt = lambda: _merge(better, trial_lin(), (r, J))  # noqa: E731
    return loss, off, mu, num_res, nxt


def _merge(take: torch.Tensor, a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Per start (first dimension), ``a``'s tensors where ``take`` [B], else ``b``'s."""
    return tuple(torch.where(take.reshape((-1,) + (1,) * (x.dim() - 1)), x, y) for x, y in zip(a, b))


__all__ = ["lm_step", "make_optimizer", "make_scheduler", "polish_lbfgs", "projected_step", "screen_starts"]

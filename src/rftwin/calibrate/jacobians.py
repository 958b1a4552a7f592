"""Residual Jacobians of the calibration objective per start: forward-mode AD (tangents batched along the start
dimension), reverse mode, or one reverse pass over per-interaction materials (:mod:`rftwin.calibrate.path_jacobian`);
the flat parameter vector of a material model."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.autograd.forward_ad as fwad
from torch.func import functional_call

from rftwin.calibrate import path_jacobian
from rftwin.calibrate.objectives import PriorStats, objective_from_features, residuals
from rftwin.calibrate.problem import Features, Targets
from rftwin.pathset import PathSet

if TYPE_CHECKING:
    from rftwin.calibrate.loop import CalibrationConfig

DUAL_MAX_LANES = 4_000_000  # LM Jacobian: at most this many (tangent x start x path) lanes per forward-AD pass


def trainable_params(model) -> list[torch.nn.Parameter]:
    """The parameters of ``model`` that calibration fits (each [B, K_i])."""
    return [p for p in model.parameters() if p.requires_grad]


def flat_params(params, num_starts: int | None = None) -> torch.Tensor:
    """Parameters ``params`` (each [B, K_i]) concatenated into one detached [B, sum K_i] tensor; with
    ``num_starts`` B, parameters of any shape (a field's layers, B = 1) are flattened to [B, -1] first."""
    if num_starts is not None:
        return torch.cat([p.detach().reshape(num_starts, -1) for p in params], dim=1)
    return torch.cat([p.detach() for p in params], dim=1)


def set_flat_params(params, flat: torch.Tensor) -> None:
    """Write ``flat`` [B, sum K_i] back into ``params`` (inverse of :func:`flat_params`)."""
    i = 0
    with torch.no_grad():
        for p in params:
            k = p.shape[1]
            p.copy_(flat[:, i:i + k])
            i += k


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
            out = residuals(ps, lambda *a, d=d: functional_call(model, d, a), t, cfg, state, prior)
            primal, tangent = fwad.unpack_dual(out)
        r0 = primal[:B].detach() if r0 is None else r0
        cols.append(tangent.reshape(g, B, -1))
    return r0, torch.cat(cols)


def prior_block(model, prior: PriorStats, cfg: CalibrationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled prior residuals [B, Pp] (as stacked by :func:`objective`) and their Jacobian [B, Pp, P]; each start's
    residuals depend on its own parameters only, so one reverse pass per residual gives every start's row. With
    fewer parameters than residuals (material groups: one parameter per group, one prior row per object) the
    columns come instead from one pass per parameter (:func:`_prior_columns`)."""
    params = trainable_params(model)
    with torch.enable_grad():
        rp = prior.residuals(model)
        rp = rp * math.sqrt(cfg.prior_weight / rp.shape[-1])
        by_columns = sum(p.shape[1] for p in params) < rp.shape[1]
        return rp.detach(), (_prior_columns if by_columns else _prior_rows)(rp, params)


def _prior_rows(rp: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Jacobian [B, Pp, P] of ``rp`` [B, Pp] by rows: one backward pass per residual."""
    rows = []
    for i in range(rp.shape[1]):
        g = torch.autograd.grad(rp[:, i].sum(), params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([torch.zeros_like(p) if x is None else x for x, p in zip(g, params)], 1))
    return torch.stack(rows, 1).detach()


def _prior_columns(rp: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Jacobian [B, Pp, P] of ``rp`` [B, Pp] by columns: g(u) = J^T u (a backward pass with a cotangent u that
    requires grad) is linear in u, so the derivative of g . e_j with respect to u is column j of J for every start
    at once (starts are independent): P + 1 backward passes instead of Pp."""
    u = torch.zeros_like(rp, requires_grad=True)
    g = torch.autograd.grad(rp, params, grad_outputs=u, create_graph=True, allow_unused=True)
    cols = []
    for gi, p in zip(g, params):
        for j in range(p.shape[1]):
            c = None if gi is None else torch.autograd.grad(gi[:, j].sum(), u, retain_graph=True,
                                                            allow_unused=True)[0]
            cols.append(torch.zeros_like(rp) if c is None else c)  # None: rp does not depend on it
    return torch.stack(cols, -1).detach()


def pass_jacobian(gp: path_jacobian.GainPass, model, t: Targets, cfg: CalibrationConfig,
                  offset_state: torch.Tensor | None, prior: PriorStats | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Residuals r [B, R] and Jacobian J [B, R, P] of the path-gain objective (:func:`path_jacobian.supports`)
    from a forward pass ``gp`` at the model's current parameters: its backward pass, the residual scaling and
    the prior's rows."""
    r, J = path_jacobian.scaled_residuals(gp.sim_db, gp.jacobian(), t, cfg, offset_state)
    if prior is None or cfg.prior_weight == 0:
        return r, J
    rp, Jp = prior_block(model, prior, cfg)
    return torch.cat([r, rp], 1), torch.cat([J, Jp], 1)


def trial_pass(ps: PathSet, model, t: Targets, cfg: CalibrationConfig, offset_state: torch.Tensor | None,
               prior: PriorStats | None, parts: dict | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    """The objective's loss [B] and offset [B] (dB) at the model's current parameters, as
    :func:`rftwin.calibrate.objectives.objective` computes them (``parts`` filled alike), and a function that
    returns the residuals and Jacobian there (:func:`jacobian`) by one backward pass of the same forward pass
    (the prior's rows at the parameters the model holds when it is called). Only for problems
    :func:`path_jacobian.supports`."""
    params = trainable_params(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    with torch.enable_grad():  # (called under no_grad by the LM step)
        gp = path_jacobian.gain_pass(ps, model, t, names, [p.shape[1] for p in params], flat_params(params),
                                     cfg.chunk_size)
    loss, off, _ = objective_from_features(Features(path_gain_db=gp.sim_db), model, t, cfg, offset_state, prior,
                                           parts=parts, ps=ps)
    return loss, off, lambda: pass_jacobian(gp, model, t, cfg, offset_state, prior)


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
        gp = path_jacobian.gain_pass(ps, model, t, names, sizes, theta, cfg.chunk_size)
        return pass_jacobian(gp, model, t, cfg, offset_state, prior)
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


__all__ = ["DUAL_MAX_LANES", "flat_params", "forward_columns", "jacobian", "pass_jacobian", "prior_block",
           "set_flat_params", "trainable_params", "trial_pass"]

"""Jacobian of path-gain (dB) residuals by one reverse pass over per-interaction material values.

A path's coefficient depends only on the materials at its own interactions, and a link's path gain is the sum of
its paths' powers. So with the materials gathered per interaction q[b, f, n, i] (leaf tensors), one backward pass
of sum(p) gives every dp[b, f, n] / dq[b, f, n, i] exactly (no path shares an interaction). The chain rule then
only needs dq / dtheta, i.e. the per-object read-outs' Jacobian d v[b, f, k] / d theta[b, p] (reverse mode
through the material model alone, no engine), gathered at each interaction's object:

    dG[l] / dtheta = sum_{n in l} sum_i sum_q dp_n / dq_{n,i} * dv_q[obj(n, i)] / dtheta,
    dr[l] / dtheta = 10 / ln(10) * dG[l] / dtheta / G[l]   (+ the closed-form offset's own derivative).

Cost: about one forward and one backward engine pass for all P parameters and all B starts, instead of P
forward-mode passes (:func:`rftwin.calibrate.jacobians.jacobian` falls back to those for other loss terms).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.autograd.forward_ad as fwad
from torch.func import functional_call

from rftwin.calibrate.problem import Targets
from rftwin.pathset import PathSet
from rftwin.physics.channel import link_sum, path_power
from rftwin.physics.engine import MaterialValues, path_coefficients

_QUANTITIES = ("eps_r", "sigma", "scattering", "xpd")
#: read-out Jacobian by copies of the starts while (entries x starts x (parameters + entries)) stays below this
READOUT_LANES = 1 << 20


def tiled_state(model, names: list[str], sizes: list[int], tiled: torch.Tensor, num_starts: int
                ) -> dict[str, torch.Tensor]:
    """Parameters and per-start buffers for ``functional_call(model, state, ...)`` with the B = ``num_starts``
    starts copied G times along the start dimension: ``tiled`` [G B, P] the copies' parameters."""
    G = tiled.shape[0] // num_starts
    per_start = {n: b.repeat(G, 1) for n, b in model.named_buffers() if b.dim() == 2 and b.shape[0] == num_starts}
    return dict(zip(names, torch.split(tiled, sizes, 1)), **per_start)


def dual_state(model, names: list[str], sizes: list[int], theta: torch.Tensor, tangents: torch.Tensor
               ) -> dict[str, torch.Tensor]:
    """:func:`tiled_state` with G tangent directions carried along the start dimension: ``theta`` [B, P]
    repeated G times, copy g with tangent ``tangents[g]`` [P]. Call inside
    ``torch.autograd.forward_ad.dual_level()``."""
    B = theta.shape[0]
    G = tangents.shape[0]
    return tiled_state(model, names, sizes, fwad.make_dual(theta.repeat(G, 1), tangents.repeat_interleave(B, 0)), B)


def _readout_jacobian(model, names: list[str], sizes: list[int], theta: torch.Tensor, freqs: torch.Tensor
                      ) -> tuple[MaterialValues, dict[str, torch.Tensor]]:
    """Per-object material values of ``model`` at ``freqs`` and, per quantity, dv[b, f, k] / dtheta[b, p] as
    [B, F, K] x P -> [B, F, K, P] (reverse mode through the material model only, no engine). Reverse mode, not
    forward: forward-mode AD of a scalar add imports ``torch._dynamo`` on first use, about as long as
    ``import torch`` itself. The starts are independent, so with n = F K entries either pass gives every start's
    rows: one scalar backward pass over n copies of the starts (:func:`_readout_rows_by_copies`, while
    n B (P + n) <= ``READOUT_LANES``), or one batched backward pass with a one-hot cotangent per entry (scenes
    with many objects: the copies would cost n^2 B; any tensor of cotangents makes torch import its symbolic
    shapes and sympy, ~0.5 s, once)."""
    B, P = theta.shape
    F = len(freqs)
    th = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        mv = functional_call(model, dict(zip(names, torch.split(th, sizes, 1))), (freqs,))
    values = {q: getattr(mv, q).expand(B, F, getattr(mv, q).shape[-1]) for q in _QUANTITIES
              if getattr(mv, q) is not None}
    n = F * max(v.shape[-1] for v in values.values())
    if n * B * (P + n) <= READOUT_LANES:
        jac = _readout_rows_by_copies(model, names, sizes, theta, freqs,
                                      [q for q, v in values.items() if v.requires_grad], n)
    else:
        jac = {}
        for q, v in values.items():
            if not v.requires_grad:
                continue
            K = v.shape[-1]
            m = F * K
            onehot = torch.eye(m, dtype=v.dtype, device=v.device).reshape(m, 1, F, K).expand(m, B, F, K)
            (g,) = torch.autograd.grad(v, th, onehot, retain_graph=True, is_grads_batched=True, allow_unused=True)
            if g is not None:  # [F K, B, P]
                jac[q] = g.reshape(F, K, B, P).permute(2, 0, 1, 3).contiguous()
    base = MaterialValues(values["eps_r"].detach(), values["sigma"].detach(), mv.thickness.detach(),
                          scattering=None if "scattering" not in values else values["scattering"].detach(),
                          xpd=None if "xpd" not in values else values["xpd"].detach(), pattern=mv.pattern,
                          alpha_r=mv.alpha_r, alpha_i=mv.alpha_i, lambda_=mv.lambda_)
    return base, jac


def _readout_rows_by_copies(model, names: list[str], sizes: list[int], theta: torch.Tensor, freqs: torch.Tensor,
                            quantities: list[str], n: int) -> dict[str, torch.Tensor]:
    """dv[b, f, k] / dtheta[b, p] [B, F, K, P] of ``quantities``: the read-out evaluated on ``n`` (the most entries
    F K of a quantity) copies of the B starts, copy i for entry i, and one backward pass of the sum of every
    copy's own entry."""
    B, P = theta.shape
    F = len(freqs)
    th = theta.detach().repeat(n, 1).requires_grad_(True)  # copy i: rows i B ... i B + B - 1
    jac = {}
    with torch.enable_grad():
        mv = functional_call(model, tiled_state(model, names, sizes, th, B), (freqs,))
        for q in quantities:
            v = getattr(mv, q)
            Kq = v.shape[-1]
            m = F * Kq
            pick = torch.eye(n, m, dtype=v.dtype, device=v.device)[:, None, :]  # [n, 1, m]: copy i picks entry i
            (g,) = torch.autograd.grad((v.expand(n * B, F, Kq).reshape(n, B, m) * pick).sum(), th,
                                       retain_graph=True, allow_unused=True)
            if g is not None:  # [n B, P]: the first m copies hold the rows of this quantity's entries
                jac[q] = g[: m * B].reshape(F, Kq, B, P).permute(2, 0, 1, 3).contiguous()
    return jac


@dataclass
class GainPass:
    """One forward engine pass at the parameters ``theta`` [B, P] that kept what the Jacobian needs:
    ``sim_db`` [B, M] the simulated path gain (dB) of the target rows; :meth:`jacobian` the backward pass that
    turns it into d sim_db / d theta [B, M, P] (so a Levenberg-Marquardt trial pays the backward pass only once
    accepted, and the next step needs no forward pass of its own)."""

    sim_db: torch.Tensor
    _finish: Callable[[], torch.Tensor]
    _jacobian: torch.Tensor | None = None

    def jacobian(self) -> torch.Tensor:
        """d sim_db / d theta [B, M, P] (the backward pass runs on the first call; the graph is freed then)."""
        if self._jacobian is None:
            self._jacobian = self._finish()
            self._finish = None
        return self._jacobian


def gain_pass(ps: PathSet, model, t: Targets, names: list[str], sizes: list[int], theta: torch.Tensor,
              chunk_size: int | None = None) -> GainPass:
    """Simulated path gain (dB) of the target rows at ``theta`` [B, P] (the free parameters, named ``names`` with
    ``sizes`` columns each, in ``model.named_parameters`` order) with its Jacobian one backward pass away."""
    freqs = t.frequencies_hz
    base, jac = _readout_jacobian(model, names, sizes, theta, freqs)
    obj = ps.obj
    idx = obj.clamp_min(0)
    leaves = {q: getattr(base, q)[..., idx].requires_grad_(True) for q in jac}  # [B, F, N, D] (a gather: new leaves)
    per_int = replace(base.at_interactions(obj), **leaves)
    L = ps.num_links
    with torch.enable_grad():
        pw = path_power(path_coefficients(ps, per_int, freqs, check=False, chunk_size=chunk_size))  # [B, F, N]
    G = link_sum(pw.detach(), ps.link, L)  # [B, F, L]
    rows_G = G[:, t.freq_index, t.link]  # [B, M]
    safe = rows_G.clamp_min(1e-30)

    def finish() -> torch.Tensor:
        grads = torch.autograd.grad(pw.sum(), list(leaves.values()))
        # dG[b, f, l] / dtheta = sum_k H_q[b, f, l, k] dv_q[b, f, k] / dtheta, H_q = sum over the link's
        # interactions with object k of dp / dq (one scatter-add per quantity into link x object bins)
        valid = (obj >= 0).to(theta.dtype)  # [N, D]
        K = base.eps_r.shape[-1]
        bins = (ps.link[:, None] * K + idx).reshape(-1)  # [N D]
        dG = 0.0
        for q, g in zip(leaves, grads):
            B, F = g.shape[:2]
            gv = (g * valid).reshape(B, F, -1)
            H = torch.zeros(B, F, L * K, dtype=gv.dtype, device=gv.device).index_add_(-1, bins, gv)
            dG = dG + H.reshape(B, F, L, K) @ jac[q]  # [B, F, L, P]
        rows_dG = dG[:, t.freq_index, t.link]  # [B, M, P]
        return torch.where((rows_G > 1e-30)[..., None], (10.0 / math.log(10.0)) * rows_dG / safe[..., None],
                           torch.zeros((), dtype=rows_dG.dtype))

    return GainPass(10.0 * torch.log10(safe), finish)


def path_gain_jacobian(ps: PathSet, model, t: Targets, names: list[str], sizes: list[int], theta: torch.Tensor,
                       chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulated path gain (dB) of the target rows [B, M] and its Jacobian [B, M, P] w.r.t. the free parameters
    ``theta`` [B, P] (named ``names`` with ``sizes`` columns each, in ``model.named_parameters`` order)."""
    gp = gain_pass(ps, model, t, names, sizes, theta, chunk_size)
    return gp.sim_db, gp.jacobian()


def supports(cfg, model) -> bool:
    """Whether :func:`gain_pass` and :func:`scaled_residuals` cover the data residuals of this problem:
    least-squares path gain (dB) as the only loss term and a per-object material model (a MAP prior's rows are
    appended by the caller)."""
    terms = cfg.loss_terms
    return (len(terms) == 1 and terms[0].feature == "path_gain" and terms[0].metric == "mse_db"
            and hasattr(model, "readout"))


def scaled_residuals(sim: torch.Tensor, J: torch.Tensor, t: Targets, cfg, offset_state: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The scaled path-gain residuals [B, M] and their Jacobian [B, M, P] from the simulated path gain ``sim``
    [B, M] (dB) and its Jacobian ``J`` [B, M, P] (the offset's own derivative included when it is closed-form)."""
    w = t.row_weight("path_gain")
    ok = w > 0
    meas = torch.where(ok, t.path_gain_db, torch.zeros((), dtype=sim.dtype))
    if offset_state is not None:
        off = offset_state.to(sim.dtype)[:, None]
    elif cfg.offset_mode != "none":
        wsum = w.sum().clamp_min(1e-30)
        off = (torch.where(ok, meas - sim, torch.zeros((), dtype=sim.dtype)) * w).sum(-1, keepdim=True) / wsum
        J = J - (J * w[:, None]).sum(-2, keepdim=True) / wsum
    else:
        off = torch.zeros((), dtype=sim.dtype)
    scale = math.sqrt(cfg.loss_terms[0].weight) / torch.sqrt(w.sum().clamp_min(1e-30))
    sw = torch.sqrt(w) * scale
    r = torch.where(ok, sim + off - meas, torch.zeros((), dtype=sim.dtype)) * sw
    return r.detach(), (J * sw[:, None]).detach()


__all__ = ["GainPass", "dual_state", "tiled_state", "gain_pass", "path_gain_jacobian",
           "scaled_residuals", "supports"]

"""Calibration streamed over shards of links: loss, gradient, Gauss-Newton normal equations and Laplace with one
shard of paths in memory at a time.

Every residual of a least-squares term belongs to one measured row, and a row to one link, so the stacked residuals
r [B, R] and their Jacobian J [B, R, P] split by link. A shard is a PathSet of a subset of the links
(:mod:`rftwin.calibrate.shards`: :class:`MemoryShards`, slices of one PathSet; :class:`FileShards`, PathSet files
loaded one at a time).

* **Loss** (:meth:`Stream.objective`): the simulated features of every row [B, M] are gathered shard by shard (the
  engine's per-link sums never mix links, so they are the numbers of the unstreamed run), then the objective is
  evaluated on them once (:func:`rftwin.calibrate.objectives.objective_from_features`): gain offset, every loss
  term and the MAP prior exactly as without shards.
* **Gradient** (:meth:`Stream.backward`, Adam / L-BFGS): the loss is a function of the features, so
  dL/dtheta = sum over shards of (dL/dfeatures of the shard's rows) . dfeatures/dtheta: one backward pass of the
  objective to the features, then one vector-Jacobian product per shard.
* **Normal equations** (:meth:`Stream.normal_equations`, Levenberg-Marquardt and Laplace): J^T J [B, P, P] and
  J^T r [B, P] accumulated per shard; the MAP prior's rows are added once. The closed-form gain offset o couples all
  rows: it is treated as an extra parameter and eliminated. The residuals are evaluated at the offset o* of the
  current point (from the loss pass), so J = J_theta + j_o g^T with J_theta the Jacobian at fixed offset, j_o =
  dr/do and g = do*/dtheta = -sum_i w_i dq_i/dtheta / sum w (q the simulated path gain in dB). Each shard is first
  centred on its own offset derivative g_k (C_k = J_theta,k + j_o,k g_k^T) and the shards are combined with the
  pairwise-update formula of weighted covariances (Chan et al.), J^T J = sum_k C_k^T C_k + t_k d_k^T + d_k t_k^T +
  n_k d_k d_k^T with d_k = g - g_k, t_k = C_k^T j_o,k, n_k = |j_o,k|^2, which avoids the cancellation of
  sum J_theta^T J_theta - (sum ..)(sum ..)^T / W. Supported offset feature: path gain (mse_db); other offsets
  (CFR, MPC powers) are refused with LM and Laplace (Adam / L-BFGS handle any objective).

Not streamed: per-MPC power targets (they index paths of the whole PathSet).
"""
from __future__ import annotations

import math
import weakref
from dataclasses import replace

import torch

from rftwin.calibrate.jacobians import jacobian, prior_block, trainable_params
from rftwin.calibrate.objectives import PriorStats, needed_features, objective_from_features, offset_feature
from rftwin.calibrate.problem import Features, Targets, simulate_features
from rftwin.calibrate.shards import FileShards, LinkShards, MemoryShards, Shard, plan_shards, slice_links
from rftwin.pathset import PathSet

#: peak bytes one path of a shard adds to a streamed calibration, per start: measured 1 570 B
#: (``benchmarks/bench_calibrate_scale.py --measure``: LM with the one-pass path-gain Jacobian + Laplace, room,
#: depth 2, 4 starts, shards of 2 000 - 32 000 paths, PathSet included); x 2.6 for deeper paths and other terms
BYTES_PER_PATH_START = 4096.0
#: share of the memory budget left above the resident memory that one shard may take
SHARD_SHARE = 0.5
#: fewest paths per shard a budget may ask for (smaller shards only add per-shard overhead)
MIN_SHARD_PATHS = 256
_FEATURES = ("path_gain", "delay_spread", "mean_delay", "cfr")


def shard_paths_for_budget(budget: int, resident: int, num_starts: int) -> int:
    """Paths per shard that keep one streamed pass of ``num_starts`` starts within ``SHARD_SHARE`` of what the
    budget (bytes) leaves above the ``resident`` memory (at least ``MIN_SHARD_PATHS``)."""
    room = max(0.0, SHARD_SHARE * (budget - resident))
    return max(MIN_SHARD_PATHS, int(room // (BYTES_PER_PATH_START * max(num_starts, 1))))


def _block_sizes(t: Targets, cfg) -> list[tuple[str, int]]:
    """(feature, residual count) of every loss term, in the order :func:`objective_from_features` stacks them."""
    return [(term.feature, 2 * t.cfr_subcarriers * t.num if term.feature == "cfr" else t.num)
            for term in cfg.loss_terms]


class Stream:
    """Streamed evaluation of one calibration problem over ``shards`` (see the module docstring)."""

    def __init__(self, shards: LinkShards):
        self.shards = shards

    # ------------------------------------------------------------------ loss
    def features(self, model, t: Targets, features: set[str], chunk_size: int) -> Features:
        """Simulated features [B, M] of all rows of ``t`` (no autograd graph kept)."""
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for shard, rows, ts in self.shards.paired(t):
                fs = simulate_features(shard.pathset, model, ts, features, chunk_size)
                for name in _FEATURES:
                    v = fs.get(name)
                    if v is None:
                        continue
                    if name not in out:
                        out[name] = torch.zeros((v.shape[0], t.num) + tuple(v.shape[2:]), dtype=v.dtype)
                    out[name][:, rows] = v
        return Features(out.get("path_gain"), out.get("delay_spread"), out.get("mean_delay"), out.get("cfr"))

    def objective(self, model, t: Targets, cfg, offset_state: torch.Tensor | None = None,
                  prior: PriorStats | None = None, parts: dict | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """Loss [B] and gain offset [B] (dB), as :func:`rftwin.calibrate.objectives.objective` (no residuals;
        ``parts`` receives the terms' losses)."""
        feats = self.features(model, t, needed_features(t, cfg), cfg.chunk_size)
        with torch.no_grad():
            loss, off, _ = objective_from_features(feats, model, t, cfg, offset_state, prior, parts=parts)
        return loss, off, None

    # -------------------------------------------------------------- gradient
    def backward(self, model, t: Targets, cfg, offset_state: torch.Tensor | None = None,
                 prior: PriorStats | None = None) -> torch.Tensor:
        """Accumulate d(sum of the loss [B])/dtheta into the parameters' ``.grad`` shard by shard; returns the
        loss [B] (detached)."""
        need = needed_features(t, cfg)
        feats = self.features(model, t, need, cfg.chunk_size)
        leaves = {n: feats.get(n).detach().requires_grad_(True) for n in _FEATURES if feats.get(n) is not None}
        with torch.enable_grad():
            loss, _, _ = objective_from_features(Features(leaves.get("path_gain"), leaves.get("delay_spread"),
                                                          leaves.get("mean_delay"), leaves.get("cfr")),
                                                 model, t, cfg, offset_state, prior)
            loss.sum().backward()  # prior gradients go to the parameters, the rest to the feature leaves
            grads = {n: x.grad for n, x in leaves.items() if x.grad is not None}
            for shard, rows, ts in self.shards.paired(t):
                fs = simulate_features(shard.pathset, model, ts, need, cfg.chunk_size)
                outs = [(fs.get(n), g[:, rows]) for n, g in grads.items() if fs.get(n) is not None]
                outs = [(o, g) for o, g in outs if o.requires_grad]
                if outs:
                    torch.autograd.backward([o for o, _ in outs], [g for _, g in outs])
        return loss.detach()

    # ------------------------------------------------------ normal equations
    def check_least_squares(self, t: Targets, cfg) -> None:
        """Raise when the normal equations of this problem cannot be streamed (offset on a non-path-gain
        feature, or an offset with a CFR term)."""
        if cfg.offset_mode == "none":
            return
        feats = {term.feature for term in cfg.loss_terms}
        if offset_feature(t, cfg) != "path_gain" or "cfr" in feats:
            raise ValueError("streamed Levenberg-Marquardt / Laplace supports a gain offset on the path gain only "
                             f"(terms {[str(x) for x in cfg.loss_terms]}, offset on "
                             f"'{offset_feature(t, cfg)}'): use --optimizer adam or lbfgs, --offset none, or a "
                             "larger --memory-budget (one shard)")

    def normal_equations(self, model, t: Targets, cfg, offset: torch.Tensor | None, eliminate: bool,
                         prior: PriorStats | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """J^T J [B, P, P] and J^T r [B, P] of the stacked residuals of :func:`rftwin.calibrate.objectives.
        objective` (prior rows included when ``cfg.prior_weight > 0``), residuals evaluated at the gain offset
        ``offset`` [B] (dB; None: no offset). ``eliminate``: the offset is the closed-form optimum of the current
        point (its dependence on theta enters J); else it is held fixed (EMA state)."""
        self.check_least_squares(t, cfg)
        params = trainable_params(model)
        dtype = params[0].dtype
        B, P = params[0].shape[0], sum(p.shape[1] for p in params)
        blocks = _block_sizes(t, cfg)
        num_res = sum(n for _, n in blocks)
        with_prior = prior is not None and cfg.prior_weight > 0
        if with_prior:
            with torch.no_grad():
                num_res += int(prior.residuals(model).shape[-1])
        totals = {f: float(t.row_weight(f).sum()) for f, _ in blocks}
        eliminate = eliminate and any(f == "path_gain" for f, _ in blocks)
        c = replace(cfg, prior_weight=0.0)
        JtJ = torch.zeros(B, P, P, dtype=dtype)
        Jtr = torch.zeros(B, P, dtype=dtype)
        per_shard = []  # eliminate: (W_k, g_k [B, P], t_k [B, P], n_k, s_k [B])
        for shard, _rows, ts in self.shards.paired(t):
            r, J = jacobian(shard.pathset, model, ts, c, offset, None, num_res)
            m = ts.num
            scale = torch.ones(r.shape[1], dtype=dtype)
            jo = torch.zeros(r.shape[1], dtype=dtype)
            dq = None
            i = 0
            for (f, _), term in zip(blocks, cfg.loss_terms):
                n = 2 * ts.cfr_subcarriers * m if f == "cfr" else m
                wk = ts.row_weight(f)
                Wk = float(wk.sum())
                scale[i:i + n] = math.sqrt(Wk / totals[f]) if totals[f] > 0 else 0.0
                if eliminate and f == "path_gain":  # dr/do of this block (global scale)
                    jo[i:i + n] = torch.sqrt(wk) * math.sqrt(term.weight / max(totals[f], 1e-30))
                    if dq is None:  # dq_i/dtheta = J_i / (dr_i/dq_i) on rows with weight
                        a = jo[i:i + n]
                        dq = (wk, J[:, i:i + n] * scale[i:i + n, None] / torch.where(a > 0, a, 1.0)[:, None])
                i += n
            r = r * scale
            J = J * scale[:, None]
            if eliminate:
                wk, dqk = dq
                Wk = float(wk.sum())
                gk = -(wk[:, None] * dqk).sum(1) / Wk if Wk > 0 else torch.zeros(B, P, dtype=dtype)  # [B, P]
                J = J + jo[:, None] * gk[:, None, :]
                per_shard.append((Wk, gk, J.transpose(1, 2) @ jo, float(jo @ jo), r @ jo))
            JtJ += J.transpose(1, 2) @ J
            Jtr += (J.transpose(1, 2) @ r.unsqueeze(-1)).squeeze(-1)
        if eliminate and per_shard:
            W = torch.tensor([x[0] for x in per_shard], dtype=dtype)  # [S]
            gk = torch.stack([x[1] for x in per_shard])  # [S, B, P]
            g = (W[:, None, None] * gk).sum(0) / W.sum().clamp_min(1e-30)
            d = g[None] - gk  # [S, B, P]
            tk = torch.stack([x[2] for x in per_shard])  # [S, B, P]
            nk = torch.tensor([x[3] for x in per_shard], dtype=dtype)
            sk = torch.stack([x[4] for x in per_shard])  # [S, B]
            cross = torch.einsum("sbp,sbq->bpq", tk, d)
            JtJ += cross + cross.transpose(1, 2) + torch.einsum("s,sbp,sbq->bpq", nk, d, d)
            Jtr += (d * sk[..., None]).sum(0)
        if with_prior:
            rp, Jp = prior_block(model, prior, cfg)
            JtJ += Jp.transpose(1, 2) @ Jp
            Jtr += (Jp.transpose(1, 2) @ rp.unsqueeze(-1)).squeeze(-1)
        return JtJ, Jtr

    def gauss_newton(self, model, t: Targets, cfg, prior: PriorStats | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss [B] (= r^T r), J^T J [B, P, P] and J^T r [B, P] at the current point, the gain offset at its
        closed form (eliminated) unless ``cfg`` has none; prior rows with ``prior`` and ``cfg.prior_weight`` > 0.
        What :func:`rftwin.calibrate.uncertainty.laplace` and :func:`rftwin.calibrate.bayes.laplace_stats` need."""
        loss, off, _ = self.objective(model, t, cfg, None, prior)
        closed = cfg.offset_mode != "none"
        JtJ, Jtr = self.normal_equations(model, t, cfg, off if closed else None, closed, prior)
        return loss, JtJ, Jtr


def stream_for(ps: PathSet | LinkShards, model, t: Targets, cfg) -> Stream | None:
    """The :class:`Stream` of a calibration problem, or None when it runs unstreamed on one PathSet: ``ps``
    given as shards always streams; a PathSet streams when ``cfg.shard_paths`` or the memory budget
    (``cfg.memory_budget``, default :func:`rftwin.trace.budget.default_budget`) asks for more than one shard.
    Per-MPC power targets never stream."""
    from rftwin.materials.per_object import PerObjectMaterials  # noqa: PLC0415

    per_object = isinstance(model, PerObjectMaterials)
    if isinstance(ps, LinkShards):
        if not per_object:
            raise ValueError(f"link shards stream per-object and grouped models; {type(model).__name__} needs the "
                             "calibration's PathSet (its prior is evaluated at every interaction point)")
        ps.check(t)
        return Stream(ps)
    if not per_object or (t.mpc_path is not None and t.mpc_path.numel()):  # fields: one PathSet (see above)
        return None
    limit = getattr(cfg, "shard_paths", None)
    if limit is None:
        from rftwin.trace.budget import current_rss, default_budget  # noqa: PLC0415

        budget = getattr(cfg, "memory_budget", None)
        limit = shard_paths_for_budget(default_budget() if budget is None else int(budget), current_rss(),
                                       model.num_starts)
    if ps.num_paths <= limit:
        return None
    hit = _LAST.get("shards")
    if hit is not None and hit[0]() is ps and hit[1] == int(limit):  # repeated calls on one PathSet (posterior)
        return Stream(hit[2])
    shards = MemoryShards(ps, max_paths=int(limit))
    _LAST["shards"] = (weakref.ref(ps, _forget), int(limit), shards)
    return Stream(shards)


#: the shards of the last PathSet :func:`stream_for` split (one entry, dropped with its PathSet)
_LAST: dict[str, tuple] = {}


def _forget(ref: weakref.ref) -> None:
    if _LAST.get("shards", (None,))[0] is ref:
        _LAST.pop("shards", None)


__all__ = ["BYTES_PER_PATH_START", "FileShards", "LinkShards", "MemoryShards", "Shard", "Stream", "plan_shards",
           "shard_paths_for_budget", "slice_links", "stream_for"]

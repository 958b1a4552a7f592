"""Training a material field through the channel engine on cached paths.

Loss = mean dB error^2 of per-link path gain over all (link, frequency) rows (multi-band in one batch)
[+ w_mpc * mean dB error^2 of per-path (MPC) powers, when the targets carry ``mpc_path`` / ``mpc_power_db``]
[+ w_ds * mean ((RMS delay spread error) / 1 ns)^2] + the field's regularisation (hash L2, gate L1).
Phase 1: Adam with separate learning rates for the MLP and the hash tables, ReduceLROnPlateau on the loss.
Phase 2 (seed 000 Opt-B): L-BFGS (strong Wolfe line search) over the whole network. The best state seen is
restored at the end; Ctrl-C stops training early and keeps it.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from rftwin.calibrate.losses import db_offset
from rftwin.calibrate.problem import Targets
from rftwin.fields.base import MaterialField
from rftwin.fields.evaluate import interaction_points
from rftwin.fields.prior import FieldPrior
from rftwin.pathset import NONE, PathSet
from rftwin.physics.channel import path_gain, path_power, to_db
from rftwin.physics.engine import path_coefficients
from rftwin.physics.features import delay_moments
from rftwin.progress import track


@dataclass
class FieldTrainConfig:
    adam_iterations: int = 600
    lr_mlp: float = 1e-3  # seed 000
    lr_hash: float = 5e-4  # seed 000
    plateau_factor: float = 0.5
    plateau_patience: int = 50
    min_lr: float = 1e-6
    lbfgs_iterations: int = 100  # 0: no L-BFGS fine-tuning
    lbfgs_lr: float = 1.0
    lambda_hash: float = 1e-6
    lambda_gate: float = 1e-6
    delay_spread_weight: float = 0.0  # weight of the (delay spread error / 1 ns)^2 term
    mpc_weight: float = 1.0  # weight of the per-path (MPC) power dB^2 term (used when the targets have MPCs)
    mpc_floor_db: float | None = None  # MPC detection floor (dB): measured powers below it are upper bounds
    estimate_offset: bool = False  # unknown absolute power reference: closed-form global dB offset
    monitor_every: int = 50  # call the monitor every this many Adam iterations (and after L-BFGS)
    seed: int = 0

    def __post_init__(self):
        if self.mpc_weight < 0 or self.delay_spread_weight < 0:
            raise ValueError("loss-term weights must be >= 0")
        for name in ("adam_iterations", "lbfgs_iterations"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr_mlp <= 0 or self.lr_hash <= 0:
            raise ValueError("learning rates must be positive")


@dataclass
class FieldTrainResult:
    loss: float  # total loss of the restored best state
    rmse_db: float  # path-gain RMSE over the training rows (dB, offset applied)
    offset_db: float
    adam_iterations: int
    lbfgs_iterations: int
    seconds: float
    interrupted: bool = False
    history: list[dict] = field(default_factory=list)


class FieldObjective:
    """Loss of a field on (paths, targets); ``__call__`` returns (total, data MSE [dB^2], offset [dB]).

    Uses the rows of ``targets`` with a finite ``path_gain_db``; when ``delay_spread_weight`` > 0, those with a
    finite ``delay_spread_s``; when ``mpc_weight`` > 0 and the targets hold per-path powers (``mpc_path`` /
    ``mpc_power_db``), the finite MPC powers (squared dB error) and, with ``mpc_floor_db``, MPCs measured below
    that floor (e.g. -inf: traced but not detected), whose simulated power is penalised only above the floor.
    The reported data MSE is the path-gain term.
    """

    def __init__(self, ps: PathSet, targets: Targets, cfg: FieldTrainConfig, prior: FieldPrior | None = None):
        if targets.path_gain_db is None:
            raise ValueError("targets: a field is trained on path gain; 'path_gain_db' is missing")
        if targets.num == 0:
            raise ValueError("targets: no rows")
        if int(targets.link.max()) >= ps.num_links or int(targets.link.min()) < 0:
            raise ValueError(f"targets: link indices must lie in [0, {ps.num_links}) (the traced links)")
        targets.check(ps)
        self.ps, self.t, self.cfg, self.prior = ps, targets, cfg, prior
        self.gain_rows = torch.isfinite(targets.path_gain_db)
        if targets.weight is not None:
            self.gain_rows &= targets.weight > 0
        self.points = interaction_points(ps) if prior is not None else None
        if not bool(self.gain_rows.any()):
            raise ValueError("targets: no finite path_gain_db value")
        ds = getattr(targets, "delay_spread_s", None)
        self.ds_rows = None
        if ds is not None and cfg.delay_spread_weight > 0:
            self.ds_rows = torch.isfinite(ds)
            if not bool(self.ds_rows.any()):
                self.ds_rows = None
        self.mpc_fit = self.mpc_below = None
        if cfg.mpc_weight > 0 and targets.mpc_path is not None and targets.mpc_path.numel():
            pw = targets.mpc_power_db
            self.mpc_fit = torch.isfinite(pw)
            if cfg.mpc_floor_db is not None:
                self.mpc_fit &= pw >= cfg.mpc_floor_db
                self.mpc_below = ~torch.isnan(pw) & (pw < cfg.mpc_floor_db)
            if not bool(self.mpc_fit.any()) and (self.mpc_below is None or not bool(self.mpc_below.any())):
                self.mpc_fit = self.mpc_below = None  # no usable MPC row

    def simulate(self, fld: MaterialField) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Simulated path gain [M] (dB), RMS delay spread [M] (s, when delay spreads are fitted) and MPC powers
        [Q] (dB, when MPC powers are fitted)."""
        return self._simulate(fld)[:3]

    def _simulate(self, fld: MaterialField):
        """:meth:`simulate` plus the field's per-interaction MaterialValues [1, F, N, D] it used."""
        f = self.t.frequencies_hz
        mv = fld(self.ps, f)
        a = path_coefficients(self.ps, mv, f, check=False)  # [1, F, N, R, T]
        g = to_db(path_gain(a, self.ps.link, self.ps.num_links))[0]  # [F, L]
        sim = g[self.t.freq_index, self.t.link]
        mpc = None
        if self.mpc_fit is not None:
            mpc = to_db(path_power(a[0]))[self.t.mpc_freq_index, self.t.mpc_path]
        if self.ds_rows is None:
            return sim, None, mpc, mv
        _, ds = delay_moments(path_power(a), self.ps.tau_s, self.ps.link, self.ps.num_links, empty=0.0)
        return sim, ds[0][self.t.freq_index, self.t.link], mpc, mv

    def _prior_term(self, fld: MaterialField, mv, rows: int) -> torch.Tensor:
        """The prior term, from the values the engine just used when the prior's frequency is a target frequency
        (no second pass of the network), else from the field at the interaction points."""
        hit = torch.nonzero(torch.isclose(self.t.frequencies_hz, torch.tensor(self.prior.frequency_hz,
                                                                              dtype=self.t.frequencies_hz.dtype)))
        if not len(hit):
            return self.prior.term(fld, *self.points, rows)
        fi, mask = int(hit[0, 0]), self.ps.itype != NONE
        return self.prior.term_of_values(mv.eps_r[0, fi][mask], mv.sigma[0, fi][mask], self.ps.obj[mask], rows)

    def __call__(self, fld: MaterialField) -> tuple[torch.Tensor, torch.Tensor, float]:
        sim, ds, mpc, mv = self._simulate(fld)
        rows = self.gain_rows
        sim_g, meas = sim[rows], self.t.path_gain_db[rows]
        w = None if self.t.weight is None else self.t.weight[rows]
        off = db_offset(sim_g[None], meas[None], None if w is None else w[None])[0] if self.cfg.estimate_offset \
            else torch.zeros((), dtype=sim.dtype)
        r = sim_g + off - meas
        data = (r * r).mean() if w is None else (w * r * r).sum() / w.sum()
        total = data + fld.regularization(self.cfg.lambda_hash, self.cfg.lambda_gate)
        if self.prior is not None:
            total = total + self._prior_term(fld, mv, int(rows.sum()))
        if ds is not None:
            m = self.ds_rows
            total = total + self.cfg.delay_spread_weight * (((ds[m] - self.t.delay_spread_s[m]) / 1e-9) ** 2).mean()
        if mpc is not None:
            sq = torch.zeros_like(mpc)
            fit = self.mpc_fit
            sq = torch.where(fit, (mpc + off - torch.where(fit, self.t.mpc_power_db, 0.0)) ** 2, sq)
            if self.mpc_below is not None:
                sq = torch.where(self.mpc_below, torch.relu(mpc + off - self.cfg.mpc_floor_db) ** 2, sq)
            used = fit if self.mpc_below is None else fit | self.mpc_below
            mw = self.t.mpc_weight
            term = sq[used].mean() if mw is None else (mw[used] * sq[used]).sum() / mw[used].sum()
            total = total + self.cfg.mpc_weight * term
        return total, data.detach(), float(off)


def train_field(ps: PathSet, fld: MaterialField, targets: Targets, cfg: FieldTrainConfig = FieldTrainConfig(),
                progress: bool = True, monitor: Callable[[MaterialField], dict] | None = None,
                prior: FieldPrior | None = None) -> FieldTrainResult:
    """Fit ``fld`` in place to the measured path gains ``targets`` (rows of any links and frequencies of
    ``ps``). ``monitor(field) -> dict`` adds entries (e.g. material errors against known truth) to the history.
    ``prior``: the labels' prior on the field (:class:`rftwin.fields.prior.FieldPrior`), added to the loss.
    """
    torch.manual_seed(cfg.seed)
    obj = FieldObjective(ps, targets, cfg, prior)
    t0 = time.perf_counter()
    history: list[dict] = []
    best = {"loss": math.inf, "state": None, "data": math.inf, "offset": 0.0}

    def record(phase: str, it: int, loss: float, data: float, off: float, lr: float | None = None) -> None:
        if loss < best["loss"]:
            best.update(loss=loss, data=data, offset=off, state=copy.deepcopy(fld.state_dict()))
        entry = {"phase": phase, "iteration": it, "loss": loss, "rmse_db": math.sqrt(max(data, 0.0)),
                 "seconds": time.perf_counter() - t0}
        if lr is not None:
            entry["lr_mlp"] = lr
        if monitor is not None and (phase == "lbfgs" or it % cfg.monitor_every == 0 or it == cfg.adam_iterations):
            with torch.no_grad():
                entry.update(monitor(fld))
        history.append(entry)

    interrupted = False
    n_adam = n_lbfgs = 0
    try:
        if cfg.adam_iterations:
            opt = torch.optim.Adam(fld.param_groups(cfg.lr_mlp, cfg.lr_hash))
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.plateau_factor,
                                                               patience=cfg.plateau_patience, min_lr=cfg.min_lr)
            for it in track(range(1, cfg.adam_iterations + 1), "training field (Adam)", enabled=progress):
                opt.zero_grad(set_to_none=True)
                loss, data, off = obj(fld)
                loss.backward()
                opt.step()
                sched.step(float(loss.detach()))
                n_adam = it
                record("adam", it - 1, float(loss.detach()), float(data), off, opt.param_groups[0]["lr"])
        if cfg.lbfgs_iterations:
            opt = torch.optim.LBFGS([p for p in fld.parameters() if p.requires_grad], lr=cfg.lbfgs_lr,
                                    max_iter=cfg.lbfgs_iterations, history_size=20, line_search_fn="strong_wolfe",
                                    tolerance_grad=1e-12, tolerance_change=1e-14)
            def closure():
                opt.zero_grad(set_to_none=True)
                loss, _, _ = obj(fld)
                loss.backward()
                return loss

            opt.step(closure)
            n_lbfgs = int(opt.state[opt._params[0]].get("n_iter", 0))  # noqa: SLF001 - torch keeps it there
            with torch.no_grad():
                loss, data, off = obj(fld)
            record("lbfgs", n_adam + n_lbfgs, float(loss), float(data), off)
    except KeyboardInterrupt:
        interrupted = True
    if best["state"] is not None:
        fld.load_state_dict(best["state"])
    return FieldTrainResult(loss=best["loss"], rmse_db=math.sqrt(max(best["data"], 0.0)), offset_db=best["offset"],
                            adam_iterations=n_adam, lbfgs_iterations=n_lbfgs, seconds=time.perf_counter() - t0,
                            interrupted=interrupted, history=history)

"""Training a material field: the field's settings as a configuration of the one calibration loop.

A field is a material model like any other (:mod:`rftwin.materials.protocol`); :func:`train_field` runs
:func:`rftwin.calibrate.loop.calibrate` on it with seed 000's schedule: Adam with separate learning rates for the
MLP and the hash tables and ReduceLROnPlateau on the loss, then (Opt-B) one L-BFGS run with a strong Wolfe line
search; the lowest-loss state seen is kept, and Ctrl-C ends training early and keeps it.

Loss = mean dB error^2 of per-link path gain over all (link, frequency) rows (multi-band in one batch)
[+ w_mpc * mean dB error^2 of per-path (MPC) powers, MPCs measured below ``mpc_floor_db`` as upper bounds]
[+ w_ds * mean ((RMS delay spread error) / 1 ns)^2] + the labels' prior (:class:`rftwin.fields.prior.FieldPrior`)
+ the field's regularisation (hash L2, gate L1).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from rftwin.calibrate.losses import LossTerm
from rftwin.calibrate.problem import Targets
from rftwin.fields.base import MaterialField
from rftwin.fields.prior import FieldPrior
from rftwin.pathset import PathSet


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
    loss: float  # total loss of the kept (lowest-loss) state
    rmse_db: float  # path-gain RMSE over the training rows (dB, offset applied)
    offset_db: float
    adam_iterations: int
    lbfgs_iterations: int
    seconds: float
    interrupted: bool = False
    history: list[dict] = field(default_factory=list)


def field_problem(ps: PathSet, targets: Targets, cfg: FieldTrainConfig):
    """The loop's (targets, CalibrationConfig) for training a field with ``cfg`` on ``targets``: the path-gain
    term, the delay-spread term (weight ``delay_spread_weight``, when measured), the MPC term (``mpc_weight``,
    when the targets hold per-path powers, with the detection floor), the closed-form offset when asked."""
    from rftwin.calibrate.loop import CalibrationConfig  # noqa: PLC0415

    if targets.path_gain_db is None:
        raise ValueError("targets: a field is trained on path gain; 'path_gain_db' is missing")
    if targets.num == 0:
        raise ValueError("targets: no rows")
    if int(targets.link.max()) >= ps.num_links or int(targets.link.min()) < 0:
        raise ValueError(f"targets: link indices must lie in [0, {ps.num_links}) (the traced links)")
    targets.check(ps)
    t = replace(targets, mpc_floor_db=cfg.mpc_floor_db)
    if not bool((t.row_weight("path_gain") > 0).any()):
        raise ValueError("targets: no finite path_gain_db value")
    avail = set(t.available())
    terms = [LossTerm("path_gain", "mse_db", 1.0)]
    if cfg.delay_spread_weight > 0 and "delay_spread" in avail:
        terms.append(LossTerm("delay_spread", "mse", cfg.delay_spread_weight))
    if cfg.mpc_weight > 0 and "mpc_power" in avail and bool((t.row_weight("mpc_power") > 0).any()):
        terms.append(LossTerm("mpc_power", "mse_db", cfg.mpc_weight))
    loop_cfg = CalibrationConfig(
        optimizer="adam", lr=cfg.lr_mlp, lr_hash=cfg.lr_hash, max_iter=cfg.adam_iterations, terms=tuple(terms),
        offset="closed_form" if cfg.estimate_offset else "none", schedule="plateau",
        plateau_factor=cfg.plateau_factor, plateau_patience=cfg.plateau_patience, min_lr=cfg.min_lr,
        polish_lbfgs=cfg.lbfgs_iterations, polish_lr=cfg.lbfgs_lr, keep_best=True, stop_on_interrupt=True,
        refine_starts=1)
    return t, loop_cfg


def train_field(ps: PathSet, fld: MaterialField, targets: Targets, cfg: FieldTrainConfig = FieldTrainConfig(),
                progress: bool = True, monitor: Callable[[MaterialField], dict] | None = None,
                prior: FieldPrior | None = None) -> FieldTrainResult:
    """Fit ``fld`` in place to the measured path gains ``targets`` (rows of any links and frequencies of
    ``ps``) with the calibration loop. ``monitor(field) -> dict`` adds entries (e.g. material errors against
    known truth) to the history every ``monitor_every`` iterations and after L-BFGS. ``prior``: the labels' prior
    on the field (:class:`rftwin.fields.prior.FieldPrior`), at its own strength.
    """
    from rftwin.calibrate.loop import calibrate  # noqa: PLC0415

    torch.manual_seed(cfg.seed)
    t, loop_cfg = field_problem(ps, targets, cfg)
    if prior is not None:
        loop_cfg = replace(loop_cfg, prior_weight=1.0)
    fld.lambda_hash, fld.lambda_gate = cfg.lambda_hash, cfg.lambda_gate

    def watch(it: int, row: dict) -> None:
        if monitor is not None and (row["phase"] == "lbfgs" or it % cfg.monitor_every == 0
                                    or it == cfg.adam_iterations):
            with torch.no_grad():
                row.update(monitor(fld))

    res = calibrate(ps, fld, t, loop_cfg, progress=progress, uncertainty=False, prior=prior, callback=watch)
    adam = res.iterations if not res.interrupted else sum(r["phase"] == "adam" for r in res.history)
    return FieldTrainResult(loss=res.loss, rmse_db=res.rmse_db, offset_db=res.offset_db, adam_iterations=adam,
                            lbfgs_iterations=res.polish_iterations, seconds=res.seconds, interrupted=res.interrupted,
                            history=res.history)


__all__ = ["FieldTrainConfig", "FieldTrainResult", "field_problem", "train_field"]

"""Calibration as inference (DESIGN.md, "The second idea").

The objective is the negative log posterior of the material parameters given labels and noisy data:

    2 (-log p(theta | y)) = sum_f sum_i w_i r_fi(theta)^2 / s_f^2  +  lambda sum_j z_j(theta)^2  + const,

r_fi the residuals of supervision term f (path gain [dB], delays [ns], CFR [relative], MPC powers [dB]) with
noise std s_f, z the standardised prior residuals of every parameter from its label's class prior
(:mod:`rftwin.materials.class_prior`), lambda a prior-precision multiplier. Around the MAP point the posterior is
Gaussian with precision H = J^T J (Gauss-Newton on the stacked scaled residuals), which gives

- the Laplace evidence log p(y) = -L/2 - 1/2 log|H| + 1/2 log|J_p^T J_p| - 1/2 sum_f n_f log(2 pi s_f^2),
- type-II maximum likelihood of the hyper-parameters (MacKay's fixed point): gamma = P - tr(H^-1 J_p^T J_p)
  well-determined parameters, lambda = gamma / z^T z, s_f^2 = chi2_f / (n_f - gamma n_f / N),
- label correction: the evidence of each object under every other material class (refined continuously from
  that class's prior), turned into class posterior probabilities with prior mass ``label_mass`` on the label,
- a K-fold held-out check (by link, and by transmitter when there are several) of the calibrated twin against
  the label twin, which decides whether the calibration is kept.

A heavy-tailed likelihood (Student-t with ``student_nu`` degrees of freedom) is fitted by iteratively
re-weighted least squares: row weights (nu + 1) / (nu + r^2 / s^2) between hyper-parameter updates.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from rftwin.calibrate.jacobians import jacobian, prior_block
from rftwin.calibrate.loop import CalibrationConfig, calibrate
from rftwin.calibrate.losses import LossTerm
from rftwin.calibrate.objectives import PriorStats, objective
from rftwin.calibrate.problem import Targets, simulate_features
from rftwin.calibrate.stream import stream_for
from rftwin.materials.class_prior import (
    DEFAULT_LOGIT_STD,
    ClassPrior,
    PriorTable,
    candidate_classes,
)
from rftwin.materials.per_object import DEFAULT_SCATTERING, DEFAULT_XPD, MaterialPrior, PerObjectMaterials, logit
from rftwin.pathset import PathSet

GAUSSIAN_METRIC = {"path_gain": "mse_db", "mpc_power": "mse_db", "delay_spread": "mse", "mean_delay": "mse",
                   "cfr": "nmse"}
NOISE_UNITS = {"path_gain": "dB", "mpc_power": "dB", "delay_spread": "ns", "mean_delay": "ns", "cfr": "relative"}
NOISE_FLOOR = {"path_gain": 1e-3, "mpc_power": 1e-3, "delay_spread": 1e-3, "mean_delay": 1e-3, "cfr": 1e-5}
LIKELIHOODS = ("gaussian", "student", "auto")  # auto: Gaussian unless outlying rows call for Student-t
SCREEN_ITERATIONS = 30  # LM iterations of the refined label-correction candidates
REFINE_CLASSES = 3  # candidate classes per object refined after the quick screen
# posterior fits stop (LM) once 2 x the negative log posterior of every start fell by less than STALL_CHI2 over
# STALL_WINDOW iterations: at that rate the 1 000-iteration cap would gain < 2.5 more (loop.stalled)
STALL_WINDOW = 20
STALL_CHI2 = 0.05
CANDIDATE_LANES = 2_000_000  # label correction: (candidate starts x paths) per batched fit (memory bound)
SHRINKAGE_GRID = (0.0, 0.25, 0.5, 0.7, 0.85, 0.95)  # rho values compared by --shrinkage auto
UNLABELLED = "unlabelled"
UNLABELLED_LOG_STD = (1.0, 2.0)  # wide prior of objects without a label (ITU mean of the dielectrics)

ModelFactory = Callable[[dict[str, np.ndarray | None]], PerObjectMaterials]


@dataclass
class BayesConfig:
    """Settings of the posterior calibration.

    ``noise``: known noise std per feature (units :data:`NOISE_UNITS`); features left out are estimated.
    ``strength``: fixed prior-precision multiplier lambda (None: evidence maximisation within ``strength_range``).
    ``switch_probability``: a label is switched to the most probable class when that is another class and the
    label's posterior probability is at most 1 - ``switch_probability`` (class prior: mass ``label_mass`` on the
    label, the rest shared by the other classes). 0.5 takes the most probable class of this label-class
    mixture whenever it is not the label (the second condition then always holds); 0.95 (the default) asks for
    decisive evidence against the label. With ``check_switches`` a label that is not its object's most probable
    class, but whose probability is above 1 - ``switch_probability``, is switched to the most probable class when a
    K-fold paired test on held-out rows (:func:`check_switch`) shows the switch predicts better.
    ``likelihood``: gaussian, student (heavy-tailed, ``student_nu`` degrees of freedom) or auto (Gaussian unless the
    first round's Gaussian fit leaves far more outlying path-gain rows than it explains, :func:`outlier_rows`; then
    Student-t from that round on). ``folds``: K of the held-out check (0: off); ``revert_if_worse``: export the
    label twin when the calibrated twin predicts held-out rows worse than the labels.
    """

    noise: dict[str, float] = field(default_factory=dict)
    strength: float | None = None
    strength_range: tuple[float, float] = (0.1, 10.0)
    likelihood: str = "auto"
    student_nu: float = 4.0
    evidence_iters: int = 8
    label_correction: bool = True
    switch_probability: float = 0.95
    label_mass: float = 0.5
    max_switches: int | None = None
    folds: int = 5
    revert_if_worse: bool = True
    seed: int = 0
    check_switches: bool = False  # switch to a most probable but not decisive class when held-out rows confirm it
    shrinkage_auto: bool = False  # choose the hierarchical prior's rho by the Laplace evidence over shrinkage_grid
    shrinkage_grid: tuple[float, ...] = SHRINKAGE_GRID

    def __post_init__(self):
        for k, v in self.noise.items():
            if k not in GAUSSIAN_METRIC:
                raise ValueError(f"noise: unknown feature '{k}', expected one of {sorted(GAUSSIAN_METRIC)}")
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"noise of '{k}' must be a positive number, got {v!r}")
        if self.strength is not None and not self.strength > 0:
            raise ValueError(f"prior strength must be > 0, got {self.strength}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood '{self.likelihood}', expected one of {LIKELIHOODS}")
        if not self.student_nu > 0:
            raise ValueError(f"student_nu must be > 0, got {self.student_nu}")
        if not 0.5 <= self.switch_probability < 1.0:
            raise ValueError(f"switch_probability must lie in [0.5, 1), got {self.switch_probability}")
        if not 0.0 < self.label_mass < 1.0:
            raise ValueError(f"label_mass must lie in (0, 1), got {self.label_mass}")
        if self.folds == 1 or self.folds < 0:
            raise ValueError(f"folds must be 0 (off) or >= 2, got {self.folds}")
        if not self.shrinkage_grid or not all(0.0 <= r < 1.0 for r in self.shrinkage_grid):
            raise ValueError(f"shrinkage_grid must hold values in [0, 1), got {self.shrinkage_grid}")


@dataclass
class ObjectPriors:
    """Per-object class priors: the original ``labels`` [K] (None = unlabelled), the current ``classes`` [K]
    (after label correction) and the table they come from."""

    names: list[str]
    labels: list[str | None]
    table: PriorTable
    frequency_hz: float
    classes: list[str] = field(default_factory=list)
    scattering: np.ndarray | None = None  # [K] prior S (None: DEFAULT_SCATTERING where fitted)
    xpd: np.ndarray | None = None
    group_sizes: np.ndarray | None = None  # [K] size of each object's material group (its prior counts 1/size)
    shrinkage: float = 0.0  # within-class correlation of the objects' prior deviations (hierarchical prior)
    group_index: np.ndarray | None = None  # [K] material group of every object (None: each object alone)
    group_names: list[str] | None = None  # [G] names of the groups

    def __post_init__(self):
        if not self.classes:
            self.classes = [lab if lab is not None else UNLABELLED for lab in self.labels]

    def units(self) -> list[tuple[str, np.ndarray]]:
        """What label correction switches as one: (name, object indices) of every material group, or of every
        object when there are no groups."""
        if self.group_index is None:
            return [(n, np.array([k])) for k, n in enumerate(self.names)]
        gi = np.asarray(self.group_index)
        names = self.group_names or [f"group {g}" for g in range(int(gi.max()) + 1)]
        return [(names[g], np.nonzero(gi == g)[0]) for g in range(len(names)) if np.any(gi == g)]

    def unit_class(self, members: np.ndarray, classes: Sequence[str | None] | None = None) -> str | None:
        """The one class of the objects ``members`` in ``classes`` (default: the current classes), joined with '+'
        when they differ (None: all unlabelled objects of ``labels``)."""
        cl = self.classes if classes is None else classes
        found = list(dict.fromkeys(cl[k] for k in members))
        if len(found) == 1:
            return found[0]
        return "+".join(sorted(str(c) for c in found))

    def prior_of(self, i: int, cls: str | None = None) -> ClassPrior:
        """Prior of object ``i`` under its current class (or under ``cls``); a per-object override applies while
        the object has the override's class."""
        c = self.classes[i] if cls is None else cls
        ov = self.table.objects.get(self.names[i])
        if ov is not None and ov.name == c:
            return ov
        if c == UNLABELLED:
            from rftwin.materials.itu import itu_mean  # noqa: PLC0415

            e, s = itu_mean(self.frequency_hz)
            return ClassPrior(UNLABELLED, e, s, *UNLABELLED_LOG_STD, self.frequency_hz, "unlabelled")
        return self.table.for_object(self.names[i], c) if ov is None else self.table.classes[c]

    def label_mass(self, members: np.ndarray, default: float) -> float:
        """Prior probability that the label of the objects ``members`` is right: the prior file's
        ``label_probability`` of the object, else of its label's class, else ``default``; for a group the mean of
        its members'."""
        out = []
        for k in members:
            ov, lab = self.table.objects.get(self.names[k]), self.labels[k]
            cls = self.table.classes.get(lab) if lab is not None else None
            p = next((x.label_probability for x in (ov, cls) if x is not None and x.label_probability is not None),
                     default)
            out.append(p)
        return float(np.mean(out))

    def centres(self, classes: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(eps_r, sigma, log_std_eps, log_std_sigma) [K] of the current (or given) classes."""
        ps = [self.prior_of(i) if classes is None else self.prior_of(i, c) for i, c in
              enumerate(classes or [None] * len(self.names))]
        return (np.array([p.eps_r for p in ps]), np.array([p.sigma for p in ps]),
                np.array([p.log_std_eps for p in ps]), np.array([p.log_std_sigma for p in ps]))

    def material_prior(self, power_law: np.ndarray | None = None) -> MaterialPrior:
        """The MaterialPrior (start values and +-2 std ranges) of the current classes."""
        e, s, se, ss = self.centres()
        er = np.stack([1.0 + (e - 1.0) * np.exp(-2 * se), 1.0 + (e - 1.0) * np.exp(2 * se)], 1)
        sr = np.stack([s * np.exp(-2 * ss), s * np.exp(2 * ss)], 1)
        return MaterialPrior(e, s, np.maximum(er, 1.0 + 1e-6), sr, power_law, self.frequency_hz,
                             scattering=self.scattering, xpd=self.xpd)


def prior_stats(op: ObjectPriors, fit: Sequence[str], dtype=torch.float64, power_law: bool = False,
                exponents: tuple[np.ndarray, np.ndarray] | None = None,
                per_start: Sequence[Sequence[str]] | None = None) -> PriorStats:
    """Gaussian prior in the transformed coordinates of every fitted quantity; ``per_start`` gives one class list
    per start ([B] x [K]) for the label-correction candidates (then ``mu`` / ``sd`` are [B, K])."""
    if per_start is None:
        e, s, se, ss = op.centres()
    else:
        cs = [op.centres(c) for c in per_start]
        e, s, se, ss = (np.stack([c[i] for c in cs]) for i in range(4))
    mu, sd = {}, {}

    def put(q, m, d):
        mu[q], sd[q] = torch.as_tensor(m, dtype=dtype), torch.as_tensor(d, dtype=dtype)

    if "eps_r" in fit:
        put("eps_r", np.log(np.maximum(e - 1.0, 1e-12)), se)
    if "sigma" in fit:
        put("sigma", np.log(np.maximum(s, 1e-30)), ss)
    K = len(op.names)
    for q, val, default in (("scattering", op.scattering, DEFAULT_SCATTERING), ("xpd", op.xpd, DEFAULT_XPD)):
        if q in fit:
            v = np.full(K, default) if val is None else np.asarray(val, dtype=np.float64)
            put(q, logit(v), np.full(K, DEFAULT_LOGIT_STD))
    if op.group_sizes is not None:  # K_g member rows of one group parameter: together one class prior
        scale = torch.as_tensor(np.sqrt(op.group_sizes), dtype=dtype)
        sd = {q: v * scale for q, v in sd.items()}
    classes = None
    if op.shrinkage > 0:  # class index of every object (per start for label-correction candidates)
        lists = [op.classes] if per_start is None else [list(c) for c in per_start]
        names = sorted({c for cl in lists for c in cl})
        # unlabelled objects share no material: each is a class of its own
        lists = [[c if c != UNLABELLED else f"{c}#{k}" for k, c in enumerate(cl)] for cl in lists]
        names = sorted({c for cl in lists for c in cl})
        idx = torch.as_tensor([[names.index(c) for c in cl] for cl in lists], dtype=torch.long)
        classes = idx[0] if per_start is None else idx
    st = PriorStats(mu, sd, op.frequency_hz, op.shrinkage, classes)
    if power_law:
        b, d = exponents if exponents is not None else (np.zeros(K), np.zeros(K))
        st = st.with_exponents(b, d)
    return st


def num_prior_rows(st: PriorStats) -> int:
    return sum(int(v.shape[-1]) for v in st.mu.values())


# ------------------------------------------------------------------------------------------ likelihood
@dataclass
class Hyper:
    """Hyper-parameters: noise std per feature (:data:`NOISE_UNITS`) and the prior-precision multiplier."""

    noise: dict[str, float]
    strength: float = 1.0
    row_weight: torch.Tensor | None = None  # IRLS weights [M] of the Student-t likelihood (None: Gaussian)
    mpc_weight: torch.Tensor | None = None


def features_of(cfg: CalibrationConfig, targets: Targets) -> list[str]:
    feats = list(dict.fromkeys(t.feature for t in cfg.loss_terms))
    missing = set(feats) - set(targets.available())
    if missing:
        raise ValueError(f"loss terms use {sorted(missing)}, but the targets have no such measurements")
    return feats


def weighted(targets: Targets, h: Hyper) -> Targets:
    """``targets`` with the likelihood's row weights multiplied in."""
    if h.row_weight is None and h.mpc_weight is None:
        return targets
    w = targets.weight if targets.weight is not None else torch.ones(targets.num, dtype=targets.frequencies_hz.dtype)
    kw = {"weight": w * h.row_weight if h.row_weight is not None else w}
    if h.mpc_weight is not None:
        mw = targets.mpc_weight if targets.mpc_weight is not None else torch.ones_like(h.mpc_weight)
        kw["mpc_weight"] = mw * h.mpc_weight
    return replace(targets, **kw)


def posterior_config(cfg: CalibrationConfig, targets: Targets, h: Hyper, n_prior: int) -> CalibrationConfig:
    """The configuration whose loss is 2 x the negative log posterior: Gaussian metrics weighted sum(w) / s_f^2 and
    the prior with weight lambda x (number of prior rows)."""
    terms = []
    for f in features_of(cfg, targets):
        wsum = float(targets.row_weight(f).sum())
        terms.append(LossTerm(f, GAUSSIAN_METRIC[f], wsum / h.noise[f] ** 2))
    return replace(cfg, terms=tuple(terms), prior_weight=h.strength * n_prior, stall_window=STALL_WINDOW,
                   stall_loss=STALL_CHI2)


def links_with_paths(ps: PathSet) -> torch.Tensor:
    """[L] bool: the links of ``ps`` with at least one traced path."""
    return torch.bincount(ps.link.to(torch.long), minlength=ps.num_links) > 0


def rows_with_paths(ps: PathSet, targets: Targets) -> torch.Tensor:
    """[M] bool: the rows of ``targets`` whose link has at least one traced path."""
    return links_with_paths(ps)[targets.link.to(torch.long)]


def traced_rows(ps: PathSet, targets: Targets) -> tuple[Targets, int]:
    """``targets`` with weight 0 on the rows whose link has no traced path, and the number of such measured rows.

    No material can explain such a row (the twin predicts the -300 dB floor whatever the materials, with zero
    gradient), so it carries no information about them; in the likelihood it would only inflate the noise estimate
    (one such row at ~200 dB residual makes 60 rows of 1 dB noise look like 27 dB noise and the data worthless)."""
    row_ok = rows_with_paths(ps, targets)
    if bool(row_ok.all()):
        return targets, 0
    dtype = targets.frequencies_hz.dtype
    measured = torch.zeros(targets.num, dtype=torch.bool)
    for f in ("path_gain", "delay_spread", "mean_delay", "cfr"):
        measured |= targets.mask(f)
    w = targets.weight if targets.weight is not None else torch.ones(targets.num, dtype=dtype)
    return replace(targets, weight=w * row_ok.to(dtype)), int((measured & ~row_ok).sum())


def chi2(ps: PathSet, model, targets: Targets, cfg: CalibrationConfig) -> dict[str, tuple[float, int]]:
    """Per feature: weighted sum of squared raw residuals of start 0 (offset as configured) and the count of
    measured scalars."""
    out = {}
    for f in features_of(cfg, targets):
        c = replace(cfg, terms=(LossTerm(f, GAUSSIAN_METRIC[f]),), prior_weight=0.0)
        with torch.no_grad():
            loss, _, _ = objective(ps, model, targets, c)
        w = targets.row_weight(f)
        n = int((w > 0).sum()) * (2 * targets.cfr_subcarriers if f == "cfr" else 1)
        out[f] = (float(loss[0]) * float(w.sum()), n)
    return out


def raw_residuals(ps: PathSet, model, targets: Targets, cfg: CalibrationConfig, feature: str,
                  fit_targets: Targets | None = None) -> torch.Tensor:
    """Raw residuals [B, M] (or [B, Q] for MPCs; [B, M] RMS over subcarriers for the CFR) of ``feature`` on every
    row of ``targets``; the gain offset (if configured) is fitted on the rows of ``fit_targets``."""
    from rftwin.calibrate.losses import DELAY_UNIT_S, cfr_relative_error  # noqa: PLC0415
    from rftwin.calibrate.objectives import closed_form_offset  # noqa: PLC0415

    needed = {feature}
    with torch.no_grad():
        feats = simulate_features(ps, model, targets, needed | ({"path_gain", "mpc_power", "cfr"} &
                                                                set(targets.available())), cfg.chunk_size)
        B = next(v for v in (feats.path_gain_db, feats.delay_spread_s, feats.cfr, feats.mpc_power_db)
                 if v is not None).shape[0]
        off = closed_form_offset(feats, fit_targets or targets, cfg) if cfg.offset_mode != "none" \
            else torch.zeros(B, dtype=targets.frequencies_hz.dtype)
        meas, sim = targets.values(feature), feats.get(feature)
        if feature == "cfr":
            sim = sim * (10.0 ** (off / 20.0)).to(sim.dtype)[:, None, None]
            ok = targets.mask("cfr")
            e = cfr_relative_error(sim, meas, ok.to(off.dtype))
            return torch.sqrt((e.abs() ** 2).mean(-1))
        if feature in ("path_gain", "mpc_power"):
            return sim + off[:, None] - meas
        return (sim - meas) / DELAY_UNIT_S


OUTLIER_Z = 4.0  # |residual - median| / robust std beyond which a path-gain row counts as an outlier
OUTLIER_HINT = 10.0  # outliers beyond this many times a Gaussian's expected count: suggest the Student-t likelihood
OUTLIER_MIN_SCALE_DB = 0.1  # floor of the robust std (near noise-free data: no hint for hundredths of a dB)


def outlier_rows(ps: PathSet, model, targets: Targets, cfg: CalibrationConfig) -> dict:
    """Path-gain rows (with traced paths) of ``model``'s start 0 whose residual lies more than :data:`OUTLIER_Z`
    robust stds (1.4826 x the median absolute deviation, at least :data:`OUTLIER_MIN_SCALE_DB`) from the median,
    against the count a Gaussian expects (n P(|z| > 4) = 6.3e-5 n). The robust std is not inflated by the outliers
    themselves, as the fitted noise is. Far more than expected say the Gaussian's tails are too light for these
    data (rows the twin's paths cannot explain, e.g. paths the truth has and the trace missed) and that they pull
    the fit: ``suggest_student`` when above :data:`OUTLIER_HINT` times the expected count and at least 3 rows."""
    t, _ = traced_rows(ps, targets)
    ok = t.row_weight("path_gain") > 0
    r = raw_residuals(ps, model, t, cfg, "path_gain")[0][ok]
    n = int(r.numel())
    if n == 0:
        return {"z": OUTLIER_Z, "rows": 0, "count": 0, "robust_std_db": None, "expected_gaussian": 0.0,
                "suggest_student": False}
    d = (r - r.median()).abs()
    scale = max(1.4826 * float(d.median()), OUTLIER_MIN_SCALE_DB)
    count = int((d > OUTLIER_Z * scale).sum())
    expected = n * math.erfc(OUTLIER_Z / math.sqrt(2.0))
    return {"z": OUTLIER_Z, "rows": n, "count": count, "robust_std_db": scale, "expected_gaussian": expected,
            "suggest_student": count >= 3 and count > OUTLIER_HINT * expected}


def irls_weights(r: torch.Tensor, s: float, nu: float) -> torch.Tensor:
    """Student-t IRLS weights (nu + 1) / (nu + (r / s)^2), NaN residuals -> 1."""
    w = (nu + 1.0) / (nu + (r / s) ** 2)
    return torch.nan_to_num(w, nan=1.0)


# ------------------------------------------------------------------------------------------ Laplace evidence
@dataclass
class LaplaceStats:
    """Per start: posterior loss L [B], log evidence [B], effective parameters gamma [B], prior term z^T z [B],
    posterior covariance [B, P, P] of the free parameters."""

    loss: torch.Tensor
    log_evidence: torch.Tensor
    gamma: torch.Tensor
    zz: torch.Tensor
    cov: torch.Tensor


def laplace_stats(ps: PathSet, model, targets: Targets, cfg_post: CalibrationConfig, st: PriorStats, h: Hyper
                  ) -> LaplaceStats:
    """Gauss-Newton Laplace approximation of the posterior at the current parameters of every start (J^T J
    accumulated over link shards when the memory budget asks for them, :mod:`rftwin.calibrate.stream`)."""
    npr = num_prior_rows(st)
    stream = stream_for(ps, model, targets, cfg_post)
    if stream is None:
        r, J = jacobian(ps, model, targets, cfg_post, None, st)
        Jp, rp = J[:, -npr:], r[:, -npr:]
        H = J.transpose(1, 2) @ J
        L = (r * r).sum(-1)
    else:
        L, H, _ = stream.gauss_newton(model, targets, cfg_post, st)
        rp, Jp = prior_block(model, st, cfg_post)
    P = H.shape[-1]
    eye = torch.eye(P, dtype=H.dtype, device=H.device)
    H = H + 1e-10 * eye * torch.diagonal(H, dim1=1, dim2=2).amax(-1)[:, None, None].clamp_min(1e-30)
    Hp = Jp.transpose(1, 2) @ Jp + 1e-12 * eye
    cov = torch.linalg.inv(H)
    logdet_h = torch.linalg.slogdet(H)[1]
    logdet_p = torch.linalg.slogdet(Hp)[1]
    norm = sum(n * math.log(2 * math.pi * h.noise[f] ** 2) for f, n in _counts(targets, cfg_post).items())
    log_ev = -0.5 * L - 0.5 * logdet_h + 0.5 * logdet_p - 0.5 * norm
    # parameters determined by the data (MacKay): P - tr(A^-1 prior precision), P the free parameters (with
    # material groups fewer than the prior's rows, which are per object)
    gamma = P - torch.diagonal(cov @ Hp, dim1=1, dim2=2).sum(-1)
    zz = (rp * rp).sum(-1) / max(h.strength, 1e-30)
    return LaplaceStats(L.detach(), log_ev.detach(), gamma.detach(), zz.detach(), cov.detach())


def _counts(targets: Targets, cfg: CalibrationConfig) -> dict[str, int]:
    return {f: int((targets.row_weight(f) > 0).sum()) * (2 * targets.cfr_subcarriers if f == "cfr" else 1)
            for f in features_of(cfg, targets)}


# ------------------------------------------------------------------------------------------ the fits
@dataclass
class PosteriorFit:
    """The state of a posterior calibration on one PathSet."""

    model: PerObjectMaterials  # single start at the MAP point
    hyper: Hyper
    stats: LaplaceStats
    loss: float
    iterations: int
    converged: bool
    history: list[dict] = field(default_factory=list)  # hyper-parameter iterations
    switches: list[dict] = field(default_factory=list)
    class_posteriors: dict[str, dict[str, float]] = field(default_factory=dict)
    offset_db: float = 0.0
    shrinkage_evidence: list[dict] = field(default_factory=list)  # --shrinkage auto: the grid and its evidence
    switch_checks: list[dict] = field(default_factory=list)  # held-out checks of not decisive label switches


def initial_noise(ps: PathSet, model, targets: Targets, cfg: CalibrationConfig, given: dict[str, float]
                  ) -> dict[str, float]:
    """Noise per feature before any fit: the given values, else the RMS residual of the label twin (start 0 of
    ``model``; an upper bound, since it also holds the labels' own error)."""
    out = {}
    for f, (c2, n) in chi2(ps, model, targets, cfg).items():
        out[f] = given.get(f, max(math.sqrt(c2 / max(n, 1)), NOISE_FLOOR[f]))
    return out


def fit_map(ps: PathSet, model: PerObjectMaterials, targets: Targets, cfg: CalibrationConfig, st: PriorStats,
            h: Hyper, progress: bool = False, keep_all: bool = False, **checkpointing):
    """MAP fit of every start of ``model`` under hyper-parameters ``h``; returns (CalibrationResult, posterior
    configuration, weighted targets). With ``keep_all`` no start is screened out (the model keeps all B fitted
    starts). ``checkpointing``: checkpoint / checkpoint_every / resume of :func:`rftwin.calibrate.calibrate`."""
    tw = weighted(targets, h)
    c = posterior_config(cfg, tw, h, num_prior_rows(st))
    if keep_all:
        c = replace(c, refine_starts=model.num_starts, prune_every=0)
    res = calibrate(ps, model, tw, c, progress=progress, uncertainty=False, prior=st, **checkpointing)
    return res, c, tw


def estimate_hyper(ps: PathSet, model: PerObjectMaterials, targets: Targets, cfg: CalibrationConfig,
                   st: PriorStats, h: Hyper, bc: BayesConfig, progress: bool = False) -> PosteriorFit:
    """Alternate MAP fits (warm-started) and type-II ML updates of the noise levels and the prior strength until
    they settle (relative change < 1 %) or ``bc.evidence_iters`` rounds."""
    history = []
    res = None
    conv = True
    iters = 0
    for it in range(max(bc.evidence_iters, 1)):
        res, c, tw = fit_map(ps, model, targets, cfg, st, h, progress)
        model = res.model
        iters += res.iterations
        conv = conv and res.converged
        stats = laplace_stats(ps, model, tw, c, st, h)
        gamma = float(stats.gamma[0])
        counts = _counts(tw, c)
        N = max(sum(counts.values()), 1)
        off = 1 if cfg.offset_mode != "none" else 0
        c2 = chi2(ps, model, tw, cfg)
        new_noise = {}
        for f, (x2, n) in c2.items():
            dof = max(n - gamma * n / N - off * (f in ("path_gain", "mpc_power", "cfr")), 1.0)
            new_noise[f] = bc.noise.get(f, max(math.sqrt(x2 / dof), NOISE_FLOOR[f]))
        lam = h.strength
        if bc.strength is not None:
            lam = bc.strength
        elif float(stats.zz[0]) > 1e-12:
            lo, hi = bc.strength_range
            lam = float(np.clip(max(gamma, 1e-3) / float(stats.zz[0]), lo, hi))
        rw = mw = None
        if bc.likelihood == "student":
            for f in c2:
                r = raw_residuals(ps, model, targets, cfg, f)[0]
                w = irls_weights(r, new_noise[f], bc.student_nu)
                if f == "mpc_power":
                    mw = w
                elif rw is None:
                    rw = w
        history.append({"iteration": it, "loss": res.loss, "gamma": gamma, "strength": lam,
                        **{f"noise_{f}": v for f, v in new_noise.items()},
                        "log_evidence": float(stats.log_evidence[0])})
        change = max([abs(math.log(new_noise[f] / h.noise[f])) for f in new_noise] +
                     [abs(math.log(lam / h.strength))])
        h = Hyper(new_noise, lam, rw, mw)
        if change < 1e-2 and bc.likelihood != "student":
            break
    res, c, tw = fit_map(ps, model, targets, cfg, st, h, progress)
    stats = laplace_stats(ps, res.model, tw, c, st, h)
    return PosteriorFit(res.model, h, stats, res.loss, iters + res.iterations, conv and res.converged, history,
                        offset_db=res.offset_db)


def _candidate_evidence(ps: PathSet, fit: PosteriorFit, targets: Targets, cfg: CalibrationConfig,
                        op: ObjectPriors, make_model: ModelFactory, fitq: Sequence[str], power_law: bool,
                        pairs: list[tuple[np.ndarray, str]], iterations: int, progress: bool
                        ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Laplace log evidence [1 + len(pairs)] of the current classes (entry 0) and of each switch of a unit (object
    indices, all moved to the class together),
    and the fitted values {quantity: [1 + len(pairs), K]}; every candidate is refined by at most ``iterations`` LM
    steps from its class's prior centre (other objects start at the current MAP point). Candidates are fitted as
    the starts of batched models of at most ``CANDIDATE_LANES`` / (paths) starts each, so memory does not grow
    with the number of objects."""
    cur = fit.model.values()
    # classes are compared at their nominal spreads (strength 1): a prior strength fitted while some labels are
    # wrong is small, which would widen every class until none can be told apart
    hyper = replace(fit.hyper, strength=1.0)
    batch = int(np.clip(CANDIDATE_LANES // max(ps.num_paths, 1), 8, 256))
    les: list[np.ndarray] = []
    vals: dict[str, list[np.ndarray]] = {q: [] for q in cur}
    for s0 in range(0, max(len(pairs), 1), batch):
        chunk = pairs[s0:s0 + batch]
        class_lists, starts = [list(op.classes)], {q: v[0:1].copy() for q, v in cur.items()}
        for members, c in chunk:
            cl = list(op.classes)
            rows = {q: v[0].copy() for q, v in cur.items()}
            for k in members:
                cl[k] = c
                cp = op.prior_of(k, c)
                for q in ("eps_r", "sigma"):
                    if q in rows:
                        rows[q][k] = cp.eps_r if q == "eps_r" else cp.sigma
            class_lists.append(cl)
            for q in cur:
                starts[q] = np.concatenate([starts[q], rows[q][None]])
        st = prior_stats(op, fitq, power_law=power_law, per_start=class_lists,
                         exponents=_exponents(fit.model) if power_law else None)
        model = make_model(starts)
        _, c, tw = fit_map(ps, model, targets, replace(cfg, max_iter=min(cfg.max_iter, iterations)), st, hyper,
                           progress, keep_all=True)
        le = laplace_stats(ps, model, tw, c, st, hyper).log_evidence.cpu().numpy()
        first = not les
        les.append(le if first else le[1:])  # entry 0 (the current classes) from the first batch
        for q, v in model.values().items():
            vals[q].append(v if first else v[1:])
    le = np.concatenate(les)
    return np.where(np.isfinite(le), le, -np.inf), {q: np.concatenate(v) for q, v in vals.items()}


def unit_links(ps: PathSet, targets: Targets, units: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """[U, L] bool: whether a path of measured link l (a link of ``targets``) interacts with an object of unit u.
    A unit no measured link meets (a row of False) does not change the data: every class explains them alike and
    its class posterior is its prior, so label correction need not fit it (a city scene's few hundred links meet
    a small share of its objects); units whose links are disjoint enter separate factors of the likelihood."""
    links = torch.zeros(ps.num_links, dtype=torch.bool, device=ps.obj.device)
    links[targets.link.to(ps.obj.device)] = True
    keep = links[ps.link]
    obj, link = ps.obj[keep], ps.link[keep][:, None].expand(-1, ps.obj.shape[1])
    ok = obj >= 0
    K = max(sum(len(m) for _, m in units), int(obj.max()) + 1 if obj.numel() else 0)
    unit_of = np.full(K, -1)
    for u, (_, m) in enumerate(units):
        unit_of[m] = u
    u_idx = unit_of[obj[ok].cpu().numpy()]
    out = np.zeros((len(units), ps.num_links), dtype=bool)
    out[u_idx[u_idx >= 0], link[ok].cpu().numpy()[u_idx >= 0]] = True
    return out


def seen_units(ps: PathSet, targets: Targets, units: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """[U] bool: whether a path of a measured link meets an object of each unit (:func:`unit_links`)."""
    return unit_links(ps, targets, units).any(1)


def correct_labels(ps: PathSet, fit: PosteriorFit, targets: Targets, cfg: CalibrationConfig, op: ObjectPriors,
                   make_model: ModelFactory, fitq: Sequence[str], bc: BayesConfig, power_law: bool = False,
                   progress: bool = False) -> PosteriorFit:
    """Switch labels to another material class where the evidence is decisive against the label, per object or,
    with material groups (``op.group_index``), per group (all its objects move to the class together); per pass the
    most decisive unit first, and with it every decisive unit that shares no measured link with the units taken
    before it (:func:`unit_links`); records the class posteriors of every unit (keyed by object or group name).

    Each pass screens every (unit, class) switch with :data:`SCREEN_ITERATIONS` // 6 LM steps, refines the
    :data:`REFINE_CLASSES` best classes of each unit with :data:`SCREEN_ITERATIONS` steps, and turns the Laplace
    evidence (noise as estimated, class priors at their nominal spreads) into class posteriors (prior mass
    ``bc.label_mass`` on the label, or the prior file's ``label_probability``: :meth:`ObjectPriors.label_mass`).
    After a switch the noise and prior strength are estimated again."""
    cands = candidate_classes(op.frequency_hz)
    units = op.units()
    grouped = op.group_index is not None
    U = len(units)
    switches: list[dict] = []
    max_sw = U if bc.max_switches is None else bc.max_switches
    posts: dict[str, dict[str, float]] = {}
    checks: list[dict] = []
    rejected: set[tuple[int, str]] = set()
    inc = unit_links(ps, targets, units)
    seen = inc.any(1)
    for n_pass in range(max_sw + 1):
        current = [op.unit_class(m) for _, m in units]
        pairs = [(u, c) for u in range(U) if seen[u] for c in cands if c != current[u]]
        le1, _ = _candidate_evidence(ps, fit, targets, cfg, op, make_model, fitq, power_law,
                                     [(units[u][1], c) for u, c in pairs], max(SCREEN_ITERATIONS // 6, 1), progress)
        by_unit: dict[int, list[int]] = {}
        for i, (uu, _) in enumerate(pairs):
            by_unit.setdefault(uu, []).append(i)
        top = [pairs[i] for idx in by_unit.values() for i in sorted(idx, key=lambda i: -le1[i + 1])[:REFINE_CLASSES]]
        le2, vals = _candidate_evidence(ps, fit, targets, cfg, op, make_model, fitq, power_law,
                                         [(units[u][1], c) for u, c in top], SCREEN_ITERATIONS, progress)
        ev = {pair: le1[i + 1] for i, pair in enumerate(pairs)}
        ev.update({pair: le2[i + 1] for i, pair in enumerate(top)})
        where = {pair: i + 1 for i, pair in enumerate(top)}
        posts = {}
        candidates = []  # (P(current), P(class), unit, class, candidate index, log Bayes factor, decisive)
        for u, (uname, members) in enumerate(units):
            names = [current[u]] + [c for c in cands if c != current[u]]
            # a unit no path of the data meets: every class explains the data alike (its prior integrates to 1)
            logev = np.array([le2[0]] + [ev[(u, c)] if seen[u] else le2[0] for c in names[1:]])
            lab = op.unit_class(members, op.labels)
            n_other = len(names) - (1 if lab in names else 0)
            mass = op.label_mass(members, bc.label_mass)
            logp = logev + np.log([mass if nm == lab else (1.0 - mass) / max(n_other, 1) for nm in names])
            p = np.exp(logp - logp.max())
            p /= p.sum()
            posts[uname] = {nm: float(pi) for nm, pi in zip(names, p)}
            j = int(np.argmax(p))
            # decisive against the current class: its posterior probability is at most 1 - switch_probability;
            # otherwise (check_switches) the most probable class is a candidate for the held-out check
            decisive = bool(p[0] <= 1.0 - bc.switch_probability)
            if j > 0 and (u, names[j]) in where and (u, names[j]) not in rejected and (decisive or bc.check_switches):
                candidates.append((float(p[0]), float(p[j]), u, names[j], where[(u, names[j])],
                                   float(logev[j] - logev[0]), decisive))
        # every decisive switch whose unit shares no measured link with one taken before it in this pass (the
        # likelihood factorises over them, so each one's evidence does not depend on the others' classes); else
        # the first non-decisive one the held-out check accepts (check_switches)
        best, used = [], np.zeros(inc.shape[1], dtype=bool)
        for cand in sorted(candidates):  # the least probable current class first
            if cand[6]:
                if not best or not (inc[cand[2]] & used).any():
                    best.append(cand)
                    used |= inc[cand[2]]
                continue
            if best:
                break
            _, _, u, c, i, _, _ = cand
            chk = check_switch(ps, fit, targets, cfg, op, make_model, fitq, power_law, units[u][1], c,
                               {q: v[i:i + 1] for q, v in vals.items()}, bc)
            chk.update(object=units[u][0], to=c, probability_from=cand[0], probability=cand[1])
            checks.append(chk)
            if chk["accepted"]:
                best = [cand]
                break
            rejected.add((u, c))
        best = best[:max_sw - len(switches)]
        if not best:
            break
        # the new start: one switch's whole refined candidate; several: each unit's values from its own candidate
        chosen = {q: v[best[0][4]:best[0][4] + 1].copy() for q, v in vals.items()} if len(best) == 1 else \
            {q: v[0:1].copy() for q, v in fit.model.values().items()}
        for p_old, prob, u, new, i, dlog, decisive in best:
            uname, members = units[u]
            sw = {"object": uname, "label": op.unit_class(members, op.labels), "from": current[u], "to": new,
                  "probability": prob, "probability_from": p_old, "log_bayes_factor": dlog,
                  "rule": "decisive" if decisive else "most probable, held-out check", "pass": n_pass}
            if grouped:
                sw.update(group=uname, objects=[op.names[k] for k in members])
            switches.append(sw)
            for k in members:
                op.classes[k] = new
            if len(best) > 1:
                for q in chosen:
                    chosen[q][0, members] = vals[q][i, members]
        st1 = prior_stats(op, fitq, power_law=power_law, exponents=_exponents(fit.model) if power_law else None)
        fit = estimate_hyper(ps, make_model(chosen), targets, cfg, st1, fit.hyper, bc, progress)
    fit.switches = switches
    fit.class_posteriors = posts
    fit.switch_checks = checks
    return fit


def check_switch(ps: PathSet, fit: PosteriorFit, targets: Targets, cfg: CalibrationConfig, op: ObjectPriors,
                 make_model: ModelFactory, fitq: Sequence[str], power_law: bool, members: np.ndarray, cls: str,
                 start: dict[str, np.ndarray], bc: BayesConfig) -> dict:
    """K-fold paired test of one label switch (objects ``members`` to class ``cls``, refined values ``start``
    [1, K]) against the current classes (``fit``'s MAP point): per fold both posteriors are refitted on the other
    folds (same noise and prior strength) and predict the fold's rows of the primary feature; the switch is
    ``accepted`` when the mean of (switched^2 - current^2) residuals is below -:data:`VERDICT_SE` standard errors.
    Folds by link (``bc.folds``; 5 when the closing check is off)."""
    feats = features_of(cfg, targets)
    primary = next(f for f in ("path_gain", "mpc_power", "cfr", "delay_spread", "mean_delay") if f in feats)
    used = np.unique(targets.link[targets.row_weight(primary) > 0].cpu().numpy()) if primary != "mpc_power" \
        else np.unique(targets.link.cpu().numpy())
    k = min(bc.folds if bc.folds else 5, len(used))
    out = {"folds": k, "feature": primary, "mse_difference": float("nan"), "mse_difference_se": float("nan"),
           "accepted": False}
    if k < 2:
        return out
    assign = {g: -1 for g in range(ps.num_links)}
    assign.update(zip(used.tolist(), fold_ids(len(used), k, bc.seed).tolist()))
    folds = _fold_of(ps, targets, np.arange(ps.num_links), assign)
    classes = list(op.classes)
    for m in members:
        classes[m] = cls
    ex = _exponents(fit.model) if power_law else None
    st_now = prior_stats(op, fitq, power_law=power_law, exponents=ex)
    st_new = prior_stats(replace(op, classes=classes), fitq, power_law=power_law, exponents=ex)
    now = {q: v[0:1].copy() for q, v in fit.model.values().items()}
    d = []
    for fo in range(k):
        train, test, test_mpc = _split(targets, *folds, fo)
        if not bool(train.row_weight(primary).sum() > 0):
            continue
        ra, _, _ = fit_map(ps, make_model(now), train, cfg, st_now, fit.hyper)
        rb, _, _ = fit_map(ps, make_model(start), train, cfg, st_new, fit.hyper)
        a = _test_residuals(ps, ra.model, targets, train, cfg, primary, test, test_mpc)
        b = _test_residuals(ps, rb.model, targets, train, cfg, primary, test, test_mpc)
        ok = np.isfinite(a) & np.isfinite(b)
        d.append(b[ok] ** 2 - a[ok] ** 2)
    d = np.concatenate(d) if d else np.zeros(0)
    if len(d) < 2:
        return out
    mean, se = float(np.mean(d)), float(np.std(d) / math.sqrt(len(d)))
    out.update(mse_difference=mean, mse_difference_se=se, rows=int(len(d)), accepted=bool(mean < -VERDICT_SE * se))
    return out


def choose_shrinkage(ps: PathSet, fit: PosteriorFit, targets: Targets, cfg: CalibrationConfig, op: ObjectPriors,
                     make_model: ModelFactory, fitq: Sequence[str], bc: BayesConfig, power_law: bool = False,
                     progress: bool = False) -> PosteriorFit:
    """Type-II maximum likelihood of the hierarchical prior's within-class correlation rho: for every rho of
    ``bc.shrinkage_grid`` the posterior is refitted from ``fit``'s MAP point with its own noise and prior strength
    (:func:`estimate_hyper`), and the rho of the largest Laplace log evidence is kept (ties: the smaller rho).
    Sets ``op.shrinkage``; the returned fit records every rho's evidence in ``shrinkage_evidence``."""
    start = {q: v[0:1].copy() for q, v in fit.model.values().items()}
    rows, best, best_rho = [], None, None
    for rho in bc.shrinkage_grid:
        op.shrinkage = float(rho)
        st = prior_stats(op, fitq, power_law=power_law, exponents=_exponents(fit.model) if power_law else None)
        f = estimate_hyper(ps, make_model(start), targets, cfg, st, fit.hyper, bc, progress)
        le = float(f.stats.log_evidence[0])
        rows.append({"shrinkage": float(rho), "log_evidence": le, "prior_strength": f.hyper.strength,
                     "effective_parameters": float(f.stats.gamma[0]), "noise": dict(f.hyper.noise)})
        if best is None or le > float(best.stats.log_evidence[0]) + 1e-9:
            best, best_rho = f, float(rho)
    op.shrinkage = best_rho
    best.switches, best.class_posteriors, best.switch_checks = fit.switches, fit.class_posteriors, fit.switch_checks
    best.iterations += fit.iterations
    best.shrinkage_evidence = rows
    return best


def _exponents(model: PerObjectMaterials) -> tuple[np.ndarray, np.ndarray]:
    pl = model.power_law_coefficients()[0]
    return pl[:, 1], pl[:, 3]


# ------------------------------------------------------------------------------------------ held-out check
def fold_ids(num_groups: int, folds: int, seed: int) -> np.ndarray:
    """A seeded balanced assignment of ``num_groups`` groups to ``folds`` folds."""
    rng = np.random.default_rng(seed)
    f = np.arange(num_groups) % folds
    rng.shuffle(f)
    return f


def _fold_of(ps: PathSet, targets: Targets, group: np.ndarray, assign: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Fold index of every row [M] and MPC [Q] (MPCs follow the link of their path; -1: not assigned)."""
    row = np.array([assign[g] for g in group[targets.link.cpu().numpy()]])
    mpc = None
    if targets.mpc_path is not None and targets.mpc_path.numel():
        mpc = np.array([assign.get(g, -1) for g in group[ps.link[targets.mpc_path].cpu().numpy()]])
    return row, mpc


def _split(targets: Targets, row_fold: np.ndarray, mpc_fold: np.ndarray | None, fold: int
           ) -> tuple[Targets, torch.Tensor, torch.Tensor | None]:
    """(training targets with the fold's rows weighted 0, test-row mask [M], test-MPC mask [Q] or None)."""
    test = torch.as_tensor(row_fold == fold)
    dtype = targets.frequencies_hz.dtype
    w = targets.weight if targets.weight is not None else torch.ones(targets.num, dtype=dtype)
    kw = {"weight": w * (~test).to(dtype)}
    test_mpc = None
    if mpc_fold is not None:
        test_mpc = torch.as_tensor(mpc_fold == fold)
        mw = targets.mpc_weight if targets.mpc_weight is not None else torch.ones(len(test_mpc), dtype=dtype)
        kw["mpc_weight"] = mw * (~test_mpc).to(dtype)
    return replace(targets, **kw), test, test_mpc


def _test_residuals(ps: PathSet, model, targets: Targets, train: Targets, cfg: CalibrationConfig, f: str,
                    test: torch.Tensor, test_mpc: torch.Tensor | None) -> np.ndarray:
    """Residuals of the measured test rows (test MPCs); NaN where the twin predicts nothing (no traced path)."""
    r = raw_residuals(ps, model, targets, cfg, f, fit_targets=train)[0]
    sel = (test_mpc if f == "mpc_power" else test) & (targets.row_weight(f) > 0)
    if f != "mpc_power":  # rows of links without a traced path: no prediction (not the -300 dB floor)
        has = torch.bincount(ps.link.to(torch.long), minlength=ps.num_links) > 0
        r = torch.where(has[targets.link.to(torch.long)], r, torch.full_like(r, float("nan")))
    r = r[sel].cpu().numpy()
    return np.where(np.isfinite(r), r, np.nan)


def heldout(ps: PathSet, targets: Targets, cfg: CalibrationConfig, fit: PosteriorFit, label_model: PerObjectMaterials,
            st: PriorStats, make_model: ModelFactory, bc: BayesConfig, link_group: np.ndarray | None = None,
            by: str = "link", label_eval: tuple[PathSet, Targets] | None = None) -> dict:
    """K-fold held-out error per feature of the label twin and of the calibrated twin (fixed hyper-parameters and
    classes; each fold refits from the prior and from the full-data MAP point and keeps the better training
    posterior). ``link_group`` [L] maps PathSet links to groups (transmitters for ``by='transmitter'``).
    ``label_eval``: the PathSet traced with the label materials and its targets (same rows), on which the label
    twin is evaluated (default: ``ps`` / ``targets``)."""
    group = np.arange(ps.num_links) if link_group is None else np.asarray(link_group)
    used = np.unique(group[targets.link.cpu().numpy()])
    k = min(bc.folds, len(used))
    if k < 2:
        return {"by": by, "folds": 0, "features": {}}
    assign = dict(zip(used.tolist(), fold_ids(len(used), k, bc.seed).tolist()))
    ps_l, tg_l = label_eval if label_eval is not None else (ps, targets)
    folds = _fold_of(ps, targets, group, assign)
    folds_l = _fold_of(ps_l, tg_l, group, assign)
    feats = features_of(cfg, targets)
    # the fits leave out rows on links without a traced path; their test residuals are NaN (no prediction), in
    # both twins' lists alike, so the two stay paired row by row
    fit_targets, _ = traced_rows(ps, targets)
    err = {f: {"label": [], "calibrated": []} for f in feats}
    map_vals, lab_vals = fit.model.values(), label_model.values()
    for fo in range(k):
        train, test, test_mpc = _split(fit_targets, *folds, fo)
        train_l, test_l, test_mpc_l = _split(tg_l, *folds_l, fo)
        if not all(bool(train.row_weight(f).sum() > 0) for f in feats):
            continue
        starts = {q: np.concatenate([lab_vals[q][0:1], map_vals[q][0:1]]) for q in map_vals}
        res, _, _ = fit_map(ps, make_model(starts), train, cfg, st, fit.hyper)
        for f in feats:
            err[f]["calibrated"].append(_test_residuals(ps, res.model, targets, train, cfg, f, test, test_mpc))
            err[f]["label"].append(_test_residuals(ps_l, label_model, tg_l, train_l, cfg, f, test_l, test_mpc_l))
    out = {"by": by, "folds": k, "features": {}}
    for f in feats:
        a = np.concatenate(err[f]["label"]) if err[f]["label"] else np.zeros(0)
        b = np.concatenate(err[f]["calibrated"]) if err[f]["calibrated"] else np.zeros(0)
        if len(a) != len(b):  # MPCs matched to different traces: compare each on its own rows
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            both = slice(0, min(len(a), len(b)))
            d = b[both] ** 2 - a[both] ** 2 if len(a) == len(b) else np.array([np.mean(b**2) - np.mean(a**2)])
        else:
            ok = np.isfinite(a) & np.isfinite(b)
            d = b[ok] ** 2 - a[ok] ** 2
        if not np.isfinite(a).any() or not np.isfinite(b).any():
            continue
        out["features"][f] = heldout_feature(a, b, d, NOISE_UNITS[f])
    return out


def heldout_feature(a: np.ndarray, b: np.ndarray, d: np.ndarray | None = None, unit: str = "dB") -> dict:
    """The held-out section of one feature from the label twin's residuals ``a`` and the calibrated twin's ``b``
    (NaN: no prediction) and their paired differences of squares ``d`` (default: over the rows both predict)."""
    if d is None:
        ok = np.isfinite(a) & np.isfinite(b)
        d = b[ok] ** 2 - a[ok] ** 2
    return {
        "rows": int(np.isfinite(b).sum()), "label_rows": int(np.isfinite(a).sum()), "unit": unit,
        "rows_without_prediction": {"label": int((~np.isfinite(a)).sum()), "calibrated": int((~np.isfinite(b)).sum())},
        "label_rmse": float(np.sqrt(np.nanmean(a**2))), "calibrated_rmse": float(np.sqrt(np.nanmean(b**2))),
        "label_mean_abs": float(np.nanmean(np.abs(a))), "calibrated_mean_abs": float(np.nanmean(np.abs(b))),
        "mse_difference": float(np.mean(d)), "mse_difference_se": float(np.std(d) / math.sqrt(max(len(d), 1))),
    }


VERDICT_SE = 2.0  # the held-out check's paired test: a difference of more than this many standard errors decides


def verdict(ho: dict, primary: str) -> str:
    """The paired test of the held-out check on the rows both twins predict: 'improves' (the calibrated twin's
    held-out MSE lower by more than :data:`VERDICT_SE` standard errors of the paired difference), 'worse' (higher by
    more than that) or 'no_difference'. The standard error is that of the mean of the per-row differences of squared
    residuals (calibrated^2 - label^2): the measurement noise both twins share cancels in each difference, so the
    test sees the twins' own difference, not the noise (comparing the two RMS errors would not)."""
    f = ho.get("features", {}).get(primary)
    if f is None:
        return "not_checked"
    d, se = f["mse_difference"], f["mse_difference_se"]
    if d > VERDICT_SE * se:
        return "worse"
    if d < -VERDICT_SE * se:
        return "improves"
    return "no_difference"


__all__ = ["BayesConfig", "GAUSSIAN_METRIC", "Hyper", "LIKELIHOODS", "LaplaceStats", "NOISE_UNITS", "ObjectPriors",
           "PosteriorFit", "SHRINKAGE_GRID", "choose_shrinkage", "correct_labels", "estimate_hyper", "fit_map",
           "heldout", "heldout_feature", "initial_noise", "irls_weights", "laplace_stats", "posterior_config",
           "prior_stats", "seen_units", "traced_rows", "unit_links", "verdict"]

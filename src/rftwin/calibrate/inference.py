"""Posterior calibration inside the trace / re-trace workflow: one round per trace (multi-start MAP, type-II ML
hyper-parameters, label correction in the first round) and the closing held-out check, uncertainty and
plausibility report (:mod:`rftwin.calibrate.bayes` holds the inference itself)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from rftwin.calibrate.bayes import (
    NOISE_UNITS,
    BayesConfig,
    Hyper,
    ModelFactory,
    ObjectPriors,
    PosteriorFit,
    choose_shrinkage,
    correct_labels,
    estimate_hyper,
    fit_map,
    heldout,
    initial_noise,
    num_prior_rows,
    outlier_rows,
    posterior_config,
    prior_stats,
    seen_units,
    traced_rows,
    verdict,
    weighted,
)
from rftwin.calibrate.jacobians import prior_block
from rftwin.calibrate.loop import CalibrationConfig, CalibrationResult
from rftwin.calibrate.objectives import PriorStats
from rftwin.calibrate.problem import Targets
from rftwin.calibrate.uncertainty import uncertainty_from_cov
from rftwin.materials.class_prior import PLAUSIBLE
from rftwin.materials.groups import MaterialGroups, material_model
from rftwin.materials.per_object import PerObjectMaterials
from rftwin.pathset import PathSet


@dataclass
class BayesSetup:
    """What a posterior calibration needs besides the workflow's own inputs, and its state across rounds."""

    priors: ObjectPriors
    config: BayesConfig = field(default_factory=BayesConfig)
    exponents: tuple[np.ndarray, np.ndarray] | None = None  # power-law exponents (b, d) [K] of the labels
    hyper: Hyper | None = None
    fit: PosteriorFit | None = None
    rounds: list[dict] = field(default_factory=list)
    rows_without_paths: int = 0  # measured rows on links the last trace reached with no path (out of the likelihood)
    likelihood_choice: dict | None = None  # likelihood auto: what the first round's Gaussian fit showed, and the choice

    def label_values(self) -> dict[str, np.ndarray | None]:
        """[1, K] start values of the label twin (the original labels' class centres)."""
        op = self.priors
        cls = [lab if lab is not None else "unlabelled" for lab in op.labels]
        e, s, _, _ = op.centres(cls)
        out = {"eps_r": e[None], "sigma": s[None]}
        for q in ("scattering", "xpd"):
            v = getattr(op, q)
            out[q] = None if v is None else np.asarray(v, dtype=np.float64)[None]
        return out

    def stats(self, fitq: Sequence[str], power_law: bool):
        return prior_stats(self.priors, fitq, power_law=power_law, exponents=self.exponents)


def plausible_bounds(K: int) -> tuple[np.ndarray, np.ndarray]:
    """[K, 2] boxes of eps_r and sigma from :data:`PLAUSIBLE` (eps_r just above 1 at the low end)."""
    e = np.tile([1.0 + 1e-7, PLAUSIBLE["eps_r"][1]], (K, 1))
    s = np.tile(list(PLAUSIBLE["sigma"]), (K, 1))
    return e, s


def unseen_reduction(ps: PathSet, targets: Targets, setup: BayesSetup, make_model: ModelFactory, st: PriorStats,
                     power_law: bool) -> tuple[ModelFactory, np.ndarray] | None:
    """(model factory, indices of the fitted objects) that fits only the objects a path of a measured link meets
    and keeps the others at their prior centre (``st``: the prior, :meth:`BayesSetup.stats`), or None where that
    changes nothing or is not exact.

    With independent per-object priors (no groups, no hierarchical shrinkage; constant materials) an object the
    data do not see has its posterior equal to its prior: its MAP value is the prior centre, and its prior and
    posterior curvature cancel in the Laplace evidence and in the effective parameters. So the fits need only the
    seen objects' parameters: a city scene's few hundred links meet a small share of its objects, and the normal
    equations, Jacobians and label-correction candidates then grow with those, not with the scene."""
    op, bc = setup.priors, setup.config
    if op.group_index is not None or op.shrinkage > 0 or bc.shrinkage_auto or power_law:
        return None
    seen = seen_units(ps, targets, op.units())  # per object here
    if seen.all() or not seen.any():  # (no object seen: no data rows to fit; the fits run as they always did)
        return None
    free = np.flatnonzero(seen)
    fixed = np.flatnonzero(~seen)
    inv = {"eps_r": lambda m: 1.0 + np.exp(m), "sigma": np.exp, "scattering": lambda m: 1.0 / (1.0 + np.exp(-m)),
           "xpd": lambda m: 1.0 / (1.0 + np.exp(-m))}
    centre = {q: inv[q](st.mu[q].cpu().numpy()) for q in st.mu}

    def make(v: dict[str, np.ndarray | None]) -> PerObjectMaterials:
        v = {q: None if x is None else np.atleast_2d(np.array(x, dtype=np.float64)) for q, x in v.items()}
        for q, c in centre.items():
            if v.get(q) is not None:
                v[q][:, fixed] = c[fixed]
        model = make_model(v)
        if type(model) is not PerObjectMaterials:
            raise TypeError("unseen_reduction: the factory must make plain per-object models")
        return model.with_free_objects(free)

    return make, free


def _full_covariance(full: PerObjectMaterials, free: np.ndarray, cov_free: torch.Tensor, st: PriorStats,
                     cfg_post: CalibrationConfig) -> torch.Tensor:
    """[P, P] posterior covariance of every parameter of ``full`` (a single-start model over all objects) from
    that of the fitted objects' parameters ``cov_free``: the others are their prior's (1 / the prior rows'
    curvature; independent priors, so diagonal)."""
    _, Jp = prior_block(full, st, cfg_post)
    var = 1.0 / (Jp[0] ** 2).sum(0).clamp_min(1e-300)
    cov = torch.diag(var).to(cov_free.dtype)
    K = full.thickness.shape[0]
    pos = torch.as_tensor(np.concatenate([i * K + free for i in range(cov.shape[0] // K)]))
    cov[pos[:, None], pos[None, :]] = cov_free
    return cov


def _label_model(setup: BayesSetup, make_model: ModelFactory, fitq: Sequence[str]) -> PerObjectMaterials:
    v = setup.label_values()
    return make_model({k: x for k, x in v.items() if x is not None or k in fitq})


def posterior_round(ps: PathSet, model: PerObjectMaterials, targets: Targets, cfg: CalibrationConfig,
                    setup: BayesSetup, make_model: ModelFactory, fitq: Sequence[str], power_law: bool, first: bool,
                    progress: bool = False, **checkpointing) -> CalibrationResult:
    """One round on one trace: multi-start MAP fit, hyper-parameter updates and (first round) label correction.
    Returns the round's result in the workflow's record (values of the MAP point). ``checkpointing``
    (checkpoint / checkpoint_every / resume) applies to the multi-start fit, the long part of a round; the rest is
    recomputed deterministically on resume."""
    bc = setup.config
    st = setup.stats(fitq, power_law)
    targets, setup.rows_without_paths = traced_rows(ps, targets)
    reduced = unseen_reduction(ps, targets, setup, make_model, st, power_law)
    if reduced is not None:  # only the objects the measured paths meet are fitted
        make_model = reduced[0]
        model = make_model(model.values())
    if setup.hyper is None:
        lab = _label_model(setup, make_model, fitq)
        noise = initial_noise(ps, lab, targets, cfg, bc.noise)
        setup.hyper = Hyper(noise, bc.strength if bc.strength is not None else 1.0)
    res, _, _ = fit_map(ps, model, targets, cfg, st, setup.hyper, progress, **checkpointing)
    auto = bc.likelihood == "auto"
    fit = estimate_hyper(ps, res.model, targets, cfg, st, setup.hyper,
                         replace(bc, likelihood="gaussian") if auto else bc, progress)
    if auto:
        fit, bc = choose_likelihood(ps, fit, targets, cfg, st, setup, progress)
    if first and bc.label_correction:
        fit = correct_labels(ps, fit, targets, cfg, setup.priors, make_model, fitq, bc, power_law, progress)
    elif setup.fit is not None:  # later rounds keep the first round's label decisions
        fit.switches, fit.class_posteriors = setup.fit.switches, setup.fit.class_posteriors
        fit.switch_checks = setup.fit.switch_checks
    if first and bc.shrinkage_auto:  # rho by the evidence, on the corrected classes
        fit = choose_shrinkage(ps, fit, targets, cfg, setup.priors, make_model, fitq, bc, power_law, progress)
    elif setup.fit is not None:
        fit.shrinkage_evidence = setup.fit.shrinkage_evidence
    setup.hyper, setup.fit = fit.hyper, fit
    setup.rounds.append({"hyper_iterations": fit.history, "switches": fit.switches})
    v = fit.model.values()
    return replace(res, eps_r=v["eps_r"][0], sigma=v["sigma"][0], power_law=fit.model.power_law_coefficients()[0],
                   loss=fit.loss, model=fit.model, scattering=v["scattering"][0] if "scattering" in v else None,
                   xpd=v["xpd"][0] if "xpd" in v else None, iterations=res.iterations + fit.iterations,
                   converged=res.converged and fit.converged, offset_db=fit.offset_db,
                   terms=[str(x) for x in cfg.loss_terms])


def choose_likelihood(ps: PathSet, fit: PosteriorFit, targets: Targets, cfg: CalibrationConfig, st, setup: BayesSetup,
                      progress: bool) -> tuple[PosteriorFit, BayesConfig]:
    """Likelihood auto: keep the Gaussian ``fit`` unless its path-gain residuals hold far more outlying rows than a
    Gaussian expects (:func:`rftwin.calibrate.bayes.outlier_rows`); then refit with the Student-t likelihood from
    it. ``setup.config`` becomes the chosen likelihood for the later rounds and the check; the choice and the
    outlier count behind it go to ``setup.likelihood_choice``."""
    o = outlier_rows(ps, fit.model, targets, cfg) if "path_gain" in fit.hyper.noise else None
    chosen = "student" if o is not None and o["suggest_student"] else "gaussian"
    setup.likelihood_choice = {"requested": "auto", "chosen": chosen, "gaussian_outliers": o}
    setup.config = replace(setup.config, likelihood=chosen)
    if chosen == "student":
        fit = estimate_hyper(ps, fit.model, targets, cfg, st, fit.hyper, setup.config, progress)
    return fit, setup.config


def finish(ps: PathSet, targets: Targets, cfg: CalibrationConfig, setup: BayesSetup, res: CalibrationResult,
           make_model: ModelFactory, fitq: Sequence[str], power_law: bool, link_tx: np.ndarray | None,
           label_eval: tuple[PathSet, Targets] | None = None) -> CalibrationResult:
    """Held-out check (by link, and by transmitter when there are several), the decision to keep or revert, the
    posterior uncertainty and the plausibility / prior-distance report (``res.inference``). ``label_eval``: the
    PathSet traced with the label materials and its targets, on which the label twin is judged."""
    bc = setup.config
    fit = setup.fit
    st = setup.stats(fitq, power_law)
    traced, setup.rows_without_paths = traced_rows(ps, targets)  # the check leaves them out of its fits by itself
    reduced = unseen_reduction(ps, traced, setup, make_model, st, power_law)
    if reduced is not None:  # as in the round's fits
        make_model = reduced[0]
    lab = _label_model(setup, make_model, fitq)
    primary = next((f for f in ("path_gain", "mpc_power", "cfr", "delay_spread", "mean_delay")
                    if f in fit.hyper.noise), None)
    report: dict = {"noise": dict(fit.hyper.noise), "noise_units": {f: NOISE_UNITS[f] for f in fit.hyper.noise},
                    "noise_estimated": sorted(set(fit.hyper.noise) - set(bc.noise)),
                    "prior_strength": fit.hyper.strength,
                    "prior_strength_method": "fixed" if bc.strength is not None else "evidence (type-II ML)",
                    "effective_parameters": float(fit.stats.gamma[0]),
                    "log_evidence": float(fit.stats.log_evidence[0]), "likelihood": bc.likelihood,
                    "label_switches": fit.switches, "class_posteriors": fit.class_posteriors,
                    "switch_checks": fit.switch_checks, "check_switches": bc.check_switches,
                    "classes": list(setup.priors.classes), "labels": list(setup.priors.labels),
                    "switch_probability": bc.switch_probability, "label_mass": bc.label_mass,
                    "label_masses": {u: m for u, mem in setup.priors.units()
                                     if (m := setup.priors.label_mass(mem, bc.label_mass)) != bc.label_mass},
                    "shrinkage": setup.priors.shrinkage,
                    "shrinkage_method": "evidence (type-II ML over a grid)" if bc.shrinkage_auto else "fixed",
                    "shrinkage_evidence": fit.shrinkage_evidence,
                    "rounds": setup.rounds, "rows_without_paths": setup.rows_without_paths,
                    "likelihood_choice": setup.likelihood_choice,
                    # objects no path of a measured link meets: not fitted, at their prior (unseen_reduction)
                    "unseen_objects": [] if reduced is None else
                    np.delete(np.asarray(setup.priors.names, dtype=object), reduced[1]).tolist()}
    if bc.folds:
        report["heldout"] = heldout(ps, targets, cfg, fit, lab, st, make_model, bc, label_eval=label_eval)
        if link_tx is not None and len(np.unique(link_tx)) >= 2:
            report["heldout_by_transmitter"] = heldout(ps, targets, cfg, fit, lab, st, make_model,
                                                       replace(bc, folds=min(bc.folds, len(np.unique(link_tx)))),
                                                       link_group=link_tx, by="transmitter", label_eval=label_eval)
        report["verdict"] = verdict(report["heldout"], primary)
    else:
        report["verdict"] = "not_checked"
    model = fit.model
    reverted = report["verdict"] == "worse" and bc.revert_if_worse
    report["reverted_to_labels"] = reverted
    if reverted:
        model = lab
    if reduced is not None:  # the exported model and its uncertainty cover every object
        model = model.with_free_objects(None)
    if reverted:  # the label twin's uncertainty is the prior's (the labels' classes at their nominal spreads)
        op = setup.priors
        labels_op = replace(op, classes=[c if c is not None else "unlabelled" for c in op.labels])
        st0 = prior_stats(labels_op, fitq, power_law=power_law, exponents=setup.exponents)
        _, Jp = prior_block(model, st0, replace(cfg, prior_weight=float(num_prior_rows(st0))))
        Hp = Jp[0].T @ Jp[0]
        unc = uncertainty_from_cov(model, torch.linalg.inv(Hp + 1e-12 * torch.eye(Hp.shape[0], dtype=Hp.dtype)),
                                   fit.hyper.noise)
    elif reduced is not None:
        c_post = posterior_config(cfg, weighted(traced, fit.hyper), fit.hyper, num_prior_rows(st))
        unc = uncertainty_from_cov(model, _full_covariance(model, reduced[1], fit.stats.cov[0], st, c_post),
                                   fit.hyper.noise)
    else:
        unc = uncertainty_from_cov(fit.model, fit.stats.cov[0], fit.hyper.noise)
    v = model.values()
    # distance from the prior (standardised) and values at the plausibility box
    with torch.no_grad():
        z = st.residuals(model)[0].cpu().numpy()
    K = len(setup.priors.names)
    report["prior_z"] = {n: {q: float(z[i * K + k]) for i, q in enumerate(q for q in st.mu if q in v)}
                         for k, n in enumerate(setup.priors.names)}
    at_bound = []
    for q in ("eps_r", "sigma"):
        lo, hi = PLAUSIBLE[q]
        for k, n in enumerate(setup.priors.names):
            x = float(v[q][0, k])
            if x >= hi * (1 - 1e-6) or (q == "sigma" and x <= lo * (1 + 1e-6)):
                at_bound.append({"object": n, "quantity": q, "value": x, "range": [lo, hi]})
    report["at_plausible_bound"] = at_bound
    if "path_gain" in fit.hyper.noise and not reverted:
        report["outliers"] = outlier_rows(ps, model, targets, cfg)
    report["plausible_ranges"] = {q: list(r) for q, r in PLAUSIBLE.items()}
    return replace(res, eps_r=v["eps_r"][0], sigma=v["sigma"][0], power_law=model.power_law_coefficients()[0],
                   scattering=v["scattering"][0] if "scattering" in v else None,
                   xpd=v["xpd"][0] if "xpd" in v else None, model=model, uncertainty=unc, inference=report)


def calibrate_posterior(ps: PathSet, targets: Targets, setup: BayesSetup, thickness: Sequence[float],
                        cfg: CalibrationConfig | None = None, num_starts: int = 16, seed: int = 0,
                        fit: Sequence[str] = ("eps_r", "sigma"), link_tx: np.ndarray | None = None,
                        progress: bool = False, groups: MaterialGroups | None = None) -> CalibrationResult:
    """The posterior calibration of constant materials, per object or per material group (``groups``; each
    object's prior then counts 1 / group size and label correction switches whole groups), on one traced PathSet
    (no re-tracing): starts drawn from the class priors' +-2 std ranges, one :func:`posterior_round` and
    :func:`finish` (the label twin is judged on the same paths)."""
    from rftwin.materials.per_object import draw_start_values  # noqa: PLC0415

    cfg = CalibrationConfig() if cfg is None else cfg
    eb, sb = plausible_bounds(len(thickness))
    op = setup.priors
    if groups is not None and groups.num_groups < len(thickness) and op.group_index is None:
        op.group_sizes = np.bincount(groups.index)[groups.index].astype(np.float64)
        op.group_index, op.group_names = np.asarray(groups.index), list(groups.names)

    def make_model(v) -> PerObjectMaterials:
        return material_model(groups, v["eps_r"], v["sigma"], thickness, scattering=v.get("scattering"),
                              xpd=v.get("xpd"), fit=fit, eps_bounds=eb, sigma_bounds=sb)

    starts = draw_start_values(setup.priors.material_prior(), num_starts, seed, fit)
    res = posterior_round(ps, make_model(starts), targets, cfg, setup, make_model, fit, False, True, progress)
    return finish(ps, targets, cfg, setup, res, make_model, fit, False, link_tx)


def material_library(res: CalibrationResult, setup: BayesSetup, f_ref: float) -> dict:
    """The material library of a posterior calibration: per class, its objects' posterior information pooled on
    the class prior (:func:`rftwin.materials.class_prior.library_document`; a twin reverted to its labels carries
    no information beyond them)."""
    from rftwin.materials.class_prior import library_document  # noqa: PLC0415

    u = res.uncertainty
    eps, sig = np.asarray(res.eps_r), np.asarray(res.sigma)
    e0, s0, se, ss = setup.priors.centres()
    with np.errstate(divide="ignore", invalid="ignore"):
        ue = np.nan_to_num(u.eps_std / np.maximum(eps - 1.0, 1e-12), nan=se, posinf=se)
        us = np.nan_to_num(u.sigma_std / np.maximum(sig, 1e-30), nan=ss, posinf=ss)
    strength = 1.0 if res.inference.get("reverted_to_labels") else res.inference["prior_strength"]
    return library_document(setup.priors.names, list(setup.priors.classes),
                            {"eps": np.log(np.maximum(eps - 1.0, 1e-12)), "sigma": np.log(np.maximum(sig, 1e-30))},
                            {"eps": ue, "sigma": us},
                            {"eps": np.log(np.maximum(e0 - 1.0, 1e-12)), "sigma": np.log(np.maximum(s0, 1e-30))},
                            {"eps": se, "sigma": ss}, f_ref, strength)


__all__ = ["BayesSetup", "calibrate_posterior", "choose_likelihood", "finish", "material_library", "plausible_bounds",
           "posterior_round"]

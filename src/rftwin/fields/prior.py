"""A material field as inference: the labels' prior on the field, its strength by K-fold cross-validation, and
the held-out proof against the label twin.

Objective: mean squared dB error over the M training rows + (lambda / M) * sum over objects of the mean, over the
object's interaction points, of z^2, with z = (log(eps_r - 1) - mu) / s and (log sigma - mu) / s the standardised
deviations from the object's class prior (centre mu, log-std s at the reference frequency). With noise sigma_n [dB]
and lambda = sigma_n^2 this is -2 log posterior / M where each object's prior counts once (averaged over its
points, so many interactions on a wall do not make its prior stronger). The strength lambda is chosen by K-fold
cross-validation by link over a grid; the label twin (the untrained field, which equals the per-object labels
everywhere) is held out the same way, and when the trained field does not predict held-out links better the field
stays at the labels.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from rftwin.calibrate.problem import Targets
from rftwin.pathset import NONE, PathSet

STRENGTHS = (0.1, 1.0, 10.0, 100.0)  # lambda grid [dB^2]: noise std ~0.3 .. 10 dB at unit prior strength


@dataclass
class FieldPrior:
    """Class prior per object [K]: centres and log-stds of log(eps_r - 1) and log(sigma / (S/m)) at
    ``frequency_hz``; ``strength`` lambda [dB^2]."""

    mu_u: torch.Tensor
    mu_v: torch.Tensor
    sd_u: torch.Tensor
    sd_v: torch.Tensor
    frequency_hz: float
    strength: float = 1.0

    @classmethod
    def from_centres(cls, eps_r, sigma, log_std_eps, log_std_sigma, frequency_hz: float, strength: float = 1.0,
                     dtype=torch.float64) -> FieldPrior:
        def t(x):
            return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype)

        return cls(t(np.log(np.maximum(np.asarray(eps_r) - 1.0, 1e-9))), t(np.log(np.maximum(sigma, 1e-12))),
                   t(np.maximum(log_std_eps, 1e-3)), t(np.maximum(log_std_sigma, 1e-3)), float(frequency_hz),
                   float(strength))

    def penalty(self, fld, ps: PathSet, feats, rows: int, weight: float = 1.0, residuals: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The prior's share of the loss [1] at strength ``weight`` x ``strength`` and (with ``residuals``) its
        least-squares block [1, 2P] (the prior protocol of :mod:`rftwin.materials.protocol`). The field's values
        are those the engine just used (``feats.materials``) when the prior's frequency is a target frequency (no
        second pass of the network), else the field is queried at the interaction points of ``ps``."""
        mask = ps.itype != NONE
        obj = ps.obj[mask].to(torch.long)
        mv = getattr(feats, "materials", None)
        hit = [] if mv is None or mv.per_object else [
            i for i, f in enumerate(feats.frequencies_hz.tolist()) if abs(f - self.frequency_hz) <= 1e-6 * f]
        if hit:
            eps, sig = mv.eps_r[0, hit[0]][mask], mv.sigma[0, hit[0]][mask]
        else:
            pm = fld.point_values(ps.point[mask], obj, [self.frequency_hz])
            eps, sig = pm.eps_r[0], pm.sigma[0]
        lam = self.strength * weight
        loss = weight * self.term_of_values(eps, sig, obj, rows).reshape(1)
        if not residuals:
            return loss, None
        zu, zv = self.standardised(eps, sig, obj)
        n = torch.zeros(self.mu_u.shape[0], dtype=zu.dtype).index_add_(0, obj, torch.ones_like(zu))[obj]
        scale = torch.sqrt(lam / (max(rows, 1) * n))
        return loss, torch.cat([zu * scale, zv * scale])[None]

    def standardised(self, eps_r: torch.Tensor, sigma: torch.Tensor, obj: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """z of log(eps_r - 1) and of log sigma [P] against the class prior of each point's object."""
        u = torch.log(torch.clamp(eps_r - 1.0, min=1e-12))
        v = torch.log(torch.clamp(sigma, min=1e-30))
        return (u - self.mu_u[obj]) / self.sd_u[obj], (v - self.mu_v[obj]) / self.sd_v[obj]

    def term(self, fld, points: torch.Tensor, obj: torch.Tensor, rows: int) -> torch.Tensor:
        """(lambda / rows) * sum over objects of the mean z^2 over their points [P, 3] on objects [P]."""
        if not len(obj):
            return torch.zeros((), dtype=self.mu_u.dtype)
        pm = fld.point_values(points, obj, [self.frequency_hz])
        return self.term_of_values(pm.eps_r[0], pm.sigma[0], obj, rows)

    def term_of_values(self, eps_r: torch.Tensor, sigma: torch.Tensor, obj: torch.Tensor, rows: int) -> torch.Tensor:
        """:meth:`term` from the field's values eps_r, sigma [P] (at ``frequency_hz``) on objects [P]."""
        if not len(obj):
            return torch.zeros((), dtype=self.mu_u.dtype)
        obj = obj.to(torch.long)
        zu, zv = self.standardised(eps_r, sigma, obj)
        z2 = zu ** 2 + zv ** 2
        K = self.mu_u.shape[0]
        total = torch.zeros(K, dtype=z2.dtype).index_add_(0, obj, z2)
        count = torch.zeros(K, dtype=z2.dtype).index_add_(0, obj, torch.ones_like(z2))
        per_object = total[count > 0] / count[count > 0]
        return self.strength * per_object.sum() / max(rows, 1)


def _without(ps: PathSet, targets: Targets, test: torch.Tensor) -> Targets:
    """Training targets: the test rows [M] weighted 0, their delay spreads and the MPCs of their links left out."""
    dt = targets.frequencies_hz.dtype
    w = targets.weight if targets.weight is not None else torch.ones(targets.num, dtype=dt)
    kw: dict = {"weight": w * (~test).to(dt)}
    if targets.delay_spread_s is not None:
        kw["delay_spread_s"] = torch.where(test, torch.nan, targets.delay_spread_s)
    if targets.mpc_path is not None and targets.mpc_path.numel():
        test_mpc = torch.isin(ps.link[targets.mpc_path], targets.link[test])
        mw = targets.mpc_weight if targets.mpc_weight is not None else torch.ones(len(test_mpc), dtype=dt)
        kw["mpc_weight"] = mw * (~test_mpc).to(dt)
    return replace(targets, **kw)


def _gain_residuals(ps: PathSet, fld, targets: Targets, cfg, offset_db: float) -> np.ndarray:
    """Path-gain residuals [M] (dB, NaN where the row has no measured or no predicted gain)."""
    from rftwin.calibrate.problem import simulate_features  # noqa: PLC0415

    with torch.no_grad():
        sim = simulate_features(ps, fld, targets, {"path_gain"}).path_gain_db[0]
    r = (sim + offset_db - targets.path_gain_db).numpy()
    return np.where(np.isfinite(r), r, np.nan)


def fit_field_posterior(ps: PathSet, make_field: Callable[[], torch.nn.Module], targets: Targets, cfg,
                        prior: FieldPrior, folds: int, seed: int, strengths: tuple[float, ...] = STRENGTHS,
                        progress: bool = True) -> tuple[torch.nn.Module, object, dict]:
    """Choose the prior strength by K-fold CV by link, check the held-out error against the label twin, and train
    the final field on all rows. Returns (field, training result, report); the report follows the per-object
    held-out section (``features.path_gain``: label / calibrated RMSE, MSE difference and its standard error)
    plus ``strengths`` (held-out RMSE per lambda), ``prior_strength`` and ``reverted_to_labels``."""
    from rftwin.calibrate.bayes import fold_ids, heldout_feature, verdict  # noqa: PLC0415
    from rftwin.fields.train import train_field  # noqa: PLC0415

    links = np.unique(targets.link.numpy())
    k = min(folds, len(links))
    report: dict = {"by": "link", "folds": 0, "features": {}, "strengths": {}}
    if k >= 2:
        assign = dict(zip(links.tolist(), fold_ids(len(links), k, seed).tolist()))
        row_fold = np.array([assign[int(x)] for x in targets.link.tolist()])
        label = make_field()
        lab = _gain_residuals(ps, label, targets, cfg, 0.0)
        res_by = {}
        for lam in strengths:
            r = np.full(targets.num, np.nan)
            for fo in range(k):
                test = torch.as_tensor(row_fold == fo)
                fld = make_field()
                tr = train_field(ps, fld, _without(ps, targets, test), cfg, progress=False,
                                 prior=replace(prior, strength=lam))
                r[test.numpy()] = _gain_residuals(ps, fld, targets, cfg, tr.offset_db)[test.numpy()]
            res_by[lam] = r
            report["strengths"][str(lam)] = float(np.sqrt(np.nanmean(r**2)))
            if progress:
                print(f"field prior strength {lam:g}: held-out path-gain RMSE {report['strengths'][str(lam)]:.3f} dB")
        best = min(strengths, key=lambda x: report["strengths"][str(x)])
        b = res_by[best]
        ok = np.isfinite(lab) & np.isfinite(b)
        report.update(folds=k, prior_strength=best)
        report["features"]["path_gain"] = heldout_feature(lab[ok], b[ok])
        report["verdict"] = verdict(report, "path_gain")
        prior = replace(prior, strength=best)
    fld = make_field()
    res = train_field(ps, fld, targets, cfg, progress=progress, prior=prior)
    report["reverted_to_labels"] = report.get("verdict") == "worse"
    if report["reverted_to_labels"]:
        untrained = make_field()
        fld.load_state_dict(copy.deepcopy(untrained.state_dict()))
    return fld, res, report

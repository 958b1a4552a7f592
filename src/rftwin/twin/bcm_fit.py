"""``--terms bcm``: calibration against seed 003's Bayesian channel map, with the held-out proof.

The map (:class:`rftwin.bcm.BayesianChannelMap`: log-distance trend + GP residual on geometry features of the
label twin) is fitted on the measured links and queried at ``bcm_targets`` receivers per transmitter drawn in the
box of the measured receivers (seeded, outside closed objects) and at the measured links themselves; the materials
are then fitted to it by its NLL (:func:`rftwin.bcm.calibrate_nll`, the one calibration loop). The measured links
and the map's targets are traced once, at the labels.

Held-out proof: the measured links are split into K folds; for each fold the map is refitted without the fold
(so no held-out measurement reaches the fit through the map), the materials are fitted, and the fold's measured
gains are predicted by the label twin and by the calibrated twin. When the calibrated twin is not better, the
labels are kept (``reverted_to_labels``), as everywhere else in rftwin.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from rftwin.calibrate.spec import CalibrationSpec
from rftwin.scene.load import TwinScene


class BcmFitError(ValueError):
    """Measurements that a channel map cannot be built from."""


def target_receivers(scene: TwinScene, rx: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` receiver positions [count, 3] drawn uniformly in the box of the measured receivers ``rx`` [M, 3]
    (a flat box when they share a height), outside closed objects; seeded."""
    from rftwin.evaluate.radiomap import inside_objects  # noqa: PLC0415

    lo, hi = rx.min(0), rx.max(0)
    rng = np.random.default_rng(seed)
    out = np.zeros((0, 3))
    for _ in range(20):  # rejection rounds: closed objects rarely fill most of the box
        p = lo + (hi - lo) * rng.random((2 * count, 3))
        out = np.concatenate([out, p[~inside_objects(scene, p)]])[:count]
        if len(out) == count:
            return out
    raise BcmFitError(f"--bcm-targets: only {len(out)} of {count} points of the measured receivers' box lie "
                      "outside closed objects")


def measured_per_link(sup) -> tuple[np.ndarray, np.ndarray | None]:
    """Measured path gain [L] (dB) and RMS delay spread [L] (ns, None when not measured) of every unique measured
    link (mean over its rows)."""
    meas = sup.measurements
    if len(np.unique(meas.frequency_hz)) > 1:
        raise BcmFitError("--terms bcm: the channel map is fitted at one frequency; the measurements have "
                          f"{len(np.unique(meas.frequency_hz))}")
    L = len(sup.tx)

    def mean(v):
        s = np.bincount(sup.row_link, np.nan_to_num(v), L)
        n = np.bincount(sup.row_link, np.isfinite(v).astype(float), L)
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)

    gain = mean(np.asarray(meas.path_gain_db, dtype=np.float64))
    ds = meas.delay_spread_s
    ds_ns = None if ds is None or not np.isfinite(ds).any() else mean(np.asarray(ds, dtype=np.float64) * 1e9)
    if ds_ns is not None and not np.isfinite(ds_ns).all():
        raise BcmFitError("--terms bcm: delay spreads are measured on some links only; give them on every link or "
                          "on none (a map of path gain alone)")
    return gain, ds_ns


def fit_bcm(spec: CalibrationSpec, scene: TwinScene, sup, oc, groups, f_ref: float, progress: bool, cache_dir):
    """Calibrate ``scene`` against the channel map of the measurements ``sup``; returns the CalibratedTwin."""
    from rftwin.bcm import BayesianChannelMap, NllConfig, calibrate_nll, geometry_features  # noqa: PLC0415
    from rftwin.calibrate.bayes import fold_ids, heldout_feature, verdict  # noqa: PLC0415
    from rftwin.calibrate.problem import Targets  # noqa: PLC0415
    from rftwin.calibrate.workflow import calibrated_materials, trace_checked  # noqa: PLC0415
    from rftwin.materials.groups import material_model  # noqa: PLC0415
    from rftwin.materials.per_object import prior_from_labels  # noqa: PLC0415
    from rftwin.physics.engine import link_gain_db  # noqa: PLC0415
    from rftwin.scene.scene_materials import SceneMaterials  # noqa: PLC0415
    from rftwin.trace.tracer import AntennaSpec  # noqa: PLC0415
    from rftwin.twin.calibrated import CalibratedTwin  # noqa: PLC0415

    s = spec.supervision
    gain, ds_ns = measured_per_link(sup)
    mp = prior_from_labels(oc.classes, f_ref, [o.relative_permittivity for o in scene.objects],
                           [o.conductivity for o in scene.objects], strategy="label")
    labels_at = SceneMaterials(mp.eps_r, mp.sigma)  # traced at the labels; the scene is never changed
    L = len(sup.tx)
    utx = np.unique(sup.tx, axis=0)
    rx_t = target_receivers(scene, sup.rx, s.bcm_targets, spec.solver.seed)
    tx_all = np.concatenate([sup.tx, np.repeat(utx, len(rx_t), 0)])
    rx_all = np.concatenate([sup.rx, np.tile(rx_t, (len(utx), 1))])
    ps = trace_checked(scene, tx_all, rx_all, spec.solver.settings(), AntennaSpec(), AntennaSpec(), cache_dir,
                       progress, labels_at)
    thickness = [o.thickness_m for o in scene.objects]

    def labels():
        return material_model(groups, mp.eps_r[None], mp.sigma[None], thickness, fit=tuple(spec.model.fit))

    f = torch.tensor([f_ref], dtype=torch.float64)
    feats = geometry_features(ps, labels()(f), f_ref)
    cfg = NllConfig(iterations=spec.optimiser.max_iter, lr=spec.optimiser.lr, optimizer=spec.optimiser.optimizer,
                    gain_bias=s.estimate_offset or s.offset not in (None, "none"), ema=s.offset_ema,
                    seed=spec.solver.seed)

    def fit(train: np.ndarray):
        """Map from the measured links ``train``, queried at every link but the other measured ones; NLL fit."""
        bcm = BayesianChannelMap().fit(feats.subset(train), gain[train], None if ds_ns is None else ds_ns[train],
                                       reference=feats)
        links = np.concatenate([train, np.arange(L, ps.num_links)])
        model = labels()
        res = calibrate_nll(ps.select_links(torch.as_tensor(links)), model, bcm.predict(feats.subset(links)), f_ref,
                            cfg, progress=False)
        return model, res, bcm

    def predicted(model, bias: float, links: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            g = link_gain_db(ps, model(ps, f), f, check=False)[0, 0].numpy()
        return g[links] + bias

    k = min(spec.prior.folds, L)
    report: dict = {"supervision": "bcm", "targets_per_transmitter": len(rx_t), "measured_links": L}
    if k >= 2:
        fold = fold_ids(L, k, spec.solver.seed)
        lab, cal = np.full(L, np.nan), np.full(L, np.nan)
        for fo in range(k):
            test = np.nonzero(fold == fo)[0]
            model, res, _ = fit(np.nonzero(fold != fo)[0])
            cal[test] = predicted(model, res.bias_db, test) - gain[test]
            lab[test] = predicted(labels(), 0.0, test) - gain[test]
            if progress:
                print(f"bcm held-out fold {fo + 1}/{k}: label {np.sqrt(np.mean(lab[test] ** 2)):.2f} dB, "
                      f"calibrated {np.sqrt(np.mean(cal[test] ** 2)):.2f} dB", flush=True)
        heldout = {"by": "link", "folds": k, "features": {"path_gain": heldout_feature(lab, cal)}}
        report.update(heldout=heldout, verdict=verdict(heldout, "path_gain"))
    model, nres, bcm = fit(np.arange(L))
    report.update(bcm=bcm.summary(), bias_db=nres.bias_db, eta=nres.eta, nll=nres.loss)
    report["reverted_to_labels"] = report.get("verdict") == "worse"
    res = nres.result
    if report["reverted_to_labels"]:
        v = labels().select(0).values()
        res = replace(res, eps_r=v["eps_r"][0], sigma=v["sigma"][0], model=labels().select(0), offset_db=0.0)
    res = replace(res, inference=report, mechanisms=spec.solver.settings().mechanisms())
    rows = Targets.build(sup.row_link, sup.measurements.frequency_hz, sup.measurements.path_gain_db)
    return CalibratedTwin(spec=spec, scene=scene, result=res, pathset=ps.select_links(torch.arange(L)),
                          targets=rows, measurements=sup.measurements, labels=oc.classes, frequency_hz=f_ref,
                          power_law=False, config=nres.config, groups=groups, classes=oc,
                          trace_materials=calibrated_materials(res))


__all__ = ["BcmFitError", "fit_bcm", "measured_per_link", "target_receivers"]

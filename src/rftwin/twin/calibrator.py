"""``Calibrator(spec).fit(twin, measurements) -> CalibratedTwin``: the one entry point of calibration.

It reads the files the spec names (labels, MPC table, wideband sidecar, prior overrides), builds the priors and
the supervision targets, traces, and runs the model the spec asks for: per-object or grouped materials through
:func:`rftwin.calibrate.workflow.calibrate_scene` (inference under label / text / VLM priors, or a plain fit with
``--prior none``), or a neural material field (Fourier or hash-grid) trained on the traced paths. The command
line (``rftwin calibrate``) only parses options into the spec and calls this.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rftwin.calibrate.spec import CalibrationSpec
from rftwin.scene.load import TwinScene, load


@dataclass
class Supervision:
    """Measurements and what is fitted to them: ``targets`` (rows -> traced links ``tx``/``rx``), the MPC
    matcher when MPC powers are supervised (it rebuilds the targets for every trace)."""

    measurements: object
    tx: np.ndarray
    rx: np.ndarray
    row_link: np.ndarray
    targets: object
    mpc: object | None = None

    def targets_for_trace(self):
        return self.mpc if self.mpc is not None else self.targets


def read_supervision(spec: CalibrationSpec, twin: TwinScene, measurements, labels: dict | None) -> Supervision:
    """Measurements (a path or a :class:`rftwin.data.Measurements`) and the spec's MPC / wideband files as
    calibration targets."""
    from rftwin.calibrate.problem import Targets  # noqa: PLC0415
    from rftwin.data import read_measurements  # noqa: PLC0415
    from rftwin.twin_io import unique_links  # noqa: PLC0415

    s = spec.supervision
    meas = read_measurements(measurements, twin, labels=labels) if isinstance(measurements, (str, os.PathLike)) \
        else measurements
    tx, rx, row_link = unique_links(meas.tx_pos, meas.rx_pos)
    row_kw: dict = dict(delay_spread_s=meas.delay_spread_s, mean_delay_s=meas.mean_delay_s)
    if s.wideband is not None:
        from rftwin.data.wideband import read_wideband  # noqa: PLC0415

        wb = read_wideband(spec.path(s.wideband), meas)
        have = set(wb.link_ids)
        _, bw, nsc = wb.grid()
        cfr = np.full((len(meas), nsc), np.nan + 1j * np.nan, dtype=np.complex128)
        rows = [i for i, lid in enumerate(meas.link_id) if lid in have]
        cfr[rows] = wb.cfr_matrix([meas.link_id[i] for i in rows])
        row_kw.update(cfr=cfr, cfr_bandwidth_hz=bw)
    if s.mpcs is not None:
        from rftwin.calibrate.mpc_supervision import MPCSupervision  # noqa: PLC0415
        from rftwin.data.mpc import read_mpcs  # noqa: PLC0415

        mpc = MPCSupervision(meas, row_link, read_mpcs(spec.path(s.mpcs), meas), row_kw,
                             delay_gate_s=s.mpc_delay_gate, angle_gate_deg=s.mpc_angle_gate,
                             delay_reference=s.mpc_delay_reference)
        return Supervision(meas, tx, rx, row_link, None, mpc)
    return Supervision(meas, tx, rx, row_link, Targets.build(row_link, meas.frequency_hz, meas.path_gain_db,
                                                             **row_kw))


def calibration_config(spec: CalibrationSpec):
    """The optimiser / loss configuration of the per-object loop."""
    from rftwin.calibrate import CalibrationConfig, parse_terms  # noqa: PLC0415

    s, o = spec.supervision, spec.optimiser
    terms = s.terms
    if s.mpcs is not None and terms is None:
        terms = f"path_gain:{s.loss}:1,mpc_power:mse_db:1"
    return CalibrationConfig(loss=s.loss, optimizer=o.optimizer, lr=o.lr, max_iter=o.max_iter,
                             estimate_offset=s.estimate_offset, noise_db=spec.prior.noise_db,
                             refine_starts=spec.model.refine, terms=parse_terms(terms) if terms else None,
                             offset=s.offset, offset_ema=s.offset_ema, prior_weight=spec.prior.prior_weight,
                             memory_budget=spec.solver.budget_bytes())


class Calibrator:
    """Runs a :class:`CalibrationSpec` on a twin and its measurements."""

    def __init__(self, spec: CalibrationSpec | None = None):
        self.spec = CalibrationSpec() if spec is None else spec

    def fit(self, twin: TwinScene | str | os.PathLike, measurements, *, progress: bool = True,
            checkpoint_dir: str | Path | None = None, resume: bool = False, cache_dir=None):
        """Calibrate ``twin`` (a scene, scene path or built-in name) from ``measurements`` (a v1 file or a
        :class:`rftwin.data.Measurements`) and return the :class:`rftwin.twin.CalibratedTwin`. Checkpoints of
        the per-object loop go to ``checkpoint_dir`` (``resume`` continues them)."""
        from rftwin.data import read_labels  # noqa: PLC0415
        from rftwin.runtime import configure_torch_threads  # noqa: PLC0415
        from rftwin.trace.budget import use_budget  # noqa: PLC0415
        from rftwin.twin.priors import object_classes  # noqa: PLC0415

        spec = self.spec
        configure_torch_threads()
        use_budget(spec.solver.budget_bytes())
        scene = twin if isinstance(twin, TwinScene) else load(twin)
        lab = read_labels(spec.path(spec.prior.labels), scene) if spec.prior.labels else None
        sup = read_supervision(spec, scene, measurements, lab)
        f_ref = float(np.min(sup.measurements.frequency_hz))
        scene.set_frequency(f_ref)
        labels = [(lab or {}).get(n, o.label) for n, o in zip(scene.names, scene.objects)]
        oc = object_classes(spec, scene, labels, f_ref)
        if spec.model.is_field:
            return self._fit_field(scene, sup, oc, f_ref, progress, cache_dir)
        if spec.supervision.bcm:
            from rftwin.twin.bcm_fit import fit_bcm  # noqa: PLC0415

            return fit_bcm(spec, scene, sup, oc, self._groups(scene, oc), f_ref, progress, cache_dir)
        return self._fit_materials(scene, sup, oc, f_ref, progress, checkpoint_dir, resume, cache_dir)

    def _groups(self, scene: TwinScene, oc):
        """The material groups of the spec (None: one parameter set per object)."""
        from rftwin.materials.groups import resolve_groups  # noqa: PLC0415

        g = self.spec.model.groups
        return resolve_groups(g if g in (None, "label", "object") else str(self.spec.path(g)), scene.names,
                              oc.classes)

    def _fit_materials(self, scene: TwinScene, sup: Supervision, oc, f_ref: float, progress: bool,
                       checkpoint_dir, resume: bool, cache_dir):
        from rftwin.calibrate.workflow import calibrate_scene, calibrated_materials  # noqa: PLC0415
        from rftwin.twin.calibrated import CalibratedTwin  # noqa: PLC0415
        from rftwin.twin.priors import bayes_config, bayes_setup, material_prior  # noqa: PLC0415

        spec, m = self.spec, self.spec.model
        names = scene.names
        grp = self._groups(scene, oc)
        bc = bayes_config(spec)
        setup = None if bc is None else bayes_setup(spec, bc, scene, oc, f_ref, grp)
        mprior = material_prior(spec, scene, oc.classes, f_ref, setup)
        if resume and (checkpoint_dir is None or not Path(checkpoint_dir).is_dir()):
            raise ValueError(f"--resume: no checkpoints in {checkpoint_dir}")
        multi = len(np.unique(sup.measurements.frequency_hz)) > 1
        use_pl = multi if m.power_law is None else m.power_law
        cfg = calibration_config(spec)
        res, ps = calibrate_scene(scene, sup.tx, sup.rx, sup.targets_for_trace(), mprior, cfg,
                                  spec.solver.settings(), num_starts=m.starts, retrace=spec.optimiser.retrace,
                                  power_law=use_pl, seed=spec.solver.seed, fit=tuple(m.fit), diffuse=m.diffuse,
                                  checkpoint_dir=checkpoint_dir, checkpoint_every=spec.optimiser.checkpoint_every,
                                  resume=resume, global_sweeps=m.sweeps, bounded=m.bounded, groups=grp, bayes=setup,
                                  progress=progress, cache_dir=cache_dir)
        targets = sup.mpc.targets if sup.mpc is not None else sup.targets  # matched to the final trace
        labels_out = oc.classes if setup is None else [c if c != "unlabelled" else None
                                                       for c in setup.priors.classes]
        samples = None
        if spec.prior.posterior != "laplace":
            samples = posterior_samples(spec, res, ps, targets, setup, names, progress)
        return CalibratedTwin(spec=spec, scene=scene, result=res, pathset=ps, targets=targets,
                              measurements=sup.measurements, labels=labels_out, frequency_hz=f_ref, power_law=use_pl,
                              config=cfg, groups=grp, setup=setup, mpc=sup.mpc, classes=oc, samples=samples,
                              trace_materials=calibrated_materials(res))

    def _fit_field(self, scene: TwinScene, sup: Supervision, oc, f_ref: float, progress: bool, cache_dir):
        from rftwin.calibrate.workflow import trace_checked  # noqa: PLC0415
        from rftwin.fields.train import FieldTrainConfig, train_field  # noqa: PLC0415
        from rftwin.materials.per_object import prior_from_labels  # noqa: PLC0415
        from rftwin.trace.tracer import AntennaSpec  # noqa: PLC0415
        from rftwin.twin.calibrated import CalibratedTwin  # noqa: PLC0415

        spec, m = self.spec, self.spec.model
        mp = prior_from_labels(oc.classes, f_ref, [o.relative_permittivity for o in scene.objects],
                               [o.conductivity for o in scene.objects], strategy="label")
        from rftwin.scene.scene_materials import SceneMaterials  # noqa: PLC0415

        label_materials = SceneMaterials(mp.eps_r, mp.sigma)  # traced at the labels' values (scene unchanged)
        settings = spec.solver.settings()
        if m.diffuse or "scattering" in m.fit:
            from dataclasses import replace  # noqa: PLC0415

            settings = replace(settings, diffuse_reflection=True)
        ps = trace_checked(scene, sup.tx, sup.rx, settings, AntennaSpec(), AntennaSpec(), cache_dir, progress,
                           label_materials)
        targets = sup.mpc(ps) if sup.mpc is not None else sup.targets
        feats = spec.supervision.term_features()
        cfg = FieldTrainConfig(adam_iterations=m.field_iterations, lbfgs_iterations=m.field_lbfgs,
                               lr_mlp=spec.optimiser.lr, estimate_offset=spec.supervision.estimate_offset
                               or spec.supervision.offset not in (None, "none"),
                               delay_spread_weight=1.0 if "delay_spread" in feats else 0.0,
                               mpc_weight=1.0 if "mpc_power" in feats else 0.0, seed=spec.solver.seed)
        def new_field():
            return make_field(m.kind, scene, mp, f_ref, spec.solver.seed, fit_scattering="scattering" in m.fit)

        heldout = None
        if spec.prior.bayesian:  # the labels' prior on the field, its strength by K-fold CV, the held-out proof
            from rftwin.calibrate.bayes import BayesConfig  # noqa: PLC0415
            from rftwin.fields.prior import FieldPrior, fit_field_posterior  # noqa: PLC0415
            from rftwin.twin.priors import bayes_setup  # noqa: PLC0415

            op = bayes_setup(spec, BayesConfig(folds=spec.prior.folds, seed=spec.solver.seed), scene, oc, f_ref).priors
            prior = FieldPrior.from_centres(*op.centres(), f_ref, strength=spec.prior.strength or 1.0)
            if spec.prior.strength is not None:  # a given strength: no search, only the held-out check
                strengths = (spec.prior.strength,)
            else:
                from rftwin.fields.prior import STRENGTHS  # noqa: PLC0415

                strengths = STRENGTHS
            fld, res, heldout = fit_field_posterior(ps, new_field, targets, cfg, prior, spec.prior.folds,
                                                    spec.solver.seed, strengths, progress)
        else:
            fld = new_field()
            res = train_field(ps, fld, targets, cfg, progress=progress)
        return CalibratedTwin(spec=spec, scene=scene, result=res, pathset=ps, targets=targets,
                              measurements=sup.measurements, labels=oc.classes, frequency_hz=f_ref, power_law=False,
                              config=cfg, field=fld, classes=oc, mpc=sup.mpc, field_heldout=heldout,
                              trace_materials=label_materials)


def make_field(kind: str, scene: TwinScene, prior, f_ref: float, seed: int, fit_scattering: bool = False):
    """An untrained field that equals the per-object ``prior`` everywhere (power-law read-out, eps_r frequency
    independent as for the ITU dielectrics), over the scene's bounding box widened by 5 cm."""
    from rftwin.fields.fourier import FourierField  # noqa: PLC0415
    from rftwin.fields.hashgrid import HashGridField  # noqa: PLC0415

    lo, hi = scene.bbox()
    box = (lo - 0.05, hi + 0.05)
    th = [o.thickness_m for o in scene.objects]
    abcd = None if prior.power_law is None or np.isnan(prior.power_law).all() else np.nan_to_num(
        prior.power_law, nan=0.0)
    ro = {"kind": "power_law", "b_max": 0.0}
    s0 = [o.scattering_coefficient for o in scene.objects]
    kw = dict(readout=ro, reference_frequency_hz=f_ref, prior_abcd=abcd, fit_scattering=fit_scattering,
              prior_scattering=s0 if fit_scattering or any(s0) else None)
    if kind == "hashgrid":
        return HashGridField(box, th, prior.eps_r, prior.sigma, levels=6, finest_resolution=64, log2_table_size=14,
                             seed=seed, **kw)
    return FourierField(box, th, prior.eps_r, prior.sigma, num_features=32, scale=2.0, width=64, depth=3, seed=seed,
                        **kw)


def posterior_samples(spec: CalibrationSpec, res, ps, targets, setup, names: list[str], progress: bool):
    """MCMC draws of (eps_r, sigma) of every object around the calibrated optimum, under the same priors (class
    priors at the chosen strength; the loop's weak prior with ``--prior none``) and noise as the fit: batched MALA
    chains (``--posterior mcmc``) or Pyro's NUTS (``--posterior nuts``; ~50x fewer effective draws per second
    here, benchmarks/bench_mcmc.py)."""
    from rftwin.calibrate.posterior import sample_posterior  # noqa: PLC0415

    model = res.model
    free = [n for n, p in model.named_parameters() if p.requires_grad]
    if any(n not in ("u", "v") for n in free):
        raise ValueError("--posterior mcmc samples constant eps_r and sigma; this fit has power laws (several "
                         "frequencies) - use the Laplace posterior")
    kw = {}
    if setup is not None:
        e, s, se, ss = setup.priors.centres()
        lam = float((res.inference or {}).get("prior_strength") or 1.0)
        mu = {"u": np.log(np.maximum(e - 1.0, 1e-9)), "v": np.log(np.maximum(s, 1e-12))}
        sd = {"u": se, "v": ss}
        kw = dict(prior_mean=np.concatenate([mu[n] for n in free]),
                  prior_log_std=np.maximum(np.concatenate([sd[n] for n in free]), 1e-3) / np.sqrt(lam))
    noise = None if res.uncertainty is None else res.uncertainty.noise_db
    method = "mala" if spec.prior.posterior == "mcmc" else "nuts"
    return sample_posterior(ps, model, targets, noise_db=noise, estimate_offset=res.offset_mode != "none",
                            method=method, num_chains=4, num_samples=spec.prior.posterior_samples, burn_in=500,
                            seed=spec.solver.seed, object_names=names, progress=progress, **kw)

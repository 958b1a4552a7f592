"""``rftwin calibrate``: calibrate a user's scene from a measurements file."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import typer

from rftwin.cli.common import (
    Diffraction,
    Los,
    MaxDepth,
    MemoryBudget,
    Refraction,
    Samples,
    Seed,
    Specular,
    check_spread,
    console,
    fail,
    memory_budget,
    settings,
)
from rftwin.cli.outputs import check_cache, check_output_dir, staged_dir

CHECKPOINT_DIR = "checkpoint"
LIBRARY_FILE = "library.json"
MPC_MATCHES = "mpc_matches.csv"
OWNED = ("calibration.json", CHECKPOINT_DIR)  # an --out folder holding one of these is an earlier calibration


def calibration_summary(res, names: list[str]) -> dict:
    """What a run fitted and how: loss terms, gain offset (never absorbed by the materials), traced mechanisms,
    and per object the calibrated values with their Laplace std (None where not computed)."""
    u = res.uncertainty

    def std(attr: str, i: int):
        v = None if u is None else getattr(u, attr)
        return None if v is None else float(v[i])

    objs = {}
    for i, n in enumerate(names):
        rec = {"relative_permittivity": float(res.eps_r[i]), "relative_permittivity_std": std("eps_std", i),
               "conductivity": float(res.sigma[i]), "conductivity_std": std("sigma_std", i)}
        if res.scattering is not None:
            rec.update(scattering_coefficient=float(res.scattering[i]),
                       scattering_coefficient_std=std("scattering_std", i))
        if res.xpd is not None:
            rec.update(xpd_coefficient=float(res.xpd[i]), xpd_coefficient_std=std("xpd_std", i))
        objs[n] = rec
    return {"fit": list(res.fit), "loss_terms": res.terms, "loss": res.loss, "offset_mode": res.offset_mode,
            "offset_db": res.offset_db, "iterations": res.iterations, "seconds": res.seconds,
            "converged": res.converged, "resumed_at_iteration": res.resumed_at, "traced_mechanisms": res.mechanisms,
            "noise": None if u is None else u.noise, "inference": res.inference, "objects": objs}


def _roughness_map(path: Path, names: list[str]) -> list[str | float | None]:
    """Roughness class per object from a YAML/JSON mapping ``object name -> class | level | Ra (um)``."""
    import yaml  # noqa: PLC0415

    from rftwin.materials.roughness import scattering_prior  # noqa: PLC0415

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such roughness file") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML/JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping 'object name: roughness class'")
    unknown = sorted(set(doc) - set(names))
    if unknown:
        raise ValueError(f"{path}: unknown objects {unknown}; scene objects: {', '.join(names)}")
    out: list[str | float | None] = []
    for n in names:
        v = doc.get(n)
        if isinstance(v, bool):
            raise ValueError(f"{path}: object '{n}': roughness must be a class name, level 1-5 or Ra in um")
        try:
            if v is not None:
                scattering_prior(v)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path}: object '{n}': {exc}") from None
        out.append(v)
    return out


def register(app: typer.Typer) -> None:
    @app.command()
    def calibrate(scene: str = typer.Argument(..., help="Sionna XML scene (objects carry ITU radio materials) or a "
                                                       "built-in scene name."),
                  measurements: Path = typer.Argument(..., help="Measurements file v1 (CSV or Parquet)."),
                  out: Path = typer.Option(..., "--out", help="Output folder."),
                  labels: Path = typer.Option(None, "--labels", help="YAML/JSON object -> ITU material overrides."),
                  init: str = typer.Option("label", help="label | uniform | random."),
                  starts: int = typer.Option(16, help="Multi-start: starts screened inside the prior range."),
                  refine: int = typer.Option(4, help="Best screened starts refined by the optimiser."),
                  retrace: int = typer.Option(1, help="Re-trace rounds at the calibrated materials."),
                  sweeps: int = typer.Option(2, "--sweeps", help="Global per-object grid sweeps over the prior "
                                                                 "range before each local round (0 = off)."),
                  prior_spread: float = typer.Option(None, "--prior-spread",
                                                     help="Prior range = label x [1 - s, 1 + s] for eps_r and sigma "
                                                          "(default: eps_r x [1/2, 2], sigma x [1/10, 10])."),
                  bounded: bool = typer.Option(False, "--bounded/--unbounded",
                                               help="Keep eps_r and sigma inside the prior range while fitting "
                                                    "(a box prior; keeps the fit out of resonance aliases)."),
                  optimizer: str = typer.Option("lm", help="lm | adam | lbfgs."),
                  loss: str = typer.Option("mse_db", help="Path-gain loss when --terms is not given: mse_db | nae "
                                                          "| smape."),
                  terms: str = typer.Option(None, "--terms",
                                            help="Weighted loss terms FEATURE[:METRIC[:WEIGHT]],... with features "
                                                 "path_gain, delay_spread, mean_delay, cfr, mpc_power and "
                                                 "metrics mse_db, nae, smape (powers), mse [ns^2], smape, nae "
                                                 "(delays); e.g. 'path_gain:smape:1,delay_spread:smape:1' or "
                                                 "'path_gain,mpc_power:mse_db:1' (with --mpcs)."),
                  fit: str = typer.Option("eps_r,sigma", "--fit",
                                          help="Calibrated quantities: eps_r, sigma, scattering, xpd."),
                  diffuse: bool = typer.Option(None, "--diffuse/--no-diffuse",
                                               help="Trace diffuse reflection (default: when scattering/xpd are "
                                                    "fitted)."),
                  scattering: float = typer.Option(None, "--scattering",
                                                   help="Prior scattering coefficient S of every object."),
                  roughness: Path = typer.Option(None, "--roughness",
                                                 help="YAML/JSON object -> roughness class (very_smooth ... "
                                                      "very_rough, level 1-5, a surface like 'brick', or Ra in "
                                                      "um): S prior from seed 002's table."),
                  wideband: Path = typer.Option(None, "--wideband",
                                                help="Wideband sidecar (.h5/.npz: CFR or CIR taps per link_id) "
                                                     "for the 'cfr' loss term (add cfr:nmse:W to --terms)."),
                  mpcs: Path = typer.Option(None, "--mpcs",
                                            help="Multipath-component table (CSV/Parquet: link_id, delay_s, power_db, "
                                                 "optional AoA/AoD; docs/measurements.md) for the 'mpc_power' loss "
                                                 "term; MPCs are re-matched to the traced paths after every trace."),
                  mpc_delay_gate: float = typer.Option(5e-9, "--mpc-delay-gate",
                                                       help="MPC matching delay gate [s] (~1/bandwidth)."),
                  mpc_angle_gate: float = typer.Option(10.0, "--mpc-angle-gate",
                                                       help="MPC matching angle gate [deg] (~beam width)."),
                  mpc_delay_reference: str = typer.Option("absolute", "--mpc-delay-reference",
                                                          help="absolute | first (MPC delays relative to the "
                                                               "first arrival)."),
                  lr: float = typer.Option(1e-3, help="Adam learning rate."),
                  max_iter: int = typer.Option(1000, help="Iteration limit per round."),
                  power_law: bool = typer.Option(None, "--power-law/--no-power-law",
                                                 help="Fit eps=a f^b, sigma=c f^d (default: when >1 frequency)."),
                  estimate_offset: bool = typer.Option(False, "--estimate-offset",
                                                       help="Unknown absolute power reference: fit a gain offset "
                                                            "(closed form per step)."),
                  offset: str = typer.Option(None, "--offset", help="Gain offset mode: none | closed_form | ema "
                                                                    "(overrides --estimate-offset)."),
                  offset_ema: float = typer.Option(0.9, "--offset-ema", help="EMA factor lambda of --offset ema."),
                  prior_weight: float = typer.Option(0.0, "--prior-weight",
                                                     help="MAP prior weight (Gaussian on the transformed "
                                                          "parameters, std = prior range / 4); 0 = off."),
                  prior: str = typer.Option("labels", "--prior",
                                            help="labels: calibrate as inference under priors from the labels "
                                                 "(ITU value with a class spread; noise, prior strength and "
                                                 "label corrections from the data; held-out check); none: fit "
                                                 "the data alone (no priors)."),
                  prior_file: Path = typer.Option(None, "--prior-file",
                                                  help="YAML/JSON prior overrides: {classes: {CLASS: {...}}, "
                                                       "objects: {OBJECT: {class: C, ...}}} with keys "
                                                       "relative_permittivity, conductivity, log_std_eps, "
                                                       "log_std_sigma."),
                  prior_from: Path = typer.Option(None, "--prior-from",
                                                  help="Class priors from a material library (library.json, or "
                                                       "a calibrated twin folder holding one)."),
                  noise_db: float = typer.Option(None, "--noise-db",
                                                 help="Known noise std of path gains and MPC powers [dB] (default: "
                                                      "estimated from the data)."),
                  noise_ns: float = typer.Option(None, "--noise-ns",
                                                 help="Known noise std of delay spread / mean delay [ns]."),
                  likelihood: str = typer.Option("gaussian", "--likelihood",
                                                 help="gaussian | student (heavy-tailed, for outliers)."),
                  prior_strength: str = typer.Option("auto", "--prior-strength",
                                                     help="Multiplier of the label priors' precision: auto "
                                                          "(evidence maximisation) or a positive number."),
                  label_correction: bool = typer.Option(True, "--label-correction/--no-label-correction",
                                                        help="Switch labels to another material class where the "
                                                             "evidence is decisive."),
                  switch_probability: float = typer.Option(0.95, "--switch-probability",
                                                           help="Switch a label when its class posterior "
                                                                "probability falls to 1 - this."),
                  folds: int = typer.Option(5, "--folds", help="K of the held-out check (0: off)."),
                  checkpoint_every: int = typer.Option(0, "--checkpoint-every",
                                                       help="Write a checkpoint to OUT/checkpoint every N "
                                                            "iterations (0: only at the end of each round)."),
                  resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoints in OUT."),
                  max_depth: int = MaxDepth, samples_per_src: int = Samples, seed: int = Seed,
                  los: bool = Los, specular: bool = Specular, refraction: bool = Refraction,
                  groups: str = typer.Option(None, "--groups",
                                             help="Objects sharing parameters: label (one set per material label), "
                                                  "object (default) or a YAML/JSON file of glob patterns -> group."),
                  diffraction: bool = Diffraction, budget: str | None = MemoryBudget) -> None:
        """Fit eps_r and sigma (and optionally S, K_xpd) of every scene object; write materials.json, scene.xml,
        report.md and plots."""
        from rftwin.calibrate import CalibrationConfig, Targets, parse_terms  # noqa: PLC0415
        from rftwin.calibrate.inference import material_library  # noqa: PLC0415
        from rftwin.calibrate.workflow import calibrate_scene  # noqa: PLC0415
        from rftwin.data import MeasurementError, read_labels, read_measurements  # noqa: PLC0415
        from rftwin.io import write_json  # noqa: PLC0415
        from rftwin.materials import prior_from_labels  # noqa: PLC0415
        from rftwin.materials.per_object import (  # noqa: PLC0415
            FIT_QUANTITIES,
            with_label_box,
            with_roughness,
            with_scattering,
        )
        from rftwin.report import write_calibration_outputs  # noqa: PLC0415
        from rftwin.runtime import configure_torch_threads  # noqa: PLC0415
        from rftwin.scene import load  # noqa: PLC0415
        from rftwin.twin_io import unique_links  # noqa: PLC0415

        configure_torch_threads()
        check_output_dir(out, "--out", owned=OWNED)  # before any loading or tracing
        check_cache()
        check_spread(prior_spread)
        from rftwin.trace.budget import use_budget  # noqa: PLC0415

        use_budget(memory_budget(budget))
        try:
            fit_q = tuple(x.strip() for x in fit.split(",") if x.strip())
            bad = sorted(set(fit_q) - set(FIT_QUANTITIES))
            if bad or not fit_q:
                raise ValueError(f"--fit: unknown quantities {bad}; choose from {', '.join(FIT_QUANTITIES)}")
            if checkpoint_every < 0:
                raise ValueError("--checkpoint-every must be >= 0")
            bayes_cfg = _bayes_config(prior, noise_db, noise_ns, likelihood, prior_strength, label_correction,
                                      switch_probability, folds, seed, optimizer, terms, loss)
            if bayes_cfg is not None and prior_weight:
                raise ValueError("--prior-weight is the Gaussian MAP term of --prior none; with --prior labels the "
                                 "label priors' strength is --prior-strength")
            twin = load(scene)
            lab = read_labels(labels, twin) if labels else None
            meas = read_measurements(measurements, twin, labels=lab)
            if mpcs is not None and not terms:
                terms = f"path_gain:{loss}:1,mpc_power:mse_db:1"
            term_list = parse_terms(terms) if terms else None
            if bayes_cfg is not None and any(not t.least_squares for t in term_list or ()):
                raise ValueError(f"--terms {terms}: --prior labels weighs every term by its noise (Gaussian or "
                                 "Student-t likelihood); use least-squares metrics (mse_db, mse, nmse) or --prior none")
            has_mpc_term = any(t.feature == "mpc_power" for t in term_list or ())
            if has_mpc_term and mpcs is None:
                raise ValueError("--terms: the mpc_power term needs an MPC table (--mpcs FILE)")
            if mpcs is not None and not has_mpc_term:
                raise ValueError(f"--mpcs {mpcs} is given but --terms has no mpc_power term (e.g. add "
                                 "'mpc_power:mse_db:1')")
            has_cfr_term = any(t.feature == "cfr" for t in term_list or ())  # same rule as --mpcs
            if has_cfr_term and wideband is None:
                raise ValueError("--terms: the cfr term needs a wideband sidecar (--wideband FILE)")
            if wideband is not None and not has_cfr_term:
                raise ValueError(f"--wideband {wideband} is given but --terms has no cfr term (e.g. "
                                 "'--terms path_gain,cfr:nmse:1'); it would be ignored")
            cfg = CalibrationConfig(loss=loss, optimizer=optimizer, lr=lr, max_iter=max_iter,
                                    estimate_offset=estimate_offset, noise_db=noise_db, refine_starts=refine,
                                    terms=term_list, offset=offset,
                                    offset_ema=offset_ema, prior_weight=prior_weight)
            f_ref = float(np.min(meas.frequency_hz))
            twin.set_frequency(f_ref)
            names = twin.names
            obj_labels = [(lab or {}).get(n, o.label) for n, o in zip(names, twin.objects)]
            mprior = prior_from_labels(obj_labels, f_ref, [o.relative_permittivity for o in twin.objects],
                                      [o.conductivity for o in twin.objects], strategy=init, seed=seed)
            from rftwin.materials.groups import resolve_groups  # noqa: PLC0415

            grp = resolve_groups(groups, names, obj_labels)
            setup = None
            if bayes_cfg is not None:
                setup = _bayes_setup(bayes_cfg, twin, names, obj_labels, f_ref, prior_file, prior_from, fit_q, grp)
                if init == "label":
                    mprior = setup.priors.material_prior(mprior.power_law)
                setup.exponents = (np.nan_to_num(mprior.power_law[:, 1]), np.nan_to_num(mprior.power_law[:, 3])) \
                    if mprior.power_law is not None else None
            if prior_spread is not None:  # the box is around the labels whatever --init is (the help says so)
                lab_prior = mprior if (setup is not None and init == "label") else prior_from_labels(
                    obj_labels, f_ref, [o.relative_permittivity for o in twin.objects],
                    [o.conductivity for o in twin.objects], strategy="label")
                mprior = with_label_box(mprior, lab_prior, prior_spread, seed=seed, redraw=init == "random")
            if scattering is not None:
                mprior = with_scattering(mprior, scattering)
            if roughness is not None:
                mprior = with_roughness(mprior, _roughness_map(roughness, names))
            if setup is not None:  # S / K_xpd priors (roughness, --scattering) join the posterior's priors
                setup.priors.scattering = mprior.scattering if mprior.scattering is not None else \
                    setup.priors.scattering
                setup.priors.xpd = mprior.xpd if mprior.xpd is not None else setup.priors.xpd
            if resume and not (out / CHECKPOINT_DIR).is_dir():
                raise ValueError(f"--resume: no checkpoints in {out / CHECKPOINT_DIR}")
            multi = len(np.unique(meas.frequency_hz)) > 1
            use_pl = multi if power_law is None else power_law
            tx, rx, row_link = unique_links(meas.tx_pos, meas.rx_pos)
            cfr_kw = {}
            if wideband is not None:
                from rftwin.data.wideband import read_wideband  # noqa: PLC0415

                wb = read_wideband(wideband, meas)
                have = set(wb.link_ids)
                _, bw, nsc = wb.grid()
                cfr = np.full((len(meas), nsc), np.nan + 1j * np.nan, dtype=np.complex128)
                rows = [i for i, lid in enumerate(meas.link_id) if lid in have]
                cfr[rows] = wb.cfr_matrix([meas.link_id[i] for i in rows])
                cfr_kw = {"cfr": cfr, "cfr_bandwidth_hz": bw}
            row_kw = dict(delay_spread_s=meas.delay_spread_s, mean_delay_s=meas.mean_delay_s, **cfr_kw)
            supervision = None
            if mpcs is not None:
                from rftwin.calibrate.mpc_supervision import MPCSupervision  # noqa: PLC0415
                from rftwin.data.mpc import read_mpcs  # noqa: PLC0415

                supervision = MPCSupervision(meas, row_link, read_mpcs(mpcs, meas), row_kw,
                                             delay_gate_s=mpc_delay_gate, angle_gate_deg=mpc_angle_gate,
                                             delay_reference=mpc_delay_reference)
                targets = supervision
            else:
                targets = Targets.build(row_link, meas.frequency_hz, meas.path_gain_db, **row_kw)
            st = settings(max_depth, samples_per_src, seed, los, specular, refraction, diffraction)
            res, ps = calibrate_scene(twin, tx, rx, targets, mprior, cfg, st, num_starts=starts, retrace=retrace,
                                      power_law=use_pl, seed=seed, fit=fit_q, diffuse=diffuse,
                                      checkpoint_dir=out / CHECKPOINT_DIR, checkpoint_every=checkpoint_every,
                                      resume=resume, global_sweeps=sweeps, bounded=bounded, groups=grp,
                                      bayes=setup)
        except (MeasurementError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        if supervision is not None:
            targets = supervision.targets  # matched to the final trace
        out_labels = obj_labels if setup is None else [c if c != "unlabelled" else None
                                                          for c in setup.priors.classes]
        with staged_dir(out) as stage:  # all outputs appear together, or none
            write_calibration_outputs(stage, twin, res, ps, targets, meas, out_labels, f_ref, use_pl, cfg)
            summary = calibration_summary(res, names)
            if grp is not None:
                summary["groups"] = grp.table(names)
            if supervision is not None:
                from rftwin.io import write_table  # noqa: PLC0415

                table, summary["mpc"] = supervision.outputs(ps, res)
                write_table(stage / MPC_MATCHES, table)
                mp = summary["mpc"]
                console.print(f"MPC supervision: {mp['matched']} of {mp['mpcs']} MPCs matched to traced paths ("
                              + ", ".join(f"{k}: {v['matched']}/{v['mpcs']}" for k, v in mp["per_link"].items())
                              + f"); RMS power residual {mp['rms_residual_db'] or float('nan'):.2f} dB; "
                              f"{MPC_MATCHES}")
            write_json(stage / "calibration.json", summary)
            if setup is not None:
                write_json(stage / LIBRARY_FILE, material_library(res, setup, f_ref))
        if setup is not None:
            _print_inference(res.inference)
        extra = ""
        if res.scattering is not None:
            extra = " S = " + ", ".join(f"{n}: {v:.3f}" for n, v in zip(names, res.scattering)) + ";"
        console.print(f"calibrated {len(names)} objects ({', '.join(fit_q)}) from {len(meas)} measurements in "
                      f"{res.seconds:.1f} s (loss {res.loss:.3g}, offset {res.offset_db:.2f} dB, traced: "
                      f"{', '.join(res.mechanisms)});{extra} outputs in {out}")


def _bayes_config(prior: str, noise_db, noise_ns, likelihood: str, strength: str, label_correction: bool,
                  switch_probability: float, folds: int, seed: int, optimizer: str, terms, loss: str):
    """The BayesConfig of the CLI options (None for --prior none); option errors name the option."""
    from rftwin.calibrate.bayes import LIKELIHOODS, BayesConfig  # noqa: PLC0415

    if prior not in ("labels", "none"):
        raise ValueError(f"--prior: expected 'labels' or 'none', got '{prior}'")
    for name, v in (("--noise-db", noise_db), ("--noise-ns", noise_ns)):
        if v is not None and not v > 0:
            raise ValueError(f"{name} must be > 0, got {v}")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"--likelihood: expected one of {', '.join(LIKELIHOODS)}, got '{likelihood}'")
    lam = None
    if strength != "auto":
        try:
            lam = float(strength)
        except ValueError:
            lam = -1.0
        if not lam > 0:
            raise ValueError(f"--prior-strength: expected 'auto' or a positive number, got '{strength}'")
    if not 0.5 <= switch_probability < 1.0:
        raise ValueError(f"--switch-probability must lie in [0.5, 1), got {switch_probability}")
    if folds < 0 or folds == 1:
        raise ValueError(f"--folds must be 0 (off) or >= 2, got {folds}")
    if prior == "none":
        return None
    if optimizer != "lm":
        raise ValueError("--prior labels fits the posterior with Levenberg-Marquardt: drop --optimizer (or use "
                         "--prior none)")
    if loss != "mse_db":
        raise ValueError(f"--loss {loss}: --prior labels uses Gaussian (or Student-t) likelihoods; use --prior none "
                         "for the NAE / SMAPE losses")
    noise = {}
    if noise_db is not None:
        noise.update(path_gain=noise_db, mpc_power=noise_db)
    if noise_ns is not None:
        noise.update(delay_spread=noise_ns, mean_delay=noise_ns)
    return BayesConfig(noise=noise, strength=lam, likelihood=likelihood, label_correction=label_correction,
                       switch_probability=switch_probability, folds=folds, seed=seed)


def _bayes_setup(bc, twin, names: list[str], labels: list[str | None], f_ref: float, prior_file: Path | None,
                 prior_from: Path | None, fit_q: tuple[str, ...], groups=None):
    """Class priors of every object: ITU values (or a material library) plus the prior file's overrides. With
    material groups each object's prior counts 1 / (group size), so a group has one class prior; labels are not
    corrected then (a class switch is per object)."""
    from rftwin.calibrate.bayes import ObjectPriors  # noqa: PLC0415
    from rftwin.calibrate.inference import BayesSetup  # noqa: PLC0415
    from rftwin.materials.class_prior import itu_table, read_library, read_prior_file  # noqa: PLC0415

    table = itu_table(f_ref)
    if prior_from is not None:
        table.classes.update(read_library(prior_from, f_ref))
    if prior_file is not None:
        table = read_prior_file(prior_file, table, dict(zip(names, labels)))
    s = np.array([o.scattering_coefficient for o in twin.objects])
    x = np.array([o.xpd_coefficient for o in twin.objects])
    # the scene's own S / K_xpd are the prior where it has any; fitted without one, the defaults (0.2 / 0.1) are
    op = ObjectPriors(names, list(labels), table, f_ref, scattering=s if np.any(s > 0) else None,
                      xpd=x if np.any(x > 0) else None)
    for i in range(len(names)):
        op.prior_of(i)  # unknown classes fail here, before any tracing
    if groups is not None and groups.num_groups < len(names):
        op.group_sizes = np.bincount(groups.index)[groups.index].astype(np.float64)
        bc = replace(bc, label_correction=False)
    return BayesSetup(op, bc)


def _print_inference(inf: dict) -> None:
    """The verdict of the held-out check and the label switches, plainly."""
    for s in inf.get("label_switches", []):
        console.print(f"label switched: {s['object']}: {s['label']} -> {s['to']} "
                      f"(P = {s['probability']:.3f}; P(label) = {s['probability_from']:.2g})")
    h = (inf.get("heldout") or {}).get("features", {})
    for f, v in h.items():
        console.print(f"held-out {f} RMSE: labels {v['label_rmse']:.3f} {v['unit']}, calibrated "
                      f"{v['calibrated_rmse']:.3f} {v['unit']} ({inf['heldout']['folds']}-fold by link)")
    msg = {"improves": "the calibrated twin predicts held-out links better than the labels",
           "no_difference": "the calibration does not beat the labels beyond the noise on held-out links",
           "worse": "the calibration predicts held-out links WORSE than the labels"
                    + ("; the exported twin keeps the label values" if inf.get("reverted_to_labels") else "")}
    if inf.get("verdict") in msg:
        console.print(f"verdict: {msg[inf['verdict']]}")

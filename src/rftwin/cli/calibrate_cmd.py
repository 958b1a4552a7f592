"""``rftwin calibrate``: calibrate a user's scene from a measurements file."""
from __future__ import annotations

from pathlib import Path

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
    check_scene,
    console,
    fail,
)
from rftwin.cli.outputs import check_cache, check_input_file, check_output_dir

CHECKPOINT_DIR = "checkpoint"
OWNED = ("calibration.json", CHECKPOINT_DIR)  # an --out folder holding one of these is an earlier calibration
NOT_SPEC = ("out", "spec", "resume", "scene", "measurements", "ctx")  # command arguments that are not spec fields
# spec fields given as 'auto' (None) or a number: their option and what the number must be
AUTO_OR_NUMBER = {"shrinkage": ("--shrinkage", "a number in [0, 1)"),
                  "prior_strength": ("--prior-strength", "a positive number")}


def register(app: typer.Typer) -> None:
    @app.command()
    def calibrate(ctx: typer.Context,
                  scene: str = typer.Argument(..., help="Sionna XML scene (objects carry ITU radio materials) or a "
                                                        "built-in scene name."),
                  measurements: Path = typer.Argument(..., help="Measurements file v1 (CSV or Parquet)."),
                  out: Path = typer.Option(..., "--out", help="Output folder."),
                  labels: Path = typer.Option(None, "--labels", help="YAML/JSON object -> ITU material overrides."),
                  spec: Path = typer.Option(None, "--spec",
                                            help="Run the calibration a spec.json describes (written by every "
                                                 "calibration beside its results); options given here override "
                                                 "its values."),
                  model: str = typer.Option("per-object", "--model",
                                            help="Material model: per-object | groups (with --groups) | fourier | "
                                                 "hashgrid (neural material fields; write maps/)."),
                  field_iterations: int = typer.Option(600, "--field-iterations",
                                                       help="Adam iterations of a field model."),
                  field_lbfgs: int = typer.Option(100, "--field-lbfgs",
                                                  help="L-BFGS iterations after Adam (field models)."),
                  shrinkage: str = typer.Option("0", "--shrinkage",
                                                help="Hierarchical prior: objects of one class share a class "
                                                     "value and deviate from it (correlation 0-1 of their "
                                                     "deviations from the label; 0: independent objects; auto: "
                                                     "chosen by the Laplace evidence)."),
                  map_spacing: float = typer.Option(0.05, "--map-spacing",
                                                    help="Grid spacing [m] of the material maps of a field model."),
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
                                                 "'path_gain,mpc_power:mse_db:1' (with --mpcs); 'bcm' alone: "
                                                 "seed 003's Bayesian channel map of the measured gains and delay "
                                                 "spreads at --bcm-targets receivers per transmitter, fitted by "
                                                 "its NLL."),
                  bcm_targets: int = typer.Option(200, "--bcm-targets",
                                                  help="--terms bcm: channel-map target receivers per transmitter, "
                                                       "drawn in the box of the measured receivers (seeded)."),
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
                                                 "label corrections from the data; held-out check); text: the "
                                                 "classes from each label or object name by the packaged sentence "
                                                 "encoder; vlm: from scene images (--images) by a vision-language "
                                                 "model (RFTWIN_VLM_BASE_URL, RFTWIN_VLM_MODEL, RFTWIN_VLM_API_KEY), "
                                                 "text prior as fallback; none: fit the data alone (no priors)."),
                  images: list[Path] = typer.Option(None, "--images",
                                                    help="PNG scene image for --prior vlm (repeat for several)."),
                  posterior: str = typer.Option("laplace", "--posterior",
                                                help="laplace (Gaussian at the optimum) | mcmc (batched MALA chains "
                                                     "on the cached paths; ArviZ R-hat / ESS; posterior.json) | nuts "
                                                     "(Pyro's NUTS instead of MALA; slower here)."),
                  posterior_samples: int = typer.Option(2000, "--posterior-samples",
                                                        help="MCMC draws per chain after warm-up."),
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
                  likelihood: str = typer.Option("auto", "--likelihood",
                                                 help="gaussian | student (heavy-tailed, for outliers) | auto "
                                                      "(Student-t when the Gaussian fit leaves far more outlying "
                                                      "path-gain rows than it explains)."),
                  prior_strength: str = typer.Option("auto", "--prior-strength",
                                                     help="Multiplier of the label priors' precision: auto "
                                                          "(evidence maximisation) or a positive number."),
                  label_correction: bool = typer.Option(True, "--label-correction/--no-label-correction",
                                                        help="Switch labels to another material class where the "
                                                             "evidence is decisive."),
                  switch_probability: float = typer.Option(0.95, "--switch-probability",
                                                           help="Switch a label to its most probable class when "
                                                                "the label's posterior probability is at most "
                                                                "1 - this (0.5: whenever another class is more "
                                                                "probable)."),
                  label_probability: float = typer.Option(0.5, "--label-probability",
                                                          help="Prior probability that a label is right (the "
                                                               "other classes share the rest); a prior file's "
                                                               "label_probability sets it per class or object."),
                  check_switches: bool = typer.Option(False, "--check-switches/--no-check-switches",
                                                      help="Switch a label whose most probable class is another "
                                                           "one, though not decisively, when a K-fold paired "
                                                           "test on held-out rows confirms the switch."),
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
                  diffraction: bool = Diffraction, memory_budget: str | None = MemoryBudget) -> None:
        """Fit eps_r and sigma (and optionally S, K_xpd) of every scene object, or a material field; write
        materials.json (or the field), scene.xml, report.md, spec.json and plots."""
        from rftwin.calibrate.spec import SpecError  # noqa: PLC0415

        check_output_dir(out, "--out", owned=OWNED)  # before any loading or tracing
        try:
            cal_spec = spec_from_options(ctx, dict(locals()), spec)
        except SpecError as exc:
            fail(str(exc))
        check_input_file(measurements, "MEASUREMENTS")  # a typo costs no loading (content checked when read)
        check_scene(str(scene), "SCENE")
        check_cache()
        from rftwin.data import MeasurementError  # noqa: PLC0415
        from rftwin.materials.class_prior import PriorError  # noqa: PLC0415
        from rftwin.trace.budget import BudgetError  # noqa: PLC0415
        from rftwin.twin import Calibrator  # noqa: PLC0415

        try:
            twin = Calibrator(cal_spec).fit(scene, measurements, checkpoint_dir=out / CHECKPOINT_DIR, resume=resume)
        except (MeasurementError, PriorError, BudgetError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        twin.save(out)
        summary = twin.summary_
        if "mpc" in summary:
            mp = summary["mpc"]
            console.print(f"MPC supervision: {mp['matched']} of {mp['mpcs']} MPCs matched to traced paths ("
                          + ", ".join(f"{k}: {v['matched']}/{v['mpcs']}" for k, v in mp["per_link"].items())
                          + f"); RMS power residual {mp['rms_residual_db'] or float('nan'):.2f} dB; mpc_matches.csv")
        for note in summary.get("prior_notes", []):
            console.print(note)
        if summary.get("inference"):
            _print_inference(summary["inference"])
        n = len(twin.names)
        if twin.field is not None:
            console.print(f"trained a {cal_spec.model.kind} field over {n} objects from {len(twin.measurements)} "
                          f"measurements in {summary['seconds']:.1f} s (path-gain RMSE {summary['rmse_db']:.3f} dB, "
                          f"offset {summary['offset_db']:.2f} dB); field, maps/ and outputs in {out}")
            return
        res = twin.result
        from rftwin.report import PATH_CHANGE_NOTE_DB  # noqa: PLC0415 (torch: after the calibration)

        if res.path_changes and (c := res.path_changes[-1])["gain_change_rms_db"] > PATH_CHANGE_NOTE_DB:
            console.print(f"note: the last re-trace found other paths on {c['links_with_other_paths']} of "
                          f"{c['links']} links, which alone change the predicted gains by "
                          f"{c['gain_change_rms_db']:.2f} dB RMS: the paths had not settled; --retrace "
                          f"{c['retrace'] + 1} shows whether they do (report.md)")
        extra = ""
        if res.scattering is not None:
            extra = " S = " + ", ".join(f"{nm}: {v:.3f}" for nm, v in zip(twin.names, res.scattering)) + ";"
        if twin.samples is not None:
            console.print(f"MCMC posterior: {'converged' if twin.samples.converged else 'NOT converged'} "
                          "(split R-hat < 1.1); posterior.json")
        console.print(f"calibrated {n} objects ({', '.join(res.fit)}) from {len(twin.measurements)} measurements in "
                      f"{res.seconds:.1f} s (loss {res.loss:.3g}, offset {res.offset_db:.2f} dB, traced: "
                      f"{', '.join(res.mechanisms)});{extra} outputs in {out}")


def spec_from_options(ctx: typer.Context, values: dict, spec_file: Path | None):
    """The CalibrationSpec of the command line: the spec file's (when given) with every option given on the
    command line replacing its value, or the options alone. Files given on the command line are made absolute."""
    from rftwin.calibrate.spec import CalibrationSpec, SpecError, leaf_options  # noqa: PLC0415

    leaves = {opt[2:].replace("-", "_"): where for opt, where in leaf_options().items()}
    parts: dict[str, dict] = {}
    for name, (part, key) in leaves.items():
        if name not in values:
            raise SpecError(f"internal: spec field {part}.{key} has no option --{name.replace('_', '-')}")
        src = ctx.get_parameter_source(name)  # typer's own click: compare by name
        given = src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")
        if spec_file is not None and not given:
            continue
        parts.setdefault(part, {})[key] = _option_value(name, values[name])
    if spec_file is None:
        return CalibrationSpec.from_dict(parts, "command line", base_dir=Path.cwd())
    base = CalibrationSpec.read(spec_file)
    return base.replace(**parts)


def _option_value(name: str, v):
    """A command-line value in the spec's types (lists -> tuples, paths -> absolute strings, 'auto' -> None)."""
    from rftwin.calibrate.spec import SpecError  # noqa: PLC0415

    if name in AUTO_OR_NUMBER:
        if v == "auto":
            return None
        try:
            return float(v)
        except ValueError:
            option, what = AUTO_OR_NUMBER[name]
            raise SpecError(f"{option}: expected 'auto' or {what}, got '{v}'") from None
    if name == "fit":
        return tuple(x.strip() for x in v.split(",") if x.strip())
    if isinstance(v, Path):
        return str(v.resolve())
    if isinstance(v, (list, tuple)):
        return tuple(str(Path(x).resolve()) if isinstance(x, Path) else x for x in v)
    return v


def _print_inference(inf: dict) -> None:
    """The verdict of the held-out check and the label switches, plainly."""
    from rftwin.report import outlier_hint  # noqa: PLC0415 (torch: after the calibration)

    for s in inf.get("label_switches", []):
        console.print(f"label switched: {s['object']}: {s['from']} -> {s['to']} "
                      f"(P = {s['probability']:.3f}; P(label) = {s['probability_from']:.2g})")
    h = (inf.get("heldout") or {}).get("features", {})
    for f, v in h.items():
        console.print(f"held-out {f} RMSE: labels {v['label_rmse']:.3f} {v['unit']}, calibrated "
                      f"{v['calibrated_rmse']:.3f} {v['unit']} ({inf['heldout']['folds']}-fold by link)")
    msg = {"improves": "the calibrated twin predicts held-out links better than the labels",
           "no_difference": "the calibration does not beat the labels beyond the noise on held-out links",
           "worse": "the calibration predicts held-out links WORSE than the labels, beyond the noise"
                    + ("; the exported twin keeps the label values" if inf.get("reverted_to_labels") else "")}
    if inf.get("verdict") in msg:
        console.print(f"verdict: {msg[inf['verdict']]}")
    if hint := outlier_hint(inf):
        console.print(f"note: {hint}")

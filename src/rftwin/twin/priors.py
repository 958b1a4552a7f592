"""The priors of a calibration, from its spec: material classes of the objects (from labels, from the text prior
of their names or from a vision-language model), class priors with their spreads, S / K_xpd priors from
roughness classes, and the Bayesian configuration (noise, likelihood, strength, label correction, folds)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rftwin.calibrate.bayes import BayesConfig, ObjectPriors
from rftwin.calibrate.inference import BayesSetup
from rftwin.calibrate.spec import CalibrationSpec
from rftwin.materials.class_prior import ClassPrior, itu_table, read_library, read_prior_file
from rftwin.materials.groups import MaterialGroups
from rftwin.materials.per_object import (
    MaterialPrior,
    prior_from_labels,
    with_label_box,
    with_roughness,
    with_scattering,
)
from rftwin.scene.load import TwinScene


@dataclass
class ObjectClasses:
    """Material class of every object and where it came from (``source[i]``: label | text | vlm | none), with the
    text / VLM prior's own centre and spread where it gave one (``priors[i]``, a ClassPrior or None)."""

    classes: list[str | None]
    source: list[str]
    priors: list[ClassPrior | None]
    notes: list[str]


def roughness_map(path: Path, names: list[str]) -> list[str | float | None]:
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


def object_classes(spec: CalibrationSpec, twin: TwinScene, labels: list[str | None], f_ref: float
                   ) -> ObjectClasses:
    """Class of every object under ``spec.prior.kind``: the labels as given (labels, none); the text prior of each
    object's label, or of its name where it has none (text); the VLM's answer from the scene images, falling back
    to the text prior per object where the reply is invalid (vlm). Unmatched names stay unlabelled."""
    kind = spec.prior.kind
    K = len(labels)
    if kind in ("labels", "none"):
        return ObjectClasses(list(labels), ["label" if lab else "none" for lab in labels], [None] * K, [])
    if kind == "text":
        from rftwin.priors.labels import label_priors  # noqa: PLC0415

        lps = label_priors([lab or n for lab, n in zip(labels, twin.names)], f_ref)
        src, notes = ["text"] * K, []
    else:
        from rftwin.priors.vlm import PNG_SIGNATURE, VLMClient, VLMError  # noqa: PLC0415

        try:
            client = VLMClient()
        except VLMError as exc:
            raise ValueError(f"--prior vlm: {exc}") from None
        images = [spec.path(p) for p in spec.prior.images]
        for p in images:
            if not p.is_file():
                raise ValueError(f"--images: {p}: no such file")
            with open(p, "rb") as fh:
                if fh.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                    raise ValueError(f"--images: {p}: not a PNG file (expected a PNG scene image)")
        prop = client.propose_materials(twin, f_ref, images=images)
        lps, src, notes = prop.priors, list(prop.source), prop.message.splitlines()
    from rftwin.materials.class_prior import PriorError, itu_class_prior  # noqa: PLC0415

    classes: list[str | None] = []
    priors: list[ClassPrior | None] = []
    for name, lp in zip(twin.names, lps):
        defined = lp.matched
        if defined:
            try:
                itu_class_prior(lp.material, f_ref)
            except (PriorError, ValueError) as exc:  # e.g. ITU floorboard exists only above 50 GHz
                notes.append(f"{name}: {kind} prior '{lp.material}' is not usable at {f_ref / 1e9:g} GHz ({exc}); "
                             "left unlabelled")
                defined = False
        if not defined:
            classes.append(None)
            priors.append(None)
            continue
        classes.append(lp.material)
        priors.append(ClassPrior(lp.material, lp.eps_r, lp.sigma, max(lp.log_std_eps, 1e-3),
                                 max(lp.log_std_sigma, 1e-3), f_ref, lp.source))
    return ObjectClasses(classes, src, priors, notes)


def bayes_config(spec: CalibrationSpec) -> BayesConfig | None:
    """The inference settings of the spec (None for ``--prior none``)."""
    p = spec.prior
    if not p.bayesian or spec.model.is_field:
        return None
    noise = {}
    if p.noise_db is not None:
        noise.update(path_gain=p.noise_db, mpc_power=p.noise_db)
    if p.noise_ns is not None:
        noise.update(delay_spread=p.noise_ns, mean_delay=p.noise_ns)
    return BayesConfig(noise=noise, strength=p.strength, likelihood=p.likelihood,
                       label_correction=p.label_correction, switch_probability=p.switch_probability,
                       label_mass=p.label_probability,
                       check_switches=p.check_switches,
                       folds=p.folds, seed=spec.solver.seed, shrinkage_auto=spec.model.shrinkage is None)


def bayes_setup(spec: CalibrationSpec, bc: BayesConfig, twin: TwinScene, oc: ObjectClasses, f_ref: float,
                groups: MaterialGroups | None = None) -> BayesSetup:
    """Class priors of every object: ITU values (or a material library), the text / VLM prior's own centre and
    spread where it gave one, then the prior file's overrides. With material groups each object's prior counts
    1 / (group size), so a group has one class prior, and label correction switches a group's class as one."""
    names = twin.names
    table = itu_table(f_ref)
    if spec.prior.prior_from is not None:
        table.classes.update(read_library(spec.path(spec.prior.prior_from), f_ref))
    for n, cp in zip(names, oc.priors):
        if cp is not None:
            table.objects[n] = cp
    if spec.prior.prior_file is not None:
        table = read_prior_file(spec.path(spec.prior.prior_file), table, dict(zip(names, oc.classes)))
    s = np.array([o.scattering_coefficient for o in twin.objects])
    x = np.array([o.xpd_coefficient for o in twin.objects])
    # the scene's own S / K_xpd are the prior where it has any; fitted without one, the defaults (0.2 / 0.1) are
    op = ObjectPriors(names, list(oc.classes), table, f_ref, scattering=s if np.any(s > 0) else None,
                      xpd=x if np.any(x > 0) else None)
    op.shrinkage = spec.model.shrinkage or 0.0  # 'auto' (None) starts independent; the evidence picks rho later
    for i in range(len(names)):
        op.prior_of(i)  # unknown classes fail here, before any tracing
    if groups is not None and groups.num_groups < len(names):
        op.group_sizes = np.bincount(groups.index)[groups.index].astype(np.float64)
        op.group_index, op.group_names = np.asarray(groups.index), list(groups.names)
    return BayesSetup(op, bc)


def material_prior(spec: CalibrationSpec, twin: TwinScene, classes: list[str | None], f_ref: float,
                   setup: BayesSetup | None) -> MaterialPrior:
    """Start values and ranges of the calibration (and the S / K_xpd priors, which join the posterior's)."""
    m = spec.model
    eps0 = [o.relative_permittivity for o in twin.objects]
    sig0 = [o.conductivity for o in twin.objects]
    mprior = prior_from_labels(classes, f_ref, eps0, sig0, strategy=m.init, seed=spec.solver.seed)
    if setup is not None:
        if m.init == "label":
            mprior = setup.priors.material_prior(mprior.power_law)
        setup.exponents = (np.nan_to_num(mprior.power_law[:, 1]), np.nan_to_num(mprior.power_law[:, 3])) \
            if mprior.power_law is not None else None
    if m.prior_spread is not None:  # the box is around the labels whatever --init is
        lab_prior = mprior if (setup is not None and m.init == "label") else prior_from_labels(
            classes, f_ref, eps0, sig0, strategy="label")
        mprior = with_label_box(mprior, lab_prior, m.prior_spread, seed=spec.solver.seed, redraw=m.init == "random")
    if m.scattering is not None:
        mprior = with_scattering(mprior, m.scattering)
    if m.roughness is not None:
        mprior = with_roughness(mprior, roughness_map(spec.path(m.roughness), twin.names))
    if setup is not None:  # S / K_xpd priors (roughness, --scattering) join the posterior's priors
        if mprior.scattering is not None:
            setup.priors.scattering = mprior.scattering
        if mprior.xpd is not None:
            setup.priors.xpd = mprior.xpd
    return mprior

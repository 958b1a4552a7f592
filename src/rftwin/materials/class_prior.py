"""Per-class material priors: the ITU-R P.2040 value of a label with an uncertainty, plausible ranges, and material
libraries (a calibrated twin's posterior per class, reused as the prior of another scene).

Coordinates (DESIGN.md): u = log(eps_r - 1), v = log(sigma / (S/m)), w = logit(S), x = logit(K_xpd). The prior of
an object labelled with class c is Gaussian in these coordinates (log-normal in eps_r - 1 and sigma), centred on
the class value at the reference frequency with the class's log-std.

Default spreads (docs/calibration.md, "Priors from labels"): measured permittivities of one building-material class
spread over roughly +-35 % in eps_r - 1 (concrete 4-9, brick 3.5-5.5, glass 4.5-8, wood 1.6-2.8 across published
campaigns), so std(u) = 0.3; conductivities of one class vary by about an order of magnitude with moisture and
composition, so std(v) = 1.0 (a factor 2.7 per std). S and K_xpd: std 1.0 in logit space around the roughness
prior (or 0.2 / 0.1). These are defaults; a prior file overrides them per class or per object.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rftwin.materials.itu import ITU_NAMES, ITU_TABLE, itu_power_law

DEFAULT_LOG_STD_EPS = 0.3  # std of log(eps_r - 1) within one material class
DEFAULT_LOG_STD_SIGMA = 1.0  # std of log(sigma) within one material class
DEFAULT_LOGIT_STD = 1.0  # std of logit(S) and logit(K_xpd)
METAL_EPS_R = 1.0 + 1e-6  # metal: eps_r is irrelevant next to sigma = 1e7 S/m (kept just above 1 for the log)
# Plausible ranges of exported values (building materials from vacuum-like foams to wet ground and metal).
PLAUSIBLE = {"eps_r": (1.0, 30.0), "sigma": (1e-5, 1e8), "scattering": (0.0, 1.0), "xpd": (0.0, 1.0)}
LIBRARY_FORMAT = "rftwin-material-library"


class PriorError(ValueError):
    """A prior file or option that cannot be used (names the file, key and what was expected)."""


@dataclass(frozen=True)
class ClassPrior:
    """Prior of one material class at ``frequency_hz``: centre (eps_r, sigma [S/m]) and log-space stds."""

    name: str
    eps_r: float
    sigma: float
    log_std_eps: float = DEFAULT_LOG_STD_EPS
    log_std_sigma: float = DEFAULT_LOG_STD_SIGMA
    frequency_hz: float = 3.5e9
    source: str = "itu"  # itu | library | override
    label_probability: float | None = None  # prior probability that a label of this class (object) is right

    @property
    def mu(self) -> tuple[float, float]:
        return math.log(max(self.eps_r - 1.0, 1e-12)), math.log(max(self.sigma, 1e-30))


@dataclass
class PriorTable:
    """Class priors by name plus per-object overrides (object name -> ClassPrior)."""

    classes: dict[str, ClassPrior]
    objects: dict[str, ClassPrior] = field(default_factory=dict)

    def for_object(self, name: str, label: str | None) -> ClassPrior:
        if name in self.objects:
            return self.objects[name]
        if label is None or label not in self.classes:
            raise PriorError(f"object '{name}': no prior for label {label!r} (known classes: "
                             f"{', '.join(sorted(self.classes))})")
        return self.classes[label]


def candidate_classes(frequency_hz: float) -> list[str]:
    """ITU classes defined at ``frequency_hz`` (metal included, vacuum excluded): label-correction candidates."""
    out = []
    for n in ITU_NAMES:
        if n == "vacuum":
            continue
        try:
            itu_power_law(n, frequency_hz)
        except ValueError:
            continue
        out.append(n)
    return out


def itu_class_prior(name: str, frequency_hz: float) -> ClassPrior:
    """The ITU value of class ``name`` at ``frequency_hz`` with the default spreads (metal: eps_r fixed)."""
    if name not in ITU_TABLE:
        raise PriorError(f"unknown material class '{name}'; expected one of: {', '.join(ITU_NAMES)}")
    eps, sig = itu_power_law(name, frequency_hz).eval(frequency_hz)
    if name == "metal":
        return ClassPrior(name, METAL_EPS_R, sig, 0.1, DEFAULT_LOG_STD_SIGMA, frequency_hz)
    return ClassPrior(name, max(eps, 1.0 + 1e-6), max(sig, 1e-12), frequency_hz=frequency_hz)


def itu_table(frequency_hz: float) -> PriorTable:
    return PriorTable({n: itu_class_prior(n, frequency_hz) for n in candidate_classes(frequency_hz)})


def _positive(doc: Mapping, key: str, where: str) -> float | None:
    if key not in doc:
        return None
    v = doc[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise PriorError(f"{where}: '{key}' must be a positive number, got {v!r}")
    return float(v)


_OVERRIDE_KEYS = {"relative_permittivity", "conductivity", "log_std_eps", "log_std_sigma", "label_probability",
                  "class"}


def _override(base: ClassPrior, doc: object, where: str) -> ClassPrior:
    if not isinstance(doc, Mapping):
        raise PriorError(f"{where}: expected a mapping with any of {sorted(_OVERRIDE_KEYS)}, got {doc!r}")
    unknown = sorted(set(doc) - _OVERRIDE_KEYS)
    if unknown:
        raise PriorError(f"{where}: unknown keys {unknown}; expected any of {sorted(_OVERRIDE_KEYS)}")
    eps = _positive(doc, "relative_permittivity", where)
    if eps is not None and eps < 1.0:
        raise PriorError(f"{where}: 'relative_permittivity' must be >= 1, got {eps}")
    lp = _positive(doc, "label_probability", where)
    if lp is not None and not lp < 1.0:
        raise PriorError(f"{where}: 'label_probability' must lie in (0, 1), got {lp}")
    return ClassPrior(base.name, eps if eps is not None else base.eps_r,
                      _positive(doc, "conductivity", where) or base.sigma,
                      _positive(doc, "log_std_eps", where) or base.log_std_eps,
                      _positive(doc, "log_std_sigma", where) or base.log_std_sigma, base.frequency_hz, "override",
                      lp if lp is not None else base.label_probability)


def apply_overrides(table: PriorTable, doc: object, source: str, object_labels: Mapping[str, str | None]
                    ) -> PriorTable:
    """Overrides from a parsed prior file: ``{classes: {CLASS: {...}}, objects: {OBJECT: {class: C, ...}}}`` with
    keys relative_permittivity, conductivity, log_std_eps, log_std_sigma, label_probability (the prior probability
    that a label of that class, or that object's label, is right; label correction) and, for objects, ``class``."""
    if not isinstance(doc, Mapping) or not set(doc) <= {"classes", "objects"}:
        raise PriorError(f"{source}: expected a mapping with keys 'classes' and/or 'objects'")
    classes = dict(table.classes)
    for name, spec in (doc.get("classes") or {}).items():
        if name not in classes:
            raise PriorError(f"{source}: classes: unknown class '{name}'; expected one of: "
                             f"{', '.join(sorted(classes))}")
        classes[name] = _override(classes[name], spec, f"{source}: classes: {name}")
    objects = dict(table.objects)
    for name, spec in (doc.get("objects") or {}).items():
        if name not in object_labels:
            raise PriorError(f"{source}: objects: unknown object '{name}'; scene objects: "
                             f"{', '.join(sorted(object_labels))}")
        cls = spec.get("class", object_labels[name]) if isinstance(spec, Mapping) else object_labels[name]
        if cls not in classes:
            raise PriorError(f"{source}: objects: {name}: unknown class {cls!r}; expected one of: "
                             f"{', '.join(sorted(classes))}")
        objects[name] = _override(classes[cls], spec, f"{source}: objects: {name}")
    return PriorTable(classes, objects)


def read_prior_file(path: str | Path, table: PriorTable, object_labels: Mapping[str, str | None]) -> PriorTable:
    """:func:`apply_overrides` from a YAML/JSON file (safe loader: data only)."""
    import yaml  # noqa: PLC0415

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise PriorError(f"{p}: no such prior file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PriorError(f"{p}: not valid YAML/JSON: {exc}") from None
    return apply_overrides(table, doc, str(p), object_labels)


# ------------------------------------------------------------------------------------------ material library
def library_document(names: Sequence[str], labels: Sequence[str], post_mean: Mapping[str, np.ndarray],
                     post_std: Mapping[str, np.ndarray], prior_mean: Mapping[str, np.ndarray],
                     prior_std: Mapping[str, np.ndarray], frequency_hz: float, strength: float = 1.0,
                     min_log_std: float = 0.05) -> dict:
    """A material library from a calibrated twin (keys ``eps`` = log(eps_r - 1), ``sigma`` = log sigma; arrays
    [K]).

    Each object's posterior N(m_k, s_k^2) under the prior N(mu_k, t_k^2 / strength) carries the data's information
    1/s_k^2 - strength/t_k^2 (Gaussian division); a class pools its objects' information on top of the class's
    default prior N(mu, t^2), and the between-object spread of the data-informed objects is added to its std
    (floored at ``min_log_std``). Objects the data did not inform leave the class at its prior."""
    classes: dict[str, dict] = {}
    for c in sorted(set(labels)):
        idx = [i for i, lab in enumerate(labels) if lab == c]
        entry: dict = {"objects": [names[i] for i in idx], "frequency_hz": float(frequency_hz)}
        for key in ("eps", "sigma"):
            m, s = np.asarray(post_mean[key])[idx], np.asarray(post_std[key])[idx]
            mu, t = np.asarray(prior_mean[key])[idx], np.asarray(prior_std[key])[idx]
            prec_post = 1.0 / np.maximum(s, 1e-9) ** 2
            info = np.maximum(prec_post - strength / t**2, 0.0)  # the data's precision per object
            # data-only mean of each object: (m prec_post - mu strength / t^2) / info
            with np.errstate(divide="ignore", invalid="ignore"):
                data_mean = np.where(info > 0, (m * prec_post - mu * strength / t**2) / np.where(info > 0, info, 1),
                                     m)
            prec = 1.0 / t[0] ** 2 + info.sum()
            mean = float((mu[0] / t[0] ** 2 + (info * data_mean).sum()) / prec)
            informed = info > 0.25 / t**2  # objects whose data carry at least a quarter of the prior's precision
            spread = float(np.std(data_mean[informed])) if informed.sum() > 1 else 0.0
            entry[f"log_{key}"] = mean
            entry[f"log_std_{key}"] = float(max(math.sqrt(1.0 / prec + spread**2), min_log_std))
        entry["relative_permittivity"] = 1.0 + math.exp(entry["log_eps"])
        entry["conductivity"] = math.exp(entry["log_sigma"])
        classes[c] = entry
    return {"format": LIBRARY_FORMAT, "version": 1, "frequency_hz": float(frequency_hz), "classes": classes}


def read_library(path: str | Path, frequency_hz: float) -> dict[str, ClassPrior]:
    """Class priors from a material library (``library.json`` or a twin folder holding one). The library holds
    values at its own frequency; at another frequency each class keeps its calibrated offset from the ITU power
    law (eps_r - 1 and sigma scaled by library / ITU at the library frequency)."""
    p = Path(path)
    if p.is_dir():
        p = p / "library.json"
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise PriorError(f"{p}: no material library here (calibrate writes library.json into its output)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PriorError(f"{p}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != LIBRARY_FORMAT or not isinstance(doc.get("classes"), dict):
        raise PriorError(f"{p}: not an rftwin material library (expected 'format': '{LIBRARY_FORMAT}' and "
                         "'classes')")
    f_lib = _positive(doc, "frequency_hz", str(p))
    out = {}
    for c, e in doc["classes"].items():
        where = f"{p}: classes: {c}"
        if c not in ITU_TABLE:
            raise PriorError(f"{where}: unknown material class; expected one of: {', '.join(ITU_NAMES)}")
        if not isinstance(e, dict):
            raise PriorError(f"{where}: expected a mapping")
        vals = {}
        for k in ("log_eps", "log_sigma", "log_std_eps", "log_std_sigma"):
            x = e.get(k)
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise PriorError(f"{where}: '{k}' must be a finite number, got {x!r}")
            vals[k] = float(x)
        for k in ("log_std_eps", "log_std_sigma"):
            if vals[k] <= 0:
                raise PriorError(f"{where}: '{k}' must be > 0, got {vals[k]}")
        eps, sig = 1.0 + math.exp(vals["log_eps"]), math.exp(vals["log_sigma"])
        if abs(frequency_hz - f_lib) > 1e-6 * f_lib:
            try:
                e0, s0 = itu_power_law(c, f_lib).eval(f_lib)
                e1, s1 = itu_power_law(c, frequency_hz).eval(frequency_hz)
            except ValueError as exc:
                raise PriorError(f"{where}: cannot move the library from {f_lib:g} Hz to {frequency_hz:g} Hz: "
                                 f"{exc}") from None
            eps = 1.0 + (eps - 1.0) * max(e1 - 1.0, 1e-12) / max(e0 - 1.0, 1e-12)
            sig = sig * max(s1, 1e-30) / max(s0, 1e-30)
        out[c] = ClassPrior(c, eps, sig, vals["log_std_eps"], vals["log_std_sigma"], frequency_hz, "library")
    return out


__all__ = ["DEFAULT_LOG_STD_EPS", "DEFAULT_LOG_STD_SIGMA", "DEFAULT_LOGIT_STD", "LIBRARY_FORMAT", "PLAUSIBLE",
           "ClassPrior", "PriorError", "PriorTable", "apply_overrides", "candidate_classes", "itu_class_prior",
           "itu_table", "library_document", "read_library", "read_prior_file"]

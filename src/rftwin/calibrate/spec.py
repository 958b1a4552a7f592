"""``CalibrationSpec``: everything that says how a calibration is made, as one validated, composed dataclass.

The spec has five parts: the material ``model``, the ``supervision`` terms, the ``prior``, the ``optimiser`` and
the ``solver`` (tracing) settings. :class:`rftwin.twin.Calibrator` runs it; ``rftwin calibrate`` parses its options
into it (each leaf field is one command-line option, named by :func:`option_name`; a test keeps the two in step);
:meth:`CalibrationSpec.write` stores it next to the results (``spec.json``) and ``rftwin calibrate --spec FILE``
runs it again. Files named in a spec (labels, prior file, wideband sidecar, ...) are stored as given and resolved
against the folder of the spec file that names them. Validation errors name the command-line option.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODELS = ("per-object", "groups", "fourier", "hashgrid")
FIELD_MODELS = ("fourier", "hashgrid")
PRIORS = ("labels", "text", "vlm", "none")
POSTERIORS = ("laplace", "mcmc", "nuts")
INITS = ("label", "uniform", "random")
OPTIMIZERS = ("lm", "adam", "lbfgs")
LOSSES = ("mse_db", "nae", "smape")
OFFSETS = ("none", "closed_form", "ema")
LIKELIHOODS = ("gaussian", "student", "auto")
FIT_QUANTITIES = ("eps_r", "sigma", "scattering", "xpd")
SPEC_FORMAT = 1

# leaf fields whose command-line option is not "--" + name with "-" for "_"
OPTION_NAMES = {("prior", "kind"): "--prior", ("model", "kind"): "--model", ("solver", "memory_budget"):
                "--memory-budget", ("prior", "strength"): "--prior-strength"}


class SpecError(ValueError):
    """An invalid calibration spec; the message names the option (or spec file and key)."""


def _paths(*names: str):
    return names


@dataclass(frozen=True)
class ModelSpec:
    """Material model: ``kind`` per-object | groups (needs ``groups``) | fourier | hashgrid (neural fields)."""

    kind: str = "per-object"
    groups: str | None = None  # label | object | a YAML/JSON file of glob patterns -> group
    fit: tuple[str, ...] = ("eps_r", "sigma")
    power_law: bool | None = None  # eps = a f^b, sigma = c f^d (None: when several frequencies)
    init: str = "label"
    starts: int = 16
    refine: int = 4
    sweeps: int = 2
    prior_spread: float | None = None
    bounded: bool = False
    scattering: float | None = None  # prior S of every object
    roughness: str | None = None  # YAML/JSON object -> roughness class
    diffuse: bool | None = None
    field_iterations: int = 600  # Adam iterations of a field model
    field_lbfgs: int = 100  # L-BFGS iterations after Adam (field models)
    map_spacing: float = 0.05  # grid spacing [m] of the material maps a field model writes
    shrinkage: float | None = 0.0  # hierarchical prior: within-class correlation of the objects' deviations
    # (0: none; None = 'auto': chosen by the Laplace evidence over a grid)
    FILES = _paths("roughness")

    def check(self) -> None:
        if self.kind not in MODELS:
            raise SpecError(f"--model: expected one of {', '.join(MODELS)}, got '{self.kind}'")
        if self.kind == "groups" and not self.groups:
            raise SpecError("--model groups needs --groups (label, object or a groups file)")
        bad = sorted(set(self.fit) - set(FIT_QUANTITIES))
        if bad or not self.fit:
            raise SpecError(f"--fit: unknown quantities {bad}; choose from {', '.join(FIT_QUANTITIES)}")
        if self.init not in INITS:
            raise SpecError(f"--init: expected one of {', '.join(INITS)}, got '{self.init}'")
        for name in ("starts", "refine"):
            if getattr(self, name) < 1:
                raise SpecError(f"--{name} must be >= 1, got {getattr(self, name)}")
        for name in ("sweeps", "field_iterations", "field_lbfgs"):
            if getattr(self, name) < 0:
                raise SpecError(f"{option_name('model', name)} must be >= 0, got {getattr(self, name)}")
        if self.prior_spread is not None and not 0.0 < self.prior_spread < 1.0:
            raise SpecError(f"--prior-spread must lie in (0, 1), got {self.prior_spread}")
        if self.scattering is not None and not 0.0 <= self.scattering <= 1.0:
            raise SpecError(f"--scattering must lie in [0, 1], got {self.scattering}")
        if self.shrinkage is not None and not 0.0 <= self.shrinkage < 1.0:
            raise SpecError(f"--shrinkage must be 'auto' or lie in [0, 1), got {self.shrinkage}")
        if self.shrinkage != 0.0 and (self.groups not in (None, "object") or self.is_field):
            raise SpecError("--shrinkage ties the objects of a class loosely; --groups ties them exactly and a "
                            "field has no per-object parameters: use one of them")
        if not self.map_spacing > 0:
            raise SpecError(f"--map-spacing must be > 0, got {self.map_spacing}")
        if self.kind in FIELD_MODELS:
            if set(self.fit) - {"eps_r", "sigma"} - ({"scattering", "xpd"} if "scattering" in self.fit else set()):
                raise SpecError("--fit: a field model fits eps_r and sigma (and S, K_xpd together)")
            if self.groups:
                raise SpecError(f"--groups: a field model ({self.kind}) has no material groups")

    @property
    def is_field(self) -> bool:
        return self.kind in FIELD_MODELS


@dataclass(frozen=True)
class SupervisionSpec:
    """What the calibration fits: loss terms and the files beside the measurements that feed them."""

    terms: str | None = None  # FEATURE[:METRIC[:WEIGHT]],... (None: path gain with ``loss``)
    loss: str = "mse_db"
    wideband: str | None = None  # CFR / CIR sidecar (.h5 / .npz) for the cfr term
    mpcs: str | None = None  # MPC table for the mpc_power term
    mpc_delay_gate: float = 5e-9  # s
    mpc_angle_gate: float = 10.0  # deg
    mpc_delay_reference: str = "absolute"
    estimate_offset: bool = False
    offset: str | None = None
    offset_ema: float = 0.9
    bcm_targets: int = 200  # --terms bcm: channel-map target receivers per transmitter
    FILES = _paths("wideband", "mpcs")

    @property
    def bcm(self) -> bool:
        """True when the supervision is seed 003's Bayesian channel map (``--terms bcm``)."""
        return self.terms is not None and any(p.split(":")[0].strip() == "bcm" for p in self.terms.split(","))

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise SpecError(f"--loss: expected one of {', '.join(LOSSES)}, got '{self.loss}'")
        if self.offset is not None and self.offset not in OFFSETS:
            raise SpecError(f"--offset: expected one of {', '.join(OFFSETS)}, got '{self.offset}'")
        if self.mpc_delay_reference not in ("absolute", "first"):
            raise SpecError(f"--mpc-delay-reference: expected absolute or first, got '{self.mpc_delay_reference}'")
        if not 0.0 < self.offset_ema < 1.0:
            raise SpecError(f"--offset-ema must lie in (0, 1), got {self.offset_ema}")
        for name in ("mpc_delay_gate", "mpc_angle_gate"):
            if not getattr(self, name) > 0:
                raise SpecError(f"{option_name('supervision', name)} must be > 0, got {getattr(self, name)}")
        if self.bcm_targets < 1:
            raise SpecError(f"--bcm-targets must be >= 1, got {self.bcm_targets}")
        if self.bcm:
            if self.terms.strip() != "bcm":
                raise SpecError(f"--terms: 'bcm' stands alone (the channel map is built from the measured path gains "
                                f"and delay spreads, so it replaces the direct terms), got '{self.terms}'")
            if self.mpcs or self.wideband:
                raise SpecError("--terms bcm: the channel map uses path gain and delay spread; drop --mpcs/--wideband")
        elif self.terms is not None:
            from rftwin.calibrate.losses import parse_terms  # noqa: PLC0415

            try:
                parse_terms(self.terms)
            except ValueError as exc:
                raise SpecError(f"--terms: {exc}") from None

    def term_features(self) -> set[str]:
        """Features of ``terms`` (path gain alone without terms; an MPC table adds mpc_power)."""
        if self.terms is None:
            return {"path_gain", "mpc_power"} if self.mpcs else {"path_gain"}
        if self.bcm:
            return {"path_gain", "delay_spread"}
        from rftwin.calibrate.losses import parse_terms  # noqa: PLC0415

        return {t.feature for t in parse_terms(self.terms)}


@dataclass(frozen=True)
class PriorSpec:
    """Prior knowledge: ``kind`` labels (ITU value of each label with a class spread), text (the label or object
    name mapped to an ITU class by the packaged sentence encoder), vlm (scene images -> class with confidence,
    from an OpenAI-compatible endpoint; text prior as fallback) or none (fit the data alone)."""

    kind: str = "labels"
    labels: str | None = None  # YAML/JSON object -> ITU material overrides
    prior_file: str | None = None
    prior_from: str | None = None
    images: tuple[str, ...] = ()  # PNG scene images for the VLM prior
    noise_db: float | None = None
    noise_ns: float | None = None
    likelihood: str = "auto"
    strength: float | None = None  # None: evidence maximisation
    label_correction: bool = True
    switch_probability: float = 0.95  # 0.5: the most probable class of the label-class mixture
    label_probability: float = 0.5  # prior probability that a label is right (the prior file may set it per class)
    check_switches: bool = False  # a most probable, not decisive class: switch when held-out rows confirm it
    folds: int = 5
    prior_weight: float = 0.0  # Gaussian MAP weight of --prior none
    posterior: str = "laplace"
    posterior_samples: int = 2000  # MCMC draws per chain after warm-up
    FILES = _paths("labels", "prior_file", "prior_from", "images")

    def check(self) -> None:
        if self.kind not in PRIORS:
            raise SpecError(f"--prior: expected one of {', '.join(PRIORS)}, got '{self.kind}'")
        for name in ("noise_db", "noise_ns"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise SpecError(f"{option_name('prior', name)} must be > 0, got {v}")
        if self.likelihood not in LIKELIHOODS:
            raise SpecError(f"--likelihood: expected one of {', '.join(LIKELIHOODS)}, got '{self.likelihood}'")
        if self.strength is not None and not self.strength > 0:
            raise SpecError(f"--prior-strength: expected 'auto' or a positive number, got '{self.strength}'")
        if not 0.5 <= self.switch_probability < 1.0:
            raise SpecError(f"--switch-probability must lie in [0.5, 1), got {self.switch_probability}")
        if not 0.0 < self.label_probability < 1.0:
            raise SpecError(f"--label-probability must lie in (0, 1), got {self.label_probability}")
        if self.folds < 0 or self.folds == 1:
            raise SpecError(f"--folds must be 0 (off) or >= 2, got {self.folds}")
        if self.prior_weight < 0:
            raise SpecError(f"--prior-weight must be >= 0, got {self.prior_weight}")
        if self.posterior not in POSTERIORS:
            raise SpecError(f"--posterior: expected one of {', '.join(POSTERIORS)}, got '{self.posterior}'")
        if self.posterior_samples < 10:
            raise SpecError(f"--posterior-samples must be >= 10, got {self.posterior_samples}")
        if self.images and self.kind != "vlm":
            raise SpecError("--images are read by the VLM prior only (--prior vlm)")

    @property
    def bayesian(self) -> bool:
        """The label, text and VLM priors all calibrate as inference; ``none`` fits the data alone."""
        return self.kind != "none"


@dataclass(frozen=True)
class OptimiserSpec:
    optimizer: str = "lm"
    lr: float = 1e-3
    max_iter: int = 1000
    retrace: int = 1
    checkpoint_every: int = 0
    FILES = _paths()

    def check(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise SpecError(f"--optimizer: expected one of {', '.join(OPTIMIZERS)}, got '{self.optimizer}'")
        if not self.lr > 0:
            raise SpecError(f"--lr must be > 0, got {self.lr}")
        if self.max_iter < 1:
            raise SpecError(f"--max-iter must be >= 1, got {self.max_iter}")
        if self.retrace < 0:
            raise SpecError(f"--retrace must be >= 0, got {self.retrace}")
        if self.checkpoint_every < 0:
            raise SpecError(f"--checkpoint-every must be >= 0, got {self.checkpoint_every}")


@dataclass(frozen=True)
class SolverSpec:
    """Tracing: Sionna RT path-solver settings and the memory budget of one solver call."""

    max_depth: int = 4
    samples_per_src: int = 1_000_000
    seed: int = 7
    los: bool = True
    specular: bool = True
    refraction: bool = True
    diffraction: bool = False
    memory_budget: str | None = None  # e.g. "2GiB" (None: the default budget)
    FILES = _paths()

    def check(self) -> None:
        if self.max_depth < 0:
            raise SpecError(f"--max-depth must be >= 0, got {self.max_depth}")
        if self.samples_per_src < 1:
            raise SpecError(f"--samples-per-src must be >= 1, got {self.samples_per_src}")
        if self.memory_budget is not None:
            from rftwin.trace.budget import parse_budget  # noqa: PLC0415

            try:
                parse_budget(self.memory_budget)
            except ValueError as exc:
                raise SpecError(f"--memory-budget: {exc}") from None

    def settings(self):
        """The :class:`rftwin.trace.tracer.SolverSettings` of this spec."""
        from rftwin.trace.tracer import SolverSettings  # noqa: PLC0415

        return SolverSettings(max_depth=self.max_depth, samples_per_src=self.samples_per_src, seed=self.seed,
                              los=self.los, specular_reflection=self.specular, refraction=self.refraction,
                              diffraction=self.diffraction)

    def budget_bytes(self) -> int | None:
        if self.memory_budget is None:
            return None
        from rftwin.trace.budget import parse_budget  # noqa: PLC0415

        return parse_budget(self.memory_budget)


PARTS = {"model": ModelSpec, "supervision": SupervisionSpec, "prior": PriorSpec, "optimiser": OptimiserSpec,
         "solver": SolverSpec}


@dataclass(frozen=True)
class CalibrationSpec:
    """How a calibration is made (see the module docstring). ``base_dir``: folder that relative file names in the
    spec resolve against (the spec file's folder; the working folder for specs built from the command line)."""

    model: ModelSpec = field(default_factory=ModelSpec)
    supervision: SupervisionSpec = field(default_factory=SupervisionSpec)
    prior: PriorSpec = field(default_factory=PriorSpec)
    optimiser: OptimiserSpec = field(default_factory=OptimiserSpec)
    solver: SolverSpec = field(default_factory=SolverSpec)
    base_dir: str | None = None

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Every part on its own, then the rules between parts (errors name the options)."""
        for name in PARTS:
            getattr(self, name).check()
        m, s, p, o = self.model, self.supervision, self.prior, self.optimiser
        feats = s.term_features()
        if "mpc_power" in feats and not s.mpcs:
            raise SpecError("--terms: the mpc_power term needs an MPC table (--mpcs FILE)")
        if s.mpcs and s.terms is not None and "mpc_power" not in feats:
            raise SpecError(f"--mpcs {s.mpcs} is given but --terms has no mpc_power term (e.g. add "
                            "'mpc_power:mse_db:1')")
        if "cfr" in feats and not s.wideband:
            raise SpecError("--terms: the cfr term needs a wideband sidecar (--wideband FILE)")
        if s.wideband and "cfr" not in feats:
            raise SpecError(f"--wideband {s.wideband} is given but --terms has no cfr term (e.g. "
                            "'--terms path_gain,cfr:nmse:1'); it would be ignored")
        if s.bcm:
            if m.is_field:
                raise SpecError(f"--terms bcm calibrates per-object or grouped materials; --model {m.kind} is not "
                                "supported from the command line (rftwin.bcm.calibrate_nll takes a field in Python)")
            if p.posterior != "laplace" or m.shrinkage or m.power_law:
                raise SpecError("--terms bcm: no --posterior mcmc/nuts, --shrinkage or --power-law (the map is fitted "
                                "at one frequency and the fit is not a Bayesian posterior over the materials)")
        if m.is_field:
            if feats - {"path_gain", "delay_spread", "mpc_power"}:
                raise SpecError(f"--model {m.kind}: a field is trained on path gain, delay spread and MPC powers; "
                                f"--terms has {', '.join(sorted(feats))}")
            if p.posterior != "laplace":
                raise SpecError(f"--posterior {p.posterior} samples per-object materials; --model {m.kind} is a "
                                "network")
            return
        if m.shrinkage != 0.0 and not p.bayesian:
            raise SpecError("--shrinkage is a prior: it needs --prior labels, text or vlm (not none)")
        if p.bayesian and not s.bcm:  # the map's NLL fit takes the labels as its start, not as a posterior
            if p.prior_weight:
                raise SpecError("--prior-weight is the Gaussian MAP term of --prior none; with --prior "
                                f"{p.kind} the priors' strength is --prior-strength")
            if o.optimizer != "lm":
                raise SpecError(f"--prior {p.kind} fits the posterior with Levenberg-Marquardt: drop --optimizer "
                                "(or use --prior none)")
            if s.loss != "mse_db":
                raise SpecError(f"--loss {s.loss}: --prior {p.kind} uses Gaussian (or Student-t) likelihoods; use "
                                "--prior none for the NAE / SMAPE losses")
            if s.terms is not None:
                from rftwin.calibrate.losses import parse_terms  # noqa: PLC0415

                if any(not t.least_squares for t in parse_terms(s.terms)):
                    raise SpecError(f"--terms {s.terms}: --prior {p.kind} weighs every term by its noise (Gaussian "
                                    "or Student-t likelihood); use least-squares metrics (mse_db, mse, nmse) or "
                                    "--prior none")
        if p.posterior != "laplace" and (m.groups or set(m.fit) != {"eps_r", "sigma"}):
            raise SpecError(f"--posterior {p.posterior} samples eps_r and sigma of every object (no --groups, --fit "
                            "eps_r,sigma)")

    # ---- files -------------------------------------------------------------------------------------------------
    def path(self, value: str | None) -> Path | None:
        """A file named in the spec, resolved against ``base_dir``."""
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() or self.base_dir is None else Path(self.base_dir) / p

    def to_dict(self) -> dict[str, Any]:
        """JSON document: files as absolute paths (so the document means the same wherever it is stored)."""
        doc: dict[str, Any] = {"format": SPEC_FORMAT}
        for name, cls in PARTS.items():
            part = getattr(self, name)
            rec = {}
            for f in dataclasses.fields(cls):
                v = getattr(part, f.name)
                if f.name in cls.FILES and v is not None:
                    v = [str(self.path(x).resolve()) for x in v] if isinstance(v, tuple) else str(
                        self.path(v).resolve())
                elif isinstance(v, tuple):
                    v = list(v)
                rec[f.name] = v
            doc[name] = rec
        return doc

    def write(self, path: str | os.PathLike) -> Path:
        """Write the spec as JSON (atomically) to ``path``; returns the path."""
        from rftwin.io import write_json  # noqa: PLC0415

        write_json(Path(path), self.to_dict())
        return Path(path)

    @classmethod
    def from_dict(cls, doc: Any, source: str = "spec", base_dir: str | os.PathLike | None = None
                  ) -> CalibrationSpec:
        """Parse a spec document; unknown or mistyped keys are errors naming ``source`` and the key."""
        if not isinstance(doc, dict):
            raise SpecError(f"{source}: expected a JSON object with parts {', '.join(PARTS)}")
        fmt = doc.get("format", SPEC_FORMAT)
        if fmt != SPEC_FORMAT:
            raise SpecError(f"{source}: format {fmt!r} is not supported (expected {SPEC_FORMAT})")
        unknown = sorted(set(doc) - set(PARTS) - {"format"})
        if unknown:
            raise SpecError(f"{source}: unknown keys {unknown}; expected {', '.join(PARTS)}")
        parts = {}
        for name, pcls in PARTS.items():
            rec = doc.get(name, {})
            if not isinstance(rec, dict):
                raise SpecError(f"{source}: '{name}' must be an object")
            known = {f.name: f for f in dataclasses.fields(pcls)}
            bad = sorted(set(rec) - set(known))
            if bad:
                raise SpecError(f"{source}: {name}: unknown keys {bad}; expected {', '.join(known)}")
            kw = {}
            for k, v in rec.items():
                default = known[k].default if known[k].default is not dataclasses.MISSING else None
                kw[k] = _typed(v, default, f"{source}: {name}.{k}")
            parts[name] = pcls(**kw)
        return cls(**parts, base_dir=None if base_dir is None else str(base_dir))

    @classmethod
    def read(cls, path: str | os.PathLike) -> CalibrationSpec:
        """A spec file (JSON); its relative file names resolve against the file's folder."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise SpecError(f"{path}: no such spec file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SpecError(f"{path}: not valid JSON: {exc}") from None
        return cls.from_dict(doc, str(path), base_dir=path.resolve().parent)

    def replace(self, **parts: dict[str, Any]) -> CalibrationSpec:
        """A copy with some leaf fields changed: ``spec.replace(solver={"max_depth": 2})``."""
        new = {name: dataclasses.replace(getattr(self, name), **parts.get(name, {})) for name in PARTS}
        return CalibrationSpec(**new, base_dir=self.base_dir)


def _typed(v: Any, default: Any, where: str) -> Any:
    """``v`` checked against the type of the field's default (numbers, booleans, strings, lists)."""
    if v is None and isinstance(default, tuple):
        return ()
    if v is None or default is None:
        return tuple(v) if isinstance(v, list) else v
    if isinstance(default, bool):
        if not isinstance(v, bool):
            raise SpecError(f"{where}: expected true or false, got {v!r}")
    elif isinstance(default, (int, float)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SpecError(f"{where}: expected a number, got {v!r}")
        if isinstance(default, int) and not float(v).is_integer():
            raise SpecError(f"{where}: expected an integer, got {v!r}")
        return type(default)(v)
    elif isinstance(default, str):
        if not isinstance(v, str):
            raise SpecError(f"{where}: expected a string, got {v!r}")
    elif isinstance(default, tuple):
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
            raise SpecError(f"{where}: expected a list of strings, got {v!r}")
        return tuple(v)
    return v


def option_name(part: str, name: str) -> str:
    """The command-line option of leaf field ``part.name``."""
    return OPTION_NAMES.get((part, name), "--" + name.replace("_", "-"))


def leaf_options() -> dict[str, tuple[str, str]]:
    """Every command-line option of the spec -> (part, field)."""
    return {option_name(p, f.name): (p, f.name) for p, cls in PARTS.items() for f in dataclasses.fields(cls)}

"""The demo's configuration: a :class:`rftwin.calibrate.spec.CalibrationSpec` for everything calibration-related
plus the demo's own set-up (links, truth draw, sweep grid, re-trace restarts). Torch-free, so that ``rftwin demo``
checks its options before torch and Sionna load."""
from __future__ import annotations

from dataclasses import dataclass, field

from rftwin.calibrate.spec import (
    CalibrationSpec,
    ModelSpec,
    OptimiserSpec,
    PriorSpec,
    SolverSpec,
    SpecError,
    option_name,
)

SAMPLES = 500_000  # rays per source of the simulation and the re-traces (benchmarks/results/demo_seeds_5e5.json)
FIRST_TRACE_SAMPLES = 100_000  # rays per source of the first trace (at the labels; its paths are replaced)


def demo_spec(starts: int = 32, seed: int = 7, **parts: dict) -> CalibrationSpec:
    """The demo's calibration: a least-squares fit of eps_r and sigma of every object (``--prior none``: no
    Bayesian prior, no noise estimate) inside the box label x [0.8, 1.2], LM from the label and ``starts - 1``
    random starts (all refined; no grid sweeps: over 14 truth draws they changed no result,
    benchmarks/results/demo_seeds_14.json), 2 re-traces; Sionna at depth 4 with 5 10^5 rays.
    ``parts``: leaf fields to change, as :meth:`CalibrationSpec.replace` (``solver={"max_depth": 2}``)."""
    spec = CalibrationSpec(
        model=ModelSpec(init="label", starts=starts, refine=max(starts + 1, 4), sweeps=0, prior_spread=0.2,
                        bounded=True),
        prior=PriorSpec(kind="none"), optimiser=OptimiserSpec(retrace=2),
        solver=SolverSpec(max_depth=4, samples_per_src=SAMPLES, seed=seed))
    return spec.replace(**parts) if parts else spec


# what run_demo reads of a spec; any other field must keep demo_spec()'s value (checked by check_demo_spec)
DEMO_SPEC_FIELDS = {"model": ("init", "starts", "refine", "sweeps", "prior_spread", "bounded"),
                    "supervision": ("loss",), "prior": (), "optimiser": ("optimizer", "lr", "max_iter", "retrace"),
                    "solver": ("max_depth", "samples_per_src", "seed", "los", "specular", "refraction",
                               "memory_budget")}


def check_demo_spec(spec: CalibrationSpec) -> None:
    """:class:`SpecError` naming the option when ``spec`` asks for something the demo does not do (the demo fits
    eps_r and sigma per object by least squares on noise-free path gains; ``rftwin calibrate`` does the rest)."""
    base = demo_spec().to_dict()
    doc = spec.to_dict()
    for part, keep in DEMO_SPEC_FIELDS.items():
        for name, value in doc[part].items():
            if name not in keep and value != base[part][name]:
                raise SpecError(f"{option_name(part, name)}: the demo keeps {base[part][name]!r} (got {value!r}); "
                                "use rftwin calibrate for this")


@dataclass
class DemoConfig:
    """The demo: ``spec`` says how the twin is calibrated (and traced); the rest is the demo's own set-up: the
    measurement frequency [Hz] and transmit power [dBm], ``trials`` transmitters (``DEMO_TX``) x ``receivers``
    receivers drawn with ``seed`` (which also draws the true materials), and the calibration details that are not
    options of ``rftwin calibrate`` (sweep grid, fresh starts in every re-trace round, LM start pruning)."""

    spec: CalibrationSpec = field(default_factory=demo_spec)
    frequency_hz: float = 3.5e9
    tx_power_dbm: float = 44.0
    trials: int = 3
    receivers: int = 32  # 8 in seed 004; 24 power measurements do not determine the boxes (see docs/calibration.md)
    sweep_grid: tuple[int, int] = (16, 6)  # sweep grid points (eps_r, sigma) over the prior range
    later_rounds: str = "restart"  # fresh random starts in every re-trace round (calibrate_scene's later_rounds)
    prune_every: int = 5  # LM multi-start: keep the better half of the starts every this many iterations
    # rays per source of the first trace, at the labels: it only has to lead the first round into the right basin;
    # the re-traces at the calibrated materials trace with the spec's rays (None: the spec's rays for all)
    first_trace_samples: int | None = FIRST_TRACE_SAMPLES
    seed: int = 7  # link layout and truth draw (the command line's --seed sets it and the spec's solver seed)

    def __post_init__(self):
        check_demo_spec(self.spec)

    @property
    def settings(self):
        """Sionna solver settings (:class:`rftwin.trace.SolverSettings`) of the simulation and of every trace of the
        calibration."""
        return self.spec.solver.settings()


__all__ = ["DEMO_SPEC_FIELDS", "FIRST_TRACE_SAMPLES", "SAMPLES", "DemoConfig", "check_demo_spec", "demo_spec"]

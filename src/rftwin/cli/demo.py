"""``rftwin demo``: the main job on the built-in benchmark room."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import typer

from rftwin.cli.common import (
    MaxDepth,
    MemoryBudget,
    Seed,
    check_at_least,
    check_solver,
    check_spread,
    fail,
)
from rftwin.cli.outputs import check_cache, check_output_dir

# the demo's rays per transmitter (rftwin.demo.config.SAMPLES; fewer than calibrate's 1e6:
# docs/scale.md#the-demo-where-the-time-goes)
DemoSamples = typer.Option(500_000, "--samples-per-src", help="Rays shot per transmitter (simulation and "
                                                               "re-traces).")
WIDTH = 80  # the demo's table and summary fit an 80-column terminal


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
             out: Path = typer.Option(Path("rftwin_demo"), "--out", help="Folder for the convergence plot and "
                                                                          "the calibration spec."),
             trials: int = typer.Option(3, help="Measurement trials (one transmitter each)."),
             receivers: int = typer.Option(32, help="Receivers per trial (seed 004: 8; 8 do not determine the "
                                                    "boxes, see docs/calibration.md)."),
             starts: int = typer.Option(32, help="Multi-start: the prior and random starts inside the prior "
                                                 "range, refined together by LM (the worse half dropped every 5 "
                                                 "iterations)."),
             prior_spread: float = typer.Option(0.2, "--prior-spread",
                                                help="Prior range = label x [1 - s, 1 + s] (the truth is drawn "
                                                     "from label x [0.8, 1.2])."),
             bounded: bool = typer.Option(True, "--bounded/--unbounded",
                                          help="Keep the fit inside the prior range."),
             retrace: int = typer.Option(2, help="Re-trace rounds at the calibrated materials."),
             sweeps: int = typer.Option(0, "--sweeps", help="Global per-object grid sweeps before each local "
                                                            "round (0 = off)."),
             init: str = typer.Option("label", help="Initialisation: label | uniform | random."),
             optimizer: str = typer.Option("lm", help="lm | adam | lbfgs."),
             max_iter: int = typer.Option(1000, help="Iteration limit per calibration round."),
             first_samples: int = typer.Option(100_000, "--first-samples-per-src",
                                               help="Rays per transmitter of the first trace (at the labels; the "
                                                    "re-traces use --samples-per-src). 0: --samples-per-src."),
             max_depth: int = MaxDepth, samples_per_src: int = DemoSamples, seed: int = Seed,
             budget: str | None = MemoryBudget) -> None:
        """Build the room, simulate RSS with Sionna for perturbed true materials, calibrate eps_r and sigma of all
        9 objects from their labels, and report the errors."""
        # destinations and options before any import
        check_output_dir(out, "--out", owned=("convergence.png", "spec.json"))
        check_at_least(trials, 1, "--trials")
        check_at_least(receivers, 1, "--receivers")
        check_spread(prior_spread)
        check_solver(max_depth, samples_per_src)
        check_at_least(first_samples, 0, "--first-samples-per-src")
        from rftwin.calibrate.spec import SpecError  # noqa: PLC0415 - torch-free
        from rftwin.demo.config import DemoConfig, demo_spec  # noqa: PLC0415 - torch-free

        try:
            spec = demo_spec(starts, seed, model={"init": init, "sweeps": sweeps, "prior_spread": prior_spread,
                                                  "bounded": bounded},
                             supervision={"loss": "mse_db" if optimizer == "lm" else "nae"},
                             optimiser={"optimizer": optimizer, "max_iter": max_iter, "retrace": retrace},
                             solver={"max_depth": max_depth, "samples_per_src": samples_per_src,
                                     "memory_budget": budget})
        except SpecError as exc:
            fail(str(exc))
        check_cache()  # argument errors above come back before torch and Sionna load
        from rftwin.demo.run import convergence_plot, demo_json, run_demo  # noqa: PLC0415

        cfg = DemoConfig(spec, trials=trials, receivers=receivers, seed=seed, first_trace_samples=first_samples or None)
        d = run_demo(cfg, progress=not as_json)
        j = demo_json(d)
        png = convergence_plot(d, out / "convergence.png")
        j["plot"] = str(png)
        j["spec"] = str(spec.write(out / "spec.json"))  # how the twin was calibrated (DemoConfig.spec)
        if as_json:
            print(json.dumps(j, indent=2))
            return
        print("\n".join(demo_table(j)))


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def demo_table(j: dict, width: int = WIDTH) -> list[str]:
    """The demo's result (``rftwin.demo.demo_json``) as plain-text lines of at most ``width`` characters: one
    block for eps_r and one for sigma [S/m] (true value, start, estimate, relative error, Laplace std per object),
    then the summary, wrapped. An object whose name or label is longer than its column gets a line of its own."""
    objs = j["objects"]
    name_w = min(max([len("object")] + [len(o["object"]) for o in objs]), 18)
    label_w = min(max([len("label")] + [len(o["label"] or "-") for o in objs]), 12)
    cols = ("true", "start", "estimate", "rel.err", "± std")
    num_w = (9, 9, 9, 8, 8)
    noise = j.get("noise_db_for_uncertainty")
    lines = textwrap.wrap("rftwin demo: calibrated materials at 3.5 GHz (± std: Laplace"
                          + (f", {noise:.2g} dB noise)" if noise is not None else ", not computed)"), width)

    def row(cells: tuple[str, ...]) -> str:
        head = f"{cells[0]:<{name_w}} {cells[1]:<{label_w}}"
        return head + "".join(f" {c:>{w}}" for c, w in zip(cells[2:], num_w))  # <= 18 + 12 + 49 = 79 chars

    for key, title, fmt in (("eps", "relative permittivity ε_r", ".4f"), ("sigma", "conductivity σ [S/m]", ".5f")):
        lines += ["", title, row(("object", "label") + cols)]
        lines.append("-" * len(lines[-1]))
        for o in objs:
            name, label = o["object"], o["label"] or "-"
            if len(name) > name_w or len(label) > label_w:  # a long name gets a line of its own, wrapped
                lines += textwrap.wrap(f"{name} ({label}):", width, break_on_hyphens=False)
                name = label = ""
            lines.append(row((name, label, _num(o[f"{key}_true"], fmt),
                              _num(o[f"{key}_init"], fmt), _num(o[f"{key}_est"], fmt),
                              _num(o[f"{key}_rel_error"], ".1e"), _num(o[f"{key}_std"], ".2g"))))
    summary = (f"MRE ε_r = {j['mre_eps']:.2e}, MRE σ = {j['mre_sigma']:.2e}; {j['iterations']} iterations; "
               f"calibration {j['calibration_seconds']:.1f} s, total {j['seconds']:.1f} s"
               + (f"; plot: {j['plot']}" if j.get("plot") else ""))
    return lines + [""] + textwrap.wrap(summary, width, break_on_hyphens=False)

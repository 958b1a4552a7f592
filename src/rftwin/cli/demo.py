"""``rftwin demo``: the main job on the built-in benchmark room."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from rftwin.cli.common import MaxDepth, MemoryBudget, Samples, Seed, check_spread, console, memory_budget, settings


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
             out: Path = typer.Option(Path("rftwin_demo"), "--out", help="Folder for the convergence plot."),
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
             sweeps: int = typer.Option(2, "--sweeps", help="Global per-object grid sweeps before each local "
                                                            "round (0 = off)."),
             init: str = typer.Option("label", help="Initialisation: label | uniform | random."),
             optimizer: str = typer.Option("lm", help="lm | adam | lbfgs."),
             max_iter: int = typer.Option(1000, help="Iteration limit per calibration round."),
             max_depth: int = MaxDepth, samples_per_src: int = Samples, seed: int = Seed,
             budget: str | None = MemoryBudget) -> None:
        """Build the room, simulate RSS with Sionna for perturbed true materials, calibrate eps_r and sigma of all
        9 objects from their labels, and report the errors."""
        from rftwin.calibrate import CalibrationConfig  # noqa: PLC0415
        from rftwin.demo import DemoConfig, convergence_plot, demo_json, run_demo  # noqa: PLC0415

        check_spread(prior_spread)
        from rftwin.trace.budget import use_budget  # noqa: PLC0415

        use_budget(memory_budget(budget))
        cfg = DemoConfig(trials=trials, receivers=receivers, settings=settings(max_depth, samples_per_src, seed),
                         init=init, num_starts=starts, retrace=retrace, sweeps=sweeps, seed=seed,
                         prior_spread=prior_spread, bounded=bounded,
                         calibration=CalibrationConfig(optimizer=optimizer, max_iter=max_iter,
                                                       loss="mse_db" if optimizer == "lm" else "nae",
                                                       refine_starts=max(starts + 1, 4), prune_every=5))
        d = run_demo(cfg, progress=not as_json)
        j = demo_json(d)
        png = convergence_plot(d, out / "convergence.png")
        j["plot"] = str(png)
        if as_json:
            print(json.dumps(j, indent=2))
            return
        from rich.table import Table  # noqa: PLC0415

        t = Table(title="rftwin demo: calibrated materials at 3.5 GHz (± = Laplace std at "
                        f"{j['noise_db_for_uncertainty']:.2g} dB noise)")
        for c in ("object", "label", "ε_r true", "init", "estimate", "rel.err", "± std",
                  "σ true [S/m]", "init", "estimate", "rel.err", "± std"):
            t.add_column(c, justify="right")
        for o in j["objects"]:
            t.add_row(o["object"], o["label"] or "-", f"{o['eps_true']:.4f}", f"{o['eps_init']:.4f}",
                      f"{o['eps_est']:.4f}", f"{o['eps_rel_error']:.1e}", f"{o['eps_std']:.2g}",
                      f"{o['sigma_true']:.5f}", f"{o['sigma_init']:.5f}", f"{o['sigma_est']:.5f}",
                      f"{o['sigma_rel_error']:.1e}", f"{o['sigma_std']:.2g}")
        console.print(t)
        console.print(f"MRE ε_r = {j['mre_eps']:.2e}, MRE σ = {j['mre_sigma']:.2e}; {j['iterations']} iterations; "
                      f"calibration {j['calibration_seconds']:.1f} s, total {j['seconds']:.1f} s; plot: {png}")

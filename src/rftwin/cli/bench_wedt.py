"""``rftwin bench wedt``: the WEDT benchmark (seed 003): BCM + NLL calibration vs ITU labels, Diff-RT, GP-PU and
a NeRF^2-style field on the street canyon and an indoor multi-room scene (B2D and D2D)."""
from __future__ import annotations

import json

import typer

DEFAULT_RESULTS = "benchmarks/results/wedt.json"


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{name}: expected comma-separated integers, got '{text}'") from None
    if not vals or any(v <= 0 for v in vals):
        raise typer.BadParameter(f"{name}: expected positive integers, got '{text}'")
    return vals


def register_bench(bench_app: typer.Typer) -> None:
    @bench_app.command("wedt")
    def wedt(quick: bool = typer.Option(False, "--quick", help="Reduced size: coarser grids, M in 10,30,100, "
                                                                  "20 D2D transmitters x ~36 receivers."),
             scenes: str = typer.Option("simple_street_canyon,indoor", help="Comma-separated scenes."),
             sizes: str | None = typer.Option(None, help="Comma-separated numbers of measured receivers M "
                                                            "(default 10,30,100,300; quick 10,30,100)."),
             d2d_tx: int | None = typer.Option(None, help="New transmitter positions for D2D (default 100; quick 20)."),
             d2d_rx: int | None = typer.Option(None, help="Receivers per D2D transmitter (default 30; quick 36)."),
             iterations: int | None = typer.Option(None, help="Adam iterations of the NLL and Diff-RT calibrations "
                                                              "(default 300)."),
             noise_db: float | None = typer.Option(None, help="Noise std on the measured path gains [dB] "
                                                              "(default 1.0)."),
             samples: int = typer.Option(100_000, "--samples-per-src", help="Rays per transmitter."),
             max_depth: int = typer.Option(3, "--max-depth", help="Maximum interactions per path."),
             seed: int = typer.Option(7, help="Seed of materials, sampling, noise and the solver."),
             out: str = typer.Option("benchmarks/results", help="Folder for the PNG plots."),
             results: str = typer.Option(DEFAULT_RESULTS, help="Results JSON (written after every scene)."),
             as_json: bool = typer.Option(False, "--json", help="Print the results JSON instead of the table.")
             ) -> None:
        """Build BCMs from M measured receivers, calibrate with the NLL loss and compare with the baselines."""
        from dataclasses import replace
        from pathlib import Path

        from rftwin.cli.common import check_at_least, check_solver, fail
        from rftwin.cli.outputs import check_output_file

        check_output_file(Path(results), "--results", (".json",))
        names = tuple(s.strip() for s in scenes.split(",") if s.strip())
        bad = [s for s in names if s not in ("simple_street_canyon", "indoor")]
        if bad or not names:
            fail(f"--scenes: unknown scene(s) {bad or names}; choose from simple_street_canyon, indoor")
        if sizes is not None:
            try:
                sizes_m = _ints(sizes, "--sizes")
            except typer.BadParameter as exc:
                fail(str(exc))
        for option, value in (("--d2d-tx", d2d_tx), ("--d2d-rx", d2d_rx), ("--iterations", iterations)):
            check_at_least(value, 1, option)
        check_at_least(noise_db, 0, "--noise-db")
        check_solver(max_depth, samples)
        from rftwin.studies.wedt import WedtConfig, format_table, run_benchmark
        from rftwin.trace.tracer import SolverSettings

        cfg = WedtConfig.quick() if quick else WedtConfig()
        kw = {"scenes": names, "seed": seed,
              "settings": SolverSettings(max_depth=max_depth, samples_per_src=samples, seed=seed)}
        if sizes is not None:
            kw["sizes"] = sizes_m
        if d2d_tx is not None:
            kw["d2d_tx"] = d2d_tx
        if d2d_rx is not None:
            kw["d2d_rx"] = d2d_rx
        if noise_db is not None:
            kw["noise_db"] = noise_db
        cfg = replace(cfg, **kw)
        if iterations is not None:
            cfg = replace(cfg, nll=replace(cfg.nll, iterations=iterations))
        res = run_benchmark(cfg, Path(out), progress=not as_json, results_path=Path(results))
        if as_json:
            print(json.dumps(res, indent=2, default=str))
        else:
            print(format_table(res))
            print(f"\nresults: {results}   plots: {out}/wedt_*.png   ({res['seconds']:.0f} s)")

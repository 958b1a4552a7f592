"""``rftwin bench``: benchmarks. Without a sub-command it runs the core benchmark (engine step vs Sionna gradient
step, demo); studies register sub-commands (``rftwin bench NAME``) from their own modules (``BENCH_MODULES``)."""
from __future__ import annotations

import importlib
import json

import typer

# Modules under rftwin.cli defining ``register_bench(bench_app: typer.Typer) -> None``.
BENCH_MODULES: list[str] = ["bench_priors", "bench_wedt", "bench_validate"]


def print_result(r: dict, as_json: bool) -> None:
    """Print a flat result dict as JSON or as aligned ``key value`` lines."""
    if as_json:
        print(json.dumps(r, indent=2))
    else:
        for k, v in r.items():
            print(f"{k:32s} {v:.6g}" if isinstance(v, float) else f"{k:32s} {v}")


def register(app: typer.Typer) -> None:
    bench_app = typer.Typer(help="Benchmarks (without a sub-command: the core benchmark).")

    @bench_app.callback(invoke_without_command=True)
    def bench(ctx: typer.Context,
              as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
              demo: bool = typer.Option(True, "--demo/--no-demo", help="Also time the full demo calibration."),
              reps: int = typer.Option(20, help="Repetitions of the engine step (median)."),
              sionna_reps: int = typer.Option(3, help="Repetitions of the Sionna step (median).")) -> None:
        """Time one calibration step on cached paths against one Sionna RT re-trace gradient step."""
        if ctx.invoked_subcommand is not None:
            return
        from rftwin.cli.common import check_at_least  # noqa: PLC0415

        check_at_least(reps, 1, "--reps")
        check_at_least(sionna_reps, 1, "--sionna-reps")
        from rftwin.studies.core import run_core_benchmark  # noqa: PLC0415

        print_result(run_core_benchmark(demo=demo, reps=reps, sionna_reps=sionna_reps, progress=not as_json), as_json)

    for name in BENCH_MODULES:
        importlib.import_module(f"rftwin.cli.{name}").register_bench(bench_app)
    app.add_typer(bench_app, name="bench")

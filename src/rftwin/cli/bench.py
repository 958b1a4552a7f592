"""``rftwin bench``: the core benchmark (engine step vs Sionna gradient step, demo)."""
from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def bench(as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
              demo: bool = typer.Option(True, "--demo/--no-demo", help="Also time the full demo calibration."),
              reps: int = typer.Option(20, help="Repetitions of the engine step (median)."),
              sionna_reps: int = typer.Option(3, help="Repetitions of the Sionna step (median).")) -> None:
        """Time one calibration step on cached paths against one Sionna RT re-trace gradient step."""
        from rftwin.bench import run_core_benchmark  # noqa: PLC0415

        r = run_core_benchmark(demo=demo, reps=reps, sionna_reps=sionna_reps, progress=not as_json)
        if as_json:
            print(json.dumps(r, indent=2))
        else:
            for k, v in r.items():
                print(f"{k:32s} {v:.6g}" if isinstance(v, float) else f"{k:32s} {v}")

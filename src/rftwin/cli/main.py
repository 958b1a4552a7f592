"""``rftwin`` command line: each command lives in its own module under ``rftwin.cli`` and registers itself."""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="rftwin: calibrate radio materials of a 3D scene from measurements and predict channels.")

# Command modules; each defines ``register(app: typer.Typer) -> None``.
COMMAND_MODULES = ["doctor", "demo", "calibrate_cmd", "predict_cmd", "bench", "plan_cmd", "import_cmd",
                   "evaluate_cmd", "radiomap_cmd", "materials_map", "beams_cmd", "update_cmd"]

for _name in COMMAND_MODULES:
    importlib.import_module(f"rftwin.cli.{_name}").register(app)


def main() -> None:  # pragma: no cover
    app()

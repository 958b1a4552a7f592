"""``rftwin`` command line: each command lives in its own module under ``rftwin.cli`` and registers itself."""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="rftwin: calibrate radio materials of a 3D scene from measurements and predict channels.")

# Command modules; each defines ``register(app: typer.Typer) -> None``.
COMMAND_MODULES = ["doctor", "demo", "calibrate_cmd", "predict_cmd", "bench"]

for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"rftwin.cli.{_name}")
    except ModuleNotFoundError as exc:  # a module not written yet must not break the others
        if exc.name != f"rftwin.cli.{_name}":
            raise
        continue
    _mod.register(app)


def main() -> None:  # pragma: no cover
    app()

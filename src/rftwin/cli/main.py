"""``rftwin`` command line: each command lives in its own module under ``rftwin.cli`` and registers itself."""
from __future__ import annotations

import atexit
import gc
import importlib
import signal
import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="rftwin: calibrate radio materials of a 3D scene from measurements and predict channels.")

# Command modules; each defines ``register(app: typer.Typer) -> None``.
COMMAND_MODULES = ["doctor", "demo", "calibrate_cmd", "predict_cmd", "bench", "plan_cmd", "import_cmd",
                   "evaluate_cmd", "radiomap_cmd", "materials_map", "beams_cmd", "update_cmd", "ris_cmd",
                   "dataset_cmd"]



def _on_sigint(signum, frame) -> None:
    print("\nrftwin: interrupted (SIGINT); stopping. Finished checkpoints are kept, unfinished outputs are not "
          "written (exit code 130).", file=sys.stderr, flush=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once
    raise KeyboardInterrupt


@app.callback()
def _setup() -> None:
    """Say what happens on Ctrl-C instead of exiting silently (typer turns KeyboardInterrupt into exit 130)."""
    try:
        signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread (embedded use): keep the default handler
        pass


for _name in COMMAND_MODULES:
    importlib.import_module(f"rftwin.cli.{_name}").register(app)


def main() -> None:  # pragma: no cover
    # at exit, first freeze every object the garbage collector tracks: the interpreter's final collections then
    # skip the object graphs of torch, Sionna and Dr.Jit (~0.3-0.5 s of every command's exit, for nothing)
    atexit.register(gc.freeze)
    app()

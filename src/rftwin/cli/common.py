"""Options and helpers shared by CLI commands."""
from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:  # the CLI answers --help and option errors without importing torch or Sionna
    from rftwin.trace.tracer import SolverSettings

# markup=False: file names, link ids and object names are user text and must print as written ("[/red]" in a
# link id would otherwise crash Rich and "[bold]X" would print as "X"); styles are given as Text, never as markup.
console = Console(stderr=True, markup=False, highlight=False)

MaxDepth = typer.Option(4, "--max-depth", help="Maximum number of interactions per path.")
Samples = typer.Option(1_000_000, "--samples-per-src", help="Rays shot per transmitter.")
Seed = typer.Option(7, "--seed", help="Seed of the path solver and of all random draws.")
Refraction = typer.Option(True, "--refraction/--no-refraction", help="Trace refraction (transmission).")
Specular = typer.Option(True, "--specular/--no-specular", help="Trace specular reflection.")
Los = typer.Option(True, "--los/--no-los", help="Trace the line-of-sight path.")
Diffraction = typer.Option(False, "--diffraction/--no-diffraction",
                           help="Trace first-order (UTD) diffraction: matters in streets.")
MemoryBudget = typer.Option(None, "--memory-budget",
                            help="Peak memory of tracing, e.g. 2GiB or 800MiB (default: half the available "
                                 "memory, at most 4 GiB); solver calls and shards are sized from it.")
Workers = typer.Option(1, "--workers", help="Trace on this many local Ray workers (1: in this process).")
RayAddress = typer.Option(None, "--ray-address",
                          help="Trace on a Ray cluster (host:port, ray://host:port or auto) sharing the cache.")
Device = typer.Option("cpu", "--device", help="Torch device of the channel engine: auto, cpu or cuda.")


def settings(max_depth: int, samples: int, seed: int, los: bool = True, specular: bool = True,
             refraction: bool = True, diffraction: bool = False) -> SolverSettings:
    from rftwin.trace.tracer import SolverSettings  # noqa: PLC0415

    return SolverSettings(max_depth=max_depth, samples_per_src=samples, seed=seed, los=los,
                          specular_reflection=specular, refraction=refraction, diffraction=diffraction)


def memory_budget(text: str | None) -> int | None:
    """Bytes of ``--memory-budget`` (None: the default budget); a clear error for a malformed size."""
    if text is None:
        return None
    from rftwin.trace.budget import parse_budget  # noqa: PLC0415

    try:
        return parse_budget(text)
    except ValueError as exc:
        fail(f"--memory-budget: {exc}")


def torch_device(choice: str):
    """Torch device of ``--device`` (error naming the option when CUDA is asked for without a GPU)."""
    from rftwin.runtime import resolve_device  # noqa: PLC0415

    try:
        return resolve_device(choice)
    except ValueError as exc:
        fail(str(exc))


def fail(msg: str, code: int = 2) -> None:
    """Print ``msg`` (user text such as ids and file names: never read as Rich markup) and exit."""
    console.print(Text("error: ", style="bold red") + Text(str(msg)), soft_wrap=True)  # greppable: no wrapping
    raise typer.Exit(code)


def check_spread(value: float | None, option: str = "--prior-spread") -> None:
    """Relative prior half-width: must lie in (0, 1) (error names the option)."""
    if value is not None and not 0.0 < value < 1.0:
        fail(f"{option} must lie in (0, 1) (prior range = label x [1 - s, 1 + s]), got {value}")


def check_solver(max_depth: int, samples_per_src: int) -> None:
    """``--max-depth`` >= 0 and ``--samples-per-src`` >= 1, checked by the calibration spec (no torch needed)."""
    from rftwin.calibrate.spec import SolverSpec, SpecError  # noqa: PLC0415

    try:
        SolverSpec(max_depth=max_depth, samples_per_src=samples_per_src).check()
    except SpecError as exc:
        fail(str(exc))


def check_at_least(value: float | None, low: float, option: str, strict: bool = False) -> None:
    """``option`` must be >= ``low`` (> with ``strict``); None passes (an unset optional value)."""
    if value is None:
        return
    if (value <= low) if strict else (value < low):
        fail(f"{option} must be {'>' if strict else '>='} {low:g}, got {value:g}")


def check_scene(ref: str, argument: str) -> None:
    """A SCENE / TWIN argument must name an existing file or folder (an XML scene, a calibration output or field
    folder) or a built-in scene (checked from Sionna's package file list, without importing Sionna)."""
    from pathlib import Path  # noqa: PLC0415

    from rftwin.scene.load import builtin_scene_names  # noqa: PLC0415 - no torch, Sionna or Mitsuba

    if Path(ref).exists():
        return
    names = builtin_scene_names()
    if ref not in names:
        fail(f"{argument} '{ref}': no such file or folder, and not a built-in scene name ({', '.join(names)})")

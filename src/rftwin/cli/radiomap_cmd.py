"""``rftwin radiomap``: coverage map of a (calibrated) twin with Sionna RT's radio-map solver."""
from __future__ import annotations

from pathlib import Path

import typer

from rftwin.cli.common import Diffraction, Refraction, Seed, Specular, check_at_least, check_scene, console, fail
from rftwin.cli.outputs import check_output_dir, staged_dir


def register(app: typer.Typer) -> None:
    @app.command()
    def radiomap(
        twin: str = typer.Argument(..., help="Calibration output folder, Sionna XML scene or built-in name."),
        tx: list[str] = typer.Option(..., "--tx", help="Transmitter position 'X Y Z' in m (three numbers, "
                                                       "separated by spaces or commas); repeat for several."),
        out: Path = typer.Option(Path("radiomap"), "--out", help="Output folder (radiomap.npz, radiomap.png)."),
        frequency: float = typer.Option(None, "--frequency", help="Carrier [Hz] (default: the twin's reference "
                                                                  "frequency, else 3.5 GHz)."),
        height: float = typer.Option(1.5, "--height", help="Height of the map plane [m]."),
        cell: float = typer.Option(1.0, "--cell", help="Cell size [m]."),
        xlim: tuple[float, float] | None = typer.Option(None, "--xlim", help="x range [m] (default: scene)."),
        ylim: tuple[float, float] | None = typer.Option(None, "--ylim", help="y range [m] (default: scene)."),
        tx_power_dbm: float = typer.Option(None, "--tx-power-dbm", help="Also write RSS [dBm] for this power."),
        max_depth: int = typer.Option(3, "--max-depth", help="Maximum number of interactions per path."),
        samples_per_tx: int = typer.Option(1_000_000, "--samples-per-tx", help="Rays shot per transmitter."),
        seed: int = Seed, specular: bool = Specular, refraction: bool = Refraction,
        diffraction: bool = Diffraction,
    ) -> None:
        """Path-gain coverage map of the twin on a horizontal plane (PNG + NPZ)."""
        import numpy as np  # noqa: PLC0415

        check_output_dir(out, "--out", owned=("radiomap.npz", "radiomap.png"))  # before any work
        pos = []
        for i, t in enumerate(tx, 1):
            parts = t.replace(",", " ").split()
            try:
                xyz = [float(p) for p in parts]
            except ValueError:
                xyz = []
            if len(xyz) != 3 or not np.all(np.isfinite(xyz)):
                fail(f"--tx #{i}: expected three numbers 'X Y Z' in m, found '{t}'")
            pos.append(xyz)
        if cell <= 0:
            fail(f"--cell must be > 0 m, found {cell}")
        if samples_per_tx < 1 or max_depth < 0:
            fail("--samples-per-tx must be >= 1 and --max-depth >= 0")
        check_at_least(frequency, 0, "--frequency", strict=True)
        for option, lim in (("--xlim", xlim), ("--ylim", ylim)):
            if lim and not lim[0] < lim[1]:
                fail(f"{option}: expected MIN MAX with MIN < MAX, got {lim[0]:g} {lim[1]:g}")
        check_scene(twin, "TWIN")
        from rftwin.evaluate.radiomap import (  # noqa: PLC0415 - torch and Sionna from here on
            compute_radio_map,
            plot_radio_map,
            write_npz,
        )
        from rftwin.trace.tracer import SolverSettings  # noqa: PLC0415
        from rftwin.twin_io import load_twin  # noqa: PLC0415

        try:
            tw, doc = load_twin(twin)
            f = frequency or float((doc or {}).get("reference_frequency_hz") or 3.5e9)
            st = SolverSettings(max_depth=max_depth, samples_per_src=samples_per_tx, seed=seed,
                                specular_reflection=specular, refraction=refraction, diffraction=diffraction)
            res = compute_radio_map(tw, doc, np.array(pos), f, height, cell,
                                    xlim or None, ylim or None, st,
                                    tx_power_dbm)
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        with staged_dir(out) as stage:  # both files appear together, or none
            write_npz(res, stage / "radiomap.npz")
            plot_radio_map(res, stage / "radiomap.png", tw)
        npz, png = out / "radiomap.npz", out / "radiomap.png"
        c = res.coverage()
        console.print(f"{res.path_gain_db.shape[2]} x {res.path_gain_db.shape[1]} cells of {cell:g} m at z = "
                      f"{height:g} m, {f / 1e9:.4g} GHz; {c['with_value']} of {c['cells']} cells "
                      f"({100 * c['with_value'] / c['cells']:.1f} %) with a value, {c['no_ray']} reached by no "
                      f"path, {c['inside']} inside closed objects (NaN); wrote {npz} and {png}")

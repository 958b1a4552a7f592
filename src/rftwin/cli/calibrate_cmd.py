"""``rftwin calibrate``: calibrate a user's scene from a measurements file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from rftwin.cli.common import Los, MaxDepth, Refraction, Samples, Seed, Specular, console, fail, settings


def register(app: typer.Typer) -> None:
    @app.command()
    def calibrate(scene: str = typer.Argument(..., help="Sionna XML scene (objects carry ITU radio materials) or a "
                                                       "built-in scene name."),
                  measurements: Path = typer.Argument(..., help="Measurements file v1 (CSV or Parquet)."),
                  out: Path = typer.Option(..., "--out", help="Output folder."),
                  labels: Path = typer.Option(None, "--labels", help="YAML/JSON object -> ITU material overrides."),
                  init: str = typer.Option("label", help="label | uniform | random."),
                  starts: int = typer.Option(16, help="Multi-start: starts screened inside the prior range."),
                  refine: int = typer.Option(4, help="Best screened starts refined by the optimiser."),
                  retrace: int = typer.Option(1, help="Re-trace rounds at the calibrated materials."),
                  optimizer: str = typer.Option("lm", help="lm | adam | lbfgs."),
                  loss: str = typer.Option("mse_db", help="mse_db | nae."),
                  lr: float = typer.Option(1e-3, help="Adam learning rate."),
                  max_iter: int = typer.Option(1000, help="Iteration limit per round."),
                  power_law: bool = typer.Option(None, "--power-law/--no-power-law",
                                                 help="Fit eps=a f^b, sigma=c f^d (default: when >1 frequency)."),
                  estimate_offset: bool = typer.Option(False, "--estimate-offset",
                                                       help="Unknown absolute power reference: fit a gain offset."),
                  noise_db: float = typer.Option(None, help="Measurement noise std [dB] for the uncertainty report."),
                  max_depth: int = MaxDepth, samples_per_src: int = Samples, seed: int = Seed,
                  los: bool = Los, specular: bool = Specular, refraction: bool = Refraction) -> None:
        """Fit eps_r and sigma of every scene object; write materials.json, scene.xml, report.md and plots."""
        from rftwin.calibrate import CalibrationConfig, Targets  # noqa: PLC0415
        from rftwin.calibrate.workflow import calibrate_scene  # noqa: PLC0415
        from rftwin.data import MeasurementError, read_labels, read_measurements  # noqa: PLC0415
        from rftwin.materials import prior_from_labels  # noqa: PLC0415
        from rftwin.report import write_calibration_outputs  # noqa: PLC0415
        from rftwin.runtime import configure_torch_threads  # noqa: PLC0415
        from rftwin.scene import load  # noqa: PLC0415
        from rftwin.twin_io import unique_links  # noqa: PLC0415

        configure_torch_threads()
        try:
            twin = load(scene)
            lab = read_labels(labels, twin) if labels else None
            meas = read_measurements(measurements, twin, labels=lab)
            cfg = CalibrationConfig(loss=loss, optimizer=optimizer, lr=lr, max_iter=max_iter,
                                    estimate_offset=estimate_offset, noise_db=noise_db, refine_starts=refine)
            f_ref = float(np.min(meas.frequency_hz))
            twin.set_frequency(f_ref)
            names = twin.names
            obj_labels = [(lab or {}).get(n, o.label) for n, o in zip(names, twin.objects)]
            prior = prior_from_labels(obj_labels, f_ref, [o.relative_permittivity for o in twin.objects],
                                      [o.conductivity for o in twin.objects], strategy=init, seed=seed)
        except (MeasurementError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        multi = len(np.unique(meas.frequency_hz)) > 1
        use_pl = multi if power_law is None else power_law
        tx, rx, row_link = unique_links(meas.tx_pos, meas.rx_pos)
        targets = Targets.build(row_link, meas.frequency_hz, meas.path_gain_db)
        res, ps = calibrate_scene(twin, tx, rx, targets, prior, cfg,
                                  settings(max_depth, samples_per_src, seed, los, specular, refraction),
                                  num_starts=starts, retrace=retrace, power_law=use_pl, seed=seed)
        write_calibration_outputs(out, twin, res, ps, targets, meas, obj_labels, f_ref, use_pl, cfg)
        console.print(f"calibrated {len(names)} objects from {len(meas)} measurements in {res.seconds:.1f} s "
                      f"(loss {res.loss:.3g}); outputs in {out}")

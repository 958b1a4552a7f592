"""``rftwin evaluate``: accuracy of a (calibrated) twin and of baselines on measured links."""
from __future__ import annotations

from pathlib import Path

import typer

from rftwin.cli.common import (
    Los,
    MaxDepth,
    Refraction,
    Samples,
    Seed,
    Specular,
    console,
    fail,
    settings,
)


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        twin: str = typer.Argument(..., help="Calibration output folder, Sionna XML scene or built-in name."),
        truth: Path = typer.Argument(..., help="Measured links with path_gain_db (or rss_dbm + tx_power_dbm), "
                                               "optional delay_spread_s (CSV/Parquet)."),
        out: Path = typer.Option(..., "--out", help="Output folder."),
        train: Path = typer.Option(None, "--train", help="Measurements used for calibration (log-distance and "
                                                         "GP baselines are fitted on them)."),
        true_materials: Path = typer.Option(None, "--true-materials",
                                            help="JSON/YAML of true eps_r/sigma per object (parameter MRE)."),
        wideband: Path = typer.Option(None, "--wideband", help="Wideband sidecar (CFR/CIR per link_id, .h5/.npz) "
                                                               "of the truth links (MCS)."),
        scenario: str = typer.Option("auto", "--scenario", help="3GPP TR 38.901 scenario: auto | inh-office | "
                                                                "umi-street-canyon."),
        ground_z: float = typer.Option(None, "--ground-z", help="Ground height [m] for UMi antenna heights "
                                                                "(default: lowest point of the scene)."),
        grid_cell: float = typer.Option(None, "--grid-cell", "--grid",
                                       help="Bin scattered receivers into maps of this cell "
                                                                  "size [m] for SSIM (regular grids are detected)."),
        methods: str = typer.Option("twin,itu,log_distance,tr38901,gp", "--methods",
                                    help="Comma-separated subset of twin, itu, log_distance, tr38901, gp."),
        max_depth: int = MaxDepth, samples_per_src: int = Samples, seed: int = Seed,
        los: bool = Los, specular: bool = Specular, refraction: bool = Refraction,
    ) -> None:
        """Score the twin and baselines: per-link CSV, metrics.json, error CDF and maps (PNG), report.md."""
        from rftwin.baselines.pathloss import scenario_name  # noqa: PLC0415
        from rftwin.data import MeasurementError, read_measurements  # noqa: PLC0415
        from rftwin.evaluate.params import MaterialsFileError  # noqa: PLC0415
        from rftwin.evaluate.report import write_evaluation  # noqa: PLC0415
        from rftwin.evaluate.run import METHODS, EvaluationConfig, evaluate_twin  # noqa: PLC0415
        from rftwin.runtime import configure_torch_threads  # noqa: PLC0415
        from rftwin.twin_io import load_twin  # noqa: PLC0415

        configure_torch_threads()
        chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
        bad = [m for m in chosen if m not in METHODS]
        if bad or not chosen:
            fail(f"--methods: unknown method(s) {bad}; expected a comma-separated subset of {', '.join(METHODS)}")
        if grid_cell is not None and not grid_cell > 0:
            fail(f"--grid-cell must be > 0 m, found {grid_cell}")
        try:
            if scenario != "auto":
                scenario = scenario_name(scenario)
            tw, doc = load_twin(twin)
            meas = read_measurements(truth, tw)
            tr = read_measurements(train, tw) if train is not None else None
            cfg = EvaluationConfig(methods=chosen, scenario=scenario, ground_z_m=ground_z, grid_cell_m=grid_cell,
                                   settings=settings(max_depth, samples_per_src, seed, los, specular, refraction),
                                   seed=seed)
            res = evaluate_twin(tw, doc, meas, tr, true_materials, wideband, cfg)
        except (MeasurementError, MaterialsFileError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        report = write_evaluation(res, out, title=f"Evaluation of {twin} on {truth.name}")
        for m in res.methods:
            s = res.metrics[m]
            console.print(f"  {m:13s} MALE {s['male_db']:6.2f} dB  median {s['median_db']:6.2f} dB  "
                          f"p90 {s['p90_db']:6.2f} dB  (n={s['n']})")
        console.print(f"wrote {report}")

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
    check_at_least,
    check_scene,
    check_solver,
    console,
    fail,
    settings,
)
from rftwin.cli.outputs import check_cache, check_input_file, check_output_dir, staged_dir

#: the methods of ``rftwin.evaluate.run.METHODS``, here so that --methods is checked before torch loads
#: (tests/cli/test_cli_fast.py keeps the two equal)
METHODS = ("twin", "itu", "log_distance", "tr38901", "gp")


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
        mpcs: Path = typer.Option(None, "--mpcs", help="Measured multipath components of the truth links (CSV/Parquet, "
                                                      "link_id, delay_s, power_db, AoA/AoD): M1-M4 and cluster "
                                                      "metrics C1-C2 of the ray-based methods."),
        mpc_dynamic_range: float = typer.Option(30.0, "--mpc-dynamic-range",
                                                help="Keep MPCs within this many dB of each link's strongest (both "
                                                     "measured and predicted)."),
        cluster_delay_scale: float = typer.Option(5e-9, "--cluster-delay-scale", help="Clustering delay scale [s]."),
        cluster_angle_scale: float = typer.Option(10.0, "--cluster-angle-scale", help="Clustering angle scale [deg]."),
        cluster_delay_gate: float = typer.Option(10e-9, "--cluster-delay-gate",
                                                 help="Cluster matching delay gate [s]."),
        cluster_angle_gate: float = typer.Option(20.0, "--cluster-angle-gate",
                                                 help="Cluster matching angle gate [deg]."),
        mpc_delay_reference: str = typer.Option("absolute", "--mpc-delay-reference",
                                                help="absolute | first (delays relative to each link's first MPC)."),
        methods: str = typer.Option("twin,itu,log_distance,tr38901,gp", "--methods",
                                    help="Comma-separated subset of twin, itu, log_distance, tr38901, gp."),
        max_depth: int = MaxDepth, samples_per_src: int = Samples, seed: int = Seed,
        los: bool = Los, specular: bool = Specular, refraction: bool = Refraction,
    ) -> None:
        """Score the twin and baselines: per-link CSV, metrics.json, error CDF and maps (PNG), report.md."""
        check_output_dir(out, "--out", owned=("report.md", "metrics.json"))  # before any work
        chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
        bad = [m for m in chosen if m not in METHODS]
        if bad or not chosen:
            fail(f"--methods: unknown method(s) {bad}; expected a comma-separated subset of {', '.join(METHODS)}")
        if grid_cell is not None and not grid_cell > 0:
            fail(f"--grid-cell must be > 0 m, found {grid_cell}")
        if scenario != "auto":
            from rftwin.baselines.pathloss import scenario_name  # noqa: PLC0415 - numpy and scikit-learn only

            try:
                scenario = scenario_name(scenario)
            except ValueError as exc:
                fail(f"--scenario: {exc}")
        if mpc_delay_reference not in ("absolute", "first"):
            fail(f"--mpc-delay-reference must be absolute or first, got '{mpc_delay_reference}'")
        for option, value in (("--mpc-dynamic-range", mpc_dynamic_range),
                              ("--cluster-delay-scale", cluster_delay_scale),
                              ("--cluster-angle-scale", cluster_angle_scale),
                              ("--cluster-delay-gate", cluster_delay_gate),
                              ("--cluster-angle-gate", cluster_angle_gate)):
            check_at_least(value, 0, option, strict=True)
        check_solver(max_depth, samples_per_src)
        for option, path in (("TRUTH", truth), ("--train", train), ("--true-materials", true_materials),
                             ("--wideband", wideband), ("--mpcs", mpcs)):
            check_input_file(path, option)
        check_scene(str(twin), "TWIN")
        check_cache()  # argument errors above come back before torch and Sionna load
        from rftwin.data import MeasurementError, read_measurements  # noqa: PLC0415
        from rftwin.evaluate.clusters import ClusterConfig  # noqa: PLC0415
        from rftwin.evaluate.params import MaterialsFileError  # noqa: PLC0415
        from rftwin.evaluate.report import write_evaluation  # noqa: PLC0415
        from rftwin.evaluate.run import EvaluationConfig, evaluate_twin  # noqa: PLC0415
        from rftwin.runtime import configure_torch_threads  # noqa: PLC0415
        from rftwin.twin_io import load_twin  # noqa: PLC0415

        configure_torch_threads()
        try:
            tw, doc = load_twin(twin)
            meas = read_measurements(truth, tw)
            tr = read_measurements(train, tw) if train is not None else None
            ccfg = ClusterConfig(dynamic_range_db=mpc_dynamic_range, delay_scale_s=cluster_delay_scale,
                                 angle_scale_deg=cluster_angle_scale, delay_gate_s=cluster_delay_gate,
                                 angle_gate_deg=cluster_angle_gate, delay_reference=mpc_delay_reference)
            cfg = EvaluationConfig(methods=chosen, scenario=scenario, ground_z_m=ground_z, grid_cell_m=grid_cell,
                                   settings=settings(max_depth, samples_per_src, seed, los, specular, refraction),
                                   seed=seed, clusters=ccfg)
            res = evaluate_twin(tw, doc, meas, tr, true_materials, wideband, cfg, mpcs_truth=mpcs)
        except (MeasurementError, MaterialsFileError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        with staged_dir(out) as stage:  # all outputs appear together, or none
            write_evaluation(res, stage, title=f"Evaluation of {twin} on {truth.name}")
        report = out / "report.md"
        for m in res.methods:
            s = res.metrics[m]
            extra = (f"  cluster F1 {s['cluster_f1']:.3f}, power error {s['cluster_power_mae_db']:.2f} dB"
                     if "cluster_f1" in s else "")
            console.print(f"  {m:13s} MALE {s['male_db']:6.2f} dB  median {s['median_db']:6.2f} dB  "
                          f"p90 {s['p90_db']:6.2f} dB  (n={s['n']}){extra}")
        console.print(f"wrote {report}")

"""``rftwin plan``: choose where to measure (D-optimal design on candidate links traced once)."""
from __future__ import annotations

from pathlib import Path

import typer

from rftwin.cli.common import (
    Los,
    Refraction,
    Specular,
    check_at_least,
    check_scene,
    check_solver,
    console,
    fail,
    settings,
)
from rftwin.cli.outputs import check_cache, check_input_file, check_output_file

TABLE_SUFFIXES = (".csv", ".txt", ".parquet", ".pq")  # the links files plan writes (rftwin.plan.workflow's)


def register(app: typer.Typer) -> None:
    @app.command()
    def plan(scene: str = typer.Argument(..., help="Sionna XML scene, built-in name ('room') or a calibrated twin "
                                                   "folder."),
             candidates: str = typer.Option("auto", "--candidates",
                                            help="'auto' (grid positions, every Tx-Rx pair) or a links file "
                                                 "(CSV/Parquet: link_id, tx_x..rx_z, frequency_hz)."),
             budget: int = typer.Option(..., "--budget", help="Links to choose (transmitters with --by-transmitter)."),
             out: Path = typer.Option(..., "--out", help="Chosen links, CSV/Parquet (a `rftwin predict` links file)."),
             report: Path = typer.Option(None, "--report", help="Plan JSON (default: --out with suffix .json)."),
             frequency: float = typer.Option(None, "--frequency",
                                             help="Carrier [Hz] (default: the candidates file's, else 3.5e9)."),
             prior: str = typer.Option("labels", "--prior",
                                       help="labels (text prior from object names) | scene (the scene's materials) "
                                            "| a YAML/JSON labels file (object -> ITU material)."),
             by_transmitter: bool = typer.Option(False, "--by-transmitter",
                                                 help="Choose whole transmitter configurations (all candidate "
                                                      "receivers of a Tx)."),
             noise_db: float = typer.Option(2.0, "--noise-db", help="Measurement noise std [dB]."),
             offset_std_db: float = typer.Option(None, "--offset-std-db",
                                                 help="Prior std [dB] of an unknown common power offset "
                                                      "(default: calibrated power reference)."),
             min_gain_db: float = typer.Option(None, "--min-gain-db",
                                               help="Never choose links predicted below this path gain [dB]."),
             prior_samples: int = typer.Option(0, "--prior-samples",
                                               help="Average the information over this many prior draws "
                                                    "(robust to non-linearity; 0 = at the prior mean)."),
             tx_height: float = typer.Option(1.5, "--tx-height", help="Auto candidates: Tx height [m]."),
             rx_height: float = typer.Option(1.0, "--rx-height", help="Auto candidates: Rx height [m]."),
             n_tx: int = typer.Option(8, "--n-tx", help="Auto candidates: number of Tx positions."),
             n_rx: int = typer.Option(10, "--n-rx", help="Auto candidates: number of Rx positions."),
             spacing: float = typer.Option(1.0, "--spacing", help="Auto candidates: grid spacing [m]."),
             clearance: float = typer.Option(0.3, "--clearance", help="Auto candidates: distance to surfaces [m]."),
             max_depth: int = typer.Option(3, "--max-depth", help="Maximum number of interactions per path."),
             samples_per_src: int = typer.Option(100_000, "--samples-per-src", help="Rays shot per transmitter."),
             seed: int = typer.Option(0, "--seed", help="Seed of the path solver, candidate choice and prior draws."),
             los: bool = Los, specular: bool = Specular, refraction: bool = Refraction) -> None:
        """Choose the links that teach the most about the materials; print the per-parameter std before/after."""
        check_output_file(out, "--out")  # destinations and option ranges before any import
        if out.suffix.lower() not in TABLE_SUFFIXES:
            fail(f"--out {out}: expected a .csv or .parquet links file (the JSON report goes to --report)")
        check_output_file(report or out.with_suffix(".json"), "--report")
        check_at_least(budget, 1, "--budget")
        check_at_least(noise_db, 0, "--noise-db", strict=True)
        check_at_least(offset_std_db, 0, "--offset-std-db", strict=True)
        check_at_least(prior_samples, 0, "--prior-samples")
        check_at_least(frequency, 0, "--frequency", strict=True)
        for option, value in (("--n-tx", n_tx), ("--n-rx", n_rx)):
            check_at_least(value, 1, option)
        check_at_least(spacing, 0, "--spacing", strict=True)
        check_at_least(clearance, 0, "--clearance")
        check_solver(max_depth, samples_per_src)
        if candidates != "auto":
            check_input_file(Path(candidates), "--candidates")
        if prior not in ("labels", "scene"):
            if Path(prior).suffix.lower() not in (".yaml", ".yml", ".json"):
                fail(f"--prior: unknown prior '{prior}': expected labels, scene or a .yaml/.yml/.json labels file")
            check_input_file(Path(prior), "--prior")
        check_scene(str(scene), "SCENE")
        check_cache()  # argument errors above come back before torch and Sionna load
        from rich.console import Console  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415

        from rftwin.data import MeasurementError  # noqa: PLC0415
        from rftwin.plan.workflow import plan_command  # noqa: PLC0415
        from rftwin.priors.labels import EncoderUnavailableError  # noqa: PLC0415
        from rftwin.runtime import configure_torch_threads  # noqa: PLC0415

        configure_torch_threads()
        try:
            d = plan_command(scene, budget, out, candidates=candidates, frequency_hz=frequency, prior=prior,
                             by_transmitter=by_transmitter, noise_db=noise_db, offset_std_db=offset_std_db,
                             n_tx_candidates=n_tx, n_rx_candidates=n_rx, tx_height_m=tx_height,
                             rx_height_m=rx_height, spacing_m=spacing, clearance_m=clearance,
                             n_prior_samples=prior_samples, min_gain_db=min_gain_db,
                             settings=settings(max_depth, samples_per_src, seed, los, specular, refraction),
                             seed=seed, report=report, progress=True)
        except (MeasurementError, ValueError, FileNotFoundError, EncoderUnavailableError) as exc:
            fail(str(exc))
        t = Table(title=f"expected posterior std after {len(d['selected'])} links "
                        f"(noise {d['noise_db']:g} dB, {d['information_nats']:.1f} nats)")
        for c in ("parameter", "prior", "std before", "std after", "log-std after", "reduction"):
            t.add_column(c, justify="left" if c == "parameter" else "right", no_wrap=True)
        for r in d["parameters"]:
            t.add_row(r["parameter"], f"{r['prior_value']:.4g}", f"{r['prior_std_value']:.3g}",
                      f"{r['posterior_std_value']:.3g}", f"{r['posterior_std']:.3f}",
                      f"{r['reduction']:.2f}x")
        Console().print(t)
        console.print(f"wrote {len(d['selected'])} links of {d['n_candidates']} candidates to {out} "
                      f"and the plan to {report or out.with_suffix('.json')}")

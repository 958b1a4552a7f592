"""``rftwin predict``: channels of new links from a scene or a calibrated twin."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from rftwin.cli.common import Los, MaxDepth, Refraction, Samples, Seed, Specular, console, fail, settings


def register(app: typer.Typer) -> None:
    @app.command()
    def predict(scene: str = typer.Argument(..., help="Sionna XML scene, built-in name, or calibration output folder."),
                links: Path = typer.Argument(..., help="CSV/Parquet: link_id, tx_x..rx_z, frequency_hz[, tx_power_dbm]."),
                out: Path = typer.Option(..., "--out", help="Output CSV/Parquet."),
                max_depth: int = MaxDepth, samples_per_src: int = Samples, seed: int = Seed,
                los: bool = Los, specular: bool = Specular, refraction: bool = Refraction) -> None:
        """Predict path gain, RSS and RMS delay spread for every link."""
        from rftwin.data import MeasurementError, read_links  # noqa: PLC0415
        from rftwin.io import write_table  # noqa: PLC0415
        from rftwin.predict import predict_links  # noqa: PLC0415
        from rftwin.twin_io import load_twin  # noqa: PLC0415

        try:
            twin, doc = load_twin(scene)
            lk = read_links(links, twin)
        except (MeasurementError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        twin.set_frequency(float(np.min(lk.frequency_hz)))
        pred = predict_links(twin, doc, lk.tx_pos, lk.rx_pos, lk.frequency_hz,
                             settings(max_depth, samples_per_src, seed, los, specular, refraction))
        df = lk.df.copy()
        df["path_gain_db"] = pred["path_gain_db"].to_numpy()
        df["rss_dbm"] = (df["tx_power_dbm"] + df["path_gain_db"]) if "tx_power_dbm" in df else np.nan
        df["delay_spread_s"] = pred["delay_spread_s"].to_numpy()
        df["num_paths"] = pred["num_paths"].to_numpy()
        write_table(out, df)
        console.print(f"wrote {len(df)} predictions to {out}")

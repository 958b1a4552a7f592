"""``rftwin beams``: best beam pair, SNR, MCS and throughput of every link (seed 002 section 6.8)."""
from __future__ import annotations

from pathlib import Path

import typer

from rftwin.cli.array_options import ARRAY_HELP, CODEBOOK_HELP
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


def register(app: typer.Typer) -> None:
    @app.command()
    def beams(
        twin: str = typer.Argument(..., help="Calibration output folder, Sionna XML scene or built-in name."),
        links: Path = typer.Argument(..., help="CSV/Parquet: link_id, tx_x..rx_z, frequency_hz[, tx_power_dbm]."),
        out: Path = typer.Option(..., "--out", help="Output CSV/Parquet: the links + best beams and throughput."),
        tx_array: str = typer.Option("4x4", "--tx-array", help=ARRAY_HELP),
        rx_array: str = typer.Option("4x4", "--rx-array", help=ARRAY_HELP),
        codebook: str = typer.Option("dft", "--codebook", help="Codebook of both ends: " + CODEBOOK_HELP),
        rx_codebook: str = typer.Option(None, "--rx-codebook", help="Receive codebook (default: --codebook)."),
        tx_power_dbm: float = typer.Option(10.0, "--tx-power-dbm",
                                           help="Transmit power (dBm) of links without a tx_power_dbm column."),
        noise_bandwidth_hz: float = typer.Option(2.16e9, "--noise-bandwidth-hz", help="Noise bandwidth (Hz)."),
        noise_figure_db: float = typer.Option(10.0, "--noise-figure-db", help="Receiver noise figure (dB)."),
        mcs_table: Path = typer.Option(None, "--mcs-table",
                                       help="CSV/Parquet mcs,snr_db,phy_rate_bps (default: IEEE 802.11ad)."),
        mac_efficiency: float = typer.Option(0.65, "--mac-efficiency", help="Throughput / PHY rate, in (0, 1]."),
        combine: str = typer.Option("incoherent", "--combine",
                                    help="Beam gain over paths: incoherent (wideband, resolved paths) or coherent "
                                         "(narrowband tone)."),
        gains: Path = typer.Option(None, "--gains", help="Also write every beam-pair gain (dB) to this .npz."),
        max_depth: int = MaxDepth, samples_per_src: int = Samples, seed: int = Seed,
        los: bool = Los, specular: bool = Specular, refraction: bool = Refraction,
    ) -> None:
        """Choose the best (tx, rx) beam pair of every link from the twin's cached paths and report SNR, MCS,
        PHY rate and throughput."""
        from rftwin.cli.array_options import OptionError, array_fields, check_codebook  # noqa: PLC0415
        from rftwin.cli.outputs import check_cache, check_input_file, check_output_file  # noqa: PLC0415

        check_output_file(out, "--out", (".csv", ".parquet", ".pq"))  # destinations first: no tracing wasted
        check_output_file(gains, "--gains", (".npz",))
        if combine not in ("incoherent", "coherent"):
            fail(f"--combine must be incoherent or coherent, not '{combine}'")
        check_at_least(noise_bandwidth_hz, 0, "--noise-bandwidth-hz", strict=True)
        if not 0 < mac_efficiency <= 1:
            fail(f"--mac-efficiency: MAC efficiency must lie in (0, 1], got {mac_efficiency:g}")
        check_solver(max_depth, samples_per_src)
        check_input_file(links, "LINKS")
        check_input_file(mcs_table, "--mcs-table")
        try:  # option syntax before torch loads; pattern names and files are checked below
            array_fields(tx_array, "--tx-array")
            array_fields(rx_array, "--rx-array")
            check_codebook(codebook, "--codebook")
            if rx_codebook is not None:
                check_codebook(rx_codebook, "--rx-codebook")
        except OptionError as exc:
            fail(str(exc))
        check_scene(str(twin), "TWIN")
        check_cache()
        import numpy as np  # noqa: PLC0415

        from rftwin.cli.array_options import parse_array, parse_codebook  # noqa: PLC0415
        from rftwin.data import MeasurementError, read_links  # noqa: PLC0415
        from rftwin.io import atomic_path, write_table  # noqa: PLC0415
        from rftwin.predict.beams import LinkBudget, McsTable, beam_pair_gains, select_beams  # noqa: PLC0415
        from rftwin.twin_io import load_twin  # noqa: PLC0415

        try:
            ta, ra = parse_array(tx_array, "--tx-array"), parse_array(rx_array, "--rx-array")
            tcb = parse_codebook(codebook, "--codebook", ta.num_ports)
            rcb = parse_codebook(rx_codebook or codebook, "--rx-codebook" if rx_codebook else "--codebook",
                                 ra.num_ports)
            table = McsTable.from_file(mcs_table) if mcs_table is not None else McsTable.ieee_80211ad()
            budget = LinkBudget(tx_power_dbm, noise_bandwidth_hz, noise_figure_db, mac_efficiency, table)
            tw, doc = load_twin(twin)
            lk = read_links(links, tw)
        except (OptionError, MeasurementError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        try:
            tw.set_frequency(float(np.min(lk.frequency_hz)))
        except ValueError as exc:
            fail(f"{twin}: cannot evaluate the scene's materials at {np.min(lk.frequency_hz):g} Hz ({exc}); use a "
                 "calibrated twin or materials defined at this frequency")
        try:
            bg = beam_pair_gains(tw, doc, lk.tx_pos, lk.rx_pos, lk.frequency_hz, ta, ra, tcb, rcb,
                                 settings(max_depth, samples_per_src, seed, los, specular, refraction),
                                 combine=combine)
        except ValueError as exc:  # codebook size vs array
            fail(str(exc))
        sel = select_beams(bg, lk.tx_power_dbm, budget)
        df = lk.df.copy()
        for c in sel.columns:
            df[c] = sel[c].to_numpy()
        df["num_paths"] = bg.num_paths
        write_table(out, df)
        if gains is not None:
            with atomic_path(gains) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, gain_db=bg.gain_db, link_id=np.array([str(x) for x in lk.link_id]))
        n_ok = int((sel["mcs"] >= 0).sum())
        med = float(np.median(sel["throughput_bps"])) / 1e6
        console.print(f"wrote {len(df)} links to {out}: {n_ok} reach an MCS, median throughput {med:.1f} Mbit/s "
                      f"({bg.gain_db.shape[2]} tx x {bg.gain_db.shape[1]} rx beams)")

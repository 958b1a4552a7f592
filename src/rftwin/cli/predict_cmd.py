"""``rftwin predict``: channels of new links from a scene or a calibrated twin."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from rftwin.cli.array_options import ARRAY_HELP, OptionError, array_fields
from rftwin.cli.common import (
    Device,
    Diffraction,
    Los,
    MaxDepth,
    MemoryBudget,
    RayAddress,
    Refraction,
    Samples,
    Seed,
    Specular,
    Workers,
    check_scene,
    check_solver,
    console,
    fail,
    memory_budget,
    settings,
    torch_device,
)
from rftwin.cli.outputs import check_cache, check_input_file, check_output_file
from rftwin.runtime import DEVICE_CHOICES

SCENE = typer.Argument(..., help="Sionna XML scene, built-in name, or calibration output folder.")
LINKS = typer.Argument(..., help="CSV/Parquet: link_id, tx_x..rx_z, frequency_hz[, tx_power_dbm].")
OUT = typer.Option(..., "--out", help="Output CSV/Parquet.")
WIDEBAND = typer.Option(None, "--wideband",
                        help="Also write a wideband sidecar (.h5/.hdf5/.npz) of the predicted links.")
BANDWIDTH = typer.Option(200e6, "--bandwidth-hz", help="Wideband: OFDM bandwidth W (Hz).")
SUBCARRIERS = typer.Option(256, "--subcarriers", help="Wideband: number of subcarriers K.")
KIND = typer.Option("cfr", "--wideband-kind", help="Wideband content: cfr, cir (one tap per path) or both.")
RELATIVE = typer.Option(False, "--relative-delays/--absolute-delays",
                        help="Wideband: delays relative to each link's first path (sounders without absolute timing).")
WINDOW = typer.Option("hann", "--window",
                      help="Window of the band-limited delay features: hann, or none (seed 003 eq. 24 as printed).")
ANGULAR = typer.Option("circular", "--angular-spread", help="Angular-spread definition: circular or 3gpp.")
TX_ARRAY = typer.Option(None, "--tx-array", help="Transmit array (default: one isotropic V element). " + ARRAY_HELP)
RX_ARRAY = typer.Option(None, "--rx-array", help="Receive array (default: one isotropic V element).")
MIMO = typer.Option(None, "--mimo", help="With arrays: write every link's narrowband per-element channel matrix "
                                         "(complex 'h' [links, rx ports, tx ports], 'link_id') to this .npz.")


def register(app: typer.Typer) -> None:
    @app.command()
    def predict(scene: str = SCENE, links: Path = LINKS, out: Path = OUT, wideband: Path | None = WIDEBAND,
                bandwidth_hz: float = BANDWIDTH, subcarriers: int = SUBCARRIERS, wideband_kind: str = KIND,
                relative_delays: bool = RELATIVE, window: str = WINDOW, angular: str = ANGULAR,
                tx_array: str | None = TX_ARRAY, rx_array: str | None = RX_ARRAY, mimo: Path | None = MIMO,
                max_depth: int = MaxDepth, samples_per_src: int = Samples, seed: int = Seed,
                los: bool = Los, specular: bool = Specular, refraction: bool = Refraction,
                diffraction: bool = Diffraction, budget: str | None = MemoryBudget, device: str = Device,
                workers: int = Workers, ray_address: str | None = RayAddress) -> None:
        """Predict path gain, RSS, delays, delay spread, K-factor and angular spreads for every link."""
        check_output_file(out, "--out")  # destinations first: a wrong --out costs no tracing
        check_output_file(wideband, "--wideband", (".h5", ".hdf5", ".npz"))
        if wideband is not None and wideband.absolute() == out.absolute():
            fail(f"--wideband {wideband}: the same file as --out")
        if wideband_kind not in ("cfr", "cir", "both"):
            fail(f"--wideband-kind must be cfr, cir or both, not '{wideband_kind}'")
        if bandwidth_hz <= 0 or subcarriers < 1:
            fail("--bandwidth-hz must be positive and --subcarriers at least 1")
        if window not in ("none", "hann"):
            fail(f"--window must be hann or none, not '{window}'")
        if angular not in ("circular", "3gpp"):
            fail(f"--angular-spread must be circular or 3gpp, not '{angular}'")
        check_output_file(mimo, "--mimo", (".npz",))
        if mimo is not None and tx_array is None and rx_array is None:
            fail(f"--mimo {mimo}: needs --tx-array and/or --rx-array")
        if workers < 1:
            fail(f"--workers must be at least 1, got {workers}")
        if device not in DEVICE_CHOICES:
            fail(f"--device must be one of {', '.join(DEVICE_CHOICES)}, not '{device}'")
        check_solver(max_depth, samples_per_src)
        check_input_file(links, "LINKS")
        try:  # array syntax and pattern / polarization names before torch loads
            for option, text in (("--tx-array", tx_array), ("--rx-array", rx_array)):
                if text is not None:
                    array_fields(text, option)
        except OptionError as exc:
            fail(str(exc))
        budget_bytes = memory_budget(budget)  # rftwin.trace.budget is pure: no torch yet
        check_scene(str(scene), "SCENE")
        check_cache()  # argument errors above come back before torch and Sionna load
        from rftwin.cli.array_options import parse_array  # noqa: PLC0415
        from rftwin.data import MeasurementError, read_links, write_wideband
        from rftwin.data.measurements import Problem
        from rftwin.io import write_table
        from rftwin.predict.predict import (
            FEATURE_COLUMNS,
            WidebandGrid,
            predict_channels,
        )
        from rftwin.trace.budget import BudgetError, use_budget  # noqa: PLC0415
        from rftwin.trace.fanout import FanoutError  # noqa: PLC0415
        from rftwin.twin_io import load_twin

        use_budget(budget_bytes)  # every command sets (or resets) the process-wide budget
        dev = torch_device(device)
        try:
            ta = None if tx_array is None else parse_array(tx_array, "--tx-array")
            ra = None if rx_array is None else parse_array(rx_array, "--rx-array")
            twin, doc = load_twin(scene)
            fld = None
            from rftwin.fields.io import is_field_folder, load_field  # noqa: PLC0415

            if is_field_folder(scene):  # a twin calibrated with --model fourier / hashgrid
                fld, _ = load_field(scene)
            lk = read_links(links, twin)
            if wideband is not None:  # sidecar keys are link ids: check them before any tracing
                bad = [i for i, lid in enumerate(lk.link_id) if "/" in lid or lid in (".", "..")]
                if bad:
                    raise MeasurementError(links, [Problem(f"link_id '{lk.link_id[i]}' cannot name a wideband "
                                                           "sidecar entry (no '/', not '.' or '..')",
                                                           columns=("link_id",), row=i + 1) for i in bad])
        except (MeasurementError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        twin.set_frequency(float(np.min(lk.frequency_hz)))
        grid = None if wideband is None else WidebandGrid(bandwidth_hz, subcarriers, wideband_kind, relative_delays,
                                                          None if window == "none" else window)
        try:
            pred = predict_channels(twin, doc, lk.tx_pos, lk.rx_pos, lk.frequency_hz,
                                    settings(max_depth, samples_per_src, seed, los, specular, refraction,
                                             diffraction),
                                    link_ids=lk.link_id, wideband=grid, angular_method=angular,
                                    memory_budget=budget_bytes, device=dev, workers=workers,
                                    ray_address=ray_address, tx_array=ta, rx_array=ra, field=fld)
        except (BudgetError, FanoutError) as exc:
            fail(str(exc))
        df = lk.df.copy()
        df["path_gain_db"] = pred.table["path_gain_db"].to_numpy()
        df["rss_dbm"] = (df["tx_power_dbm"] + df["path_gain_db"]) if "tx_power_dbm" in df else np.nan
        for c in FEATURE_COLUMNS[1:]:
            df[c] = pred.table[c].to_numpy()
        for c in pred.table.columns:
            if c.endswith(("_cfr_db", "_cfr_s")):
                df[c] = pred.table[c].to_numpy()
        lost = np.nonzero((df["num_paths"].to_numpy() > 0) & ~np.isfinite(df["path_gain_db"].to_numpy()))[0]
        if len(lost):  # never write non-finite predictions silently
            fail(f"{links}: {len(lost)} link(s) with traced paths got a non-finite path gain (first: row {lost[0] + 1}"
                 f", link_id '{lk.link_id[lost[0]]}'); check the twin's materials; nothing written")
        if mimo is not None:  # the sidecars first: when one fails, no CSV is left behind either
            from rftwin.io import atomic_path  # noqa: PLC0415

            with atomic_path(mimo) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, h=pred.mimo, link_id=np.array([str(x) for x in lk.link_id]))
            console.print(f"wrote {pred.mimo.shape[1]} x {pred.mimo.shape[2]} channel matrices to {mimo}")
        if wideband is not None:
            try:
                write_wideband(wideband, pred.wideband)
            except MeasurementError as exc:
                fail(str(exc))
        write_table(out, df)
        console.print(f"wrote {len(df)} predictions to {out}")
        if wideband is not None:
            console.print(f"wrote the wideband sidecar of {len(df)} links to {wideband}")

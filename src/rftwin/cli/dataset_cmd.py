"""``rftwin dataset``: export a synthetic link dataset (sharded Parquet + schema.json) of a twin."""
from __future__ import annotations

from pathlib import Path

import typer

from rftwin.cli.common import (
    Diffraction,
    Los,
    MemoryBudget,
    RayAddress,
    Refraction,
    Specular,
    Workers,
    check_scene,
    check_solver,
    console,
    fail,
    memory_budget,
)
from rftwin.cli.outputs import check_cache, check_output_dir

TWIN = typer.Argument(..., help="Sionna XML scene, built-in name, or calibration output folder.")
POS_HELP = ("X,Y,Z[;X,Y,Z...], grid:X0:X1:NX,Y0:Y1:NY,Z[0:Z1:NZ], random:N,X0:X1,Y0:Y1,Z0:Z1 or file:PATH "
            "(CSV/Parquet with x,y,z); metres.")
TX = typer.Option(..., "--tx", help="Transmitter positions: " + POS_HELP)
RX = typer.Option(..., "--rx", help="Receiver positions (every tx x rx pair is a link): " + POS_HELP)
OUT = typer.Option(..., "--out", help="Dataset folder (new, empty, or an unfinished export of the same spec).")
FREQ = typer.Option(3.5e9, "--frequency-hz", help="Carrier frequency (Hz).")
FIELDS = typer.Option(None, "--fields", help="Comma-separated fields (default: every scalar field; add cfr, cir).")
BANDWIDTH = typer.Option(200e6, "--bandwidth-hz", help="cfr/cir: OFDM bandwidth W (Hz).")
SUBCARRIERS = typer.Option(64, "--subcarriers", help="cfr/cir: number of subcarriers K.")
PER_SHARD = typer.Option(2048, "--links-per-shard", help="Links per Parquet shard.")
RADIO_MAP = typer.Option(False, "--radio-map/--no-radio-map", help="Also write a radio map per transmitter (NPZ).")
MAP_HEIGHT = typer.Option(1.5, "--radio-map-height", help="Radio maps: plane height (m).")
MAP_CELL = typer.Option(0.5, "--radio-map-cell", help="Radio maps: cell size (m).")
DEPTH = typer.Option(3, "--max-depth", help="Maximum number of interactions per path.")
SAMPLES = typer.Option(100_000, "--samples-per-src", help="Rays shot per transmitter.")
SEED = typer.Option(7, "--seed", help="Seed of the random positions and of the path solver.")


def register(app: typer.Typer) -> None:
    @app.command()
    def dataset(twin: str = TWIN, tx: str = TX, rx: str = RX, out: Path = OUT, frequency_hz: float = FREQ,
                fields: str | None = FIELDS, bandwidth_hz: float = BANDWIDTH, subcarriers: int = SUBCARRIERS,
                links_per_shard: int = PER_SHARD, radio_map: bool = RADIO_MAP, radio_map_height: float = MAP_HEIGHT,
                radio_map_cell: float = MAP_CELL, max_depth: int = DEPTH, samples_per_src: int = SAMPLES,
                seed: int = SEED, los: bool = Los, specular: bool = Specular, refraction: bool = Refraction,
                diffraction: bool = Diffraction, budget: str | None = MemoryBudget, workers: int = Workers,
                ray_address: str | None = RayAddress) -> None:
        """Export path gain, delays, delay spread, K-factor, angles, CFR/CIR of every tx x rx link as sharded
        Parquet with schema.json (resumable; load with rftwin.dataset.LinkDataset)."""
        check_output_dir(out, "--out", owned=("schema.json",))  # new, empty, or a dataset (spec checked later)
        if workers < 1:
            fail(f"--workers must be at least 1, got {workers}")
        if not frequency_hz > 0:  # DatasetSpec.check says the same once torch has loaded
            fail(f"--frequency-hz must be positive (Hz), got {frequency_hz}")
        if links_per_shard < 1:
            fail(f"--links-per-shard must be at least 1, got {links_per_shard}")
        if not bandwidth_hz > 0 or subcarriers < 1:
            fail("--bandwidth-hz must be positive and --subcarriers at least 1")
        if radio_map and not radio_map_cell > 0:
            fail(f"--radio-map-cell must be positive (m), got {radio_map_cell}")
        check_solver(max_depth, samples_per_src)
        budget_bytes = memory_budget(budget)  # rftwin.trace.budget is pure: no torch yet
        from rftwin.dataset.positions import DatasetError, parse_positions  # noqa: PLC0415 - torch-free
        from rftwin.dataset.schema import DEFAULT_FIELDS, check_fields  # noqa: PLC0415 - torch-free

        try:
            names = DEFAULT_FIELDS if fields is None else check_fields(fields.split(","))
            parse_positions(tx, "--tx")
            parse_positions(rx, "--rx")
        except DatasetError as exc:
            fail(str(exc))
        check_scene(str(twin), "TWIN")
        check_cache()  # argument errors above come back before torch and Sionna load
        from rftwin.dataset import DatasetSpec, export_dataset
        from rftwin.trace.budget import BudgetError, use_budget
        from rftwin.trace.fanout import FanoutError
        from rftwin.trace.tracer import SolverSettings
        from rftwin.twin_io import load_twin

        use_budget(budget_bytes)
        try:
            spec = DatasetSpec(tx=tx, rx=rx, frequency_hz=frequency_hz, seed=seed, fields=tuple(names),
                               bandwidth_hz=bandwidth_hz, num_subcarriers=subcarriers,
                               links_per_shard=links_per_shard, radio_map=radio_map,
                               radio_map_height_m=radio_map_height, radio_map_cell_m=radio_map_cell,
                               settings=SolverSettings(max_depth=max_depth, samples_per_src=samples_per_src,
                                                       los=los, specular_reflection=specular,
                                                       refraction=refraction, diffraction=diffraction))
            spec.check()
            tw, doc = load_twin(twin, frequency_hz)
            res = export_dataset(tw, doc, spec, out, twin_ref=twin, workers=workers, ray_address=ray_address,
                                 memory_budget=budget_bytes)
        except (DatasetError, BudgetError, FanoutError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        console.print(f"wrote {res.shards_written} of {res.num_shards} shards ({res.num_links} links; "
                      f"{res.shards_skipped} already finished) to {out} in {res.seconds:.1f} s"
                      + (f"; {res.radio_maps_written} radio maps" if radio_map else ""))

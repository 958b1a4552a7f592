"""``rftwin ris``: rank candidate RIS positions / orientations for a target area on a (calibrated) twin."""
from __future__ import annotations

from pathlib import Path

import typer

from rftwin.cli.common import Seed, check_at_least, check_scene, console, fail

OWNED = ("ris_ranking.csv", "ris.json", "ris_gain_maps.png", "ris_target_points.csv")


def register(app: typer.Typer) -> None:
    @app.command()
    def ris(
        twin: str = typer.Argument(..., help="Calibration output folder, Sionna XML scene or built-in name."),
        candidates: Path = typer.Option(..., "--candidates", help="CSV/Parquet: x, y, z (RIS centre, m) and "
                                        "yaw_deg (vertical RIS facing that azimuth) or nx, ny, nz; optional "
                                        "candidate_id."),
        target: str = typer.Option(..., "--target", help="Target area: a CSV/Parquet file of points x, y, z, or "
                                   "a box 'X0,X1,Y0,Y1,Z' (m) sampled every --spacing m."),
        tx: str = typer.Option(..., "--tx", help="Transmitter position 'X Y Z' in m."),
        out: Path = typer.Option(Path("ris"), "--out", help="Output folder."),
        frequency: float = typer.Option(None, "--frequency", help="Carrier [Hz] (default: the twin's reference "
                                                                  "frequency, else 6.6 GHz)."),
        elements: str = typer.Option("16x16", "--elements", help="ROWSxCOLS elements."),
        size: str = typer.Option("0.32x0.32", "--size", help="WIDTHxHEIGHT of the RIS in m."),
        bits: int = typer.Option(2, "--bits", help="Phase bits per element (0: continuous phases)."),
        focus: str = typer.Option("center", "--focus", help="center: focus on the area's centroid; best: the best "
                                                           "of the centroid and 9 points spread over the area."),
        spacing: float = typer.Option(0.2, "--spacing", help="Point spacing of a --target box in m."),
        max_depth: int = typer.Option(3, "--max-depth", help="Maximum interactions per path (twin, no RIS)."),
        samples: int = typer.Option(1_000_000, "--samples-per-src", help="Rays shot per transmitter."),
        seed: int = Seed,
    ) -> None:
        """Configure an RIS at each candidate pose to focus on the target area (Tang et al. 2021 model, visibility
        from the twin's geometry); mean gain over the area with vs without the RIS; ranking (CSV, JSON, PNG)."""
        import numpy as np  # noqa: PLC0415

        from rftwin.cli.outputs import check_cache, check_input_file, check_output_dir, staged_dir  # noqa: PLC0415

        check_output_dir(out, "--out", owned=OWNED)

        def pair(text: str, option: str, conv):
            parts = text.lower().split("x")
            try:
                a, b = (conv(p) for p in parts)
            except ValueError:
                fail(f"{option}: expected AxB (e.g. {'16x16' if conv is int else '0.32x0.32'}), found '{text}'")
            if not (a > 0 and b > 0):
                fail(f"{option}: both numbers must be > 0, found '{text}'")
            return a, b

        rows, cols = pair(elements, "--elements", int)
        width, height = pair(size, "--size", float)
        if not 0 <= bits <= 8:
            fail(f"--bits must be 0 (continuous) .. 8, found {bits}")
        if focus not in ("center", "best"):
            fail(f"--focus must be 'center' or 'best', found '{focus}'")
        if samples < 1 or max_depth < 0:
            fail("--samples-per-src must be >= 1 and --max-depth >= 0")
        if frequency is not None and not frequency > 0:
            fail(f"--frequency must be > 0 Hz, found {frequency}")
        check_at_least(spacing, 0, "--spacing", strict=True)
        try:
            txp = [float(p) for p in tx.replace(",", " ").split()]
        except ValueError:
            txp = []
        if len(txp) != 3 or not np.all(np.isfinite(txp)):
            fail(f"--tx: expected three numbers 'X Y Z' in m, found '{tx}'")
        check_input_file(candidates, "--candidates")
        if not Path(target).exists():  # then a box X0,X1,Y0,Y1,Z (read_target checks it again)
            try:
                box_ok = len([float(v) for v in target.split(",")]) == 5
            except ValueError:
                box_ok = False
            if not box_ok:
                fail(f"--target: expected a file of points or a box 'X0,X1,Y0,Y1,Z' in m, found '{target}'")
        check_scene(str(twin), "TWIN")
        check_cache()  # argument errors above come back before torch and Sionna load
        import pandas as pd  # noqa: PLC0415

        from rftwin.data import MeasurementError  # noqa: PLC0415
        from rftwin.io import write_json, write_table  # noqa: PLC0415
        from rftwin.ris.inputs import read_candidates, read_target  # noqa: PLC0415
        from rftwin.ris.physics import RisSpec  # noqa: PLC0415
        from rftwin.ris.workflow import plot_gain_maps, run_ris  # noqa: PLC0415
        from rftwin.trace.tracer import SolverSettings  # noqa: PLC0415
        from rftwin.twin_io import load_twin  # noqa: PLC0415

        try:
            spec = RisSpec(rows, cols, width, height, bits or None)
            tw, doc = load_twin(twin)
            f = frequency or float((doc or {}).get("reference_frequency_hz") or 6.6e9)
            if not f > 0:
                fail(f"--frequency must be > 0 Hz, found {f}")
            tw.set_frequency(f)
            lo, hi = tw.bbox()
            ids, poses = read_candidates(candidates, (lo, hi))
            pts = read_target(target, spacing)
            outside = np.any((pts < lo - 1e-3) | (pts > hi + 1e-3), axis=1)
            if outside.any():
                i = int(np.argmax(outside))
                fail(f"--target: point {i + 1} ({', '.join(f'{v:g}' for v in pts[i])}) m lies outside the "
                     f"scene's bounding box [{', '.join(f'{v:g}' for v in lo)}] .. "
                     f"[{', '.join(f'{v:g}' for v in hi)}] m")
            if np.any(np.asarray(txp) < lo - 1e-3) or np.any(np.asarray(txp) > hi + 1e-3):
                fail(f"--tx ({tx}) lies outside the scene's bounding box")
            st = SolverSettings(max_depth=max_depth, samples_per_src=samples, seed=seed)
            study = run_ris(tw, doc, np.array(txp), ids, poses, pts, spec, f, st, focus)
        except (MeasurementError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        rk = study.ranking
        summary = {"twin": str(twin), "tx_m": txp, "frequency_hz": f, "focus": focus,
                   "ris": {"rows": rows, "cols": cols, "width_m": width, "height_m": height,
                           "bits": bits or None, "element_pattern": "cos^q, q = 1",
                           "model": "Tang et al., IEEE TWC 2021, Theorem 1; G = 4 pi dx dy / lambda^2"},
                   "combination": "power sum: P_with = P_twin + |h_RIS|^2",
                   "gain_definition": "mean over target points of 10 log10(P_with / P_twin) [dB]",
                   "target_points": len(pts), "points_without_twin_path": rk.points_without_reference,
                   "best_candidate": study.table["candidate_id"].iloc[0],
                   "candidates": study.table.to_dict(orient="records")}
        with staged_dir(out) as stage:
            write_table(stage / "ris_ranking.csv", study.table.round(6))
            write_table(stage / "ris_target_points.csv", pd.DataFrame(
                {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2], "twin_path_gain_db": rk.reference_db}))
            write_json(stage / "ris.json", summary)
            plot_gain_maps(study, ids, stage / "ris_gain_maps.png", f"RIS gain over the target, {f / 1e9:g} GHz")
        t = study.table
        console.print(f"{len(t)} candidates, {len(pts)} target points ({rk.points_without_reference} without a "
                      f"twin path, left out); best {t['candidate_id'].iloc[0]}: mean gain "
                      f"{t['mean_gain_db'].iloc[0]:.2f} dB; wrote {out}/ris_ranking.csv, ris.json, "
                      "ris_gain_maps.png")

"""``rftwin update``: move a proxy mesh along a trajectory, re-trace only the links it touches, write time series."""
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
    check_scene,
    check_solver,
    console,
    fail,
    settings,
)


def register(app: typer.Typer) -> None:
    @app.command()
    def update(
        twin: str = typer.Argument(..., help="Calibration output folder, Sionna XML scene or built-in name."),
        mesh: str = typer.Option("box:0.4x0.3x1.8", "--mesh",
                                 help="Proxy: a mesh file (PLY/OBJ/STL/GLB/OFF), box:WxDxH or cylinder:RxH (m)."),
        trajectory: Path = typer.Option(..., "--trajectory",
                                        help="CSV/Parquet: x, y, z (m, bounding-box centre of the proxy)[, t_s]."),
        links: Path = typer.Option(..., "--links", help="CSV/Parquet: link_id, tx_x..rx_z, frequency_hz."),
        out: Path = typer.Option(..., "--out", help="Output folder: timeseries.csv, steps.csv, summary.json."),
        label: str = typer.Option("body", "--label", help="Proxy material: body or an ITU material name."),
        margin_m: float = typer.Option(0.05, "--margin-m", help="Extra margin of the region test (m)."),
        ignore_below_db: float = typer.Option(30.0, "--ignore-below-db",
                                              help="Paths this far below their link's power are left out of the "
                                                   "region test."),
        new_path_tolerance_db: float = typer.Option(None, "--new-path-tolerance-db",
                                                    help="Also re-trace links that a path via the proxy could "
                                                         "change by more than this (dB) (conservative)."),
        full: bool = typer.Option(False, "--full/--local", help="Re-trace every link at every step (reference)."),
        method: str = typer.Option("auto", "--method",
                                   help="Local update: auto (image; region with --diffraction or --no-specular), "
                                        "region (re-trace links whose paths / Fresnel zones meet the proxy), image "
                                        "(static paths the proxy does not block + every specular path via it "
                                        "by the image method; exact, no Sionna call in an opaque room; no "
                                        "--diffraction) or geometric (static paths minus "
                                        "those the proxy blocks; Sionna for links a path via the proxy can "
                                        "reach; no --diffraction)."),
        geometric_tolerance_db: float = typer.Option(0.01, "--geometric-tolerance-db",
                                                     help="geometric / image: re-trace links that paths via the "
                                                          "proxy (geometric) or paths the image method does not "
                                                          "build (image: through the proxy or other objects) "
                                                          "could change by more than this (dB)."),
        geometric_order: int = typer.Option(None, "--geometric-order",
                                            help="geometric: reflections counted in paths via the proxy "
                                                 "(default: --max-depth, conservative; lower is faster and "
                                                 "may miss weak paths)."),
        diffraction: bool = typer.Option(False, "--diffraction/--no-diffraction",
                                         help="Trace first-order diffraction too (around the proxy's edges)."),
        max_depth: int = MaxDepth, samples_per_src: int = Samples, seed: int = Seed,
        los: bool = Los, specular: bool = Specular, refraction: bool = Refraction,
    ) -> None:
        """Insert a proxy (a person, a box, any labelled mesh) and move it along a trajectory; at every step
        update every link locally (image: the static paths the proxy does not block plus every specular path via
        it by the image method; geometric: the static paths the proxy does not block, Sionna only for links a
        path via the proxy can reach; region: re-trace links whose paths or first Fresnel zones meet its old or
        new place), and write the time series of path gain, delay spread and shadow loss per link."""
        from rftwin.cli.outputs import check_cache, check_input_file, check_output_dir, staged_dir  # noqa: PLC0415

        owned = ("timeseries.csv", "steps.csv", "summary.json")
        check_output_dir(out, "--out", owned)  # destinations and options first: no import, no tracing wasted
        if margin_m < 0 or ignore_below_db <= 0:
            fail("--margin-m must be >= 0 and --ignore-below-db > 0")
        if new_path_tolerance_db is not None and new_path_tolerance_db <= 0:
            fail("--new-path-tolerance-db must be > 0")
        if method not in ("auto", "geometric", "image", "region"):
            fail(f"--method '{method}': expected auto, region, image or geometric")
        if method == "auto":
            method = "region" if diffraction or not specular else "image"
        if method == "image" and not specular:
            fail("--method image builds specular paths; with --no-specular use --method region")
        if method in ("geometric", "image") and diffraction:
            fail(f"--method {method} needs a trace without diffraction (near misses change diffracted paths); "
                 "use --method region")
        if geometric_tolerance_db <= 0:
            fail("--geometric-tolerance-db must be > 0")
        if geometric_order is not None and geometric_order < 1:
            fail(f"--geometric-order must be >= 1, got {geometric_order}")
        check_solver(max_depth, samples_per_src)
        from rftwin.materials.itu import normalise_label  # noqa: PLC0415 - the ITU table only, no torch

        try:
            normalise_label(label, ("body",))
        except ValueError as exc:
            fail(f"--label: {exc}")
        m = mesh.strip()
        if not m.lower().startswith(("box:", "cylinder:")) and not Path(m).is_file():
            fail(f"--mesh: mesh '{m}': no such file (expected a mesh file, box:WxDxH or cylinder:RxH)")
        check_input_file(trajectory, "--trajectory")
        check_input_file(links, "--links")
        check_scene(str(twin), "TWIN")
        check_cache()  # argument errors above come back before torch and Sionna load
        from dataclasses import replace  # noqa: PLC0415

        import numpy as np  # noqa: PLC0415

        from rftwin.data import MeasurementError, read_links  # noqa: PLC0415
        from rftwin.data.trajectory import read_trajectory  # noqa: PLC0415
        from rftwin.dynamic.proxy import ProxyError, ProxySpec, proxy_half_size  # noqa: PLC0415
        from rftwin.dynamic.update import run_update  # noqa: PLC0415
        from rftwin.io import write_json, write_table  # noqa: PLC0415
        from rftwin.runtime import configure_torch_threads  # noqa: PLC0415
        from rftwin.twin_io import load_twin  # noqa: PLC0415

        configure_torch_threads()  # the image method's many small tensor operations: one thread (RFTWIN_TORCH_THREADS)

        spec = ProxySpec(mesh=mesh, label=label)
        try:
            half = proxy_half_size(spec)
            tw, doc = load_twin(twin)
            if spec.name in tw.names:
                raise ProxyError(f"the scene already has an object named '{spec.name}'")
            lk = read_links(links, tw)
            times, pos = read_trajectory(trajectory, tw.bbox(), half)
            tw.set_frequency(float(np.min(lk.frequency_hz)))
        except (ProxyError, MeasurementError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        try:
            st = replace(settings(max_depth, samples_per_src, seed, los, specular, refraction), diffraction=diffraction)
            res = run_update(tw, doc, lk.tx_pos, lk.rx_pos, lk.frequency_hz, spec, times, pos, st,
                             margin_m=margin_m, full_retrace=full, ignore_below_db=ignore_below_db,
                             new_path_tolerance_db=new_path_tolerance_db, method=method,
                             geometric_tolerance_db=geometric_tolerance_db, geometric_order=geometric_order)
        except ProxyError as exc:  # e.g. an ITU label not defined at the links' frequency
            fail(str(exc))
        ids = np.array([str(x) for x in lk.link_id])
        series = res.series.copy()
        series.insert(2, "link_id", ids[series["link"].to_numpy()])
        series = series.drop(columns="link")
        st = res.steps
        with staged_dir(out) as stage:  # all three files or none
            write_table(stage / "timeseries.csv", series)
            write_table(stage / "steps.csv", res.steps)
            write_json(stage / "summary.json", {
                "links": len(ids), "steps": len(st), "mode": "full" if full else "local",
                "method": None if full else method, "proxy": mesh,
                "label": label,
                "median_step_seconds": float(st["seconds"].iloc[1:].median()) if len(st) > 1 else None,
                "mean_links_retraced": float(st["links_retraced"].iloc[1:].mean()) if len(st) > 1 else None,
                "max_shadow_loss_db": {i: float(np.nanmax(series.loc[series.link_id == i, "shadow_loss_db"]))
                                       for i in ids}})
        console.print(f"wrote {len(st)} steps x {len(ids)} links to {out}: "
                      f"{res.steps['links_retraced'].iloc[1:].mean() if len(st) > 1 else len(ids):.1f} links "
                      "re-traced per step")

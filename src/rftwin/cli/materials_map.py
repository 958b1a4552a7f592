"""``rftwin materials-map``: PNG maps of eps_r, sigma and slab reflection magnitude over one object's surface,
from a saved material field or a calibrated twin (per-object values: uniform maps)."""
from __future__ import annotations

from pathlib import Path

import typer

from rftwin.cli.common import check_at_least, console, fail
from rftwin.cli.outputs import check_output_dir, staged_dir


def register(app: typer.Typer) -> None:
    @app.command("materials-map")
    def materials_map(
        source: str = typer.Argument(..., help="Saved field folder (field.json + field.pt), calibrated twin folder "
                                               "or scene reference."),
        object_name: str = typer.Option(..., "--object", help="Object (calibration unit) to map."),
        out: Path = typer.Option(..., "--out", help="Output folder for eps_r.png, sigma.png, reflection.png and "
                                                    "material_map.csv."),
        frequency_hz: float = typer.Option(None, "--frequency", help="Frequency (Hz); default: the field's or "
                                                                      "twin's reference frequency."),
        angle_deg: float = typer.Option(0.0, "--angle", help="Incidence angle from the normal (deg) for |R|."),
        spacing_m: float = typer.Option(0.05, "--spacing", help="Grid spacing on the surface (m)."),
        normal: str = typer.Option(None, "--normal", help="Pick the planar face whose normal is closest to "
                                                          "'x,y,z' (default: the largest face)."),
    ) -> None:
        """Sample a grid on the object's (largest or chosen) planar face and map its materials."""
        import numpy as np  # noqa: PLC0415

        check_output_dir(out, "--out", owned=("material_map.csv", "eps_r.png"))  # before any work
        check_at_least(spacing_m, 0, "--spacing", strict=True)
        check_at_least(frequency_hz, 0, "--frequency", strict=True)
        if not 0 <= angle_deg < 90:
            fail(f"--angle must lie in [0, 90) degrees from the normal, got {angle_deg:g}")
        nvec = None
        if normal:
            try:
                nvec = np.array([float(x) for x in normal.split(",")])
                assert nvec.shape == (3,) and np.linalg.norm(nvec) > 0
            except (ValueError, AssertionError):
                fail(f"--normal: expected three comma-separated numbers 'x,y,z', got '{normal}'")
        from rftwin.fields.io import is_field_folder, load_field  # noqa: PLC0415 - torch from here on
        from rftwin.fields.maps import build_map, object_mesh, write_map  # noqa: PLC0415
        from rftwin.fields.surface import surface_grid  # noqa: PLC0415

        try:
            if is_field_folder(source):
                import torch  # noqa: PLC0415

                from rftwin.fields.evaluate import field_values  # noqa: PLC0415
                from rftwin.scene.load import load  # noqa: PLC0415

                fld, doc = load_field(source)
                if not doc.get("scene_path"):
                    fail(f"{source}: field.json names no scene; cannot sample surfaces")
                twin = load(doc["scene_path"])
                units = doc["object_names"]
                if object_name not in units:
                    fail(f"{source}: no object '{object_name}' in the field; objects: {', '.join(units)}")
                f = frequency_hz or fld.reference_frequency_hz
                v, fc = object_mesh(twin.meshes(), twin.names, object_name)
                grid = surface_grid(v, fc, spacing_m, nvec)
                k = units.index(object_name)
                e, s = field_values(fld, grid.points, torch.full((len(grid.points),), k, dtype=torch.long), [f])
                th = float(fld.thickness[k])
                m = build_map(object_name, grid, e[0], s[0], f, th, angle_deg)
            else:
                from rftwin.twin_io import load_twin, material_values  # noqa: PLC0415

                twin, doc = load_twin(source)
                f = frequency_hz or float((doc or {}).get("reference_frequency_hz", 3.5e9))
                if object_name not in twin.names:
                    fail(f"{source}: no object '{object_name}'; objects: {', '.join(twin.names)}")
                v, fc = object_mesh(twin.meshes(), twin.names, object_name)
                grid = surface_grid(v, fc, spacing_m, nvec)
                mv = material_values(twin, doc, np.array([f]))
                k = twin.index_of(object_name)
                P = len(grid.points)
                m = build_map(object_name, grid, np.full(P, float(mv.eps_r[0, 0, k])),
                              np.full(P, float(mv.sigma[0, 0, k])), f, twin.objects[k].thickness_m, angle_deg)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            fail(str(exc))
        with staged_dir(out) as stage:  # all files appear together, or none
            files = [out / p.name for p in write_map(m, stage)]
        console.print(f"{len(m.grid.points)} grid cells on '{object_name}' at {m.frequency_hz / 1e9:g} GHz; "
                      f"eps_r {np.nanmin(m.eps_r):.3g}-{np.nanmax(m.eps_r):.3g}, "
                      f"sigma {np.nanmin(m.sigma):.3g}-{np.nanmax(m.sigma):.3g} S/m")
        for p in files:
            print(p)

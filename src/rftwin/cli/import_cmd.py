"""``rftwin import-scene``: meshes and point clouds + a material-label file -> a Sionna scene folder."""
from __future__ import annotations

import math
from pathlib import Path

import typer

from rftwin.cli.common import console, fail
from rftwin.cli.outputs import check_input_file


def register(app: typer.Typer) -> None:
    @app.command("import-scene")
    def import_scene(
        inputs: list[Path] = typer.Argument(..., help="Mesh files (PLY, OBJ, STL, GLB/glTF, OFF) and/or point "
                                                      "clouds (PLY without faces, PCD, XYZ)."),
        labels: Path = typer.Option(..., "--labels", help="YAML/JSON: object name or glob -> ITU material "
                                                          "(optionally thickness, scattering_coefficient)."),
        out: Path = typer.Option(..., "--out", help="Output folder (scene.xml, meshes/, labels.json, import.json)."),
        point_cloud: bool = typer.Option(False, "--point-cloud",
                                         help="Treat every input as a point cloud and reconstruct its surface "
                                              "(PLY files without faces are detected automatically)."),
        voxel_size: float = typer.Option(None, "--voxel-size", help="Point cloud: down-sampling voxel [m] "
                                                                    "(default: bounding-box diagonal / 200)."),
        outlier_std: float = typer.Option(2.0, "--outlier-std", help="Point cloud: statistical outlier threshold "
                                                                     "(standard deviations)."),
        outlier_neighbors: int = typer.Option(20, "--outlier-neighbors", help="Point cloud: neighbours for the "
                                                                              "outlier statistics."),
        orient: str = typer.Option("tangent", "--orient", help="Point cloud normals: tangent | centroid | none."),
        poisson_depth: int = typer.Option(8, "--poisson-depth", help="Point cloud: Poisson octree depth."),
        density_quantile: float = typer.Option(0.05, "--density-quantile",
                                               help="Point cloud: drop Poisson vertices below this density "
                                                    "quantile."),
        smooth_iterations: int = typer.Option(10, "--smooth-iterations", help="Point cloud: Taubin iterations."),
        max_triangles: int = typer.Option(200_000, "--max-triangles",
                                          help="Point cloud: quadric-decimation target (0: no decimation)."),
        scale: float = typer.Option(1.0, "--scale", help="Multiply coordinates (e.g. 0.001 for mm files)."),
        up: str = typer.Option("z", "--up", help="Up axis of the input: z (Sionna) or y (glTF convention)."),
        recenter: bool = typer.Option(False, "--recenter", help="Shift the x-y centre to 0 and the floor to z=0 "
                                                                "(the offset is written to import.json)."),
        check: bool = typer.Option(True, "--check/--no-check", help="Load the written scene with Sionna RT."),
    ) -> None:
        """Import meshes / point clouds with a label file into a Sionna scene (one radio material per object)."""
        check_import_options(scale=scale, up=up, orient=orient, voxel_size=voxel_size, outlier_std=outlier_std,
                             outlier_neighbors=outlier_neighbors, poisson_depth=poisson_depth,
                             density_quantile=density_quantile, smooth_iterations=smooth_iterations,
                             max_triangles=max_triangles)  # before the mesh libraries (and torch) load
        for p in inputs:
            check_input_file(p, "INPUTS")
        check_input_file(labels, "--labels")
        from rftwin.progress import track  # noqa: PLC0415
        from rftwin.scene.import_mesh import (  # noqa: PLC0415
            LabelFileError,
            MeshImportError,
            import_meshes,
            ply_is_point_cloud,
            read_label_file,
        )

        try:
            lm = read_label_file(labels)
        except LabelFileError as exc:
            fail(str(exc))
        clouds = [p for p in inputs if point_cloud or ply_is_point_cloud(p)]
        meshes = [p for p in inputs if p not in clouds]
        extra, stats = [], []
        if clouds:
            from rftwin.scene.pointcloud import (  # noqa: PLC0415
                ReconstructionSettings,
                point_cloud_object,
            )

            rs = ReconstructionSettings(voxel_size_m=voxel_size, outlier_neighbors=outlier_neighbors,
                                        outlier_std_ratio=outlier_std, orient=orient, poisson_depth=poisson_depth,
                                        density_quantile=density_quantile, smooth_iterations=smooth_iterations,
                                        max_triangles=max_triangles or None)
            try:
                rs.validate()
                for p in track(clouds, "reconstructing point clouds"):
                    obj, st = point_cloud_object(p, rs)
                    extra.append(obj)
                    stats.append(st)
                    console.print(f"{p}: {st['points_in']} points -> {st['points_after_voxel']} after filtering -> "
                                  f"{st['triangles']} triangles")
            except (MeshImportError, ValueError, ImportError) as exc:
                fail(str(exc))
        try:
            res = import_meshes(meshes, lm, out, scale=scale, up_axis=up, recenter=recenter, extra_objects=extra,
                                extra_report={"point_clouds": stats} if stats else None)
        except (LabelFileError, MeshImportError, ValueError, FileExistsError, NotADirectoryError) as exc:
            fail(str(exc))
        if check:
            from rftwin.scene import load  # noqa: PLC0415

            try:
                twin = load(res.scene_xml)
            except Exception as exc:  # noqa: BLE001 - report any loader failure
                fail(f"{res.scene_xml}: written, but Sionna RT cannot load it: {exc}")
            missing = set(res.objects) - set(twin.names)
            if missing:
                fail(f"{res.scene_xml}: objects {sorted(missing)} are missing after loading")
        for name, rec in res.objects.items():
            console.print(f"  {name}: {rec['material']} ({rec['num_faces']} triangles, {rec['thickness']:g} m)")
        console.print(f"wrote {len(res.objects)} objects to {res.scene_xml}")


def check_import_options(*, scale: float, up: str, orient: str, voxel_size: float | None, outlier_std: float,
                         outlier_neighbors: int, poisson_depth: int, density_quantile: float,
                         smooth_iterations: int, max_triangles: int) -> None:
    """Option ranges of ``import-scene`` (errors name the option); the library checks them again."""
    if not (math.isfinite(scale) and scale > 0):
        fail(f"--scale must be a positive number, got {scale:g}")
    if up not in ("z", "y"):
        fail(f"--up must be z or y, got '{up}'")
    if orient not in ("tangent", "centroid", "none"):
        fail(f"--orient must be tangent, centroid or none, got '{orient}'")
    if voxel_size is not None and not voxel_size > 0:
        fail(f"--voxel-size must be > 0 m, got {voxel_size:g}")
    if not outlier_std > 0:
        fail(f"--outlier-std must be > 0, got {outlier_std:g}")
    if outlier_neighbors < 1:
        fail(f"--outlier-neighbors must be >= 1, got {outlier_neighbors}")
    if not 1 <= poisson_depth <= 14:
        fail(f"--poisson-depth must lie in 1..14, got {poisson_depth}")
    if not 0.0 <= density_quantile < 1.0:
        fail(f"--density-quantile must lie in [0, 1), got {density_quantile:g}")
    if smooth_iterations < 0:
        fail(f"--smooth-iterations must be >= 0, got {smooth_iterations}")
    if max_triangles != 0 and max_triangles < 4:
        fail(f"--max-triangles must be 0 (no decimation) or >= 4, got {max_triangles}")

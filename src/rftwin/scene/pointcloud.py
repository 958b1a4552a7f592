"""Point cloud (PLY/PCD/XYZ) -> triangle mesh with Open3D, following seed 002 (VisRFTwin) appendix A.1.

Steps: statistical outlier removal -> voxel down-sampling -> normal estimation and consistent orientation ->
screened Poisson surface reconstruction -> removal of low-density (extrapolated) vertices and of everything
outside the cloud's bounding box -> Taubin smoothing (shrink-free Laplacian) -> mesh clean-up and optional
quadric decimation. Coordinates in metres. The result is a :class:`rftwin.scene.import_mesh.MeshObject`
that :func:`rftwin.scene.import_mesh.import_meshes` writes into a Sionna scene.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rftwin.scene.import_mesh import MeshImportError, MeshObject

POINT_CLOUD_SUFFIXES = (".ply", ".pcd", ".xyz", ".xyzn", ".pts")


@dataclass(frozen=True)
class ReconstructionSettings:
    """Parameters of :func:`reconstruct_mesh` (lengths in m).

    ``voxel_size_m``: down-sampling voxel edge (None: bounding-box diagonal / 200). ``outlier_neighbors`` and
    ``outlier_std_ratio``: a point is removed when its mean distance to its neighbours exceeds the global mean
    by ``outlier_std_ratio`` standard deviations. ``normal_radius_m`` (None: 3 voxels) and ``normal_max_nn``:
    normal-estimation neighbourhood; ``orient``: ``"tangent"`` (consistent tangent-plane propagation, general),
    ``"centroid"`` (towards the cloud's centroid, e.g. a room scanned from inside) or ``"none"``.
    ``poisson_depth``: octree depth (cells of about extent / 2**depth). ``density_quantile``: vertices whose
    Poisson density is below this quantile are removed (extrapolated surface). ``smooth_iterations``: Taubin
    iterations. ``max_triangles``: quadric decimation target (None: keep all).
    """

    voxel_size_m: float | None = None
    outlier_neighbors: int = 20
    outlier_std_ratio: float = 2.0
    normal_radius_m: float | None = None
    normal_max_nn: int = 30
    orient: str = "tangent"
    poisson_depth: int = 8
    density_quantile: float = 0.05
    smooth_iterations: int = 10
    max_triangles: int | None = 200_000
    seed: int = 0

    def validate(self) -> None:
        if self.voxel_size_m is not None and not self.voxel_size_m > 0:
            raise ValueError(f"voxel size must be > 0 m, found {self.voxel_size_m}")
        if self.outlier_neighbors < 1 or not self.outlier_std_ratio > 0:
            raise ValueError("outlier removal needs neighbours >= 1 and std ratio > 0")
        if self.orient not in ("tangent", "centroid", "none"):
            raise ValueError(f"normal orientation must be tangent, centroid or none, found '{self.orient}'")
        if not 1 <= self.poisson_depth <= 14:
            raise ValueError(f"Poisson depth must be in 1..14, found {self.poisson_depth}")
        if not 0.0 <= self.density_quantile < 1.0:
            raise ValueError(f"density quantile must be in [0, 1), found {self.density_quantile}")
        if self.smooth_iterations < 0:
            raise ValueError("smoothing iterations must be >= 0")
        if self.max_triangles is not None and self.max_triangles < 4:
            raise ValueError("max_triangles must be >= 4")


@dataclass
class ReconstructionStats:
    """Counts of each stage (points, then mesh vertices/triangles) and the voxel size used [m]."""

    points_in: int
    points_after_outliers: int
    points_after_voxel: int
    voxel_size_m: float
    vertices: int
    triangles: int
    watertight: bool


def _o3d():
    try:
        import open3d as o3d  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(f"point-cloud import needs Open3D (pip install open3d; on Debian/Ubuntu also "
                          f"apt-get install libusb-1.0-0): {exc}") from exc
    return o3d


def read_point_cloud(path: str | os.PathLike) -> np.ndarray:
    """Points [N, 3] (float64, m) of a point-cloud file; raises :class:`MeshImportError` naming the file."""
    o3d = _o3d()
    p = Path(path)
    if not p.is_file():
        raise MeshImportError(f"{p}: no such point-cloud file")
    if p.suffix.lower() not in POINT_CLOUD_SUFFIXES:
        raise MeshImportError(f"{p}: unsupported point-cloud type '{p.suffix}'; expected one of "
                              f"{', '.join(POINT_CLOUD_SUFFIXES)}")
    pcd = o3d.io.read_point_cloud(str(p))
    pts = np.asarray(pcd.points, dtype=np.float64)
    if len(pts) == 0:
        raise MeshImportError(f"{p}: no points could be read (expected a point cloud with x, y, z per vertex)")
    finite = np.all(np.isfinite(pts), axis=1)
    if not finite.all():
        pts = pts[finite]
    if len(pts) < 100:
        raise MeshImportError(f"{p}: only {len(pts)} finite points; surface reconstruction needs at least 100")
    return pts


def reconstruct_mesh(points: np.ndarray, settings: ReconstructionSettings = ReconstructionSettings(),
                     name: str = "pointcloud", source: str = "<points>",
                     normals: np.ndarray | None = None) -> tuple[MeshObject, ReconstructionStats]:
    """Reconstruct a triangle mesh from ``points`` [N, 3] (m); ``normals`` [N, 3] (optional) skip estimation.

    Returns the mesh as a :class:`MeshObject` named ``name`` and the per-stage counts.
    """
    o3d = _o3d()
    settings.validate()
    if hasattr(o3d.utility, "random"):
        o3d.utility.random.seed(int(settings.seed))
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    n_in = len(pts)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    if normals is not None:
        pcd.normals = o3d.utility.Vector3dVector(np.asarray(normals, dtype=np.float64).reshape(-1, 3))
    pcd, _ = pcd.remove_statistical_outlier(nb_neighbors=settings.outlier_neighbors,
                                            std_ratio=settings.outlier_std_ratio)
    n_out = len(pcd.points)
    lo, hi = pcd.get_min_bound(), pcd.get_max_bound()
    diag = float(np.linalg.norm(hi - lo))
    if not diag > 0:
        raise MeshImportError(f"{source}: all points coincide; nothing to reconstruct")
    voxel = settings.voxel_size_m or diag / 200.0
    pcd = pcd.voxel_down_sample(voxel)
    n_vox = len(pcd.points)
    if n_vox < 50:
        raise MeshImportError(f"{source}: only {n_vox} points remain after voxel down-sampling at {voxel:g} m; "
                              "use a smaller voxel size")
    if normals is None or not pcd.has_normals():
        radius = settings.normal_radius_m or 3.0 * voxel
        pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=settings.normal_max_nn))
        if settings.orient == "tangent":
            pcd.orient_normals_consistent_tangent_plane(min(15, n_vox - 1))
        elif settings.orient == "centroid":
            c = np.asarray(pcd.points).mean(0)
            pcd.orient_normals_towards_camera_location(c)
    mesh, dens = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
        pcd, depth=settings.poisson_depth, n_threads=1)
    dens = np.asarray(dens)
    if settings.density_quantile > 0 and len(dens):
        mesh.remove_vertices_by_mask(dens < np.quantile(dens, settings.density_quantile))
    # Poisson extrapolates beyond the data: keep the cloud's bounding box (plus one voxel)
    box = o3d.geometry.AxisAlignedBoundingBox(lo - voxel, hi + voxel)
    mesh = mesh.crop(box)
    if settings.smooth_iterations:
        mesh = mesh.filter_smooth_taubin(number_of_iterations=settings.smooth_iterations)
    mesh.remove_degenerate_triangles()
    mesh.remove_duplicated_triangles()
    mesh.remove_duplicated_vertices()
    mesh.remove_non_manifold_edges()
    mesh.remove_unreferenced_vertices()
    if settings.max_triangles is not None and len(mesh.triangles) > settings.max_triangles:
        mesh = mesh.simplify_quadric_decimation(target_number_of_triangles=int(settings.max_triangles))
        mesh.remove_degenerate_triangles()
        mesh.remove_unreferenced_vertices()
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.triangles, dtype=np.int64)
    if len(f) == 0:
        raise MeshImportError(f"{source}: surface reconstruction produced no triangles (try a larger voxel size "
                              "or a lower density quantile)")
    stats = ReconstructionStats(points_in=n_in, points_after_outliers=n_out, points_after_voxel=n_vox,
                                voxel_size_m=float(voxel), vertices=len(v), triangles=len(f),
                                watertight=bool(mesh.is_watertight()))
    return MeshObject(name=name, vertices=v, faces=f, source=source), stats


def point_cloud_object(path: str | os.PathLike, settings: ReconstructionSettings = ReconstructionSettings(),
                       name: str | None = None) -> tuple[MeshObject, dict]:
    """Read a point-cloud file and reconstruct its mesh: (object named after the file stem, stats dict)."""
    p = Path(path)
    pts = read_point_cloud(p)
    obj, stats = reconstruct_mesh(pts, settings, name=name or p.stem, source=str(p))
    return obj, {"point_cloud": str(p), **asdict(stats), "settings": asdict(settings)}


__all__ = ["POINT_CLOUD_SUFFIXES", "ReconstructionSettings", "ReconstructionStats", "point_cloud_object",
           "read_point_cloud", "reconstruct_mesh"]

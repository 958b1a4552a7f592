"""Scene import: meshes (PLY, OBJ, STL, GLB) and point clouds + a label file -> a Sionna scene that traces.

The reference is the built-in benchmark room: its object meshes are written with trimesh in each format,
imported with the room's own ITU labels, and the imported scene must trace the same path gains with Sionna.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
import yaml
from typer.testing import CliRunner

import rftwin  # noqa: F401 - sets up LLVM before Sionna
from rftwin.cli.main import app
from rftwin.scene import load, room
from rftwin.scene.import_mesh import (
    LabelFileError,
    MeshImportError,
    import_meshes,
    parse_labels,
    ply_is_point_cloud,
    read_label_file,
    read_mesh_objects,
)
from rftwin.trace import SolverSettings, trace

SETTINGS = SolverSettings(max_depth=3, samples_per_src=100_000)
TX = np.array([[0.0, 0.0, 2.5], [-4.0, 4.0, 2.0]])
RX = np.array([[-2.0, 2.0, 0.8], [2.0, 3.5, 1.2]])


def link_gains_db(twin) -> np.ndarray:
    ps = trace(twin, TX, RX, SETTINGS, cache_dir=False, progress=False)
    p = (ps.a_ref.abs() ** 2).sum(dim=(1, 2)).numpy()
    return 10 * np.log10(np.bincount(ps.link.numpy(), weights=p, minlength=len(TX)))


@pytest.fixture(scope="module")
def reference():
    """(room meshes by name in world coordinates, ITU labels by name, Sionna path gains of the room [dB])."""
    twin = room()
    meshes = {o.name: trimesh.Trimesh(v, f, process=False) for o, (v, f) in zip(twin.objects, twin.meshes())}
    labels = {o.name: o.label for o in twin.objects}
    return meshes, labels, link_gains_db(twin)


def _write_inputs(fmt: str, meshes: dict[str, trimesh.Trimesh], d) -> list:
    if fmt in ("ply", "stl"):  # single-object formats: one file per object, named after it
        paths = []
        for name, m in meshes.items():
            p = d / f"{name}.{fmt}"
            m.export(p)
            paths.append(p)
        return paths
    sc = trimesh.Scene()
    for name, m in meshes.items():
        if fmt == "glb":  # local geometry + node transform: exercises the scene-graph transforms
            c = m.bounds.mean(0)
            local = m.copy()
            local.apply_translation(-c)
            sc.add_geometry(local, node_name=name, geom_name=f"g_{name}",
                            transform=trimesh.transformations.translation_matrix(c))
        else:
            sc.add_geometry(m, node_name=name, geom_name=name)
    p = d / f"room.{fmt}"
    sc.export(p)
    return [p]


@pytest.mark.parametrize("fmt", ["glb", "obj", "ply", "stl"])
def test_imported_room_traces_like_the_builtin_room(fmt, reference, tmp_path):
    meshes, labels, g_ref = reference
    paths = _write_inputs(fmt, meshes, tmp_path)
    # walls by glob, the rest by name; YAML with per-object thickness
    lab = {"objects": {"wall_*": {"material": "brick", "thickness": 0.1},
                       **{n: lab for n, lab in labels.items() if not n.startswith("wall_")}}}
    lab_file = tmp_path / "labels.yaml"
    lab_file.write_text(yaml.safe_dump(lab))
    res = import_meshes(paths, lab_file, tmp_path / "scene")
    assert sorted(res.objects) == sorted(meshes)
    twin = load(res.scene_xml)
    assert twin.names == sorted(meshes)
    for o in twin.objects:
        assert o.label == labels[o.name], o.name  # one ITU radio material per object, frequency dependent
        assert o.thickness_m == pytest.approx(0.1)
    np.testing.assert_allclose(twin.bbox()[0], room().bbox()[0], atol=1e-5)
    np.testing.assert_allclose(link_gains_db(twin), g_ref, atol=0.05)
    assert json.loads((tmp_path / "scene" / "labels.json").read_text()) == labels


def test_glb_instanced_nodes_become_separate_objects(tmp_path):
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    sc = trimesh.Scene()
    sc.add_geometry(box, node_name="pillar_a", geom_name="pillar",
                    transform=trimesh.transformations.translation_matrix((2.0, 0.0, 0.5)))
    # a second node instancing the same geometry
    sc.graph.update(frame_to="pillar_b", geometry="pillar",
                    matrix=trimesh.transformations.translation_matrix((-2.0, 0.0, 0.5)))
    sc.export(tmp_path / "p.glb")
    objs = {o.name: o for o in read_mesh_objects(tmp_path / "p.glb")}
    assert sorted(objs) == ["pillar_a", "pillar_b"]
    np.testing.assert_allclose(objs["pillar_a"].vertices.mean(0), [2.0, 0.0, 0.5], atol=1e-9)
    np.testing.assert_allclose(objs["pillar_b"].vertices.mean(0), [-2.0, 0.0, 0.5], atol=1e-9)
    res = import_meshes([tmp_path / "p.glb"], parse_labels({"pillar_*": "concrete"}), tmp_path / "out",
                        up_axis="z")
    assert load(res.scene_xml).names == ["pillar_a", "pillar_b"]


def test_label_file_errors_name_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("floor: concrete\nwall: unobtanium\n")
    with pytest.raises(LabelFileError, match=r"bad\.yaml, key 'wall': unknown material 'unobtanium'"):
        read_label_file(bad)
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"floor": "concret"}))
    with pytest.raises(LabelFileError, match=r"typo\.json, key 'floor'.*did you mean 'concrete'"):
        read_label_file(typo)
    thick = tmp_path / "thick.yaml"
    thick.write_text("floor: {material: wood, thickness: -1}\n")
    with pytest.raises(LabelFileError, match=r"key 'floor': field 'thickness'"):
        read_label_file(thick)
    broken = tmp_path / "broken.yaml"
    broken.write_text("floor: [concrete\n")
    with pytest.raises(LabelFileError, match=r"broken\.yaml, line \d+: invalid YAML"):
        read_label_file(broken)

    box = trimesh.creation.box(extents=(1, 1, 1))
    box.export(tmp_path / "crate.stl")
    with pytest.raises(LabelFileError, match=r"no material for object\(s\) 'crate'"):
        import_meshes([tmp_path / "crate.stl"], parse_labels({"floor": "wood"}, "lab.yaml"), tmp_path / "o1")
    with pytest.raises(LabelFileError, match=r"lab\.yaml: key 'flor\*' matches no object"):
        import_meshes([tmp_path / "crate.stl"], parse_labels({"crate": "wood", "flor*": "wood"}, "lab.yaml"),
                      tmp_path / "o2")
    res = import_meshes([tmp_path / "crate.stl"], parse_labels({"default": "wood"}), tmp_path / "o3")
    assert res.objects["crate"]["material"] == "wood"
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()  # nothing written on error

    (tmp_path / "junk.obj").write_text("this is not an obj\n")
    with pytest.raises(MeshImportError, match=r"junk\.obj"):
        import_meshes([tmp_path / "junk.obj"], parse_labels({"default": "wood"}), tmp_path / "o4")
    (tmp_path / "x.dae").write_text("<xml/>")
    with pytest.raises(MeshImportError, match=r"x\.dae: unsupported mesh type '\.dae'"):
        read_mesh_objects(tmp_path / "x.dae")


def _room_point_cloud(path, n=12_000, seed=0):
    """Noisy samples of the inner surfaces of a 6 x 5 x 3 m room plus uniform outliers, as a PLY point cloud."""
    rng = np.random.default_rng(seed)
    shell = trimesh.creation.box(extents=(6.0, 5.0, 3.0))
    shell.apply_translation((0.0, 0.0, 1.5))
    pts, _ = trimesh.sample.sample_surface(shell, n, seed=seed)
    pts = pts + rng.normal(scale=0.01, size=pts.shape)
    pts = np.vstack([pts, rng.uniform([-3, -2.5, 0], [3, 2.5, 3], size=(60, 3))])
    trimesh.PointCloud(pts).export(path)
    return pts


def _distance_to_room(p: np.ndarray) -> np.ndarray:
    lo, hi = np.array([-3.0, -2.5, 0.0]), np.array([3.0, 2.5, 3.0])
    inside = np.all((p > lo) & (p < hi), axis=1)
    d_in = np.minimum(p - lo, hi - p).min(axis=1)
    d_out = np.linalg.norm(np.maximum(np.maximum(lo - p, p - hi), 0.0), axis=1)
    return np.where(inside, d_in, d_out)


def test_point_cloud_room_reconstructs_and_traces(tmp_path):
    pc = tmp_path / "scan.ply"
    _room_point_cloud(pc)
    assert ply_is_point_cloud(pc)
    (tmp_path / "labels.yaml").write_text("scan: {material: concrete, thickness: 0.2}\n")
    r = CliRunner().invoke(app, ["import-scene", str(pc), "--labels", str(tmp_path / "labels.yaml"),
                                 "--out", str(tmp_path / "twin"), "--voxel-size", "0.1", "--poisson-depth", "6",
                                 "--orient", "centroid"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "twin" / "import.json").read_text())
    st = rep["point_clouds"][0]
    assert st["points_after_outliers"] < st["points_in"]  # outliers removed
    assert st["points_after_voxel"] < st["points_after_outliers"]  # down-sampled
    twin = load(tmp_path / "twin" / "scene.xml")
    assert twin.names == ["scan"] and twin.objects[0].label == "concrete"
    (v, _), = twin.meshes()
    d = _distance_to_room(v)
    assert np.mean(d) < 0.03 and np.percentile(d, 99) < 0.1  # the surface is where the walls are

    # the reconstructed room reflects: the floor bounce has the image-method length
    tx, rx = np.array([[-1.0, 0.0, 1.5]]), np.array([[1.5, 0.5, 1.2]])
    ps = trace(twin, tx, rx, SolverSettings(max_depth=1, samples_per_src=100_000), cache_dir=False,
               progress=False)
    one = (ps.itype > 0).sum(1).numpy() == 1
    z = ps.point[:, 0, 2].numpy()
    floor = one & (np.abs(z) < 0.1)
    assert floor.any()
    image = np.linalg.norm(rx[0] - tx[0] * np.array([1, 1, -1]))
    assert ps.length_m.numpy()[floor].min() == pytest.approx(image, abs=0.05)
    assert (ps.itype == 0).all(1).any()  # and the line of sight is free (the room is hollow)


def test_cli_errors_are_clear(tmp_path):
    box = trimesh.creation.box(extents=(1, 1, 1))
    box.export(tmp_path / "crate.obj")
    (tmp_path / "l.yaml").write_text("crate: unobtanium\n")
    r = CliRunner().invoke(app, ["import-scene", str(tmp_path / "crate.obj"), "--labels", str(tmp_path / "l.yaml"),
                                 "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "l.yaml, key 'crate': unknown material 'unobtanium'" in " ".join(r.output.split())


def test_units_up_axis_and_recentering(tmp_path):
    # a 2 x 4 x 1 box in millimetres, Y-up (glTF convention), far from the origin (georeferenced)
    box = trimesh.creation.box(extents=(2000.0, 1000.0, 4000.0))
    box.apply_translation((5e6, 500.0, -3e6))
    sc = trimesh.Scene()
    sc.add_geometry(box, node_name="hall")
    sc.export(tmp_path / "hall.glb")
    res = import_meshes([tmp_path / "hall.glb"], parse_labels({"hall": "concrete"}), tmp_path / "out",
                        scale=1e-3, up_axis="y", recenter=True)
    twin = load(res.scene_xml)
    lo, hi = twin.bbox()
    np.testing.assert_allclose(hi - lo, [2.0, 4.0, 1.0], atol=1e-5)  # y-up -> z-up, mm -> m
    np.testing.assert_allclose(lo, [-1.0, -2.0, 0.0], atol=1e-5)  # centred, floor at z = 0
    np.testing.assert_allclose(res.offset_m, [-5e3, -3e3, 0.0], atol=1e-6)
    rep = json.loads((tmp_path / "out" / "import.json").read_text())
    assert rep["offset_m"] == pytest.approx(list(res.offset_m)) and rep["up_axis"] == "y"

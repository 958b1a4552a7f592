"""Scene export: the written Sionna XML + PLY scene reloads with the same objects, materials and path gains."""
from __future__ import annotations

import numpy as np
import pytest

import rftwin  # noqa: F401 - sets up LLVM before Sionna
from rftwin.runtime import sionna_rt
from rftwin.scene import load, room
from rftwin.scene.export import export_scene
from rftwin.scene.load import TwinScene, object_table
from rftwin.trace import SolverSettings, trace

SETTINGS = SolverSettings(max_depth=3, samples_per_src=100_000)
TX = np.array([[0.0, 0.0, 2.5], [0.0, 0.0, 2.5], [-4.0, 4.0, 2.0]])
RX = np.array([[-2.0, 2.0, 0.8], [3.5, -1.0, 1.5], [2.0, 3.5, 1.2]])


def link_gains_db(twin: TwinScene) -> np.ndarray:
    """Per-link path gain 10 log10 sum |a|^2 (dB) of Sionna's own coefficients."""
    ps = trace(twin, TX, RX, SETTINGS, cache_dir=False, progress=False)
    p = (ps.a_ref.abs() ** 2).sum(dim=(1, 2)).numpy()
    return 10 * np.log10(np.bincount(ps.link.numpy(), weights=p, minlength=len(TX)))


def test_export_reloads_with_same_objects_materials_and_gains(tmp_path):
    src = room()
    eps = np.array([o.relative_permittivity for o in src.objects]) * 1.1
    sigma = np.array([o.conductivity for o in src.objects]) * 0.8
    src.set_materials(eps_r=eps, sigma=sigma)
    overrides = {"box_wood": {"eps_r": 3.0, "thickness_m": 0.2}, "floor": {"conductivity": 0.05}}
    xml = export_scene(src, tmp_path / "twin", overrides)
    assert xml == tmp_path / "twin" / "scene.xml" and xml.is_file()
    assert sorted(p.name for p in (tmp_path / "twin" / "meshes").iterdir()) == sorted(f"{n}.ply" for n in src.names)
    assert [p.name for p in tmp_path.iterdir()] == ["twin"]  # no staging folder left behind

    # the reference: the source twin with the overrides applied in Sionna
    for name, vals in (("box_wood", dict(relative_permittivity=3.0, thickness=0.2)),
                       ("floor", dict(conductivity=0.05))):
        rm = src.scene.objects[name].radio_material
        for k, v in vals.items():
            setattr(rm, k, v)
    src.set_materials()  # refresh the object table

    out = load(xml)
    assert out.names == src.names
    for a, b in zip(src.objects, out.objects):
        np.testing.assert_allclose(
            [b.relative_permittivity, b.conductivity, b.thickness_m, b.scattering_coefficient, b.xpd_coefficient],
            [a.relative_permittivity, a.conductivity, a.thickness_m, a.scattering_coefficient, a.xpd_coefficient],
            rtol=1e-6, err_msg=a.name)
        assert b.watertight == a.watertight
    assert out.index_of("box_wood") == src.index_of("box_wood")
    np.testing.assert_allclose(out.bbox()[0], src.bbox()[0], atol=1e-6)
    np.testing.assert_allclose(out.bbox()[1], src.bbox()[1], atol=1e-6)

    g_src, g_out = link_gains_db(src), link_gains_db(out)
    np.testing.assert_allclose(g_out, g_src, atol=0.05)
    # the comparison is not vacuous: the changed materials move the gains of the default room
    assert np.max(np.abs(link_gains_db(room()) - g_src)) > 0.05


def test_export_invalid_materials_writes_nothing(tmp_path):
    twin = room()
    with pytest.raises(ValueError, match="relative_permittivity 0.5 < 1"):
        export_scene(twin, tmp_path / "a", {"floor": {"eps_r": 0.5}})
    with pytest.raises(ValueError, match="no object 'ceiling'"):
        export_scene(twin, tmp_path / "a", {"ceiling": {"eps_r": 2.0}})
    with pytest.raises(ValueError, match="unknown key 'permeability'"):
        export_scene(twin, tmp_path / "a", {"floor": {"permeability": 2.0}})
    assert list(tmp_path.iterdir()) == []


def test_export_into_existing_folder_keeps_other_files(tmp_path):
    twin = room()
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "scene.xml").write_text("old")
    export_scene(twin, out, {})
    export_scene(twin, out, {"floor": {"sigma": 0.5}})  # re-export over a previous export
    assert (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["meshes", "notes.txt", "scene.xml"]
    assert load(out / "scene.xml").objects[twin.index_of("floor")].conductivity == pytest.approx(0.5)


def test_export_escapes_odd_object_names(tmp_path):
    rt = sionna_rt()
    xml = ('<scene version="2.1.0"><bsdf type="itu-radio-material" id="glassy"><string name="type" value="glass"/>'
           '</bsdf><shape type="rectangle" id="wall &quot;a&quot;&amp;b/c &lt;x&gt;"><ref id="glassy"/></shape>'
           '<shape type="rectangle" id="glass"><transform name="to_world"><translate z="1"/></transform>'
           '<ref id="glassy"/></shape></scene>')
    sc = rt.load_scene_from_string(xml, merge_shapes=False)
    twin = TwinScene(scene=sc, source="odd", objects=object_table(sc))
    out = load(export_scene(twin, tmp_path / "odd", {"glass": {"eps_r": 4.0}}))
    assert out.names == twin.names == ["glass", 'wall "a"&b/c <x>']
    assert out.objects[0].relative_permittivity == pytest.approx(4.0)

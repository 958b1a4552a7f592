"""Built-in scene names come from Sionna RT's package file list (no import), so the command line can check a
SCENE argument before Sionna loads: the list must be the scenes Sionna itself offers, plus rftwin's own."""
from rftwin.runtime import sionna_rt
from rftwin.scene import builtin_scene_names, load


def test_builtin_names_equal_sionnas_scenes_and_load():
    rt = sionna_rt()
    sionna = sorted(n for n in dir(rt.scene) if not n.startswith("_") and isinstance(getattr(rt.scene, n), str)
                    and getattr(rt.scene, n).endswith(".xml"))
    names = builtin_scene_names()
    assert names[:2] == ["room", "indoor"] and sorted(names[2:]) == sionna
    assert "munich" in names and len(load("floor_wall").objects) == 2

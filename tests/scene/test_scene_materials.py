"""Every object gets its own radio-material instance at load, so per-object values never overwrite each other."""
import numpy as np

import rftwin  # noqa: F401 - LLVM set-up first
from rftwin.runtime import sionna_rt
from rftwin.scene import load


def test_shared_materials_are_split_at_load_and_values_stay_per_object():
    rt = sionna_rt()
    raw = rt.load_scene(rt.scene.simple_street_canyon, merge_shapes=False)
    shared = len(raw.objects) - len({o.radio_material.name for o in raw.objects.values()})
    assert shared > 0  # the scene file lets objects share a material: the case this guards
    twin = load("simple_street_canyon")
    names = {twin.scene.objects[o.name].radio_material.name for o in twin.objects}
    assert len(names) == len(twin.objects)
    eps0 = np.array([o.relative_permittivity for o in twin.objects])
    new = eps0 * np.linspace(1.0, 2.0, len(eps0))
    twin.set_materials(new)
    np.testing.assert_allclose([o.relative_permittivity for o in twin.objects], new, rtol=1e-6)
    np.testing.assert_allclose([float(twin.scene.objects[o.name].radio_material.relative_permittivity[0])
                                for o in twin.objects], new, rtol=1e-6)

"""The main job on the built-in room (``rftwin demo``): :mod:`rftwin.demo.config` (torch-free: ``DemoConfig``
nests the calibration spec) and :mod:`rftwin.demo.run` (simulate, calibrate, report).

Names are imported on first use (PEP 562), so the configuration loads without torch.
"""
from __future__ import annotations

import importlib

_WHERE = {
    "rftwin.demo.config": ("DEMO_SPEC_FIELDS", "FIRST_TRACE_SAMPLES", "SAMPLES", "DemoConfig", "check_demo_spec",
                           "demo_spec"),
    "rftwin.demo.run": ("DEMO_TX", "DemoResult", "convergence_plot", "demo_json", "demo_links", "run_demo",
                        "true_materials"),
}
_MODULE_OF = {name: mod for mod, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    mod = _MODULE_OF.get(name)
    if mod is None:
        raise AttributeError(f"module 'rftwin.demo' has no attribute '{name}'")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

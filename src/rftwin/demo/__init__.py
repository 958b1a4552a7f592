"""The main job on the built-in room (``rftwin demo``): :mod:`rftwin.demo.config` (torch-free: ``DemoConfig``
nests the calibration spec) and :mod:`rftwin.demo.run` (simulate, calibrate, report).

Names are imported on first use (PEP 562), so the configuration loads without torch.
"""
from __future__ import annotations

from rftwin.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "rftwin.demo.config": ("DEMO_SPEC_FIELDS", "FIRST_TRACE_SAMPLES", "SAMPLES", "DemoConfig", "check_demo_spec",
                           "demo_spec"),
    "rftwin.demo.run": ("DEMO_TX", "DemoResult", "convergence_plot", "demo_json", "demo_links", "run_demo",
                        "true_materials"),
})

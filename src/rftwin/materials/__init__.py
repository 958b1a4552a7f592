"""Material priors (ITU-R P.2040) and differentiable material parameterisations.

The names below load their modules on first use, so the pure table (:mod:`rftwin.materials.itu`) imports without
torch: the command line checks material labels with it before any heavy import.
"""
from __future__ import annotations

_LAZY = {"ITU_NAMES": "itu", "ITU_TABLE": "itu", "itu_eps_sigma": "itu", "itu_mean": "itu", "itu_power_law": "itu",
         **{n: "per_object" for n in ("FIT_QUANTITIES", "INIT_STRATEGIES", "MaterialPrior", "PerObjectMaterials",
                                      "draw_start_values", "draw_starts", "prior_from_labels",
                                      "with_relative_ranges", "with_roughness", "with_scattering")}}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(f"rftwin.materials.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'rftwin.materials' has no attribute {name!r}")


__all__ = ["FIT_QUANTITIES", "INIT_STRATEGIES", "ITU_NAMES", "ITU_TABLE", "MaterialPrior", "PerObjectMaterials",
           "draw_start_values", "draw_starts", "itu_eps_sigma", "itu_mean", "itu_power_law", "prior_from_labels",
           "with_relative_ranges", "with_roughness", "with_scattering"]

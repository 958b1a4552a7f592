"""Synthetic link datasets of a twin for learned models: position specs, sharded Parquet export, torch loader.

The names below load their modules on first use, so the pure ones (:mod:`rftwin.dataset.positions`,
:mod:`rftwin.dataset.schema`) import without torch: the command line checks ``--tx``/``--rx`` and ``--fields``
with them before any heavy import.
"""
from __future__ import annotations

from rftwin.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "rftwin.dataset.export": ("DatasetSpec", "ExportResult", "export_dataset", "plan_links"),
    "rftwin.dataset.loader": ("LinkDataset", "read_schema"),
    "rftwin.dataset.positions": ("DatasetError", "parse_positions", "resolve_positions"),
    "rftwin.dataset.schema": ("DEFAULT_FIELDS", "FIELDS"),
})

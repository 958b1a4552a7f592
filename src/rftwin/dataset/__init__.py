"""Synthetic link datasets of a twin for learned models: position specs, sharded Parquet export, torch loader.

The names below load their modules on first use, so the pure ones (:mod:`rftwin.dataset.positions`,
:mod:`rftwin.dataset.schema`) import without torch: the command line checks ``--tx``/``--rx`` and ``--fields``
with them before any heavy import.
"""
from __future__ import annotations

_LAZY = {"DatasetSpec": "export", "ExportResult": "export", "export_dataset": "export", "plan_links": "export",
         "LinkDataset": "loader", "read_schema": "loader", "DatasetError": "positions", "parse_positions": "positions",
         "resolve_positions": "positions", "DEFAULT_FIELDS": "schema", "FIELDS": "schema"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(f"rftwin.dataset.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'rftwin.dataset' has no attribute {name!r}")


__all__ = ["DEFAULT_FIELDS", "FIELDS", "DatasetError", "DatasetSpec", "ExportResult", "LinkDataset",
           "export_dataset", "parse_positions", "plan_links", "read_schema", "resolve_positions"]

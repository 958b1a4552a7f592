"""Synthetic link datasets of a twin for learned models: position specs, sharded Parquet export, torch loader."""
from rftwin.dataset.export import DatasetSpec, ExportResult, export_dataset, plan_links
from rftwin.dataset.loader import LinkDataset, read_schema
from rftwin.dataset.positions import DatasetError, parse_positions, resolve_positions
from rftwin.dataset.schema import DEFAULT_FIELDS, FIELDS

__all__ = ["DEFAULT_FIELDS", "FIELDS", "DatasetError", "DatasetSpec", "ExportResult", "LinkDataset",
           "export_dataset", "parse_positions", "plan_links", "read_schema", "resolve_positions"]

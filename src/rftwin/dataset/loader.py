"""``LinkDataset``: a finished dataset folder as a ``torch.utils.data.Dataset`` of per-link tensors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from rftwin.dataset.positions import DatasetError
from rftwin.dataset.schema import COMPLEX_FIELDS, FORMAT, MANIFEST_FILE, SCHEMA_FILE, VERSION, parquet_columns


def read_schema(root: str | Path) -> dict:
    """The validated ``schema.json`` of a dataset folder."""
    p = Path(root) / SCHEMA_FILE
    if not p.is_file():
        raise DatasetError(f"{root}: not an rftwin dataset (no {SCHEMA_FILE})")
    try:
        doc = json.loads(p.read_text())
    except ValueError as exc:
        raise DatasetError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DatasetError(f"{p}: not an rftwin dataset schema (format '{FORMAT}' expected)")
    if doc.get("version") != VERSION:
        raise DatasetError(f"{p}: dataset format version {doc.get('version')}; this rftwin reads version {VERSION}")
    for key in ("fields", "shards", "num_links", "spec_sha256"):
        if key not in doc:
            raise DatasetError(f"{p}: key '{key}' is missing")
    return doc


class LinkDataset(torch.utils.data.Dataset):
    """Links of a dataset folder written by ``rftwin dataset`` (``export_dataset``).

    ``fields``: names to load (default: every stored field); item ``i`` is a dict name -> tensor (shape of the
    field in ``schema.json``: scalars [], positions [3], ``cfr``/``cir`` complex [K]). Real fields become
    ``dtype`` (default float32), integers int64, complex fields complex64. ``verify`` checks every shard's
    SHA-256 against the manifest. A missing, damaged or unfinished shard is an error naming the file.
    """

    def __init__(self, root: str | Path, fields: list[str] | tuple[str, ...] | None = None, verify: bool = True,
                 dtype: torch.dtype = torch.float32):
        import pyarrow.parquet as pq  # noqa: PLC0415

        self.root = Path(root)
        self.schema = read_schema(self.root)
        stored = {f["name"]: f for f in self.schema["fields"]}
        names = list(stored) if fields is None else list(fields)
        bad = [n for n in names if n not in stored]
        if bad:
            raise DatasetError(f"{self.root}: unknown field(s) {', '.join(bad)}; this dataset holds "
                               f"{', '.join(stored)}")
        self.fields = names
        man_path = self.root / MANIFEST_FILE
        try:
            finished = json.loads(man_path.read_text())["shards"] if man_path.is_file() else {}
        except (ValueError, KeyError, TypeError):
            raise DatasetError(f"{man_path}: damaged manifest; rerun the export command to rebuild it") from None
        parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for s in self.schema["shards"]:
            path = self.root / s["file"]
            rec = finished.get(s["file"])
            if rec is None or not path.is_file():
                raise DatasetError(f"{path}: shard missing or unfinished ({len(finished)} of "
                                   f"{len(self.schema['shards'])} shards done); rerun the same export to finish it")
            if verify:
                from rftwin.dataset.export import _sha256  # noqa: PLC0415

                if _sha256(path) != rec.get("sha256"):
                    raise DatasetError(f"{path}: damaged shard (SHA-256 differs from {MANIFEST_FILE}); rerun the "
                                       "same export to rewrite it")
            cols = [c for n in names for c in parquet_columns(n)]
            try:
                tab = pq.read_table(path, columns=cols)
            except Exception as exc:  # noqa: BLE001 - any read failure becomes an error naming the shard
                raise DatasetError(f"{path}: cannot read the shard ({type(exc).__name__}: {str(exc)[:200]})") from None
            if tab.num_rows != s["num_links"]:
                raise DatasetError(f"{path}: {tab.num_rows} rows, schema.json says {s['num_links']}")
            for n in names:
                parts[n].append(self._column(tab, n, stored[n]))
        self._data = {n: self._tensor(np.concatenate(v) if v else np.zeros(0), stored[n], dtype)
                      for n, v in parts.items()}
        self._n = int(self.schema["num_links"])

    @staticmethod
    def _column(tab, name: str, info: dict) -> np.ndarray:
        cols = parquet_columns(name)
        if name in COMPLEX_FIELDS:
            K = int(info["shape"][0])
            re, im = (np.asarray(tab.column(c).combine_chunks().flatten(), dtype=np.float32).reshape(-1, K)
                      for c in cols)
            return re + 1j * im
        if len(cols) > 1:
            return np.column_stack([tab.column(c).to_numpy() for c in cols])
        return tab.column(cols[0]).to_numpy()

    @staticmethod
    def _tensor(v: np.ndarray, info: dict, dtype: torch.dtype) -> torch.Tensor:
        if info["dtype"].startswith("complex"):
            return torch.as_tensor(v.astype(np.complex64))
        if info["dtype"].startswith("int"):
            return torch.as_tensor(v.astype(np.int64))
        return torch.as_tensor(v.astype(np.float64)).to(dtype)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {n: t[i] for n, t in self._data.items()}

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every loaded field as one tensor [links, *shape] (for full-batch training)."""
        return dict(self._data)


__all__ = ["LinkDataset", "read_schema"]

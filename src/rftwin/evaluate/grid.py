"""Arrange link values as 2-D maps over receiver x-y (for SSIM and map plots).

Links are grouped by (transmitter position, frequency). Within a group, receivers that lie on a regular x-y
grid (uniform spacing along x and y, at most one receiver per node) form a map directly; otherwise, with a
``cell`` size, receivers are binned into square cells (mean of dB values per cell). Empty cells are NaN.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_ROUND = 4  # 0.1 mm


@dataclass
class MapGroup:
    """Receivers of one (tx, frequency) group placed on a [ny, nx] map."""

    tx_pos: tuple[float, float, float]
    frequency_hz: float
    rows: np.ndarray  # [n] row indices into the link table
    ix: np.ndarray  # [n] column of each row
    iy: np.ndarray  # [n] row (y index) of each row
    x_m: np.ndarray  # [nx] cell centres
    y_m: np.ndarray  # [ny]
    regular: bool  # True: the receivers form a regular grid; False: binned with a cell size

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.y_m), len(self.x_m)

    def to_map(self, values: np.ndarray) -> np.ndarray:
        """Map [ny, nx] of ``values`` (one per row of the whole table): mean of finite values per cell."""
        v = np.asarray(values, dtype=float)[self.rows]
        ok = np.isfinite(v)
        ny, nx = self.shape
        flat = self.iy * nx + self.ix
        s = np.bincount(flat[ok], weights=v[ok], minlength=ny * nx)
        c = np.bincount(flat[ok], minlength=ny * nx)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(c > 0, s / np.maximum(c, 1), np.nan)
        return m.reshape(ny, nx)


def _regular_axis(v: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(sorted unique values, index of each value) if the unique values are uniformly spaced, else None."""
    u, inv = np.unique(np.round(v, _ROUND), return_inverse=True)
    if len(u) == 1:
        return u, inv.reshape(-1)
    d = np.diff(u)
    step = d.min()
    k = np.round((u - u[0]) / step)
    if not np.allclose(u[0] + k * step, u, atol=max(1e-3, 0.01 * step)):
        return None
    full = u[0] + np.arange(int(k[-1]) + 1) * step
    return full, k.astype(np.int64)[inv.reshape(-1)]


def map_groups(tx_pos: np.ndarray, rx_pos: np.ndarray, frequency_hz: np.ndarray, cell_m: float | None = None,
               min_cells: int = 9, max_fill_ratio: float = 0.25) -> list[MapGroup]:
    """Map groups of a link table ([M, 3] positions, [M] frequencies).

    A regular grid is used when detected and its nodes are at least ``max_fill_ratio`` occupied; otherwise, when
    ``cell_m`` is given, receivers are binned. Groups with fewer than ``min_cells`` occupied cells, or less than
    2 cells along x or y, are dropped.
    """
    tx = np.asarray(tx_pos, dtype=float).reshape(-1, 3)
    rx = np.asarray(rx_pos, dtype=float).reshape(-1, 3)
    f = np.asarray(frequency_hz, dtype=float).reshape(-1)
    key = np.concatenate([np.round(tx, _ROUND), f[:, None]], axis=1)
    ukeys, gidx = np.unique(key, axis=0, return_inverse=True)
    out = []
    for g, k in enumerate(ukeys):
        rows = np.nonzero(gidx.reshape(-1) == g)[0]
        x, y = rx[rows, 0], rx[rows, 1]
        grid = None
        ax, ay = _regular_axis(x), _regular_axis(y)
        if ax is not None and ay is not None:
            nodes = np.stack([ay[1], ax[1]], 1)
            unique_nodes = len(np.unique(nodes, axis=0)) == len(rows)
            if unique_nodes and len(rows) >= max_fill_ratio * len(ax[0]) * len(ay[0]):
                grid = MapGroup(tuple(k[:3]), float(k[3]), rows, ax[1], ay[1], ax[0], ay[0], True)
        if grid is None and cell_m:
            x0, y0 = x.min(), y.min()
            ix = np.floor((x - x0) / cell_m + 1e-9).astype(np.int64)
            iy = np.floor((y - y0) / cell_m + 1e-9).astype(np.int64)
            xs = x0 + (np.arange(ix.max() + 1) + 0.5) * cell_m
            ys = y0 + (np.arange(iy.max() + 1) + 0.5) * cell_m
            grid = MapGroup(tuple(k[:3]), float(k[3]), rows, ix, iy, xs, ys, False)
        if grid is None:
            continue
        occupied = len(np.unique(grid.iy * len(grid.x_m) + grid.ix))
        if occupied >= min_cells and min(grid.shape) >= 2:
            out.append(grid)
    return out


__all__ = ["MapGroup", "map_groups"]

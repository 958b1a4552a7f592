"""Link shards of a calibration problem: PathSets of subsets of the links, in memory (:class:`MemoryShards`) or in
files loaded one at a time (:class:`FileShards`), and the split of the measured rows by shard
(:meth:`LinkShards.rows`). :mod:`rftwin.calibrate.stream` evaluates a calibration over them."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from rftwin.calibrate.problem import Targets
from rftwin.pathset import PathSet, concat


@dataclass
class Shard:
    """``links`` [l] global link indices (into the links ``Targets.link`` refers to) and their ``pathset``
    (links renumbered 0..l-1 in the order of ``links``)."""

    links: np.ndarray
    pathset: PathSet


def plan_shards(paths_per_link: np.ndarray, max_paths: int | None = None, max_links: int | None = None
                ) -> list[tuple[int, int]]:
    """Contiguous link ranges [(start, stop)] holding at most ``max_paths`` paths and ``max_links`` links each (a
    link with more paths than ``max_paths`` gets a shard of its own)."""
    counts = np.asarray(paths_per_link, dtype=np.int64)
    L = len(counts)
    if max_paths is not None and max_paths < 1 or max_links is not None and max_links < 1:
        raise ValueError(f"shard limits must be >= 1, got max_paths={max_paths}, max_links={max_links}")
    cum = np.concatenate([[0], np.cumsum(counts)])
    out, a = [], 0
    while a < L:
        b = L if max_links is None else min(L, a + max_links)
        if max_paths is not None:  # last link whose cumulative count stays within the limit
            b = min(b, int(np.searchsorted(cum, cum[a] + max_paths, side="right")) - 1)
            b = max(b, a + 1)
        out.append((a, b))
        a = b
    return out


def slice_links(ps: PathSet, order: torch.Tensor, starts: torch.Tensor, a: int, b: int) -> PathSet:
    """The PathSet of links ``a``..``b-1`` of ``ps`` (renumbered from 0; paths of a link keep their order).
    ``order``: stable argsort of ``ps.link``; ``starts`` [L + 1] cumulative path counts."""
    sub = ps.select_paths(order[int(starts[a]):int(starts[b])])
    return replace(sub, tx_pos=ps.tx_pos[a:b], rx_pos=ps.rx_pos[a:b], link=sub.link - a)


class LinkShards:
    """Shards of the links of a calibration problem, iterable any number of times (one shard in memory at a
    time for :class:`FileShards`). ``links`` [S] global link indices of every shard."""

    def __init__(self, links: list[np.ndarray], num_links: int):
        self.links = [np.asarray(x, dtype=np.int64) for x in links]
        self.num_links = int(num_links)
        shard = np.full(self.num_links, -1, dtype=np.int64)
        local = np.zeros(self.num_links, dtype=np.int64)
        for s, x in enumerate(self.links):
            if x.size and (x.min() < 0 or x.max() >= self.num_links or np.any(shard[x] >= 0)):
                raise ValueError(f"shard {s}: links outside 0..{self.num_links - 1} or in two shards")
            shard[x] = s
            local[x] = np.arange(len(x))
        self.link_shard = torch.from_numpy(shard)
        self.link_local = torch.from_numpy(local)
        self._rows: dict[int, tuple[Targets, list]] = {}

    def __len__(self) -> int:
        return len(self.links)

    def __iter__(self) -> Iterator[Shard]:
        raise NotImplementedError

    def check(self, t: Targets) -> None:
        """Raise if rows of ``t`` refer to links the shards do not have, or to paths (per-MPC targets)."""
        if t.num and (int(t.link.min()) < 0 or int(t.link.max()) >= self.num_links):
            raise ValueError(f"targets refer to link {int(t.link.max())}, the shards hold {self.num_links} links")
        if t.mpc_path is not None and t.mpc_path.numel():
            raise ValueError("per-MPC power targets refer to paths of the whole PathSet and are not streamed over "
                             "link shards: calibrate them on one PathSet")

    def rows(self, t: Targets) -> list[tuple[torch.Tensor, Targets]]:
        """Per shard: the global row indices [m] of ``t`` whose link is in the shard and the shard's Targets
        (links renumbered to the shard). Every row must belong to a shard."""
        hit = self._rows.get(id(t))
        if hit is not None and hit[0] is t:
            return hit[1]
        self.check(t)
        sh = self.link_shard[t.link]
        if t.num and int(sh.min()) < 0:
            raise ValueError(f"targets refer to link {int(t.link[sh < 0][0])}, which no shard holds")
        order = torch.argsort(sh, stable=True)
        counts = torch.bincount(sh, minlength=len(self)).tolist()
        out, i = [], 0
        for c in counts:
            rows = order[i:i + c]
            i += c
            out.append((rows, _sub_targets(t, rows, self.link_local[t.link[rows]])))
        if len(self._rows) > 8:
            self._rows.clear()
        self._rows[id(t)] = (t, out)
        return out

    def paired(self, t: Targets) -> Iterator[tuple[Shard, torch.Tensor, Targets]]:
        """(shard, its global rows, its Targets) for every shard holding at least one row of ``t``."""
        split = self.rows(t)
        for s, shard in enumerate(self._iter_needed([len(r) > 0 for r, _ in split])):
            if shard is not None:
                rows, ts = split[s]
                yield shard, rows, ts

    def _iter_needed(self, need: list[bool]) -> Iterator[Shard | None]:
        for s, shard in enumerate(self):
            yield shard if need[s] else None


class MemoryShards(LinkShards):
    """Contiguous link ranges of one PathSet of at most ``max_paths`` paths / ``max_links`` links each (kept as
    slices; the whole PathSet may then be dropped)."""

    def __init__(self, ps: PathSet, max_paths: int | None = None, max_links: int | None = None):
        counts = ps.paths_per_link()
        plan = plan_shards(counts.numpy(), max_paths, max_links)
        order = torch.argsort(ps.link, stable=True)
        starts = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)])
        self.parts = [Shard(np.arange(a, b), slice_links(ps, order, starts, a, b)) for a, b in plan]
        super().__init__([p.links for p in self.parts], ps.num_links)

    def __iter__(self) -> Iterator[Shard]:
        return iter(self.parts)


class FileShards(LinkShards):
    """Shards stored as PathSet files (``shard_00000.npz``... in ``folder`` with ``links.npz``), loaded one at a
    time on every pass: peak memory follows the shard size, not the link count."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        index = self.folder / "links.npz"
        if not index.is_file():
            raise ValueError(f"{self.folder}: not a shard folder (no links.npz)")
        with np.load(index, allow_pickle=False) as z:
            num_links = int(z["num_links"])
            links = [z[f"s{s}"] for s in range(int(z["num_shards"]))]
        super().__init__(links, num_links)

    def file(self, s: int) -> Path:
        return self.folder / f"shard_{s:05d}.npz"

    def __iter__(self) -> Iterator[Shard]:
        for s, links in enumerate(self.links):
            yield Shard(links, PathSet.load(self.file(s)))

    def _iter_needed(self, need: list[bool]) -> Iterator[Shard | None]:
        for s, links in enumerate(self.links):  # shards without rows are not even read
            yield Shard(links, PathSet.load(self.file(s))) if need[s] else None

    def regroup(self, max_paths: int, folder: str | os.PathLike) -> FileShards:
        """Consecutive shards merged into shards of at most ``max_paths`` paths (a larger shard stays alone),
        written to ``folder``; at most one output shard in memory at a time."""
        def merged() -> Iterator[Shard]:
            group: list[Shard] = []
            n = 0
            for shard in self:
                if group and n + shard.pathset.num_paths > max_paths:
                    yield _merge(group)
                    group, n = [], 0
                group.append(shard)
                n += shard.pathset.num_paths
            if group:
                yield _merge(group)

        return FileShards.write(merged(), folder, self.num_links)

    @classmethod
    def write(cls, shards: Iterable[Shard], folder: str | os.PathLike, num_links: int) -> FileShards:
        """Write ``shards`` to ``folder`` (which must not exist; written to a staging folder and renamed)."""
        folder = Path(folder)
        if folder.exists():
            raise ValueError(f"{folder}: exists already (shards are written to a new folder)")
        folder.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".", suffix=".tmp"))
        try:
            links = {}
            for s, shard in enumerate(shards):
                shard.pathset.save(stage / f"shard_{s:05d}.npz")
                links[f"s{s}"] = np.asarray(shard.links, dtype=np.int64)
            np.savez(stage / "links.npz", num_links=num_links, num_shards=len(links), **links)
            os.replace(stage, folder)
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)
        return cls(folder)


def _merge(group: list[Shard]) -> Shard:
    return Shard(np.concatenate([g.links for g in group]), concat([g.pathset for g in group]))


def _sub_targets(t: Targets, rows: torch.Tensor, local_link: torch.Tensor) -> Targets:
    def sub(x):
        return None if x is None else x[rows]

    return Targets(local_link, t.freq_index[rows], t.frequencies_hz, sub(t.path_gain_db), sub(t.weight),
                   sub(t.delay_spread_s), sub(t.mean_delay_s), sub(t.cfr), t.cfr_bandwidth_hz,
                   t.cfr_normalize_delays, feature_weight=None if t.feature_weight is None else {
                       k: sub(v) for k, v in t.feature_weight.items()})


__all__ = ["FileShards", "LinkShards", "MemoryShards", "Shard", "plan_shards", "slice_links"]

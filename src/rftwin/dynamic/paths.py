"""Combining PathSets of the same links: replace some links' paths, or add paths."""
from __future__ import annotations

from dataclasses import fields, replace

import torch

from rftwin.pathset import _OPTIONAL_FIELDS, PathSet


def merge_paths(keep: PathSet, new: PathSet, new_links: torch.Tensor) -> PathSet:
    """The paths of ``keep`` and those of ``new`` (whose link ``i`` is link ``new_links[i]`` of ``keep``),
    ordered by link (stable: ``keep``'s paths first)."""
    new_links = torch.as_tensor(new_links, dtype=torch.long)
    kw = {}
    for f in fields(PathSet):
        n = f.name
        if n in ("meta", "tx_pos", "rx_pos"):
            continue
        if n == "link":
            kw[n] = torch.cat([keep.link, new_links[new.link]])
            continue
        a, b = getattr(keep, n), getattr(new, n)
        if n in _OPTIONAL_FIELDS:
            if a is None and b is None:
                kw[n] = None
                continue
            a = keep.default_field(n) if a is None else a
            b = new.default_field(n) if b is None else b
        if a.shape[1:] != b.shape[1:]:  # max depth of the two traces differs only by padding
            raise ValueError(f"cannot merge PathSets whose '{n}' shapes differ: {tuple(a.shape)} vs "
                             f"{tuple(b.shape)}")
        kw[n] = torch.cat([a, b.to(a.dtype)])
    order = torch.argsort(kw["link"], stable=True)
    kw = {n: (None if t is None else t[order]) for n, t in kw.items()}
    return replace(keep, **kw)


def splice(ps: PathSet, links: torch.Tensor, new: PathSet) -> PathSet:
    """``ps`` with the paths of ``links`` [A] replaced by those of ``new`` (a PathSet of exactly these A links,
    in that order)."""
    links = torch.as_tensor(links, dtype=torch.long)
    drop = torch.zeros(ps.num_links, dtype=torch.bool)
    drop[links] = True
    return merge_paths(ps.select_paths(~drop[ps.link]), new, links)


def add_paths(ps: PathSet, new: PathSet) -> PathSet:
    """The paths of ``ps`` and ``new`` (a PathSet of the same links), ordered by link."""
    return merge_paths(ps, new, torch.arange(ps.num_links))


__all__ = ["add_paths", "merge_paths", "splice"]

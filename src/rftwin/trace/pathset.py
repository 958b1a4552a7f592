"""The PathSet: everything geometry-only about traced paths, as tensors (the trace -> physics contract).

Storage is path-major: paths of all links are concatenated ([N] with a ``link`` index) and interactions are
padded only along depth ([N, D] with ``itype == 0`` for no interaction). Path counts per link differ by orders
of magnitude (blocked links, diffuse paths), so a [link, path, depth] layout would be mostly padding; the
padded view is available through :meth:`PathSet.padded`.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

# Interaction codes (Sionna RT's InteractionType)
NONE, SPECULAR, DIFFUSE, REFRACTION, DIFFRACTION = 0, 1, 2, 4, 8
SPEED_OF_LIGHT = 299_792_458.0

_TENSOR_FIELDS = ("tx_pos", "rx_pos", "link", "length_m", "k_tx", "k_rx", "f_tx", "f_rx", "a_ref",
                  "itype", "obj", "prim", "point", "normal", "cos_i", "rot_in", "rot_out", "prob")


@dataclass
class PathSet:
    """Traced paths of L links.

    Links: ``tx_pos``, ``rx_pos`` [L, 3] (m).
    Paths (N): ``link`` [N] (int64), ``length_m`` [N] total length, ``k_tx`` [N, 3] departure direction,
    ``k_rx`` [N, 3] arrival direction (pointing from the receiver back along the incoming wave),
    ``f_tx`` [N, T, 2] / ``f_rx`` [N, R, 2] complex antenna field vectors of the T transmit / R receive
    patterns in Sionna's implicit basis of the first / last segment, ``a_ref`` [N, R, T] complex: Sionna's
    coefficients at trace time (for checks).
    Interactions (N, D): ``itype`` (0 none, 1 specular, 2 diffuse, 4 refraction, 8 diffraction), ``obj``
    object index (-1 none), ``prim`` primitive index, ``point`` [N, D, 3], ``normal`` [N, D, 3] (oriented
    against the incoming wave), ``cos_i`` cosine of incidence, ``rot_in``/``rot_out`` [N, D, 2, 2] real Jones
    rotations (implicit basis of the incoming segment -> TE/TM basis, TE/TM basis -> implicit basis of the
    ideal outgoing direction), ``prob`` trace-time sampling probabilities.
    """

    tx_pos: torch.Tensor
    rx_pos: torch.Tensor
    link: torch.Tensor
    length_m: torch.Tensor
    k_tx: torch.Tensor
    k_rx: torch.Tensor
    f_tx: torch.Tensor
    f_rx: torch.Tensor
    a_ref: torch.Tensor
    itype: torch.Tensor
    obj: torch.Tensor
    prim: torch.Tensor
    point: torch.Tensor
    normal: torch.Tensor
    cos_i: torch.Tensor
    rot_in: torch.Tensor
    rot_out: torch.Tensor
    prob: torch.Tensor
    meta: dict = field(default_factory=dict)

    # ----------------------------------------------------------------- shape
    @property
    def num_links(self) -> int:
        return int(self.tx_pos.shape[0])

    @property
    def num_paths(self) -> int:
        return int(self.link.shape[0])

    @property
    def max_depth(self) -> int:
        return int(self.itype.shape[1])

    @property
    def object_names(self) -> list[str]:
        return list(self.meta.get("object_names", []))

    @property
    def tau_s(self) -> torch.Tensor:
        """Path delays [N] (s)."""
        return self.length_m / SPEED_OF_LIGHT

    @property
    def mask(self) -> torch.Tensor:
        """[N, D] True where an interaction exists."""
        return self.itype != NONE

    def paths_per_link(self) -> torch.Tensor:
        return torch.bincount(self.link, minlength=self.num_links)

    # ---------------------------------------------------------- conversions
    def to(self, device=None, dtype: torch.dtype | None = None) -> PathSet:
        """Move to ``device``; cast real floating tensors to ``dtype`` (complex ones to the matching complex)."""
        cdtype = {torch.float64: torch.complex128, torch.float32: torch.complex64}.get(dtype) if dtype else None
        kw = {}
        for name in _TENSOR_FIELDS:
            t = getattr(self, name)
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            elif cdtype is not None and t.is_complex():
                t = t.to(cdtype)
            kw[name] = t.to(device) if device is not None else t
        return replace(self, **kw)

    def select_links(self, links) -> PathSet:
        """A PathSet of the given link indices (in that order)."""
        links = torch.as_tensor(links, dtype=torch.long)
        remap = torch.full((self.num_links,), -1, dtype=torch.long)
        remap[links] = torch.arange(len(links))
        keep = remap[self.link] >= 0
        kw = {n: getattr(self, n)[keep] for n in _TENSOR_FIELDS if n not in ("tx_pos", "rx_pos", "link")}
        new_link = remap[self.link[keep]]
        order = torch.argsort(new_link, stable=True)
        kw = {n: t[order] for n, t in kw.items()}
        return replace(self, tx_pos=self.tx_pos[links], rx_pos=self.rx_pos[links], link=new_link[order], **kw)

    def padded(self) -> dict[str, torch.Tensor]:
        """[L, P, ...] view of the per-path / per-interaction tensors with a [L, P] ``path_mask``."""
        counts = self.paths_per_link()
        P = int(counts.max()) if self.num_paths else 0
        order = torch.argsort(self.link, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(self.num_paths) - starts[self.link[order]]
        out = {}
        for n in _TENSOR_FIELDS:
            if n in ("tx_pos", "rx_pos", "link"):
                continue
            t = getattr(self, n)[order]
            buf = torch.zeros((self.num_links, P) + tuple(t.shape[1:]), dtype=t.dtype)
            buf[self.link[order], slot] = t
            out[n] = buf
        mask = torch.zeros(self.num_links, P, dtype=torch.bool)
        mask[self.link[order], slot] = True
        out["path_mask"] = mask
        return out

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` (.npz) atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {n: getattr(self, n).detach().cpu().numpy() for n in _TENSOR_FIELDS}
        arrays["meta_json"] = np.frombuffer(json.dumps(self.meta).encode(), dtype=np.uint8)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PathSet:
        with np.load(path, allow_pickle=False) as z:
            kw = {n: torch.from_numpy(z[n].copy()) for n in _TENSOR_FIELDS}
            meta = json.loads(bytes(z["meta_json"]).decode())
        return cls(meta=meta, **kw)


def concat(parts: list[PathSet]) -> PathSet:
    """Concatenate PathSets of disjoint link sets (links are renumbered in order)."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [p.num_links for p in parts[:-1]])
    kw = {}
    for f in fields(PathSet):
        if f.name == "meta":
            continue
        if f.name == "link":
            kw["link"] = torch.cat([p.link + int(o) for p, o in zip(parts, offsets)])
        else:
            kw[f.name] = torch.cat([getattr(p, f.name) for p in parts])
    return PathSet(meta=dict(parts[0].meta), **kw)

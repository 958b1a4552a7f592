"""The PathSet: everything geometry-only about traced paths, as tensors (the trace -> physics contract).

Storage is path-major: paths of all links are concatenated ([N] with a ``link`` index) and interactions are
padded only along depth ([N, D] with ``itype == 0`` for no interaction). Path counts per link differ by orders
of magnitude (blocked links, diffuse paths), so a [link, path, depth] layout would be mostly padding; the
padded view is available through :meth:`PathSet.padded`.
"""
from __future__ import annotations

import hashlib
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

_REQUIRED_FIELDS = ("tx_pos", "rx_pos", "link", "length_m", "k_tx", "k_rx", "f_tx", "f_rx", "a_ref",
                    "itype", "obj", "prim", "point", "normal", "cos_i", "rot_in", "rot_out", "prob")
# Geometry-only records of diffuse reflection and diffraction (None in PathSets traced before format 2).
_DIFFUSE_FIELDS = ("tube_length_m", "k_out", "cos_o", "cos_psi_r", "cos_psi_i", "w_in", "w_out", "solid_angle")
_DIFFRACTION_FIELDS = ("s_m", "s_prime_m", "wedge_e", "wedge_n0", "wedge_nn", "utd_n", "utd_sin_beta0", "utd_L",
                       "utd_psi", "utd_a", "utd_cos", "utd_rot", "utd_wide")
_OPTIONAL_FIELDS = _DIFFUSE_FIELDS + _DIFFRACTION_FIELDS
_TENSOR_FIELDS = _REQUIRED_FIELDS + _OPTIONAL_FIELDS
_LINK_FIELDS = ("tx_pos", "rx_pos")


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

    Diffuse reflection (optional, format >= 2): ``tube_length_m`` [N] ray-tube length from the last diffuse
    interaction to the receiver (= ``length_m`` without one); per interaction ``k_out`` [N, D, 3] actual outgoing
    direction (towards the next vertex / receiver), ``cos_o`` = |k_out . n|, ``cos_psi_r`` = k_spec . k_out,
    ``cos_psi_i`` = -k_in . k_out (scattering-pattern inputs), ``w_in``/``w_out`` [N, D, 2, 2] rotations of the
    diffuse Jones matrix (implicit -> theta-hat basis of k_in; theta-hat -> implicit basis of k_out; identity
    elsewhere), ``solid_angle`` [N, D] ray-tube solid angle (sr) including the 1/prob importance weights since the
    last diffuse interaction (4 pi / samples_per_src at the source, 2 pi after a diffuse event).

    First-order UTD diffraction (optional, per path, zero where the path has no diffraction): ``s_m`` /
    ``s_prime_m`` [N] distances diffraction point -> receiver / source -> diffraction point along the path (m),
    ``wedge_e``, ``wedge_n0``, ``wedge_nn`` [N, 3] edge direction and face normals, ``utd_n`` [N] wedge parameter
    n = exterior angle / pi, ``utd_sin_beta0`` [N], ``utd_L`` [N] distance parameter s s' / (s + s') sin^2 beta0
    (m), ``utd_psi`` [N, 4] cotangent arguments (pi -+ (phi -+ phi')) / 2n, ``utd_a`` [N, 4] a+-(beta) terms,
    ``utd_cos`` [N, 2] |cos| of incidence on the 0- and n-face, ``utd_rot`` [N, 4, 2, 2] folded rotations
    (out_0, in_0, out_n, in_n) so that J = D14 out_0 diag(R_0) in_0 + D23 out_n diag(R_n) in_n, ``utd_wide`` [N]
    bool: exterior angle > pi + phi' (then R_n = -I).
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
    tube_length_m: torch.Tensor | None = None
    k_out: torch.Tensor | None = None
    cos_o: torch.Tensor | None = None
    cos_psi_r: torch.Tensor | None = None
    cos_psi_i: torch.Tensor | None = None
    w_in: torch.Tensor | None = None
    w_out: torch.Tensor | None = None
    solid_angle: torch.Tensor | None = None
    s_m: torch.Tensor | None = None
    s_prime_m: torch.Tensor | None = None
    wedge_e: torch.Tensor | None = None
    wedge_n0: torch.Tensor | None = None
    wedge_nn: torch.Tensor | None = None
    utd_n: torch.Tensor | None = None
    utd_sin_beta0: torch.Tensor | None = None
    utd_L: torch.Tensor | None = None
    utd_psi: torch.Tensor | None = None
    utd_a: torch.Tensor | None = None
    utd_cos: torch.Tensor | None = None
    utd_rot: torch.Tensor | None = None
    utd_wide: torch.Tensor | None = None

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

    def mechanisms_present(self) -> list[str]:
        """Interaction kinds that occur in the paths (``los`` when some path has no interaction)."""
        names = {SPECULAR: "specular_reflection", DIFFUSE: "diffuse_reflection", REFRACTION: "refraction",
                 DIFFRACTION: "diffraction"}
        present = set(torch.unique(self.itype).tolist()) if self.itype.numel() else set()
        out = ["los"] if self.num_paths and bool((self.itype == NONE).all(1).any()) else []
        return out + [names[c] for c in sorted(names) if c in present]

    def tensor_fields(self) -> dict[str, torch.Tensor]:
        """All tensors that are set (optional mechanism records left out when None)."""
        return {n: getattr(self, n) for n in _TENSOR_FIELDS if getattr(self, n) is not None}

    def default_field(self, name: str) -> torch.Tensor:
        """Value of an optional field for paths without diffuse / diffraction records (neutral elements)."""
        N, D = self.itype.shape
        f = self.length_m.dtype
        dev = self.length_m.device
        eye = torch.eye(2, dtype=f, device=dev)
        shapes = {"k_out": (N, D, 3), "cos_o": (N, D), "cos_psi_r": (N, D), "cos_psi_i": (N, D),
                  "solid_angle": (N, D), "s_m": (N,), "s_prime_m": (N,), "wedge_e": (N, 3), "wedge_n0": (N, 3),
                  "wedge_nn": (N, 3), "utd_n": (N,), "utd_sin_beta0": (N,), "utd_L": (N,), "utd_psi": (N, 4),
                  "utd_a": (N, 4), "utd_cos": (N, 2)}
        if name == "tube_length_m":
            return self.length_m.clone()
        if name in ("w_in", "w_out"):
            return eye.expand(N, D, 2, 2).clone()
        if name == "utd_rot":
            return eye.expand(N, 4, 2, 2).clone()
        if name == "utd_wide":
            return torch.zeros(N, dtype=torch.bool, device=dev)
        if name in shapes:
            return torch.zeros(shapes[name], dtype=f, device=dev)
        raise KeyError(f"'{name}' is not an optional PathSet field")

    def materialized(self) -> PathSet:
        """A PathSet whose optional fields are all set (neutral values where they were None)."""
        kw = {n: self.default_field(n) for n in _OPTIONAL_FIELDS if getattr(self, n) is None}
        return replace(self, **kw) if kw else self

    def select_paths(self, index) -> PathSet:
        """A PathSet with the same links and the paths ``index`` (slice, int tensor or bool mask) only."""
        kw = {n: t[index] for n, t in self.tensor_fields().items() if n not in _LINK_FIELDS}
        return replace(self, **kw)

    # ---------------------------------------------------------- conversions
    def to(self, device=None, dtype: torch.dtype | None = None) -> PathSet:
        """Move to ``device``; cast real floating tensors to ``dtype`` (complex ones to the matching complex)."""
        cdtype = {torch.float64: torch.complex128, torch.float32: torch.complex64}.get(dtype) if dtype else None
        kw = {}
        for name, t in self.tensor_fields().items():
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
        kw = {n: t[keep] for n, t in self.tensor_fields().items() if n not in ("tx_pos", "rx_pos", "link")}
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
        for n, t in self.tensor_fields().items():
            if n in ("tx_pos", "rx_pos", "link"):
                continue
            t = t[order]
            buf = torch.zeros((self.num_links, P) + tuple(t.shape[1:]), dtype=t.dtype)
            buf[self.link[order], slot] = t
            out[n] = buf
        mask = torch.zeros(self.num_links, P, dtype=torch.bool)
        mask[self.link[order], slot] = True
        out["path_mask"] = mask
        return out

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` (.npz) atomically, with a SHA-256 of every array (checked by :meth:`load`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {n: t.detach().cpu().numpy() for n, t in self.tensor_fields().items()}
        arrays["meta_json"] = np.frombuffer(json.dumps(self.meta).encode(), dtype=np.uint8)
        arrays[_CHECKSUM] = np.frombuffer(_checksum(arrays).encode(), dtype=np.uint8)
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
        """Read a PathSet written by :meth:`save`; :class:`PathSetFileError` names the file when it is truncated,
        altered (checksum) or not a PathSet. Never unpickles."""
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {n: z[n] for n in z.files}
        except Exception as exc:  # noqa: BLE001 - zipfile/numpy raise many types for damaged files
            raise PathSetFileError(f"{path}: cannot be read as a PathSet ({type(exc).__name__})") from None
        stored = bytes(arrays.pop(_CHECKSUM, np.zeros(0, np.uint8))).decode(errors="replace")
        if not stored:
            raise PathSetFileError(f"{path}: no checksum (written by an older rftwin or not a PathSet)")
        if stored != _checksum(arrays):
            raise PathSetFileError(f"{path}: checksum mismatch (the file was altered or damaged)")
        missing = [n for n in (*_REQUIRED_FIELDS, "meta_json") if n not in arrays]
        if missing:
            raise PathSetFileError(f"{path}: not a PathSet (missing {', '.join(missing)})")
        kw = {n: torch.from_numpy(arrays[n].copy()) for n in _TENSOR_FIELDS if n in arrays}
        meta = json.loads(bytes(arrays["meta_json"]).decode())
        return cls(meta=meta, **kw)


class PathSetFileError(ValueError):
    """A PathSet file that is damaged, altered or not a PathSet."""


_CHECKSUM = "sha256"


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over name, dtype, shape and bytes of every array (sorted by name)."""
    h = hashlib.sha256()
    for n in sorted(arrays):
        a = np.ascontiguousarray(arrays[n])
        h.update(f"{n}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


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
        elif f.name in _OPTIONAL_FIELDS:
            vals = [getattr(p, f.name) for p in parts]
            if any(v is not None for v in vals):
                kw[f.name] = torch.cat([p.default_field(f.name) if v is None else v for p, v in zip(parts, vals)])
        else:
            kw[f.name] = torch.cat([getattr(p, f.name) for p in parts])
    meta = dict(parts[0].meta)
    if any("overflowed_sources" in p.meta for p in parts):
        meta["overflowed_sources"] = int(sum(int(p.meta.get("overflowed_sources", 0)) for p in parts))
    return PathSet(meta=meta, **kw)

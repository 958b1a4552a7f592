"""Material groups: objects that share one set of material parameters.

A city scene has thousands of objects and a few hundred measured links: one (eps_r, sigma) pair per object is not
identifiable, but one pair per material class is. :class:`MaterialGroups` maps every object to a group:

* ``label``: all objects with the same material label (ITU type) share parameters; unlabelled objects stay alone;
* ``object``: every object is its own group (the per-object model);
* a YAML/JSON file of glob patterns (read with ``yaml.safe_load``: nothing in it can run code)::

      groups: [facade, roof, ground]     # optional: the declared group names (then every name used must be one)
      objects:                           # object name or fnmatch glob -> group name
        "*marble*": facade
        "*metal*": roof
        "Plane*": ground
      unmatched: own                     # own (default: each other object alone) | label | error

:class:`GroupedMaterials` is :class:`rftwin.materials.per_object.PerObjectMaterials` with one parameter per group
([B, G]) whose read-outs are gathered to objects ([B, F, K]): the calibration loop, the path-gain Jacobian, the
Laplace report and the MAP prior work on it unchanged (they see per-object values, tied within a group).
"""
from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rftwin.materials.per_object import PerObjectMaterials

GROUP_MODES = ("label", "object")
_FILE_KEYS = ("groups", "objects", "unmatched")
_UNMATCHED = ("own", "label", "error")


class GroupsError(ValueError):
    """A groups specification that does not fit the scene (message names the file and key)."""


@dataclass(frozen=True)
class MaterialGroups:
    """``names`` [G] group names, ``index`` [K] group of every object (objects in scene order), ``source``."""

    names: tuple[str, ...]
    index: np.ndarray
    source: str = "object"

    @property
    def num_groups(self) -> int:
        return len(self.names)

    def members(self, g: int) -> np.ndarray:
        return np.nonzero(self.index == g)[0]

    def reduce(self, values: np.ndarray, how: str = "geomean1") -> np.ndarray:
        """Per-object values [..., K] -> per-group [..., G]: ``geomean1`` geometric mean of (x - 1) plus 1
        (eps_r), ``geomean`` (sigma), ``mean`` (S, K_xpd), ``min`` / ``max``."""
        v = np.asarray(values, dtype=np.float64)
        out = np.empty(v.shape[:-1] + (self.num_groups,))
        for g in range(self.num_groups):
            x = v[..., self.members(g)]
            if how == "geomean1":
                out[..., g] = 1.0 + np.exp(np.mean(np.log(np.maximum(x - 1.0, 1e-12)), -1))
            elif how == "geomean":
                out[..., g] = np.exp(np.mean(np.log(np.maximum(x, 1e-300)), -1))
            else:
                out[..., g] = getattr(np, how)(x, -1)
        return out

    def table(self, object_names: Sequence[str]) -> dict[str, list[str]]:
        """Group name -> its objects."""
        return {n: [object_names[i] for i in self.members(g)] for g, n in enumerate(self.names)}


def _from_keys(keys: Sequence[str], source: str) -> MaterialGroups:
    names = tuple(dict.fromkeys(keys))
    pos = {n: i for i, n in enumerate(names)}
    return MaterialGroups(names, np.array([pos[k] for k in keys], dtype=np.int64), source)


def groups_per_object(object_names: Sequence[str]) -> MaterialGroups:
    return _from_keys(list(object_names), "object")


def groups_by_label(object_names: Sequence[str], labels: Sequence[str | None]) -> MaterialGroups:
    """One group per label (named after it); objects without a label form their own group (their name)."""
    if len(labels) != len(object_names):
        raise GroupsError(f"{len(labels)} labels for {len(object_names)} objects")
    return _from_keys([lab if lab else f"object:{n}" for n, lab in zip(object_names, labels)], "label")


def read_groups_file(path: str | Path, object_names: Sequence[str],
                     labels: Sequence[str | None] | None = None) -> MaterialGroups:
    """Groups from a YAML/JSON file (format in the module docstring); errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise GroupsError(f"{path}: groups file not found")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(text)
        else:
            import yaml  # noqa: PLC0415

            doc = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes a clear message
        raise GroupsError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") from None
    if not isinstance(doc, dict) or "objects" not in doc:
        raise GroupsError(f"{path}: expected a mapping with key 'objects' (pattern -> group name)")
    unknown = set(doc) - set(_FILE_KEYS)
    if unknown:
        raise GroupsError(f"{path}: unknown key(s) {sorted(unknown)}; expected {', '.join(_FILE_KEYS)}")
    objects = doc["objects"]
    if not isinstance(objects, dict) or not objects:
        raise GroupsError(f"{path}: 'objects' must be a non-empty mapping of object name / glob -> group name")
    declared = doc.get("groups")
    if declared is not None and (not isinstance(declared, list) or not all(isinstance(g, str) for g in declared)):
        raise GroupsError(f"{path}: 'groups' must be a list of group names")
    unmatched = doc.get("unmatched", "own")
    if unmatched not in _UNMATCHED:
        raise GroupsError(f"{path}: 'unmatched' must be one of {', '.join(_UNMATCHED)}, not '{unmatched}'")
    assigned: dict[int, tuple[str, str]] = {}
    for pattern, group in objects.items():
        if not isinstance(group, str) or not group:
            raise GroupsError(f"{path}: objects['{pattern}']: the group must be a name, got {group!r}")
        if declared is not None and group not in declared:
            raise GroupsError(f"{path}: objects['{pattern}']: unknown group '{group}'; declared groups: "
                              f"{', '.join(declared)}")
        hits = [i for i, n in enumerate(object_names) if fnmatch.fnmatchcase(n, str(pattern))]
        if not hits:
            raise GroupsError(f"{path}: objects['{pattern}']: matches no scene object (objects: "
                              f"{', '.join(list(object_names)[:8])}{', ...' if len(object_names) > 8 else ''})")
        for i in hits:
            if i in assigned and assigned[i][0] != group:
                raise GroupsError(f"{path}: object '{object_names[i]}' is matched by objects['{assigned[i][1]}'] "
                                  f"(group '{assigned[i][0]}') and objects['{pattern}'] (group '{group}')")
            assigned[i] = (group, str(pattern))
    if declared is not None:
        empty = [g for g in declared if g not in {a for a, _ in assigned.values()}]
        if empty:
            raise GroupsError(f"{path}: groups {empty}: no object is mapped to them")
    keys = []
    for i, n in enumerate(object_names):
        if i in assigned:
            keys.append(assigned[i][0])
        elif unmatched == "error":
            raise GroupsError(f"{path}: object '{n}' matches no pattern under 'objects' (unmatched: error)")
        elif unmatched == "label" and labels is not None and labels[i]:
            keys.append(f"label:{labels[i]}")
        else:
            keys.append(f"object:{n}")
    return _from_keys(keys, str(path))


def resolve_groups(spec: str | None, object_names: Sequence[str], labels: Sequence[str | None]
                   ) -> MaterialGroups | None:
    """``--groups``: None or ``object`` (per object: None, the plain model), ``label``, or a file path."""
    if spec is None or spec == "object":
        return None
    if spec == "label":
        return groups_by_label(object_names, labels)
    return read_groups_file(spec, object_names, labels)


class GroupedMaterials(PerObjectMaterials):
    """Per-group parameters ([B, G]; the constructor's eps_r, sigma, scattering, xpd, b, d and bounds are per
    group) read out per object ([B, F, K] through ``group_index`` [K]); ``thickness`` [K] per object."""

    def __init__(self, eps_r, sigma, thickness, group_index: np.ndarray, **kw):
        super().__init__(eps_r, sigma, thickness, **kw)
        gi = np.asarray(group_index, dtype=np.int64)
        G = int((self.u if not self.power_law else self.alpha).shape[1])
        if gi.ndim != 1 or len(gi) != len(np.atleast_1d(thickness)) or gi.min() < 0 or gi.max() >= G:
            raise ValueError(f"group_index must map each of the {len(np.atleast_1d(thickness))} objects to one "
                             f"of {G} groups")
        self.register_buffer("group_index", torch.as_tensor(gi))

    @classmethod
    def from_objects(cls, groups: MaterialGroups, eps_r, sigma, thickness, *, scattering=None, xpd=None,
                     b=None, d=None, eps_bounds=None, sigma_bounds=None, **kw) -> GroupedMaterials:
        """From per-object starts [B, K] (and per-object bounds [K, 2]): group values are the members' geometric
        means, group bounds the union of the members' boxes."""
        def red(x, how):
            return None if x is None else groups.reduce(np.atleast_2d(np.asarray(x, dtype=np.float64)), how)

        def red_b(x):
            return None if x is None else np.stack([groups.reduce(np.asarray(x)[:, 0], "min"),
                                                    groups.reduce(np.asarray(x)[:, 1], "max")], 1)

        return cls(red(eps_r, "geomean1"), red(sigma, "geomean"), thickness, groups.index,
                   scattering=red(scattering, "mean"), xpd=red(xpd, "mean"),
                   b=None if b is None else groups.reduce(np.asarray(b, dtype=np.float64), "mean"),
                   d=None if d is None else groups.reduce(np.asarray(d, dtype=np.float64), "mean"),
                   eps_bounds=red_b(eps_bounds), sigma_bounds=red_b(sigma_bounds), **kw)

    @property
    def num_groups(self) -> int:
        return int((self.u if not self.power_law else self.alpha).shape[1])

    def group_eps_sigma(self, frequency_hz) -> tuple[torch.Tensor, torch.Tensor]:
        """eps_r and sigma per group [B, F, G]."""
        return super().eps_sigma(frequency_hz)

    def eps_sigma(self, frequency_hz):
        e, s = super().eps_sigma(frequency_hz)
        return e[..., self.group_index], s[..., self.group_index]

    def scattering_xpd(self):
        s, k = super().scattering_xpd()
        return (None if s is None else s[..., self.group_index], None if k is None else k[..., self.group_index])

    def power_law_coefficients(self) -> np.ndarray:
        if not self.power_law:
            return super().power_law_coefficients()  # built from the (gathered) read-outs
        return super().power_law_coefficients()[:, self.group_index.cpu().numpy()]

    def group_values(self) -> dict[str, np.ndarray]:
        """Read-outs per group [B, G] at the reference frequency."""
        with torch.no_grad():
            e, s = self.group_eps_sigma(self.f_ref_ghz * 1e9)
            out = {"eps_r": e[:, 0].cpu().numpy(), "sigma": s[:, 0].cpu().numpy()}
            sc, kx = PerObjectMaterials.scattering_xpd(self)
            if sc is not None:
                out["scattering"] = sc.cpu().numpy()
            if kx is not None:
                out["xpd"] = kx.cpu().numpy()
        return out

    def select(self, index: int) -> GroupedMaterials:
        v = self.group_values()
        sl = slice(index, index + 1)
        pl = None
        if self.power_law:
            with torch.no_grad():
                pl = torch.stack([torch.exp(self.alpha), self.b, torch.exp(self.gamma), self.d], -1)[index]
                pl = pl.cpu().numpy()
        return GroupedMaterials(v["eps_r"][sl], v["sigma"][sl], self.thickness.cpu().numpy(),
                                self.group_index.cpu().numpy(), power_law=self.power_law,
                                reference_frequency_hz=self.f_ref_ghz * 1e9,
                                b=pl[:, 1] if pl is not None else None, d=pl[:, 3] if pl is not None else None,
                                fit=self.fit, dtype=self.thickness.dtype,
                                scattering=v["scattering"][sl] if "scattering" in v else None,
                                xpd=v["xpd"][sl] if "xpd" in v else None, eps_bounds=self.eps_bounds,
                                sigma_bounds=self.sigma_bounds)

    def reorder_starts(self, order) -> None:
        idx = torch.as_tensor(list(order), dtype=torch.long)
        with torch.no_grad():
            for name, t in list(self.named_parameters()) + list(self.named_buffers()):
                if name not in ("thickness", "group_index"):
                    t.data = t.data[idx].clone()


def material_model(groups: MaterialGroups | None, eps_r, sigma, thickness, **kw) -> PerObjectMaterials:
    """The per-object model (``groups`` None, or every object alone) or the grouped one, from per-object starts
    [B, K]."""
    if groups is None or groups.num_groups == len(groups.index):
        return PerObjectMaterials(eps_r, sigma, thickness, **kw)
    return GroupedMaterials.from_objects(groups, eps_r, sigma, thickness, **kw)


__all__ = ["GROUP_MODES", "GroupedMaterials", "GroupsError", "MaterialGroups", "groups_by_label",
           "groups_per_object", "material_model", "read_groups_file", "resolve_groups"]

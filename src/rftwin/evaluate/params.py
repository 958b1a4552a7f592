"""True material parameters (for parameter MRE) and their comparison with a twin's estimates.

A true-materials file is JSON or YAML, either a calibration ``materials.json`` (``{"objects": {name: {...}}}``)
or a plain mapping ``{name: {...}}``. Per object: ``relative_permittivity`` (alias ``eps_r``) and
``conductivity`` [S/m] (alias ``sigma``), or power-law coefficients ``a, b, c, d`` (eps_r = a f_GHz^b,
sigma = c f_GHz^d), or an ITU material name. Objects of the scene that the file does not list are skipped.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rftwin.evaluate.metrics import mre
from rftwin.materials.itu import ITU_NAMES, itu_eps_sigma, power_law_eval

_EPS = ("relative_permittivity", "eps_r", "epsilon_r", "permittivity")
_SIG = ("conductivity", "sigma")


class MaterialsFileError(ValueError):
    """A problem with a true-materials file (the message names the file and the object)."""


def _first(rec: Mapping, keys: Sequence[str]):
    for k in keys:
        if k in rec:
            return rec[k]
    return None


def read_true_materials(path: str | os.PathLike, object_names: Sequence[str], frequency_hz: float
                        ) -> dict[str, tuple[float, float]]:
    """Object name -> (eps_r, sigma [S/m]) at ``frequency_hz`` from a true-materials file."""
    p = Path(path)
    if not p.is_file():
        raise MaterialsFileError(f"{p}: no such true-materials file")
    try:
        text = p.read_text(encoding="utf-8-sig")
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml  # noqa: PLC0415

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        kind = "YAML" if p.suffix.lower() in (".yaml", ".yml") else "JSON"
        raise MaterialsFileError(f"{p}: cannot be parsed as {kind}: "
                                 f"{exc}") from exc
    if isinstance(data, Mapping) and isinstance(data.get("objects"), Mapping):
        data = data["objects"]
    if not isinstance(data, Mapping) or not data:
        raise MaterialsFileError(f"{p}: expected a mapping of object name -> material parameters")
    names = set(object_names)
    out: dict[str, tuple[float, float]] = {}
    for name, rec in data.items():
        where = f"{p}, object '{name}'"
        if name not in names:
            raise MaterialsFileError(f"{where}: no such object in the scene; objects: {', '.join(object_names)}")
        if isinstance(rec, str):
            label = rec.strip().lower()
            if label not in ITU_NAMES:
                raise MaterialsFileError(f"{where}: unknown ITU material '{rec}'")
            out[name] = itu_eps_sigma(label, frequency_hz)
            continue
        if not isinstance(rec, Mapping):
            raise MaterialsFileError(f"{where}: expected a mapping with relative_permittivity and conductivity")
        eps, sig = _first(rec, _EPS), _first(rec, _SIG)
        if all(k in rec for k in "abcd"):
            try:
                eps, sig = power_law_eval(*(float(rec[k]) for k in "abcd"), frequency_hz)
            except (TypeError, ValueError):
                raise MaterialsFileError(f"{where}: power-law coefficients a, b, c, d must be numbers") from None
        if eps is None or sig is None:
            raise MaterialsFileError(f"{where}: needs relative_permittivity (eps_r) and conductivity (sigma), "
                                     "or a, b, c, d")
        try:
            eps, sig = float(eps), float(sig)
        except (TypeError, ValueError):
            raise MaterialsFileError(f"{where}: relative_permittivity and conductivity must be numbers") from None
        if not (math.isfinite(eps) and eps >= 1.0 and math.isfinite(sig) and sig >= 0.0):
            raise MaterialsFileError(f"{where}: expected relative_permittivity >= 1 and conductivity >= 0, found "
                                     f"{eps:g}, {sig:g}")
        out[name] = (eps, sig)
    return out


def parameter_errors(true: Mapping[str, tuple[float, float]], estimates: Mapping[str, Mapping[str, tuple]]
                     ) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Per-object table (true and estimated eps_r, sigma per method) and per-method MRE of eps_r and sigma.

    ``estimates``: method -> object -> (eps_r, sigma). MRE over the objects in ``true`` (sigma = 0 objects are
    left out of the sigma MRE).
    """
    names = sorted(true)
    table = pd.DataFrame({"object": names, "true_eps_r": [true[n][0] for n in names],
                          "true_sigma_s_per_m": [true[n][1] for n in names]})
    summary = {}
    for method, est in estimates.items():
        e = np.array([est.get(n, (np.nan, np.nan))[0] for n in names], dtype=float)
        s = np.array([est.get(n, (np.nan, np.nan))[1] for n in names], dtype=float)
        table[f"{method}_eps_r"] = e
        table[f"{method}_sigma_s_per_m"] = s
        summary[method] = {"mre_eps_r": mre(e, table["true_eps_r"]), "mre_sigma": mre(s, table["true_sigma_s_per_m"]),
                           "n_objects": int(np.isfinite(e).sum())}
    return table, summary


__all__ = ["MaterialsFileError", "parameter_errors", "read_true_materials"]

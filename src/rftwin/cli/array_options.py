"""Parsing of ``--tx-array``/``--rx-array`` and ``--codebook`` options (errors name the option)."""
from __future__ import annotations

import math
from pathlib import Path

ARRAY_HELP = ("Planar array 'ROWSxCOLS[,key=value...]' with keys pattern (iso, dipole, hw_dipole, tr38901), "
              "polarization (V, H, VH, cross), spacing / vspacing / hspacing (wavelengths, default 0.5), "
              "orientation=YAW:PITCH:ROLL (degrees), spacing_hz (frequency of the spacings). Example: "
              "'8x8,pattern=tr38901,orientation=90:0:0'.")
CODEBOOK_HELP = ("'dft' or 'dft:OVERSAMPLING' (2-D DFT grid), 'directions:FILE' (CSV/Parquet azimuth_deg, "
                 "elevation_deg: steering vectors), or a weights file (.csv beam,port,real,imag or .npz 'weights').")


class OptionError(ValueError):
    """A malformed option value (message names the option)."""


def array_fields(text: str, option: str) -> dict:
    """``ROWSxCOLS[,key=value...]`` -> the keyword arguments of :class:`rftwin.physics.arrays.ArraySpec`, with
    the checks that need no torch (syntax, at least one row and column, positive spacings, pattern and
    polarization names): a malformed option comes back before the engine loads."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise OptionError(f"{option}: empty value; expected 'ROWSxCOLS[,key=value...]'")
    dims = parts[0].lower().split("x")
    try:
        rows, cols = (int(d) for d in dims)
    except ValueError:
        raise OptionError(f"{option}: '{parts[0]}' is not ROWSxCOLS (e.g. 4x8)") from None
    kw: dict = {"num_rows": rows, "num_cols": cols}
    for p in parts[1:]:
        if "=" not in p:
            raise OptionError(f"{option}: '{p}' is not key=value")
        k, v = (s.strip() for s in p.split("=", 1))
        try:
            if k == "pattern":
                kw["pattern"] = v
            elif k in ("polarization", "polarisation", "pol"):
                kw["polarization"] = v
            elif k == "spacing":
                kw["vertical_spacing"] = kw["horizontal_spacing"] = float(v)
            elif k == "vspacing":
                kw["vertical_spacing"] = float(v)
            elif k == "hspacing":
                kw["horizontal_spacing"] = float(v)
            elif k == "spacing_hz":
                kw["spacing_frequency_hz"] = float(v)
            elif k == "orientation":
                ang = [float(x) for x in v.replace(" ", ":").split(":") if x]
                if len(ang) != 3:
                    raise ValueError
                kw["orientation"] = tuple(math.radians(a) for a in ang)
            else:
                raise OptionError(f"{option}: unknown key '{k}'; expected pattern, polarization, spacing, "
                                  "vspacing, hspacing, orientation or spacing_hz")
        except OptionError:
            raise
        except ValueError:
            raise OptionError(f"{option}: bad value '{v}' for '{k}'") from None
    if rows < 1 or cols < 1:
        raise OptionError(f"{option}: '{parts[0]}' needs at least one row and one column (e.g. 4x8)")
    for k in ("vertical_spacing", "horizontal_spacing", "spacing_frequency_hz"):
        if k in kw and not (math.isfinite(kw[k]) and kw[k] > 0):
            raise OptionError(f"{option}: {k} must be a positive number, got {kw[k]:g}")
    from rftwin.physics.antenna_names import check_antenna  # noqa: PLC0415 - pure Python, no torch

    try:
        check_antenna(kw.get("pattern", "iso"), kw.get("polarization", "V"))
    except ValueError as exc:
        raise OptionError(f"{option}: {exc}") from None
    return kw


def parse_array(text: str, option: str):
    """``ROWSxCOLS[,key=value...]`` -> :class:`rftwin.physics.arrays.ArraySpec` (pattern and polarization names
    are checked here, by the spec)."""
    kw = array_fields(text, option)
    from rftwin.physics.arrays import ArraySpec  # noqa: PLC0415

    try:
        return ArraySpec(**kw)
    except ValueError as exc:
        raise OptionError(f"{option}: {exc}") from None


def parse_codebook(text: str, option: str, num_ports: int):
    """Codebook option -> :class:`rftwin.predict.beams.CodebookSpec` (files are read and validated here)."""
    t = check_codebook(text, option)
    from rftwin.data.beam_files import read_directions, read_weights  # noqa: PLC0415
    from rftwin.predict.beams import CodebookSpec  # noqa: PLC0415

    if t.lower() == "dft" or t.lower().startswith("dft:"):
        return CodebookSpec("dft", oversampling=int(t.split(":", 1)[1]) if ":" in t else 1)
    if t.lower().startswith("directions:"):
        path = Path(t.split(":", 1)[1])
        az, el = read_directions(path)
        return CodebookSpec("directions", azimuth_rad=tuple(az.tolist()), elevation_rad=tuple(el.tolist()),
                            source=str(path))
    path = Path(t)
    return CodebookSpec("weights", weights=read_weights(path, num_ports), source=str(path))


def check_codebook(text: str, option: str) -> str:
    """The checks of a codebook option that read no file and need no torch; returns the stripped text."""
    t = str(text).strip()
    if t.lower() == "dft" or t.lower().startswith("dft:"):
        o = t.split(":", 1)[1] if ":" in t else "1"
        try:
            if int(o) < 1:
                raise ValueError
        except ValueError:
            raise OptionError(f"{option}: DFT oversampling must be an integer >= 1, found '{o}'") from None
    elif not t.lower().startswith("directions:") and Path(t).suffix.lower() not in (".csv", ".parquet", ".pq",
                                                                                     ".npz"):
        raise OptionError(f"{option}: '{t}' is neither dft[:N], directions:FILE nor a .csv/.parquet/.npz weights "
                          "file")
    return t

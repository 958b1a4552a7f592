"""Fields of a link dataset and its ``schema.json`` (what every column means, its dtype, shape and unit).

Complex fields (``cfr``, ``cir``) are stored in Parquet as two fixed-size list columns ``<name>_re`` and
``<name>_im`` (float32, K values each); the loader returns them as complex64 tensors [K].
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

FORMAT = "rftwin-dataset"
VERSION = 1
SCHEMA_FILE = "schema.json"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class FieldInfo:
    """One dataset field: numpy dtype, per-link shape ("K": subcarriers), unit and meaning."""

    name: str
    dtype: str
    shape: tuple = ()
    unit: str = ""
    description: str = ""


#: always present: which link a row is
INDEX_FIELDS = (
    FieldInfo("link_id", "int64", (), "", "row index of the link in the dataset (tx-major, rx-minor)"),
    FieldInfo("tx_id", "int64", (), "", "transmitter index (order of the resolved --tx positions)"),
    FieldInfo("rx_id", "int64", (), "", "receiver index (order of the resolved --rx positions)"),
    FieldInfo("tx_pos", "float64", (3,), "m", "transmitter position x, y, z"),
    FieldInfo("rx_pos", "float64", (3,), "m", "receiver position x, y, z"),
    FieldInfo("frequency_hz", "float64", (), "Hz", "carrier frequency"),
)
#: selectable with --fields (NaN where a link has no path)
VALUE_FIELDS = (
    FieldInfo("path_gain_db", "float64", (), "dB", "narrowband path gain sum |a_i|^2"),
    FieldInfo("mean_delay_s", "float64", (), "s", "power-weighted mean delay"),
    FieldInfo("delay_spread_s", "float64", (), "s", "RMS delay spread"),
    FieldInfo("k_factor_db", "float64", (), "dB", "Rician K-factor (LoS or strongest path vs the rest)"),
    FieldInfo("angular_spread_deg", "float64", (), "deg", "azimuth angular spread of arrival"),
    FieldInfo("angular_spread_departure_deg", "float64", (), "deg", "azimuth angular spread of departure"),
    FieldInfo("num_paths", "int64", (), "", "number of traced paths"),
    FieldInfo("aoa_azimuth_deg", "float64", (), "deg", "arrival azimuth of the strongest path (from +x, ccw)"),
    FieldInfo("aoa_elevation_deg", "float64", (), "deg", "arrival elevation of the strongest path"),
    FieldInfo("aod_azimuth_deg", "float64", (), "deg", "departure azimuth of the strongest path"),
    FieldInfo("aod_elevation_deg", "float64", (), "deg", "departure elevation of the strongest path"),
    FieldInfo("cfr", "complex64", ("K",), "", "OFDM channel frequency response on K subcarriers over the "
              "bandwidth, centred on the carrier (rftwin.physics.features.cfr_from_paths)"),
    FieldInfo("cir", "complex64", ("K",), "", "band-limited CIR taps at lags l / W (inverse DFT of the CFR, "
              "rftwin.physics.features.cir_from_cfr, no window)"),
)
FIELDS = {f.name: f for f in INDEX_FIELDS + VALUE_FIELDS}
DEFAULT_FIELDS = tuple(f.name for f in VALUE_FIELDS if f.name not in ("cfr", "cir"))
ANGLE_FIELDS = ("aoa_azimuth_deg", "aoa_elevation_deg", "aod_azimuth_deg", "aod_elevation_deg")
COMPLEX_FIELDS = ("cfr", "cir")


def check_fields(names, option: str = "--fields") -> tuple[str, ...]:
    """Validated value-field names (order kept, duplicates dropped); error lists the known ones."""
    from rftwin.dataset.positions import DatasetError  # noqa: PLC0415

    names = [n.strip() for n in names if n.strip()]
    known = [f.name for f in VALUE_FIELDS]
    bad = [n for n in names if n not in known]
    if bad:
        raise DatasetError(f"{option}: unknown field(s) {', '.join(bad)}; known: {', '.join(known)}")
    if not names:
        raise DatasetError(f"{option}: no field given; known: {', '.join(known)}")
    return tuple(dict.fromkeys(names))


def parquet_columns(name: str) -> tuple[str, ...]:
    """Parquet columns holding a field."""
    if name in COMPLEX_FIELDS:
        return (f"{name}_re", f"{name}_im")
    if name in ("tx_pos", "rx_pos"):
        return tuple(f"{name[:2]}_{c}" for c in "xyz")
    return (name,)


def field_record(f: FieldInfo, num_subcarriers: int) -> dict:
    d = asdict(f)
    d["shape"] = [num_subcarriers if s == "K" else s for s in f.shape]
    d["columns"] = list(parquet_columns(f.name))
    return d


def spec_hash(spec: dict) -> str:
    """SHA-256 of a spec record (canonical JSON)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


__all__ = ["DEFAULT_FIELDS", "FIELDS", "FORMAT", "FieldInfo", "MANIFEST_FILE", "SCHEMA_FILE", "VERSION",
           "check_fields", "parquet_columns", "spec_hash"]

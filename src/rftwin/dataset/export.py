"""Export a link dataset of a twin: every (transmitter, receiver) pair of two position specs -> sharded Parquet.

Layout of ``OUT``: ``schema.json`` (fields, dtypes, shapes, units, the spec and seed, rftwin version, the shard
list), ``shard-00000.parquet`` ... (one row per link, ``links_per_shard`` links each, tx-major order),
``manifest.json`` (finished shards with their row count and SHA-256) and, with ``radio_map``,
``radio_maps/tx-00000.npz`` (one :func:`rftwin.evaluate.radiomap.write_npz` file per transmitter).

Every shard is written to a temporary name and renamed, then recorded in the manifest; a killed export rerun with
the same spec skips the recorded shards whose checksum still matches and writes the rest. Features come from
:func:`rftwin.predict.predict.predict_channels` (the values ``rftwin predict`` gives); the CFR / CIR and the
strongest path's angles from the same engine coefficients (:mod:`rftwin.physics.features`).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rftwin.dataset.positions import DatasetError, parse_positions, resolve_positions
from rftwin.dataset.schema import (
    ANGLE_FIELDS,
    COMPLEX_FIELDS,
    DEFAULT_FIELDS,
    FIELDS,
    FORMAT,
    INDEX_FIELDS,
    MANIFEST_FILE,
    SCHEMA_FILE,
    VERSION,
    check_fields,
    field_record,
    spec_hash,
)
from rftwin.scene.load import TwinScene
from rftwin.trace.tracer import SolverSettings

MIN_LINK_M = 0.01  # (tx, rx) pairs closer than this are left out (coinciding end points)


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset holds: position specs (:mod:`rftwin.dataset.positions`), carrier (Hz), seed (positions and
    solver), fields, OFDM grid of ``cfr``/``cir`` (bandwidth Hz, K subcarriers), shard size, optional radio maps
    per transmitter (plane height and cell size, m) and the solver settings (seed replaced by ``seed``)."""

    tx: str
    rx: str
    frequency_hz: float = 3.5e9
    seed: int = 7
    fields: tuple[str, ...] = DEFAULT_FIELDS
    bandwidth_hz: float = 200e6
    num_subcarriers: int = 64
    links_per_shard: int = 2048
    radio_map: bool = False
    radio_map_height_m: float = 1.5
    radio_map_cell_m: float = 0.5
    settings: SolverSettings = field(default_factory=lambda: SolverSettings(max_depth=3, samples_per_src=100_000))

    def solver(self) -> SolverSettings:
        from dataclasses import replace  # noqa: PLC0415

        return replace(self.settings, seed=int(self.seed))

    def check(self) -> None:
        check_fields(self.fields)
        if not self.frequency_hz > 0:
            raise DatasetError(f"--frequency-hz must be positive (Hz), got {self.frequency_hz}")
        if self.links_per_shard < 1:
            raise DatasetError(f"--links-per-shard must be at least 1, got {self.links_per_shard}")
        if not self.bandwidth_hz > 0 or self.num_subcarriers < 1:
            raise DatasetError("--bandwidth-hz must be positive and --subcarriers at least 1")
        if self.radio_map and not self.radio_map_cell_m > 0:
            raise DatasetError(f"--radio-map-cell must be positive (m), got {self.radio_map_cell_m}")


@dataclass
class LinkPlan:
    """Resolved positions: tx [T, 3], rx [R, 3] (m) and per link its tx and rx index [L]."""

    tx: np.ndarray
    rx: np.ndarray
    tx_id: np.ndarray
    rx_id: np.ndarray
    record: dict  # the spec record whose hash identifies the dataset

    @property
    def num_links(self) -> int:
        return len(self.tx_id)


@dataclass
class ExportResult:
    num_links: int
    num_shards: int
    shards_written: int
    shards_skipped: int
    radio_maps_written: int
    seconds: float


def _unique_rows(pos: np.ndarray) -> np.ndarray:
    _, first = np.unique(pos, axis=0, return_index=True)
    return pos[np.sort(first)]


def _twin_hash(twin: TwinScene, doc: dict | None) -> str:
    h = hashlib.sha256(twin.geometry_hash().encode())
    h.update(json.dumps(doc, sort_keys=True).encode())
    return h.hexdigest()


def plan_links(twin: TwinScene, doc: dict | None, spec: DatasetSpec) -> LinkPlan:
    """Positions of ``spec`` in ``twin`` and the (tx, rx) pairs (tx-major, duplicates and pairs closer than 1 cm
    left out); deterministic in ``spec.seed``."""
    spec.check()
    ts, rs = parse_positions(spec.tx, "--tx"), parse_positions(spec.rx, "--rx")
    g_tx, g_rx = (np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(2))
    tx = _unique_rows(resolve_positions(ts, twin, g_tx))
    rx = _unique_rows(resolve_positions(rs, twin, g_rx))
    ti, ri = (x.reshape(-1) for x in np.meshgrid(np.arange(len(tx)), np.arange(len(rx)), indexing="ij"))
    keep = np.linalg.norm(tx[ti] - rx[ri], axis=1) >= MIN_LINK_M
    if not keep.any():
        raise DatasetError(f"--tx '{spec.tx}' and --rx '{spec.rx}': no link (every pair coincides)")
    d = asdict(spec)
    d["fields"] = list(spec.fields)
    d["settings"] = asdict(spec.solver())
    record = {"spec": d, "tx": ts.describe(), "rx": rs.describe(), "twin_sha256": _twin_hash(twin, doc)}
    return LinkPlan(tx, rx, ti[keep], ri[keep], record)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _shard_names(n_links: int, per: int) -> list[tuple[str, int, int]]:
    n = math.ceil(n_links / per)
    return [(f"shard-{i:05d}.parquet", i * per, min(n_links, (i + 1) * per)) for i in range(n)]


def _strongest_angles(ps, amp) -> dict[str, np.ndarray]:
    """Arrival / departure azimuth and elevation (deg) of each link's strongest path [L] (NaN without paths)."""
    import torch  # noqa: PLC0415

    from rftwin.physics.features import direction_angles  # noqa: PLC0415

    L, N = ps.num_links, ps.num_paths
    p = amp.abs() ** 2
    pmax = torch.full((L,), -1.0, dtype=p.dtype).scatter_reduce(0, ps.link, p, "amax")
    is_max = p >= pmax[ps.link]
    idx = torch.full((L,), N, dtype=torch.long).scatter_reduce(0, ps.link[is_max], torch.arange(N)[is_max], "amin")
    has = idx < N
    out = {name: np.full(L, np.nan) for name in ANGLE_FIELDS}
    for end, k in (("aoa", ps.k_rx), ("aod", ps.k_tx)):
        az, el = direction_angles(k[idx[has]].to(torch.float64))
        out[f"{end}_azimuth_deg"][has.numpy()] = az.numpy()
        out[f"{end}_elevation_deg"][has.numpy()] = el.numpy()
    return out


def shard_table(twin: TwinScene, doc: dict | None, spec: DatasetSpec, plan: LinkPlan, first: int, last: int, *,
                cache_dir=None, memory_budget: int | None = None, workers: int = 1, ray_address: str | None = None):
    """The pyarrow Table of links ``first .. last - 1`` of ``plan`` (columns of :mod:`rftwin.dataset.schema`)."""
    import pyarrow as pa  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from rftwin.physics import features as F  # noqa: PLC0415
    from rftwin.physics.engine import path_coefficients  # noqa: PLC0415
    from rftwin.predict.predict import FEATURE_COLUMNS, predict_channels  # noqa: PLC0415
    from rftwin.twin_io import material_values, unique_links  # noqa: PLC0415

    ti, ri = plan.tx_id[first:last], plan.rx_id[first:last]
    txs, rxs = plan.tx[ti], plan.rx[ri]
    n, f = len(ti), float(spec.frequency_hz)
    fields = set(spec.fields)
    need_ps = bool(fields & (set(ANGLE_FIELDS) | set(COMPLEX_FIELDS)))
    pred = predict_channels(twin, doc, txs, rxs, np.full(n, f), spec.solver(), progress=False, cache_dir=cache_dir,
                            memory_budget=memory_budget, keep_pathset=need_ps, workers=workers,
                            ray_address=ray_address)
    cols: dict = {"link_id": pa.array(np.arange(first, last, dtype=np.int64)),
                  "tx_id": pa.array(ti.astype(np.int64)), "rx_id": pa.array(ri.astype(np.int64))}
    for k, c in enumerate("xyz"):
        cols[f"tx_{c}"] = pa.array(txs[:, k])
    for k, c in enumerate("xyz"):
        cols[f"rx_{c}"] = pa.array(rxs[:, k])
    cols["frequency_hz"] = pa.array(np.full(n, f))
    values: dict[str, np.ndarray] = {}
    for name in FEATURE_COLUMNS:
        if name in fields:
            values[name] = pred.table[name].to_numpy()
    if need_ps:
        ps = pred.pathset
        _, _, row_link = unique_links(txs, rxs)
        mv = material_values(twin, doc, np.array([f]))
        with torch.no_grad():
            amp = path_coefficients(ps, mv, torch.tensor([f], dtype=torch.float64))[0][0, :, 0, 0]
        amp = amp.to(torch.complex128)
        if fields & set(ANGLE_FIELDS):
            for name, v in _strongest_angles(ps, amp).items():
                values[name] = v[row_link]
        if fields & set(COMPLEX_FIELDS):
            H = F.cfr_from_paths(amp, ps.tau_s.to(torch.float64), ps.link, ps.num_links, f, spec.bandwidth_hz,
                                 spec.num_subcarriers)  # [L, K]
            if "cfr" in fields:
                values["cfr"] = H.numpy()[row_link]
            if "cir" in fields:
                values["cir"] = F.cir_from_cfr(H).numpy()[row_link]
    K = spec.num_subcarriers
    for name in spec.fields:
        v = values[name]
        if name in COMPLEX_FIELDS:
            for part, x in (("re", v.real), ("im", v.imag)):
                flat = pa.array(np.ascontiguousarray(x, dtype=np.float32).reshape(-1))
                cols[f"{name}_{part}"] = pa.FixedSizeListArray.from_arrays(flat, K)
        else:
            cols[name] = pa.array(v.astype(FIELDS[name].dtype))
    return pa.table(cols)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def schema_document(spec: DatasetSpec, plan: LinkPlan, twin_ref: str) -> dict:
    import rftwin  # noqa: PLC0415

    shards = _shard_names(plan.num_links, spec.links_per_shard)
    fields = [field_record(f, spec.num_subcarriers) for f in INDEX_FIELDS]
    fields += [field_record(FIELDS[n], spec.num_subcarriers) for n in spec.fields]
    doc = {"format": FORMAT, "version": VERSION, "rftwin_version": rftwin.__version__, "twin": str(twin_ref),
           "spec_sha256": spec_hash(plan.record), **plan.record,
           "num_links": plan.num_links, "num_tx": len(plan.tx), "num_rx": len(plan.rx),
           "fields": fields, "storage": "Parquet, one row per link; complex fields as <name>_re/<name>_im "
                                        "fixed-size float32 lists of K values",
           "shards": [{"file": s, "first_link": a, "num_links": b - a} for s, a, b in shards]}
    if spec.radio_map:
        doc["radio_maps"] = {"files": [f"radio_maps/tx-{i:05d}.npz" for i in range(len(plan.tx))],
                             "content": "rftwin.evaluate.radiomap.write_npz: path_gain_db [1, ny, nx], "
                                        "cell_centers_m, x_m, y_m, tx_pos_m, frequency_hz, height_m, cell_size_m"}
    return doc


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def open_output(out: Path, schema: dict) -> dict:
    """Check ``out`` (absent, empty, or a dataset of the same spec) and return its manifest (finished shards)."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out}: is a file; expected a folder")
    if out.is_dir() and any(out.iterdir()):
        old = _read_json(out / SCHEMA_FILE)
        if old is None or old.get("format") != FORMAT:
            raise DatasetError(f"--out {out}: the folder is not empty and holds no rftwin dataset ({SCHEMA_FILE}); "
                               "choose a new or empty folder")
        if old.get("spec_sha256") != schema["spec_sha256"]:
            diff = _differences({k: old.get(k) for k in ("spec", "tx", "rx", "twin_sha256")},
                                {k: schema[k] for k in ("spec", "tx", "rx", "twin_sha256")})
            raise DatasetError(f"--out {out}: holds a dataset of a different spec (differs in: "
                               f"{', '.join(diff) or 'spec hash'}); refusing to resume it; choose another --out")
    man = _read_json(out / MANIFEST_FILE) if out.is_dir() else None
    if man is None or man.get("spec_sha256") != schema["spec_sha256"]:
        man = {"spec_sha256": schema["spec_sha256"], "shards": {}, "radio_maps": {}}
    return man


def _finished(out: Path, man: dict, section: str, name: str) -> bool:
    rec = man.get(section, {}).get(name)
    p = out / name
    return bool(rec) and p.is_file() and _sha256(p) == rec.get("sha256")


def export_dataset(twin: TwinScene, doc: dict | None, spec: DatasetSpec, out: str | Path, *, twin_ref: str = "",
                   workers: int = 1, ray_address: str | None = None, memory_budget: int | None = None,
                   cache_dir=None, progress: bool = True) -> ExportResult:
    """Write (or finish) the dataset of ``spec`` for ``twin`` (+ materials document ``doc``) into ``out``.

    ``workers`` > 1 or ``ray_address``: each shard's tracing fans out on Ray
    (:func:`rftwin.trace.fanout.fan_out_trace`, one Ray instance for the whole export)."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    from rftwin.io import atomic_path, write_json  # noqa: PLC0415
    from rftwin.progress import track  # noqa: PLC0415

    t0 = time.perf_counter()
    out = Path(out)
    spec.check()
    twin.set_frequency(spec.frequency_hz)  # the scene's own (e.g. ITU) materials at the dataset's carrier
    plan = plan_links(twin, doc, spec)
    schema = schema_document(spec, plan, twin_ref)
    man = open_output(out, schema)
    shards = _shard_names(plan.num_links, spec.links_per_shard)
    todo = [s for s in shards if not _finished(out, man, "shards", s[0])]
    for name, _, _ in todo:
        man["shards"].pop(name, None)
    maps = [f"radio_maps/tx-{i:05d}.npz" for i in range(len(plan.tx))] if spec.radio_map else []
    maps_todo = [(i, m) for i, m in enumerate(maps) if not _finished(out, man, "radio_maps", m)]
    started = False
    if todo and (workers > 1 or ray_address):  # before anything is written: an unreachable cluster writes nothing
        from rftwin.trace.fanout import _start_ray  # noqa: PLC0415

        ray, started = _start_ray(ray_address, workers)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if _read_json(out / SCHEMA_FILE) != schema:
            write_json(out / SCHEMA_FILE, schema)
        for stale in [*out.glob(".shard-*.parquet.*.tmp"), *out.glob(f".{MANIFEST_FILE}.*.tmp"),
                      *out.glob("radio_maps/.tx-*.npz.*.tmp")]:
            stale.unlink()  # temporaries of a killed run (rftwin.io.atomic_path names)
        for name, a, b in track(todo, f"dataset shards ({plan.num_links} links)", enabled=progress):
            table = shard_table(twin, doc, spec, plan, a, b, cache_dir=cache_dir, memory_budget=memory_budget,
                                workers=workers, ray_address=ray_address)
            with atomic_path(out / name) as tmp:
                pq.write_table(table, tmp)
            man["shards"][name] = {"num_links": b - a, "sha256": _sha256(out / name)}
            write_json(out / MANIFEST_FILE, man)
    finally:
        if started:
            ray.shutdown()
    if maps_todo:
        from rftwin.evaluate.radiomap import compute_radio_map, write_npz  # noqa: PLC0415

        # after the shards: the radio-map solver writes the twin's materials into the Sionna scene
        for i, m in track(maps_todo, "radio maps", enabled=progress):
            res = compute_radio_map(twin, doc, plan.tx[i:i + 1], spec.frequency_hz, spec.radio_map_height_m,
                                    spec.radio_map_cell_m, settings=spec.solver())
            write_npz(res, out / m)
            man["radio_maps"][m] = {"sha256": _sha256(out / m)}
            write_json(out / MANIFEST_FILE, man)
    write_json(out / MANIFEST_FILE, man)
    return ExportResult(plan.num_links, len(shards), len(todo), len(shards) - len(todo), len(maps_todo),
                        time.perf_counter() - t0)


__all__ = ["DatasetSpec", "ExportResult", "LinkPlan", "export_dataset", "plan_links", "shard_table"]

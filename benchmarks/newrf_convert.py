"""Convert NeWRF's datasets (github.com/LuHaofan/NeWRF, MIT) into the NPZ files of benchmarks/data/newrf.

Run once by a developer on a local copy of that repository (CI and rftwin never read the originals):

    .venv/bin/python benchmarks/newrf_convert.py NEWRF_REPO benchmarks/data/newrf

Sources: ``simulator/datasets/dataset_bedroom.mat`` (MATLAB, read with scipy) and the pandas pickles
``data/dataset_conference_ch1_rt_image_fc.pkl`` / ``data/dataset_office_ch1_rt_image_fc.pkl`` (the only form
of those rooms' channels in the repository), and the STL meshes ``simulator/models/*.stl``.

The pickles are never loaded with pickle's default class lookup. Their opcodes were inspected first
(``pickletools``: the only globals are numpy's array/dtype constructors, ``builtins.slice`` and pandas'
DataFrame / BlockManager / Index / Int64Index / _new_Index / _unpickle_block). :class:`DataOnlyUnpickler`
allows exactly those names and maps every pandas one to an inert stand-in that only records its arguments
(no pandas code runs); any other global stops the conversion. The frame is then rebuilt from the recorded
block values and axes. Output per room: an NPZ of plain arrays (no object arrays, ``allow_pickle`` not
needed) with the links, every ray's complex coefficient and last interaction point, and the mesh.
"""
from __future__ import annotations

import argparse
import pickle
import pickletools
import sys
from pathlib import Path

import numpy as np

ROOMS = {"conference": ("data/dataset_conference_ch1_rt_image_fc.pkl", "simulator/models/conferenceroom.stl"),
         "office": ("data/dataset_office_ch1_rt_image_fc.pkl", "simulator/models/office.stl"),
         "bedroom": ("simulator/datasets/dataset_bedroom.mat", "simulator/models/Bedroom.stl")}


class _Recorded:
    """Inert stand-in for a pandas class: remembers constructor arguments and pickled state."""

    def __new__(cls, *args, **kw):  # pickle's NEWOBJ calls __new__ only
        self = super().__new__(cls)
        self.args, self.kw, self.state = args, kw, None
        return self

    def __init__(self, *args, **kw):
        pass

    def __setstate__(self, state):
        self.state = state


class _IndexClass(_Recorded):
    pass


def _new_index(cls, d):
    return np.asarray(d["data"]) if isinstance(d, dict) and "data" in d else d


def _unpickle_block(values, placement, ndim):
    return ("block", values, placement)


def _numpy(name: str):
    try:  # numpy >= 2 (the pickles name numpy 1's numpy.core)
        import numpy._core.multiarray as ma  # noqa: PLC0415
        import numpy._core.numeric as nu  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        import numpy.core.multiarray as ma  # noqa: PLC0415
        import numpy.core.numeric as nu  # noqa: PLC0415

    return {"_reconstruct": ma._reconstruct, "_frombuffer": nu._frombuffer}[name]


ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy("_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): lambda: _numpy("_frombuffer"),
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("builtins", "slice"): lambda: slice,
    ("pandas.core.frame", "DataFrame"): lambda: _Recorded,
    ("pandas.core.internals.managers", "BlockManager"): lambda: _Recorded,
    ("pandas.core.indexes.base", "Index"): lambda: _IndexClass,
    ("pandas.core.indexes.numeric", "Int64Index"): lambda: _IndexClass,
    ("pandas.core.indexes.base", "_new_Index"): lambda: _new_index,
    ("pandas._libs.internals", "_unpickle_block"): lambda: _unpickle_block,
}


class DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not on the allow-list; refusing to load")
        return ALLOWED[(module, name)]()


def pickle_globals(data: bytes) -> set[tuple[str, str]]:
    """(module, name) of every GLOBAL / STACK_GLOBAL, found by walking the opcodes with a memo (no execution)."""
    stack_strs: list[str] = []
    memo: dict[int, object] = {}
    found = set()
    last = None
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            last = arg
            stack_strs.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = last
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            last = memo.get(arg)
            stack_strs.append(last if isinstance(last, str) else None)
        elif op.name == "GLOBAL":
            found.add(tuple(arg.split(" ", 1)))
        elif op.name == "STACK_GLOBAL":
            found.add((stack_strs[-2], stack_strs[-1]))
        else:
            if op.name not in ("FRAME",):
                last = None
    return found


def _frame_columns(frame: _Recorded) -> dict[str, np.ndarray]:
    """Columns of a recorded DataFrame: its BlockManager was pickled as NEWOBJ(blocks, axes) with blocks from
    ``_unpickle_block(values [n_cols, n_rows], placement, ndim)`` (pandas 1.x)."""
    mgr = frame.state["_mgr"] if isinstance(frame.state, dict) else None
    if not isinstance(mgr, _Recorded) or len(mgr.args) < 2:
        raise SystemExit("unexpected DataFrame layout in the pickle (no BlockManager(blocks, axes))")
    blocks, axes = mgr.args[0], mgr.args[1]
    columns = [str(c) for c in np.asarray(axes[0])]
    out = {}
    for b in blocks:
        _, vals, locs = b
        idx = range(*locs.indices(len(columns))) if isinstance(locs, slice) else np.asarray(locs).ravel()
        for j, c in enumerate(idx):
            out[columns[int(c)]] = vals[j]
    return out


def read_pickle_frame(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    bad = pickle_globals(data) - set(ALLOWED)
    if bad:
        raise SystemExit(f"{path}: unexpected globals {sorted(bad)}; not converting")
    import io  # noqa: PLC0415

    frame = DataOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(frame, _Recorded):
        raise SystemExit(f"{path}: the pickle is not a DataFrame")
    return _frame_columns(frame)


def read_mat_frame(path: Path) -> dict[str, np.ndarray]:
    from scipy.io import loadmat  # noqa: PLC0415

    ds = loadmat(path)["subdataset"].ravel()
    out = {}
    for n in ds.dtype.names:
        col = np.empty(len(ds), dtype=object)
        for i in range(len(ds)):
            col[i] = ds[n][i]
        out[n] = col
    return out


def _flat(v) -> np.ndarray:
    return np.asarray(v, dtype=np.complex128 if np.iscomplexobj(v) else np.float64).ravel()


def room_arrays(cols: dict[str, np.ndarray], max_links: int) -> dict[str, np.ndarray]:
    tx, rx, los, off, coef, last, freq = [], [], [], [0], [], [], []
    for i in range(len(cols["TxPos"])):
        if len(tx) >= max_links:
            break
        t, r = _flat(cols["TxPos"][i]), _flat(cols["RxPos"][i])
        if t.size != 3 or r.size != 3 or not (np.isfinite(t).all() and np.isfinite(r).all()):
            continue  # NeWRF keeps empty rows for receivers without rays
        c = _flat(cols["RxChanPerRay"][i])
        x = np.asarray(cols["LastXPts"][i], np.float64)
        x = x.reshape(3, -1).T if x.shape[0] == 3 else x.reshape(-1, 3)
        if len(c) != len(x):
            raise SystemExit(f"row {i}: {len(c)} ray coefficients but {len(x)} last interaction points")
        tx.append(t)
        rx.append(r)
        los.append(bool(np.asarray(cols["LineOfSight"][i]).ravel()[0]))
        freq.append(float(np.asarray(cols["Frequency"][i]).ravel()[0]) * 1e9)
        coef.append(c)
        last.append(x)
        off.append(off[-1] + len(c))
    return {"tx_pos": np.array(tx), "rx_pos": np.array(rx), "line_of_sight": np.array(los),
            "frequency_hz": np.array(freq), "ray_offsets": np.array(off, np.int64),
            "ray_coefficient": np.concatenate(coef), "ray_last_point": np.concatenate(last)}


def mesh_arrays(stl: Path) -> dict[str, np.ndarray]:
    import trimesh  # noqa: PLC0415

    m = trimesh.load(stl, process=True)  # welds duplicate vertices; faces unchanged
    return {"mesh_vertices": np.asarray(m.vertices, np.float32), "mesh_faces": np.asarray(m.faces, np.int32)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("repo", type=Path, help="local copy of github.com/LuHaofan/NeWRF")
    ap.add_argument("out", type=Path, help="output folder (benchmarks/data/newrf)")
    ap.add_argument("--max-links", type=int, default=60, help="keep the first N links with rays of each room")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    for room, (data, stl) in ROOMS.items():
        src = a.repo / data
        cols = read_mat_frame(src) if src.suffix == ".mat" else read_pickle_frame(src)
        arrays = {**room_arrays(cols, a.max_links), **mesh_arrays(a.repo / stl)}
        np.savez_compressed(a.out / f"{room}.npz", **arrays)
        print(f"{room}: {len(arrays['tx_pos'])} links, {len(arrays['ray_coefficient'])} rays, "
              f"{len(arrays['mesh_faces'])} triangles -> {a.out / (room + '.npz')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calibration checkpoints as data only: tensors in a safetensors file, everything else as JSON in its header.

Why safetensors and not ``torch.save``/pickle: a checkpoint lives in a user-writable output folder and is read back
with ``--resume``; a pickle (``torch.load(weights_only=False)``) runs whatever code a tampered file names. The
safetensors format is a length-prefixed JSON header plus raw tensor bytes, so reading it can never execute code, and
a truncated or foreign file fails the header/size check. The non-tensor state (numbers, lists, dicts with int or
str keys, tuples, None, strings) is encoded as tagged JSON in the header's metadata.

The file is written to a temporary name in the same folder and renamed, so an interrupt (SIGINT) leaves either the
previous checkpoint or the new one, never a partial or 0-byte file.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import torch

from rftwin.io import atomic_path
from rftwin.pathset import PathSet

FORMAT = "rftwin-checkpoint-1"
_META_KEY = "rftwin_state"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, not a checkpoint, or from another format)."""


def _encode(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": name}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(x, tensors) for x in obj]}
    if isinstance(obj, list):
        return [_encode(x, tensors) for x in obj]
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _encode(obj.item(), tensors)
    raise TypeError(f"checkpoint state of type {type(obj).__name__} is not plain data")


def _decode(obj, tensors: dict[str, torch.Tensor], where: str):
    if isinstance(obj, list):
        return [_decode(x, tensors, where) for x in obj]
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            name = obj["__tensor__"]
            if name not in tensors:
                raise CheckpointError(f"{where}: refers to a tensor '{name}' that the file does not hold")
            return tensors[name]
        if set(obj) == {"__tuple__"}:
            return tuple(_decode(x, tensors, where) for x in obj["__tuple__"])
        if set(obj) == {"__dict__"}:
            out = {}
            for kv in obj["__dict__"]:
                if not (isinstance(kv, list) and len(kv) == 2):
                    raise CheckpointError(f"{where}: malformed mapping entry in the state")
                out[_decode(kv[0], tensors, where)] = _decode(kv[1], tensors, where)
            return out
        raise CheckpointError(f"{where}: unknown entry {sorted(obj)[:3]} in the state")
    return obj


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` (nested dicts/lists/tuples of tensors and plain values) to ``path`` atomically."""
    from safetensors.torch import save_file  # noqa: PLC0415

    tensors: dict[str, torch.Tensor] = {}
    doc = _encode(state, tensors)
    meta = {"format": FORMAT, _META_KEY: json.dumps(doc)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; :class:`CheckpointError` names the file otherwise."""
    from safetensors import safe_open  # noqa: PLC0415

    path = Path(path)
    where = f"checkpoint {path}"
    if not path.is_file():
        raise CheckpointError(f"{where}: not a regular file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types (header, size, I/O)
        raise CheckpointError(f"{where}: cannot be read as an rftwin checkpoint (truncated or not a checkpoint "
                              f"file: {type(exc).__name__}); remove it or drop --resume") from None
    if meta.get("format") != FORMAT or _META_KEY not in meta:
        raise CheckpointError(f"{where}: not an rftwin checkpoint (format '{meta.get('format')}', expected "
                              f"'{FORMAT}'); remove it or drop --resume")
    try:
        doc = json.loads(meta[_META_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{where}: damaged state header ({exc.msg})") from None
    state = _decode(doc, tensors, where)
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: the state is not a mapping")
    return state


def fingerprint(ps: PathSet, model, t, cfg) -> str:
    """Hash of everything a calibration run's trajectory depends on: paths ``ps``, targets ``t``, configuration
    ``cfg`` (a :class:`rftwin.calibrate.loop.CalibrationConfig`) and the starts of ``model``."""
    h = hashlib.sha256()
    c = replace(cfg, max_iter=0)  # the iteration limit may be raised when resuming
    h.update(repr(c).encode())
    for x in (ps.length_m, ps.obj.to(torch.float64), ps.cos_i):
        h.update(x.detach().cpu().numpy().tobytes())
    for name in ("link", "freq_index", "frequencies_hz", "path_gain_db", "weight", "delay_spread_s",
                 "mean_delay_s", "cfr", "mpc_path", "mpc_power_db"):
        v = getattr(t, name)
        if v is not None:
            h.update(name.encode() + v.detach().cpu().numpy().tobytes())
    h.update(repr(t.mpc_floor_db).encode())
    for name, v in sorted((t.feature_weight or {}).items()):
        h.update(name.encode() + v.detach().cpu().numpy().tobytes())
    for name, v in model.state_dict().items():
        h.update(name.encode() + v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


__all__ = ["CheckpointError", "fingerprint", "load_checkpoint", "save_checkpoint"]

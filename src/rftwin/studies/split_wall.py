"""Simulated measurements on the split-wall room (:mod:`rftwin.scene.split_wall`), for the neural-field study.

The twin (same geometry, every part of the split unit labelled with one prior material, so it knows neither the
split nor the patch) is traced once, and Sionna RT simulates the "measurements" in the true scene at every band:
per-link path gain and per-path (MPC) powers matched to the twin's paths.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rftwin.calibrate import Targets
from rftwin.pathset import PathSet
from rftwin.scene.split_wall import SplitWallScene, merge_parts, prior_spec, split_wall
from rftwin.trace import trace
from rftwin.trace.simulate import reference_path_gain_db, reference_path_power


@dataclass
class SplitWallData:
    """Simulated measurements on the split-wall room.

    ``ps``: the twin's paths (traced with the prior labels), parts merged into units (:func:`merge_parts`);
    ``part`` [P]: true part index (into :attr:`SplitWallScene.parts`) of every interaction of ``ps`` (row-major
    over [N, D], the order of :func:`rftwin.fields.interaction_points`); ``frequencies_hz`` [F];
    ``gain_db`` [F, L]: per-link path gain of the true scene (Sionna RT); ``mpc_power_db`` [F, N]: power of each
    twin path in the true scene (dB; -inf: the path carries no power in the true scene at any band, e.g. it
    crosses the metal patch; NaN: not found by Sionna at that band only, i.e. not measured).
    """

    ps: PathSet
    part: np.ndarray
    frequencies_hz: np.ndarray
    gain_db: np.ndarray
    mpc_power_db: np.ndarray
    tx: np.ndarray
    rx: np.ndarray

    def targets(self, links, mpc: bool = True, blocked: bool = True):
        """:class:`rftwin.calibrate.Targets` of the links ``links`` at every band: path gain and, with ``mpc``,
        the per-path powers of their paths (-inf ones, i.e. blocked paths, only with ``blocked``; they need a
        detection floor in the loss, see ``FieldTrainConfig.mpc_floor_db``)."""
        links = np.asarray(links, dtype=np.int64)
        F = len(self.frequencies_hz)
        kw = {}
        if mpc:
            keep = np.isin(self.ps.link.numpy(), links)[None] & ~np.isnan(self.mpc_power_db)
            if not blocked:
                keep &= np.isfinite(self.mpc_power_db)
            fi, pi = np.nonzero(keep)
            kw = dict(mpc_path=pi, mpc_power_db=self.mpc_power_db[fi, pi], mpc_frequency_hz=self.frequencies_hz[fi])
        return Targets.build(np.tile(links, F), np.repeat(self.frequencies_hz, len(links)),
                             self.gain_db[:, links].reshape(-1), **kw)


def _path_keys(ps: PathSet) -> list[tuple]:
    """Geometry keys of paths (link, length to 0.1 mm, object sequence) to match paths across traces."""
    lengths = np.round(ps.length_m.numpy() * 1e4).astype(np.int64)
    return [(int(li), int(le), tuple(o)) for li, le, o in zip(ps.link.numpy(), lengths, ps.obj.numpy().tolist())]


def simulate_measurements(truth: SplitWallScene, prior_label: str, tx: np.ndarray, rx: np.ndarray,
                          frequencies_hz, settings) -> SplitWallData:
    """Trace the prior twin of ``truth`` once (at the middle band) and simulate path gains and MPC powers of the
    true scene with Sionna RT at every band. ``tx``/``rx`` [L, 3] (m) link end points; ``settings`` a
    :class:`rftwin.trace.SolverSettings`."""
    freqs = np.asarray(frequencies_hz, dtype=np.float64).reshape(-1)
    if freqs.size == 0 or np.any(freqs <= 0):
        raise ValueError(f"frequencies_hz must be positive, got {freqs}")
    twin = split_wall(prior_spec(truth.spec, prior_label), float(np.median(freqs)))
    ps = trace(twin.twin, tx, rx, settings, cache_dir=False, progress=False)
    index = {k: i for i, k in enumerate(_path_keys(ps))}
    gains, mpc = [], np.full((len(freqs), ps.num_paths), np.nan)
    for fi, f in enumerate(freqs):
        truth.twin.set_frequency(float(f))
        pt = trace(truth.twin, tx, rx, settings, cache_dir=False, progress=False)
        pw = reference_path_power(pt)
        gains.append(reference_path_gain_db(pt))
        for j, k in enumerate(_path_keys(pt)):
            i = index.get(k)
            if i is not None:
                mpc[fi, i] = 10.0 * np.log10(max(float(pw[j]), 1e-300))
    mpc[:, np.isnan(mpc).all(0)] = -np.inf  # absent at every band: blocked in the true scene
    part = ps.obj[ps.itype != 0].numpy()
    return SplitWallData(merge_parts(ps), part, freqs, np.stack(gains), mpc, np.asarray(tx), np.asarray(rx))

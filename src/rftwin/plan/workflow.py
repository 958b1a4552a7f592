"""End-to-end measurement planning: scene -> candidate links -> one trace -> prior -> greedy design -> outputs.

Candidate links are either generated (``auto``: well-spread Tx and Rx grid positions, every pair a link) or read
from a links file (``link_id``, ``tx_x..rx_z``, ``frequency_hz``; the format of ``rftwin predict``). The chosen
links are written as a links table in the same format, so the plan can be fed straight to ``rftwin predict`` or
used as the measurement campaign.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rftwin.pathset import PathSet
from rftwin.plan.design import EPS_KIND, DesignResult, ParameterPrior, plan_links
from rftwin.scene.candidates import SceneGeometry, candidate_grid, farthest_point_subset

PRIOR_KINDS = ("labels", "scene")
TABLE_SUFFIXES = (".csv", ".txt", ".parquet", ".pq")


@dataclass
class MeasurementPlan:
    """The design and the candidate links it was chosen from (``paths`` holds their traced paths);
    ``link_ids`` names the candidates (from the candidates file, or generated ``C0001``...)."""

    design: DesignResult
    paths: PathSet
    prior: ParameterPrior
    frequency_hz: float
    link_ids: list[str] | None = None

    def _ids(self) -> list[str]:
        return self.link_ids or [f"C{i + 1:04d}" for i in range(self.paths.num_links)]

    def chosen_links(self) -> list[dict]:
        """Chosen links in order: tx/rx position (m), predicted gain (dB), information gain of its step (nats;
        per group in transmitter mode, reported on the group's first link)."""
        tx = self.paths.tx_pos.numpy()
        rx = self.paths.rx_pos.numpy()
        ids = self._ids()
        gain = self.design.sensitivity.gain_db if self.design.sensitivity is not None else None
        grouped = self.design.selected_groups is not None
        out, step, prev = [], -1, None
        for link in self.design.selected:
            key = tuple(tx[link]) if grouped else link
            first = key != prev
            if first:
                step, prev = step + 1, key
            out.append(dict(link=int(link), link_id=ids[link], step=step + 1, tx=[float(v) for v in tx[link]],
                            rx=[float(v) for v in rx[link]],
                            predicted_gain_db=None if gain is None else float(gain[link]),
                            gain_nats=float(self.design.gain_nats[step]) if first else None))
        return out

    def parameter_table(self) -> list[dict]:
        """Per free parameter: prior value (eps_r or sigma in S/m), the log-space prior / posterior std (the
        relative std of eps_r - 1 resp. sigma) and the linearised std in physical units before / after."""
        rows = []
        params = self.design.sensitivity.params if self.design.sensitivity is not None else None
        for i, row in enumerate(self.design.table()):
            r = dict(row)
            if params is not None:
                k, kind = params[i]
                scale = (self.prior.eps_r[k] - 1.0) if kind == EPS_KIND else self.prior.sigma[k]
                r.update(object=self.prior.names[k], kind=kind,
                         prior_value=float(self.prior.eps_r[k] if kind == EPS_KIND else self.prior.sigma[k]),
                         prior_std_value=float(scale * row["prior_std"]),
                         posterior_std_value=float(scale * row["posterior_std"]))
            rows.append(r)
        return rows

    def links_frame(self) -> pd.DataFrame:
        """The chosen links as a links table (``rftwin predict`` format) plus planning columns: ``step`` (order
        of choice, 1-based; links of one transmitter share it in transmitter mode), ``candidate`` (index into
        the candidates), ``predicted_path_gain_db`` (at the prior mean) and ``gain_nats``."""
        rows = self.chosen_links()
        return pd.DataFrame({
            "link_id": [r["link_id"] for r in rows],
            **{c: [r["tx"][i] for r in rows] for i, c in enumerate(("tx_x", "tx_y", "tx_z"))},
            **{c: [r["rx"][i] for r in rows] for i, c in enumerate(("rx_x", "rx_y", "rx_z"))},
            "frequency_hz": self.frequency_hz,
            "step": [r["step"] for r in rows],
            "candidate": [r["link"] for r in rows],
            "predicted_path_gain_db": [r["predicted_gain_db"] for r in rows],
            "gain_nats": [r["gain_nats"] for r in rows],
        })

    def to_dict(self) -> dict:
        d = self.design
        return dict(frequency_hz=self.frequency_hz, noise_db=d.noise_db, offset_std_db=d.offset_std_db,
                    n_candidates=self.paths.num_links, selected=self.chosen_links(),
                    selected_transmitters=d.selected_groups, gain_nats=[float(x) for x in d.gain_nats],
                    information_nats=float(d.information_nats), parameters=self.parameter_table())


def scene_prior(twin, kind: str = "labels", frequency_hz: float | None = None) -> ParameterPrior:
    """Prior for planning: ``labels`` = text prior of the object names (:func:`rftwin.priors.scene_priors`),
    ``scene`` = the scene's own materials with the default log-space stds, or the path of a labels file (YAML /
    JSON object name -> ITU material; objects it does not name get their text prior)."""
    f = float(twin.scene.frequency[0]) if frequency_hz is None else float(frequency_hz)
    if kind == "scene":
        return ParameterPrior.from_twin(twin)
    thickness = [o.thickness_m for o in twin.objects]
    if kind == "labels":
        from rftwin.priors.labels import scene_priors  # noqa: PLC0415 - loads the text encoder only when needed

        return ParameterPrior.from_material_priors(twin.names, scene_priors(twin, f), thickness)
    p = Path(kind)
    if p.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise ValueError(f"unknown prior '{kind}': expected one of {PRIOR_KINDS} or a .yaml/.yml/.json labels file")
    from rftwin.data.measurements import read_labels  # noqa: PLC0415
    from rftwin.priors.labels import label_priors, material_prior  # noqa: PLC0415

    labels = read_labels(p, twin)
    unnamed = [o.name for o in twin.objects if o.name not in labels]
    text = dict(zip(unnamed, label_priors(unnamed, f))) if unnamed else {}
    priors = [material_prior(labels[o.name], f, query=o.name, reason=f"labels file {p}", source="labels")
              if o.name in labels else text[o.name] for o in twin.objects]
    return ParameterPrior.from_material_priors(twin.names, priors, thickness)


def candidate_links(twin, tx_heights_m: Sequence[float] = (1.5,), rx_heights_m: Sequence[float] = (1.0,),
                    n_tx_candidates: int = 8, n_rx_candidates: int = 10, spacing_m: float = 1.0,
                    clearance_m: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Automatic candidates: ``n_tx_candidates`` well-spread transmitter and ``n_rx_candidates`` receiver
    positions from the grid (:func:`candidate_grid`), every Tx-Rx pair a link: (tx [L, 3], rx [L, 3]) in m."""
    geo = SceneGeometry.from_twin(twin)
    c_tx = candidate_grid(twin, spacing_m, tx_heights_m, clearance_m=clearance_m, geometry=geo)
    c_rx = candidate_grid(twin, spacing_m, rx_heights_m, clearance_m=clearance_m, geometry=geo)
    if not len(c_tx) or not len(c_rx):
        raise ValueError(f"no candidate positions with spacing {spacing_m} m and clearance {clearance_m} m "
                         f"at heights tx {list(tx_heights_m)} / rx {list(rx_heights_m)} m")
    tx = c_tx[farthest_point_subset(c_tx, min(n_tx_candidates, len(c_tx)), seed=seed)]
    rx = c_rx[farthest_point_subset(c_rx, min(n_rx_candidates, len(c_rx)), seed=seed + 1)]
    return np.repeat(tx, len(rx), 0), np.tile(rx, (len(tx), 1))


def plan_from_links(twin, tx_pos: np.ndarray, rx_pos: np.ndarray, n_select: int, frequency_hz: float | None = None,
                    prior: str | ParameterPrior = "labels", noise_db: float = 2.0, by_transmitter: bool = False,
                    offset_std_db: float | None = None, n_prior_samples: int = 0, min_gain_db: float | None = None,
                    settings=None, cache_dir: str | os.PathLike | None | bool = None, seed: int = 0,
                    link_ids: list[str] | None = None, progress: bool = False) -> MeasurementPlan:
    """Trace the candidate links ``tx_pos[i] -> rx_pos[i]`` ([L, 3] m) once and choose ``n_select`` of them (or
    transmitter configurations with ``by_transmitter``) by :func:`rftwin.plan.plan_links`. ``settings``:
    :class:`rftwin.trace.SolverSettings` (default depth 3, 1e5 samples per source)."""
    from rftwin.trace.tracer import SolverSettings, trace  # noqa: PLC0415 - Sionna only when planning

    f = float(twin.scene.frequency[0]) if frequency_hz is None else float(frequency_hz)
    twin.set_frequency(f)
    settings = settings or SolverSettings(max_depth=3, samples_per_src=100_000)
    ps = trace(twin, tx_pos, rx_pos, settings, cache_dir=cache_dir, progress=progress)
    pp = prior if isinstance(prior, ParameterPrior) else scene_prior(twin, prior, f)
    design = plan_links(ps, pp, f, n_select, noise_db=noise_db, by_transmitter=by_transmitter,
                        offset_std_db=offset_std_db, min_gain_db=min_gain_db, n_prior_samples=n_prior_samples,
                        seed=seed)
    return MeasurementPlan(design=design, paths=ps, prior=pp, frequency_hz=f, link_ids=link_ids)


def plan_measurements(twin, n_select: int, frequency_hz: float | None = None, prior: str | ParameterPrior = "labels",
                      tx_heights_m: Sequence[float] = (1.5,), rx_heights_m: Sequence[float] = (1.0,),
                      n_tx_candidates: int = 8, n_rx_candidates: int = 10, spacing_m: float = 1.0,
                      clearance_m: float = 0.3, noise_db: float = 2.0, by_transmitter: bool = False,
                      offset_std_db: float | None = None, n_prior_samples: int = 0, settings=None,
                      cache_dir: str | os.PathLike | None | bool = None, seed: int = 0) -> MeasurementPlan:
    """Plan ``n_select`` links (or transmitter configurations with ``by_transmitter``) among automatic candidates
    (:func:`candidate_links`), traced once."""
    tx, rx = candidate_links(twin, tx_heights_m, rx_heights_m, n_tx_candidates, n_rx_candidates, spacing_m,
                             clearance_m, seed)
    return plan_from_links(twin, tx, rx, n_select, frequency_hz, prior, noise_db, by_transmitter, offset_std_db,
                           n_prior_samples, settings=settings, cache_dir=cache_dir, seed=seed)


def _candidates_from_file(path: str | os.PathLike, twin, frequency_hz: float | None
                          ) -> tuple[np.ndarray, np.ndarray, list[str], float]:
    from rftwin.data.measurements import read_links  # noqa: PLC0415

    lk = read_links(path, twin)
    freqs = np.unique(lk.frequency_hz)
    if frequency_hz is None:
        if len(freqs) > 1:
            raise ValueError(f"{path}: candidates at {len(freqs)} frequencies ({', '.join(f'{x:g}' for x in freqs)} "
                             "Hz); planning is per frequency: pass --frequency")
        frequency_hz = float(freqs[0])
    return lk.tx_pos, lk.rx_pos, list(lk.link_id), float(frequency_hz)


def plan_command(scene: str, n_select: int, out: str | os.PathLike | None = None, candidates: str = "auto",
                 frequency_hz: float | None = None, prior: str = "labels", by_transmitter: bool = False,
                 noise_db: float = 2.0, offset_std_db: float | None = None, n_tx_candidates: int = 8,
                 n_rx_candidates: int = 10, tx_height_m: float = 1.5, rx_height_m: float = 1.0,
                 spacing_m: float = 1.0, clearance_m: float = 0.3, n_prior_samples: int = 0,
                 min_gain_db: float | None = None, settings=None, seed: int = 0,
                 report: str | os.PathLike | None = None, progress: bool = False) -> dict:
    """CLI entry: load ``scene`` (``room``, a Sionna built-in name, an XML path or a calibrated twin folder), get
    the candidates (``auto`` or a links file), plan, and write the chosen links to ``out`` (CSV/Parquet links
    table) and the plan (chosen links, information gains, per-parameter prior / posterior std) as JSON to
    ``report`` (default: ``out`` with suffix ``.json``). Returns the plan as a dict."""
    from rftwin.io import write_json, write_table  # noqa: PLC0415
    from rftwin.twin_io import load_twin  # noqa: PLC0415

    if n_select < 1:
        raise ValueError(f"budget must be >= 1, got {n_select}")
    if not noise_db > 0:
        raise ValueError(f"noise_db must be > 0 dB, got {noise_db}")
    if out is not None and Path(out).suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"--out {out}: expected a .csv or .parquet links file (the JSON report goes to --report)")
    twin, _ = load_twin(scene, frequency_hz or 3.5e9)
    if candidates == "auto":
        f = 3.5e9 if frequency_hz is None else float(frequency_hz)
        tx, rx = candidate_links(twin, (tx_height_m,), (rx_height_m,), n_tx_candidates, n_rx_candidates, spacing_m,
                                 clearance_m, seed)
        ids = None
    else:
        tx, rx, ids, f = _candidates_from_file(candidates, twin, frequency_hz)
    plan = plan_from_links(twin, tx, rx, n_select, f, prior=prior, noise_db=noise_db, by_transmitter=by_transmitter,
                           offset_std_db=offset_std_db, n_prior_samples=n_prior_samples, min_gain_db=min_gain_db,
                           settings=settings, seed=seed, link_ids=ids, progress=progress)
    d = dict(scene=str(scene), candidates=str(candidates), prior=str(prior), **plan.to_dict())
    if out is not None:
        write_table(out, plan.links_frame())
        d["links_file"] = str(out)
    if report is None and out is not None:
        report = Path(out).with_suffix(".json")
    if report is not None:
        write_json(report, d)
    return d


__all__ = ["MeasurementPlan", "candidate_links", "plan_command", "plan_from_links", "plan_measurements", "scene_prior"]

"""End-to-end measurement planning: scene -> candidate links -> one trace -> prior -> greedy design -> report."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rftwin.plan.candidates import SceneGeometry, candidate_grid, farthest_point_subset
from rftwin.plan.design import DesignResult, ParameterPrior, plan_links
from rftwin.trace.pathset import PathSet

PRIOR_KINDS = ("labels", "scene")


@dataclass
class MeasurementPlan:
    """The design and the candidate links it was chosen from (``paths`` holds their traced paths)."""

    design: DesignResult
    paths: PathSet
    prior: ParameterPrior
    frequency_hz: float

    def chosen_links(self) -> list[dict]:
        """Chosen links in order: tx/rx position (m), predicted gain (dB), information gain of its step (nats;
        per group in transmitter mode, reported on the group's first link)."""
        tx = self.paths.tx_pos.numpy()
        rx = self.paths.rx_pos.numpy()
        gain = self.design.sensitivity.gain_db if self.design.sensitivity is not None else None
        step_of = {}
        if self.design.selected_groups is None:
            step_of = {link: k for k, link in enumerate(self.design.selected)}
        out = []
        for link in self.design.selected:
            k = step_of.get(link)
            out.append(dict(link=int(link), tx=[float(v) for v in tx[link]], rx=[float(v) for v in rx[link]],
                            predicted_gain_db=None if gain is None else float(gain[link]),
                            gain_nats=None if k is None else float(self.design.gain_nats[k])))
        return out

    def to_dict(self) -> dict:
        d = self.design
        return dict(frequency_hz=self.frequency_hz, noise_db=d.noise_db, offset_std_db=d.offset_std_db,
                    n_candidates=self.paths.num_links, selected=self.chosen_links(),
                    selected_transmitters=d.selected_groups, gain_nats=[float(x) for x in d.gain_nats],
                    information_nats=float(d.information_nats), parameters=d.table())


def scene_prior(twin, kind: str = "labels", frequency_hz: float | None = None) -> ParameterPrior:
    """Prior for planning: ``labels`` = text prior of the object names (:func:`rftwin.priors.scene_priors`),
    ``scene`` = the scene's own materials with the default log-space stds."""
    if kind == "scene":
        return ParameterPrior.from_twin(twin)
    if kind != "labels":
        raise ValueError(f"unknown prior '{kind}', expected one of {PRIOR_KINDS}")
    from rftwin.priors.labels import scene_priors  # noqa: PLC0415 - loads the text encoder only when needed

    priors = scene_priors(twin, frequency_hz)
    return ParameterPrior.from_material_priors(twin.names, priors, [o.thickness_m for o in twin.objects])


def plan_measurements(twin, n_select: int, frequency_hz: float | None = None, prior: str | ParameterPrior = "labels",
                      tx_heights_m: Sequence[float] = (1.5,), rx_heights_m: Sequence[float] = (1.0,),
                      n_tx_candidates: int = 8, n_rx_candidates: int = 10, spacing_m: float = 1.0,
                      clearance_m: float = 0.3, noise_db: float = 2.0, by_transmitter: bool = False,
                      offset_std_db: float | None = None, n_prior_samples: int = 0, settings=None,
                      cache_dir: str | os.PathLike | None | bool = None, seed: int = 0) -> MeasurementPlan:
    """Plan ``n_select`` links (or transmitter configurations with ``by_transmitter``).

    Candidates: ``n_tx_candidates`` well-spread transmitter and ``n_rx_candidates`` receiver positions from the
    grid (:func:`candidate_grid`, spacing ``spacing_m``, the given heights, ``clearance_m`` to every surface);
    every Tx-Rx pair is a candidate link, traced once (``settings``: :class:`rftwin.trace.SolverSettings`,
    default depth 3 with 1e5 samples). Then :func:`plan_links`.
    """
    from rftwin.trace.tracer import SolverSettings, trace  # noqa: PLC0415 - Sionna only when planning

    f = float(twin.scene.frequency[0]) if frequency_hz is None else float(frequency_hz)
    if frequency_hz is not None:
        twin.set_frequency(f)
    geo = SceneGeometry.from_twin(twin)
    c_tx = candidate_grid(twin, spacing_m, tx_heights_m, clearance_m=clearance_m, geometry=geo)
    c_rx = candidate_grid(twin, spacing_m, rx_heights_m, clearance_m=clearance_m, geometry=geo)
    tx = c_tx[farthest_point_subset(c_tx, min(n_tx_candidates, len(c_tx)), seed=seed)]
    rx = c_rx[farthest_point_subset(c_rx, min(n_rx_candidates, len(c_rx)), seed=seed + 1)]
    T, R = np.repeat(tx, len(rx), 0), np.tile(rx, (len(tx), 1))
    settings = settings or SolverSettings(max_depth=3, samples_per_src=100_000)
    ps = trace(twin, T, R, settings, cache_dir=cache_dir, progress=False)
    pp = prior if isinstance(prior, ParameterPrior) else scene_prior(twin, prior, f)
    design = plan_links(ps, pp, f, n_select, noise_db=noise_db, by_transmitter=by_transmitter,
                        offset_std_db=offset_std_db, n_prior_samples=n_prior_samples, seed=seed)
    return MeasurementPlan(design=design, paths=ps, prior=pp, frequency_hz=f)


def plan_command(scene: str, n_select: int, out: str | os.PathLike | None = None, frequency_hz: float = 3.5e9,
                 prior: str = "labels", by_transmitter: bool = False, noise_db: float = 2.0,
                 offset_std_db: float | None = None, n_tx_candidates: int = 8, n_rx_candidates: int = 10,
                 tx_height_m: float = 1.5, rx_height_m: float = 1.0, seed: int = 0) -> dict:
    """CLI entry: load ``scene`` (``room``, a Sionna built-in name or an XML path), plan, and write the plan as
    JSON to ``out`` (when given). Returns the plan as a dict."""
    from rftwin.scene.load import load  # noqa: PLC0415

    twin = load(scene, frequency_hz)
    plan = plan_measurements(twin, n_select, frequency_hz, prior=prior, tx_heights_m=(tx_height_m,),
                             rx_heights_m=(rx_height_m,), n_tx_candidates=n_tx_candidates,
                             n_rx_candidates=n_rx_candidates, noise_db=noise_db, by_transmitter=by_transmitter,
                             offset_std_db=offset_std_db, seed=seed)
    d = dict(scene=scene, prior=prior, **plan.to_dict())
    if out is not None:
        p = Path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(d, indent=2))
    return d


__all__ = ["MeasurementPlan", "plan_command", "plan_measurements", "scene_prior"]

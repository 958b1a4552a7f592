"""RIS placement: configure each candidate RIS to focus on a target area and rank the candidates by the mean
gain over the area, with the twin's own channel as the reference (no RIS).

Combination with the twin: powers add, P_with = P_twin + |h_RIS|^2. The twin's path gain is itself rftwin's
incoherent sum of path powers (what calibration fits); the RIS path has its own delay and over an area, or a
bandwidth such as WEDT's, the cross term with the other paths averages out, while the elements of the RIS add
coherently (that is the beamforming)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rftwin.ris.physics import RisSpec, focus_phases, quantise_phases, reflection, ris_channel

CHUNK_TERMS = 1 << 22  # element terms (candidate x focal point x target point x element) evaluated at once


@dataclass
class RisPowers:
    """|h_RIS|^2 [C, F, P] for C candidates, F focal points, P target points; focal points [C, F, 3] m;
    visible share [C] (element-point pairs with both segments free)."""

    power: torch.Tensor
    focal: torch.Tensor
    visible_share: torch.Tensor


def focal_candidates(points: np.ndarray, mode: str) -> np.ndarray:
    """Focal points [F, 3]: ``center`` = the centroid of the target points; ``best`` = the centroid and the
    target points nearest to a 3 x 3 grid over the area's x-y extent (the best one is chosen per candidate)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    c = pts.mean(0, keepdims=True)
    if mode == "center":
        return c
    if mode != "best":
        raise ValueError(f"focus mode must be 'center' or 'best', got {mode!r}")
    lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
    g = np.stack(np.meshgrid(*(np.linspace(a + (b - a) / 6, b - (b - a) / 6, 3) for a, b in zip(lo, hi))), -1)
    near = np.argmin(np.linalg.norm(pts[None, :, :2] - g.reshape(-1, 1, 2), axis=-1), axis=1)
    return np.unique(np.concatenate([c, pts[near]]), axis=0)


def ris_powers(tx: np.ndarray, elements: torch.Tensor, normals: torch.Tensor, points: np.ndarray,
               focal: np.ndarray, spec: RisSpec, frequency_hz: float, visible: torch.Tensor | None = None
               ) -> RisPowers:
    """Path gain of the RIS path at every target point for every candidate (elements [C, E, 3], normals [C, 3])
    focused, with ``spec.bits``-bit phases, on each focal point (focal [F, 3]); visible [C, P, E] (None: all)."""
    dt = elements.dtype
    txt = torch.as_tensor(np.asarray(tx, dtype=np.float64), dtype=dt)
    pts = torch.as_tensor(np.asarray(points, dtype=np.float64), dtype=dt)
    foc = torch.as_tensor(np.asarray(focal, dtype=np.float64), dtype=dt)
    C, F = elements.shape[0], foc.shape[0]
    phi = focus_phases(txt, foc[None, :, :].expand(C, F, 3), elements[:, None], frequency_hz)  # [C, F, E]
    gamma = reflection(quantise_phases(phi, spec.bits))
    E = elements.shape[1]
    step = max(1, CHUNK_TERMS // max(1, C * F * E))  # target points per chunk: bounded [C, F, p, E] terms
    h = torch.cat([ris_channel(txt.expand(1, 1, 3), pts[None, None, s:s + step], elements[:, None],
                               normals[:, None], gamma, spec, frequency_hz,
                               None if visible is None else visible[:, None, s:s + step])
                   for s in range(0, len(pts), step)], dim=-1)  # [C, F, P]
    share = torch.ones(C, dtype=dt) if visible is None else visible.to(dt).mean(dim=(1, 2))
    return RisPowers(h.abs() ** 2, foc[None].expand(C, F, 3), share)


@dataclass
class RisRanking:
    """Per candidate: mean / median / min gain [dB] over the target points with a twin path, chosen focal index
    [C]; gain map [C, P] dB (NaN where the twin has no path); reference path gain [P] dB; RIS path gain [C, P] dB
    at the chosen focus; order (best first) [C]."""

    mean_gain_db: np.ndarray
    median_gain_db: np.ndarray
    min_gain_db: np.ndarray
    focal_index: np.ndarray
    gain_db: np.ndarray
    reference_db: np.ndarray
    ris_db: np.ndarray
    order: np.ndarray

    @property
    def points_without_reference(self) -> int:
        return int(np.isnan(self.reference_db).sum())


def rank(powers: RisPowers, reference_gain: np.ndarray) -> RisRanking:
    """Choose per candidate the focal point of the highest mean gain and rank candidates by that gain.

    reference_gain: the twin's path gain (linear) [P] at the target points, 0 or NaN where it found no path (those
    points are left out of the means: the gain there is unbounded)."""
    ref = np.nan_to_num(np.asarray(reference_gain, dtype=np.float64), nan=0.0)
    ok = ref > 0
    if not ok.any():
        raise ValueError("the twin found no path to any target point: the RIS gain is undefined")
    pr = powers.power.detach().cpu().numpy()  # [C, F, P]
    with np.errstate(divide="ignore"):
        g = 10 * np.log10(np.where(ok, (ref + pr) / np.where(ok, ref, 1.0), np.nan))
    mean_cf = np.nanmean(g, axis=-1)  # [C, F]
    fi = np.argmax(mean_cf, axis=1)
    ci = np.arange(len(fi))
    gsel = g[ci, fi]
    mean = mean_cf[ci, fi]
    with np.errstate(divide="ignore"):
        ris_db = 10 * np.log10(pr[ci, fi])
        ref_db = np.where(ok, 10 * np.log10(np.where(ok, ref, 1.0)), np.nan)
    order = np.argsort(-mean, kind="stable")
    return RisRanking(mean, np.nanmedian(gsel, -1), np.nanmin(gsel, -1), fi, gsel, ref_db, ris_db, order)


__all__ = ["RisPowers", "RisRanking", "focal_candidates", "rank", "ris_powers"]

"""The NeWRF section of docs/validation.md (tables <= 80 columns)."""
from __future__ import annotations

from rftwin.validate.md_tables import fmt as _f
from rftwin.validate.md_tables import table as _table


def render_newrf(doc: dict) -> str:
    rooms = doc["rooms"]
    s = doc["settings"]
    t1 = _table(["room", "links", "triangles", "NeWRF", "rftwin", "matched", "copies", "unm. N/R"],
                [[r["room"], str(r["links"]), str(r["triangles"]), str(r["newrf_rays"]), str(r["rftwin_paths"]),
                  str(sum(o["matched"] for o in r["per_order"])), str(r["rftwin_duplicates"]),
                  f"{r['newrf_unmatched']}/{sum(o['rftwin_unmatched'] for o in r['per_order'])}"]
                 for r in rooms.values()])
    rows = []
    for r in rooms.values():
        for o in r["per_order"]:
            if not o["rftwin_paths"]:
                continue
            rows.append([r["room"], str(o["order"]), str(o["rftwin_paths"]), str(o["matched"]),
                         _f(o["max_abs_delay_error_s"] * 1e12 if o["max_abs_delay_error_s"] is not None else None,
                            ".3f"),
                         _f(o["max_aoa_error_deg"], ".4f"),
                         _f(o["gain_diff_median_db"], ".4f"),
                         f"{o['phase_same']}/{o['phase_opposite']}/{o['phase_other']}"])
    t2 = _table(["room", "order", "rftwin", "matched", "Δτ [ps]", "AoA [°]", "ΔG [dB]", "φ 0/π/other"], rows)
    t3 = _table(["room", "incoh. all", "incoh. same orders", "coherent p10..p90"],
                [[r["room"], _f(r["link_incoherent_diff_db"]["median"], "+.3f"),
                  _f(r["link_incoherent_same_orders_diff_db"]["median"], "+.4f") + " (RMS "
                  + _f(r["link_incoherent_same_orders_diff_db"]["rms"], ".4f") + ")",
                  _f(r["link_coherent_diff_db"]["p10"], "+.1f") + " .. "
                  + _f(r["link_coherent_diff_db"]["p90"], "+.1f")]
                 for r in rooms.values()])
    unmatched = "; ".join(f"{r['room']}: {r['newrf_unmatched']} ("
                          + ", ".join(f"{n} of order {o}" for o, n in r["newrf_unmatched_orders"].items() if n)
                          + f", {min(r['newrf_unmatched_length_m']):.1f}–{max(r['newrf_unmatched_length_m']):.1f} m)"
                          for r in rooms.values() if r["newrf_unmatched"]) or "none"
    bed = rooms.get("bedroom")
    bed_txt = ""
    if bed is not None and bed["newrf_max_order"] < 2:
        bed_txt = (f" The bedroom file holds no second-order rays at all (its {bed['newrf_rays']} rays are the line "
                   "of sight and first-order reflections), although `main.m` asks for two reflections: that dataset "
                   "was evidently generated with one; rftwin's second-order paths are then extra by construction, "
                   f"which is the {_f(bed['link_incoherent_diff_db']['median'], '+.1f')} dB of its incoherent link "
                   "power (none when the orders are the same).")
    o1 = [o for r in rooms.values() for o in r["per_order"] if o["order"] == 1 and o["matched"]]
    opp = sum(o["phase_opposite"] for o in o1) / max(1, sum(o["matched"] for o in o1))
    g1 = max((abs(o["gain_diff_median_db"]) for o in o1), default=float("nan"))
    coh = [r["link_coherent_diff_db"] for r in rooms.values()]
    return NEWRF.format(t1=t1, t2=t2, t3=t3, links=s["links_per_room"], samples=s["samples_per_src"],
                        gate_ps=s["delay_gate_s"] * 1e12, gate_deg=s["angle_gate_deg"], unmatched=unmatched,
                        bed=bed_txt, opp=100 * opp, g1=g1, coh_lo=min(c["p10"] for c in coh),
                        coh_hi=max(c["p90"] for c in coh))


NEWRF = """
## 6. NeWRF's MATLAB-traced rooms (2.412 GHz)

Reference: `LuHaofan/NeWRF` (MIT; converted files in `benchmarks/data/newrf/`, made by
`benchmarks/newrf_convert.py`, which reads the pandas pickles through an allow-list of numpy/pandas data
constructors after inspecting their opcodes, and never commits a pickle). NeWRF's `simulator/main.m` runs MATLAB's
`raytrace` (image method, at most 2 reflections, `perfect-reflector`) on an STL room and keeps per ray only
10^(−FSPL(L)/20)·e^(−j2πfL/c) and the last interaction point: no reflection coefficient, no polarisation.
rftwin: the STL as one object of ITU metal, specular reflection only, depth 2, line of sight on, vertically
polarised isotropic antennas, {samples:,} rays; the first {links} links of each room. Rays matched by delay
(gate {gate_ps:.0f} ps; NeWRF's length follows from its amplitude) and arrival direction (gate {gate_deg:g}°;
receiver → last interaction point). "copies": rftwin paths repeating another path of the link (same triangles,
same length) — Sionna RT's duplicates, seen in the Q-D lecture room too.

{t1}

Per reflection order: largest delay and arrival-angle differences, median gain difference of the matched
rays (rftwin − NeWRF, dB) and how many have the same / opposite / another phase (±10°):

{t2}

Link power, rftwin − NeWRF (dB): median of the incoherent sum over all rftwin paths, over the paths of the
orders NeWRF has (copies removed), and the 10–90 % range of the coherent (narrowband) sum:

{t3}

What agrees: the path sets, to float32 precision where both have a ray (delay and direction), and per-ray
gains within a few thousandths of a dB: ITU metal loses {g1:.4f} dB per bounce (median, first order) and the
vertically polarised field stays in the receiver's polarisation after these metal reflections. "unm. N/R":
NeWRF rays without an rftwin partner / rftwin paths (not copies) without a NeWRF partner. NeWRF-only rays
(order inferred from their length and last point) — {unmatched} — are chains that Sionna's shoot-and-bounce
search did not sample at this ray count (MATLAB's image method is exhaustive; we believe these rays exist).
Measured once with 10⁶ rays, the conference
room came out worse, not better (444 paths, 33 NeWRF rays unmatched); not investigated further (a per-source
path budget is a candidate). The rftwin-only paths of the office are not in NeWRF's file; we did not find out why MATLAB
rejected them.

Systematic differences, each explained: (1) the **phase of a reflection**: NeWRF omits it, rftwin's metal has
R_TE = −1 and R_TM = +1 (P.2040's convention, E ⟂ / ∥ the plane of incidence), so {opp:.0f} % of the
first-order rays (walls: TE for vertical antennas) come out with opposite sign and the coherent link power
differs by {coh_lo:+.0f} to {coh_hi:+.0f} dB (10–90 %); the incoherent power agrees. We believe rftwin: a metal
wall does reverse the tangential electric field. (2) **Duplicates**: Sionna returns some specular paths twice
(see the Q-D section); NeWRF/MATLAB do not; removing copies restores the incoherent agreement.{bed}
"""

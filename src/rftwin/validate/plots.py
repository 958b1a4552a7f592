"""PNG of the curve-shaped validation results: two-ray gain over distance, knife-edge loss over nu, and the
slab coefficients over angle (closed forms as lines, rftwin's links as markers)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rftwin.validate import closed_forms as cf


def validation_png(doc: dict, path: str | Path) -> Path | None:
    """Write the figure for the parts present in ``doc`` (two_ray, knife_edge, slab); None if none is."""
    panels = [p for p in ("two_ray", "knife_edge", "slab") if p in doc]
    if not panels:
        return None
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from rftwin.io import atomic_path  # noqa: PLC0415
    from rftwin.validate.closed_form_cases import SLAB_MATERIALS, TWO_RAY_DISTANCES_M, TWO_RAY_SETUP  # noqa

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0))
    axes = np.atleast_1d(axes)
    for ax, part in zip(axes, panels):
        rows = doc[part]["rows"]
        if part == "two_ray":
            d = np.geomspace(min(TWO_RAY_DISTANCES_M), max(TWO_RAY_DISTANCES_M), 600)
            t = TWO_RAY_SETUP
            direct, refl = cf.two_ray_field(d, t["tx_height_m"], t["rx_height_m"], t["frequency_hz"], t["eps_r"],
                                            t["sigma_s_per_m"], t["thickness_m"])
            ax.semilogx(d, cf.db(np.abs(direct + refl) ** 2), lw=1, label="two-ray (P.2040 ground)")
            ax.semilogx(d, cf.db(np.abs(direct) ** 2), lw=0.8, ls=":", label="free space")
            ax.semilogx([r["distance_m"] for r in rows], [r["rftwin_db"] for r in rows], "o", ms=4,
                        label="rftwin (coherent taps)")
            ax.set(xlabel="distance [m]", ylabel="path gain [dB]",
                   title=f"two-ray, {t['frequency_hz'] / 1e9:g} GHz, Tx {t['tx_height_m']:g} m, "
                         f"Rx {t['rx_height_m']:g} m")
        elif part == "knife_edge":
            nu = np.linspace(-2.5, 7.0, 400)
            ax.plot(nu, cf.knife_edge_loss_db(nu), lw=1, label="P.526 J(ν) (Fresnel integrals)")
            ax.plot(nu, cf.knife_edge_loss_approx_db(nu), lw=0.8, ls="--", label="P.526 eq. 31")
            hs = np.linspace(1e-3, max(r["h_m"] for r in rows), 200)
            nu_h = cf.fresnel_kirchhoff_nu(hs, 10.0, 10.0, 3.5e9)
            for pol, ls in (("hard", "-."), ("soft", ":")):
                ax.plot(nu_h, cf.utd_knife_loss_db(hs, 10.0, 10.0, 3.5e9, 2.0, pol), lw=1, ls=ls,
                        label=f"our UTD, PEC wedge, {pol}")
            for pol, mk, lab in (("hard", "o", "rftwin E ⊥ edge"), ("soft", "s", "rftwin E ∥ edge")):
                pts = [r for r in rows if r["polarization"] == pol]
                ax.plot([r["nu"] for r in pts], [r["rftwin_utd_db"] for r in pts], mk, ms=4, label=lab)
            ax.set(xlabel="ν", ylabel="diffraction loss [dB]", title="knife edge, 3.5 GHz")
        else:
            m, f = SLAB_MATERIALS[0], 3.5e9
            sel = [r for r in rows if r["material"] == m.name and r["frequency_hz"] == f]
            th = np.radians(np.linspace(1.0, 89.0, 300))
            R_te, R_tm, T_te, T_tm = cf.slab_coefficients(m.eps_r, m.sigma_s_per_m, m.thickness_m, f, th)
            for c, lab in ((R_te, "R TE"), (R_tm, "R TM"), (T_te, "T TE"), (T_tm, "T TM")):
                ax.plot(np.degrees(th), cf.db(np.abs(c) ** 2), lw=1, label=f"P.2040 {lab}")
            for kind, pol, mk in (("reflect", "TE", "o"), ("reflect", "TM", "s"), ("transmit", "TE", "^"),
                                  ("transmit", "TM", "v")):
                pts = [r for r in sel if r["kind"] == kind and r["polarization"] == pol and "rftwin_db" in r]
                ax.plot([r["theta_deg"] for r in pts], [r["rftwin_db"] for r in pts], mk, ms=4, color="k")
            ax.set(xlabel="angle of incidence [deg]", ylabel="|coefficient|² [dB]",
                   title=f"slab ε_r {m.eps_r:g}, σ {m.sigma_s_per_m:g} S/m, {m.thickness_m:g} m, "
                         f"{f / 1e9:g} GHz (markers: rftwin)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path

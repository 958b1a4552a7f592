"""Evaluation outputs: per-link CSV, metrics JSON, CDF and map plots (PNG), a Markdown report. All atomic."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from rftwin.evaluate.metrics import cdf
from rftwin.evaluate.run import METHOD_TITLES, EvaluationResult
from rftwin.io import atomic_path, write_json, write_table, write_text

PER_LINK = "per_link.csv"
METRICS = "metrics.json"
REPORT = "report.md"
CDF_PLOT = "cdf_abs_error.png"
MAPS_PLOT = "maps.png"
PARAMS = "parameters.csv"


def _fmt(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _clean(obj):
    """JSON-safe copy (NaN/inf -> None, numpy scalars -> Python)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def plot_cdf(res: EvaluationResult, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=120)
    for m in res.methods:
        v, p = cdf(res.per_link[f"{m}_abs_error_db"].to_numpy())
        if v.size:
            ax.step(np.concatenate([[0.0], v]), np.concatenate([[0.0], p]), where="post",
                    label=f"{METHOD_TITLES[m]} (MALE {res.metrics[m]['male_db']:.2f} dB)")
    ax.set_xlabel("absolute path-gain error (dB)")
    ax.set_ylabel("CDF")
    ax.set_ylim(0, 1)
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"Path-gain error over {len(res.per_link)} links")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_maps(res: EvaluationResult, path: Path, max_groups: int = 3) -> None:
    """Truth and every method's path-gain map (first ``max_groups`` map groups, one row each)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    groups = res.maps[:max_groups]
    ncol = 1 + len(res.methods)
    fig, axes = plt.subplots(len(groups), ncol, figsize=(2.6 * ncol, 2.6 * len(groups)), dpi=110, squeeze=False)
    for r, (g, tmap, pm) in enumerate(groups):
        vmin, vmax = np.nanmin(tmap), np.nanmax(tmap)
        ext = [g.x_m[0], g.x_m[-1], g.y_m[0], g.y_m[-1]]
        panels = [("measured", tmap)] + [(METHOD_TITLES[m], pm[m]) for m in res.methods]
        for c, (title, mp) in enumerate(panels):
            ax = axes[r, c]
            im = ax.imshow(mp, origin="lower", extent=ext, vmin=vmin, vmax=vmax, cmap="viridis", aspect="equal")
            ax.plot([g.tx_pos[0]], [g.tx_pos[1]], "r*", ms=8)
            ax.set_title(title, fontsize=8)
            ax.tick_params(labelsize=6)
        fig.colorbar(im, ax=axes[r, :].tolist(), shrink=0.8, label="path gain (dB)")
        axes[r, 0].set_ylabel(f"{g.frequency_hz / 1e9:.3g} GHz\ny (m)", fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def markdown(res: EvaluationResult, title: str = "Evaluation") -> str:
    n = len(res.per_link)
    lines = [f"# {title}", "", f"{n} evaluation links.", "",
             "| method | n | MALE (dB) | median (dB) | p90 (dB) | bias (dB) | RMSE (dB) | DS error (ns) | SSIM | MCS |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m in res.methods:
        s = res.metrics[m]
        lines.append(f"| {METHOD_TITLES[m]} | {s['n']} | {_fmt(s['male_db'])} | {_fmt(s['median_db'])} | "
                     f"{_fmt(s['p90_db'])} | {_fmt(s['bias_db'])} | {_fmt(s['rmse_db'])} | "
                     f"{_fmt(s.get('delay_spread_mae_ns'), 1)} | {_fmt(s.get('ssim'), 3)} | {_fmt(s.get('mcs'), 3)} |")
    lines += ["", ("MALE: mean absolute error of path gain; DS error: mean absolute RMS-delay-spread error; SSIM "
                   "of path-gain maps; MCS: mean cosine similarity of CFR vectors (seed 003). – : not available."), ""]
    if res.params_summary:
        lines += ["## Material parameters", "", f"At {res.info.get('parameters_at_hz', float('nan')) / 1e9:.4g} GHz.",
                  "", "| method | objects | MRE eps_r | MRE sigma |", "|---|---|---|---|"]
        for m, s in res.params_summary.items():
            lines.append(f"| {METHOD_TITLES[m]} | {s['n_objects']} | {_fmt(s['mre_eps_r'], 3)} | "
                         f"{_fmt(s['mre_sigma'], 3)} |")
        lines += ["", f"Per object: `{PARAMS}`.", ""]
    mpc_methods = [m for m in res.methods if "cluster_f1" in res.metrics[m]]
    if mpc_methods:
        mi = res.info.get("mpcs", {})
        cfg = mi.get("config", {})
        lines += ["## Multipath components and clusters (seed 002: M1–M4, C1–C2)", "",
                  f"{mi.get('mpcs', '?')} measured MPCs on {mi.get('links', '?')} links (`{mi.get('file', '')}`); "
                  f"predicted MPCs: each method's traced paths. Both keep MPCs within "
                  f"{cfg.get('dynamic_range_db')} dB of the link's strongest; clusters: single linkage at "
                  f"{(cfg.get('delay_scale_s') or 0) * 1e9:g} ns / {cfg.get('angle_scale_deg')}° "
                  f"({', '.join(mi.get('angles', [])) or 'delay only'}), matched within "
                  f"{(cfg.get('delay_gate_s') or 0) * 1e9:g} ns / {cfg.get('angle_gate_deg')}°.", "",
                  "| method | clusters meas / pred / matched | precision | recall | F1 (C1) | power err (dB, C2) | "
                  "delay err (ns) | angle err (°) | PL err (dB, M1) | DS err (ns, M2) | AS err (°, M3) | "
                  "K err (dB, M4) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for m in mpc_methods:
            s = res.metrics[m]
            lines.append(f"| {METHOD_TITLES[m]} | {s['clusters_true']} / {s['clusters_pred']} / "
                         f"{s['clusters_matched']} | {_fmt(s['cluster_precision'], 3)} | "
                         f"{_fmt(s['cluster_recall'], 3)} | {_fmt(s['cluster_f1'], 3)} | "
                         f"{_fmt(s['cluster_power_mae_db'])} | {_fmt(s['cluster_delay_mae_ns'], 2)} | "
                         f"{_fmt(s['cluster_angle_mae_deg'], 1)} | {_fmt(s['mpc_path_gain_mae_db'])} | "
                         f"{_fmt(s['mpc_delay_spread_mae_ns'], 2)} | {_fmt(s['mpc_angular_spread_mae_deg'], 1)} | "
                         f"{_fmt(s['mpc_k_factor_mae_db'])} |")
        lines += ["", ("C1: F1 = 2·matched / (measured + predicted clusters), pooled over links; C2: mean absolute "
                       "error over matched clusters of power (dB), power-weighted mean delay (ns) and mean arrival "
                       "direction (°); M1–M4: mean absolute error of path gain, RMS delay spread, azimuth angular "
                       "spread and K-factor computed from the MPCs (docs/import_evaluate.md). Per link: columns "
                       "`mpc_true_*`, `<method>_mpc_*`, `<method>_cluster_*` of the CSV."), ""]
    lines += ["## Baselines", ""]
    if "log_distance" in res.info:
        ld = res.info["log_distance"]
        lines.append(f"- log-distance: g = {ld['g0_db']:.2f} dB - 10·{ld['exponent']:.2f}·log10(d/1 m) - "
                     f"10·{ld['freq_exponent']:.2f}·log10(f/{ld['f0_hz'] / 1e9:.4g} GHz), residual σ "
                     f"{ld['sigma_db']:.2f} dB on {ld['n_train']} training links")
    if "tr38901" in res.info:
        t = res.info["tr38901"]
        lines.append(f"- 3GPP TR 38.901 {t['scenario']}{' (auto)' if t['auto'] else ''}: {t['los_links']} LoS / "
                     f"{t['nlos_links']} NLoS links (LoS = a traced line-of-sight path), "
                     f"{t['out_of_range_links']} outside the validity range")
    if "gp" in res.info:
        g = res.info["gp"]
        lines.append(f"- GP on {', '.join(g['inputs'])} ({g['n_train']} training links): `{g['kernel']}`")
    if res.maps:
        lines += ["", f"Maps: {len(res.maps)} (see `{MAPS_PLOT}`)."]
    if res.notes:
        lines += ["", "## Notes", ""] + [f"- {x}" for x in res.notes]
    lines += ["", f"Per-link values: `{PER_LINK}`; error CDF: `{CDF_PLOT}`.", ""]
    return "\n".join(lines)


def write_evaluation(res: EvaluationResult, out_dir: str | os.PathLike, title: str = "Evaluation") -> Path:
    """Write per_link.csv, metrics.json, cdf_abs_error.png, maps.png (when maps exist), parameters.csv (when
    true materials were given) and report.md into ``out_dir``; returns the report path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / PER_LINK, res.per_link)
    write_json(out / METRICS, _clean({"methods": res.methods, "metrics": res.metrics, "parameters":
                                      res.params_summary, "info": res.info, "notes": res.notes}))
    if res.params_table is not None:
        write_table(out / PARAMS, res.params_table)
    plot_cdf(res, out / CDF_PLOT)
    if res.maps:
        plot_maps(res, out / MAPS_PLOT)
    write_text(out / REPORT, markdown(res, title))
    return out / REPORT


__all__ = ["markdown", "plot_cdf", "plot_maps", "write_evaluation"]

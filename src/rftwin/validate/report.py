"""``rftwin bench validate``: run the reference comparisons and render docs/validation.md (tables <= 80 columns)."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

PARTS = ("friis", "slab", "two_ray", "knife_edge", "qd", "newrf")


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, flush=True)


def run_validation(parts: Sequence[str] = PARTS, samples_per_src: int = 100_000, seed: int = 42,
                   progress: bool = True, qd_data=None, newrf_data=None, newrf_links: int = 30) -> dict:
    """Run the selected parts; returns {"settings", part: {"rows", "summary"}, "seconds"}."""
    from rftwin.validate import closed_form_cases as cfc  # noqa: PLC0415

    cs = cfc.CaseSettings(samples_per_src=samples_per_src, seed=seed)
    runners: dict[str, Callable[[], list[dict]]] = {
        "friis": lambda: cfc.friis_case(cs), "slab": lambda: cfc.slab_case(cs),
        "two_ray": lambda: cfc.two_ray_case(cs), "knife_edge": lambda: cfc.knife_edge_case(cs)}
    doc: dict = {"command": "rftwin bench validate", "settings": {"samples_per_src": samples_per_src, "seed": seed,
                                                                 "max_depth_closed_forms": 1}}
    for part in parts:
        t0 = time.perf_counter()
        _say(progress, f"validate: {part} ...")
        if part == "qd":
            from rftwin.validate.qd_study import run_qd_study  # noqa: PLC0415

            doc["qd"] = run_qd_study(qd_data, samples_per_src=samples_per_src, seed=seed, progress=progress)
        elif part == "newrf":
            from rftwin.validate.newrf_study import run_newrf_study  # noqa: PLC0415

            doc["newrf"] = run_newrf_study(newrf_data, samples_per_src=samples_per_src, seed=seed,
                                           links=newrf_links, progress=progress)
            doc["newrf"]["summary"] = newrf_summary(doc["newrf"])
        else:
            rows = runners[part]()
            doc[part] = {"rows": rows, "summary": summarize(part, rows)}
        doc[part]["seconds"] = time.perf_counter() - t0
        _say(progress, f"validate: {part} done in {doc[part]['seconds']:.1f} s")
    return doc


def newrf_summary(doc: dict) -> dict:
    out = {}
    for name, r in doc["rooms"].items():
        out[f"{name}_matched"] = sum(o["matched"] for o in r["per_order"])
        out[f"{name}_newrf_rays"] = r["newrf_rays"]
        out[f"{name}_rftwin_paths"] = r["rftwin_paths"]
        out[f"{name}_incoherent_same_orders_median_db"] = r["link_incoherent_same_orders_diff_db"]["median"]
    return out


def json_safe(obj):
    """The document with NaN / inf floats as None (strict JSON) and numpy scalars as Python numbers."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not hasattr(obj, "__len__"):  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _maxabs(rows, key) -> float:
    vals = [abs(r[key]) for r in rows if key in r and r[key] == r[key]]
    return max(vals) if vals else float("nan")


def summarize(part: str, rows: list[dict]) -> dict:
    if part == "friis":
        return {"links": len(rows), "max_abs_error_db": _maxabs(rows, "error_db"),
                "max_abs_delay_error_s": _maxabs(rows, "delay_error_s")}
    if part == "slab":
        missing = sum(1 for r in rows if "error_db" not in r)
        return {"links": len(rows), "links_without_single_path": missing,
                "max_abs_error_db": _maxabs(rows, "error_db"),
                "max_abs_phase_error_deg": _maxabs(rows, "phase_error_deg")}
    if part == "two_ray":
        dip = min(rows, key=lambda r: r["reflected_vs_direct_db"])
        return {"links": len(rows), "max_abs_error_db": _maxabs(rows, "error_db"),
                "brewster_dip_distance_m": dip["distance_m"], "brewster_dip_grazing_deg": dip["grazing_deg"],
                "brewster_dip_reflected_vs_direct_db": dip["reflected_vs_direct_db"]}
    if part == "knife_edge":
        out = {"links": len(rows)}
        for pol in ("hard", "soft"):
            rs = [r for r in rows if r["polarization"] == pol]
            out[f"{pol}_max_abs_vs_p526_lit_db"] = _maxabs([r for r in rs if r["nu"] <= 0], "utd_minus_p526_db")
            out[f"{pol}_max_abs_vs_p526_shadow_db"] = _maxabs([r for r in rs if r["nu"] > 0], "utd_minus_p526_db")
            out[f"{pol}_max_abs_vs_utd_reference_db"] = _maxabs(rs, "rftwin_minus_utd_reference_db")
            out[f"{pol}_max_abs_vs_utd_other_polarization_db"] = _maxabs(
                [{"d": r["rftwin_utd_db"] - r["utd_other_polarization_db"]} for r in rs], "d")
        return out
    return {}


# ------------------------------------------------------------------------------------------------ markdown
def _f(x, fmt: str) -> str:
    """Format a number; NaN/None as an en dash, negative zero without its sign."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    s = format(x, fmt)
    return s.lstrip("-+") if float(s) == 0 else s


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _friis_md(p: dict) -> str:
    rows = [[_f(r["frequency_hz"] / 1e9, "g"), _f(r["distance_m"], "g"), _f(r["friis_db"], ".3f"),
             _f(r["rftwin_db"], ".3f"), _f(r["error_db"], ".4f")] for r in p["rows"]]
    return md_table(["f [GHz]", "d [m]", "Friis [dB]", "rftwin [dB]", "diff [dB]"], rows)


def _slab_md(p: dict) -> tuple[str, str]:
    groups: dict = {}
    for r in p["rows"]:
        groups.setdefault((r["material"], r["kind"], r["polarization"]), []).append(r)
    summ = []
    for (m, k, pol), rs in groups.items():
        summ.append([m, k, pol, str(len(rs)), _f(min(r["p2040_db"] for r in rs), ".1f") + " .. " +
                     _f(max(r["p2040_db"] for r in rs), ".1f"), _f(_maxabs(rs, "error_db"), ".4f"),
                     _f(_maxabs(rs, "phase_error_deg"), ".3f")])
    t1 = md_table(["material", "path", "pol", "n", "P.2040 [dB]", "max diff [dB]", "max Δφ [deg]"], summ)
    ex = [r for r in p["rows"] if r["material"] == "concrete-like" and r["frequency_hz"] == 3.5e9]
    t2 = md_table(["path", "pol", "θ [deg]", "P.2040 [dB]", "rftwin [dB]", "diff [dB]", "Δφ [deg]"],
                  [[r["kind"], r["polarization"], _f(r["theta_deg"], ".0f"), _f(r["p2040_db"], ".3f"),
                    _f(r.get("rftwin_db"), ".3f"), _f(r.get("error_db"), ".4f"),
                    _f(r.get("phase_error_deg"), ".3f")] for r in ex])
    return t1, t2


def _two_ray_md(p: dict) -> str:
    rows = [[_f(r["distance_m"], "g"), _f(r["grazing_deg"], ".1f"), _f(r["reflected_vs_direct_db"], ".1f"),
             _f(r["two_ray_db"], ".2f"), _f(r["rftwin_db"], ".2f"), _f(r["error_db"], ".4f"),
             _f(r["rftwin_incoherent_db"], ".2f")] for r in p["rows"]]
    return md_table(["d [m]", "graz. [°]", "refl/dir", "2-ray [dB]", "rftwin [dB]", "diff", "incoh."], rows)


def _knife_md(p: dict) -> str:
    by = {}
    for r in p["rows"]:
        by.setdefault(r["h_m"], {})[r["polarization"]] = r
    rows = []
    for h, d in by.items():
        any_r = next(iter(d.values()))
        hard, soft = d.get("hard", {}), d.get("soft", {})
        rows.append([_f(h, "g"), _f(any_r["nu"], ".2f"), _f(any_r["p526_fresnel_db"], ".2f"),
                     _f(any_r["p526_approx_db"], ".2f"), _f(hard.get("rftwin_utd_db"), ".2f"),
                     _f(hard.get("utd_reference_db"), ".2f"), _f(soft.get("rftwin_utd_db"), ".2f"),
                     _f(soft.get("utd_reference_db"), ".2f")])
    return md_table(["h [m]", "ν", "J(ν)", "eq. 31", "E⟂ rftwin", "UTD hard", "E∥ rftwin", "UTD soft"], rows)


def render_markdown(doc: dict) -> str:
    """docs/validation.md from a result document (text around the regenerated tables)."""
    from rftwin.validate.text import render  # noqa: PLC0415

    tables = {}
    if "friis" in doc:
        tables["friis"] = _friis_md(doc["friis"])
    if "slab" in doc:
        tables["slab_summary"], tables["slab_example"] = _slab_md(doc["slab"])
    if "two_ray" in doc:
        tables["two_ray"] = _two_ray_md(doc["two_ray"])
    if "knife_edge" in doc:
        tables["knife_edge"] = _knife_md(doc["knife_edge"])
    if "qd" in doc:
        from rftwin.validate.qd_study import qd_markdown  # noqa: PLC0415

        tables.update(qd_markdown(doc["qd"]))
    if "newrf" in doc:
        from rftwin.validate.newrf_text import render_newrf  # noqa: PLC0415

        tables["newrf_text"] = render_newrf(doc["newrf"])
    return render(doc, tables)


def format_summary(doc: dict) -> list[str]:
    lines = []
    for part in PARTS:
        if part in doc:
            s = doc[part].get("summary", {})
            kv = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items())
            lines.append(f"{part:11s} {kv}")
    return lines


__all__ = ["PARTS", "format_summary", "json_safe", "md_table", "render_markdown", "run_validation", "summarize"]

"""Calibration outputs: materials.json, calibrated Sionna XML, per-measurement fit, Markdown report, plots."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rftwin.calibrate.bayes import rows_with_paths
from rftwin.calibrate.loop import CalibrationConfig, CalibrationResult
from rftwin.calibrate.problem import Targets, simulate_path_gain_db
from rftwin.convergence_plot import convergence_png
from rftwin.io import write_json, write_table, write_text
from rftwin.pathset import PathSet
from rftwin.scene.export import export_scene
from rftwin.scene.load import TwinScene
from rftwin.twin_io import MATERIALS_FILE, materials_document


def write_calibration_outputs(out: Path, twin: TwinScene, res: CalibrationResult, ps: PathSet, targets: Targets,
                              meas, labels: list[str | None], f_ref: float, power_law: bool,
                              cfg: CalibrationConfig) -> None:
    out = Path(out)
    u = res.uncertainty
    with torch.no_grad():
        fitted = simulate_path_gain_db(ps, res.model, targets)[0].numpy() + res.offset_db
    doc = materials_document(twin, res.eps_r, res.sigma, f_ref, res.power_law if power_law else None,
                             u.eps_std if u else None, u.sigma_std if u else None, labels,
                             extra={"offset_db": res.offset_db, "loss": res.loss, "iterations": res.iterations,
                                    "seconds": res.seconds, "noise_db_for_std": u.noise_db if u else None},
                             scattering_std=u.scattering_std if u else None, xpd_std=u.xpd_std if u else None,
                             scattering=res.scattering, xpd=res.xpd)
    fit = meas.to_frame().copy()
    fit["fitted_path_gain_db"] = fitted
    fit["residual_db"] = fitted - meas.path_gain_db
    out.mkdir(parents=True, exist_ok=True)
    keys = ("relative_permittivity", "conductivity", "thickness", "scattering_coefficient", "xpd_coefficient")
    export_scene(twin, out, {n: {k: doc["objects"][n][k] for k in keys} for n in twin.names})
    write_json(out / MATERIALS_FILE, doc)
    write_table(out / "fit.csv", fit)
    write_table(out / "history.csv", pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, list)}
                                                   for r in res.history]))
    convergence_png(res.history, out / "convergence.png")
    rows = []
    extra_cols = [(n, title) for n, title in (("scattering", "S"), ("xpd", "K_xpd"))
                  if getattr(res, n, None) is not None]

    def pm(value: float, std_arr, i: int, fmt: str = ".4g") -> str:
        return f"{value:{fmt}} ± {std_arr[i]:.3g}" if std_arr is not None else f"{value:{fmt}}"

    for i, o in enumerate(twin.objects):
        flags = [] if u is None else [u.eps_identified[i], u.sigma_identified[i]]
        cells = [pm(res.eps_r[i], u.eps_std if u else None, i), pm(res.sigma[i], u.sigma_std if u else None, i)]
        for n, _ in extra_cols:
            std = getattr(u, f"{n}_std", None) if u else None
            cells.append(pm(getattr(res, n)[i], std, i, ".3f"))
            ok = getattr(u, f"{n}_identified", None) if u else None
            if ok is not None:
                flags.append(ok[i])
        ident = "yes" if flags and all(bool(f) for f in flags) else "no"
        rows.append((o.name, f"| {labels[i] or '-'} | " + " | ".join(cells) + f" | {ident} |"))
    rows = object_rows(rows)
    head = "| object | label | ε_r | σ [S/m] | " + "".join(f"{t} | " for _, t in extra_cols) + "identified |"
    rule = "|---|---|---|---|" + "---|" * len(extra_cols) + "---|"
    # rows whose link has no traced path sit at the -300 dB floor whatever the materials: not part of the fit's RMS
    reached = rows_with_paths(ps, targets).numpy()  # [rows of fit]
    rms = float(np.sqrt(np.mean(fit["residual_db"].to_numpy()[reached] ** 2))) if reached.any() else float("nan")
    unreached = "" if reached.all() else (f" over the {int(reached.sum())} rows with traced paths "
                                          f"({int((~reached).sum())} without)")
    text = "\n".join([
        "# rftwin calibration report", "",
        f"- measurements: {len(meas)} rows, {ps.num_links} distinct links, frequencies (Hz): "
        f"{sorted(set(np.asarray(meas.frequency_hz).tolist()))}",
        f"- optimiser: {cfg.optimizer}, loss: {cfg.loss}, iterations: {res.iterations}, time: {res.seconds:.1f} s",
        f"- final loss: {res.loss:.4g}; RMS residual: {rms:.3f} dB{unreached}; global offset: {res.offset_db:.2f} dB",
        f"- paths traced: {ps.num_paths} (mechanisms: {', '.join(ps.meta.get('mechanisms', []))})",
        "",
        f"Values at {f_ref / 1e9:g} GHz; ± is the Laplace (Gauss-Newton) std at "
        f"{u.noise_db if u else float('nan'):.2g} dB measurement noise. 'identified' = relative stds of ε_r and σ "
        "< 10 % (and absolute std of S, K_xpd < 0.05).",
        "", head, rule, *rows, "",
        *convergence_lines(res),
        *path_change_lines(res.path_changes),
        *inference_lines(res.inference, f_ref),
        "![convergence](convergence.png)", ""])
    write_text(out / "report.md", text)


REPORT_OBJECT_ROWS = 60  # report.md lists at most this many rows of objects; materials.json has every object


def object_rows(rows: list[tuple[str, str]], limit: int = REPORT_OBJECT_ROWS) -> list[str]:
    """Markdown rows of the report's object table from (object name, rest of the row) pairs: objects whose rows
    are the same (e.g. the objects of one material group) share one row, "N objects: first, second, …", in order
    of first appearance; at most ``limit`` rows, then (after a blank line, below the table) a sentence saying how
    many objects were left out."""
    merged: dict[str, list[str]] = {}
    for name, rest in rows:
        merged.setdefault(rest, []).append(name)
    out = []
    for rest, names in list(merged.items())[:limit]:
        who = names[0] if len(names) == 1 else f"{len(names)} objects: {', '.join(names[:2])}{', …' * (len(names) > 2)}"
        out.append(f"| {who} {rest}")
    left = sum(len(n) for n in list(merged.values())[limit:])
    if left:
        more = "1 more object is" if left == 1 else f"{left} more objects are"
        out += ["", f"{more} not listed; {MATERIALS_FILE} has every object's values."]
    return out


PATH_CHANGE_NOTE_DB = 0.1  # a last re-trace that changes the gains by more than this RMS gets a note in report.md


def convergence_lines(res: CalibrationResult) -> list[str]:
    """A plain statement of how the fit ended (stopping rule or iteration cap)."""
    if res.converged:
        return ["Every round ended by the stopping rule (loss and parameter changes below their tolerances).", ""]
    return ["**Warning:** a round ended at the iteration cap (--max-iter), not by the stopping rule: the values "
            "may not be converged.", ""]


def path_change_lines(changes: list[dict]) -> list[str]:
    """What each re-trace changed in the traced paths, and what that alone changes in the predicted gains."""
    if not changes:
        return []
    lines = ["Re-traces at the calibrated materials (Sionna draws reflection or refraction at every hit with "
             "probabilities from the materials, so other materials can give other paths; the gain change is at "
             "one and the same materials, i.e. what the paths alone change):", "",
             "| re-trace | links with other paths | reached by one trace only | gain change RMS / max [dB] |",
             "|---|---|---|---|"]
    lines += [f"| {c['retrace']} | {c['links_with_other_paths']} of {c['links']} | {c['links_reached_by_one_trace']} "
              f"| {c['gain_change_rms_db']:.3f} / {c['gain_change_max_db']:.3f} |" for c in changes]
    last = changes[-1]
    if last["gain_change_rms_db"] > PATH_CHANGE_NOTE_DB or last["links_reached_by_one_trace"]:
        lines += ["", "The last re-trace still changed the predicted gains: the last round was fitted on paths that "
                      "had not settled. More re-trace rounds (--retrace) show whether they settle; where they keep "
                      "changing, predictions carry that much error from the traced paths alone, whatever the "
                      "materials: more rays (--samples-per-src) make it smaller, and where transmission through "
                      "objects does not matter, --no-refraction removes the dependence on the materials."]
    return lines + [""]


def outlier_hint(inf: dict) -> str | None:
    """A sentence when the Gaussian fit left far more outlying path-gain rows than its noise explains (see
    :func:`rftwin.calibrate.bayes.outlier_rows`), else None."""
    o = inf.get("outliers")
    if not o or not o["suggest_student"] or inf.get("likelihood") != "gaussian":
        return None
    return (f"{o['count']} of {o['rows']} path-gain residuals lie beyond {o['z']:g} robust stds "
            f"({o['robust_std_db']:.2g} dB) of their median (a Gaussian expects {o['expected_gaussian']:.2g}): rows "
            "the twin's paths cannot explain pull the Gaussian fit; --likelihood student down-weights them")


def likelihood_reason(inf: dict) -> str:
    """Why ``--likelihood auto`` chose what it chose (empty when the likelihood was given)."""
    c = inf.get("likelihood_choice")
    if not c:
        return ""
    o = c.get("gaussian_outliers")
    if not o or not o["rows"]:
        return " (auto: no path-gain rows to test)"
    seen = (f"{o['count']} of {o['rows']} path-gain residuals of the Gaussian fit beyond {o['z']:g} robust stds, "
            f"a Gaussian expects {o['expected_gaussian']:.2g}")
    return f" (auto: {seen})"


def inference_lines(inf: dict | None, f_ref: float) -> list[str]:
    """Markdown of the posterior calibration: noise, prior strength, label switches, held-out check, values far
    from their prior or at a plausibility bound."""
    if not inf:
        return ["Calibration without priors (--prior none): values are fitted to the data alone.", ""]
    if inf.get("supervision") == "bcm":
        gp = ", ".join(sorted(inf["bcm"]["gp"]))
        lines = ["## Supervision: Bayesian channel map (seed 003)", "",
                 f"- map of {gp} from {inf['measured_links']} measured links (log-distance trend + GP residual), "
                 f"queried at {inf['targets_per_transmitter']} target receivers per transmitter; materials fitted "
                 f"by the map's NLL (final {inf['nll']:.4g}); gain bias {inf['bias_db']:.2f} dB", ""]
        return lines + heldout_lines(inf)
    lines = ["## Calibration as inference", ""]
    units = inf.get("noise_units", {})
    noise = ", ".join(f"{f} {v:.3g} {units.get(f, '')}" + (" (estimated)" if f in inf.get("noise_estimated", [])
                                                          else " (given)") for f, v in inf["noise"].items())
    lines += [f"- noise: {noise}; likelihood: {inf['likelihood']}{likelihood_reason(inf)}",
              f"- prior strength (multiplier of the label priors' precision): {inf['prior_strength']:.3g}, chosen "
              f"by {inf['prior_strength_method']}; parameters determined by the data: "
              f"{inf['effective_parameters']:.1f}"]
    unseen = inf.get("unseen_objects") or []
    if unseen:
        lines.append(f"- objects no path of a measured link meets ({len(unseen)}) were not fitted: they keep their "
                     "label's prior value and uncertainty (`unseen_objects` in calibration.json)")
    lines.append("")
    grid = inf.get("shrinkage_evidence") or []
    if grid:
        lines += [f"Hierarchical prior: within-class correlation rho = {inf['shrinkage']:.2f}, chosen by "
                  f"{inf['shrinkage_method']} (Laplace log evidence per rho, each with its own noise and prior "
                  "strength):", "", "| rho | log evidence | prior strength |", "|---|---|---|"]
        lines += [f"| {r['shrinkage']:.2f} | {r['log_evidence']:.2f} | {r['prior_strength']:.3g} |" for r in grid]
        lines.append("")
    elif inf.get("shrinkage"):
        lines += [f"Hierarchical prior: within-class correlation rho = {inf['shrinkage']:.2f} (fixed).", ""]
    masses = inf.get("label_masses") or {}
    if masses:
        lines += [f"Label probabilities from the prior file (the others {inf['label_mass']:.2g}): "
                  + ", ".join(f"{u} {m:.2g}" for u, m in masses.items()) + ".", ""]
    sw = inf.get("label_switches") or []
    if sw:
        rule = "" if inf["switch_probability"] <= 0.5 else \
            f"; the label's posterior probability <= {1 - inf['switch_probability']:.2g}"
        lines += [f"Labels switched to their most probable class (class prior: mass {inf['label_mass']:.2g} on the "
                  f"label, the rest shared by the other classes{rule}):", "",
                  "| object (group: its objects) | label | from | to | P(to) | P(from) | pass |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {s['object']}{' (' + ', '.join(s['objects']) + ')' if s.get('objects') else ''} | "
                  f"{s['label'] or '-'} | {s['from'] or '-'} | {s['to']} | {s['probability']:.3f} | "
                  f"{s['probability_from']:.2g} | {s.get('pass', '-')} |" for s in sw]
        lines.append("")
    else:
        lines += ["No label was switched (every label stayed its object's most probable class"
                  + ("" if inf["switch_probability"] <= 0.5 else ", or the evidence was not decisive") + ").", ""]
    checks = inf.get("switch_checks") or []
    if checks:
        lines += ["Held-out checks of switches to a most probable class the evidence did not decide (K-fold paired "
                  "test: MSE of the switched posterior minus the current one on held-out rows; accepted below -2 "
                  "standard errors):", "", "| object | to | P(current) | MSE difference | standard error | switched |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {c['object']} | {c['to']} | {c['probability_from']:.2g} | {c['mse_difference']:+.3g} | "
                  f"{c['mse_difference_se']:.2g} | {'yes' if c['accepted'] else 'no'} |" for c in checks]
        lines.append("")
    lines += heldout_lines(inf)
    far = [(o, q, z) for o, d in inf.get("prior_z", {}).items() for q, z in d.items() if abs(z) > 3]
    if far:
        lines += ["Values more than 3 prior standard deviations from their label (the data demand it): "
                  + ", ".join(f"{o} {q} ({z:+.1f} sd)" for o, q, z in far), ""]
    for b in inf.get("at_plausible_bound", []):
        lines.append(f"- {b['object']}: {b['quantity']} = {b['value']:.4g} sits at the plausible range "
                     f"{b['range']}; the data push beyond it (check the geometry and the label).")
    return lines


def heldout_lines(inf: dict) -> list[str]:
    """Markdown of the held-out check and its verdict."""
    lines: list[str] = []
    ho = inf.get("heldout")
    if ho and ho.get("features"):
        lines += [f"Held-out check ({ho['folds']}-fold by {ho['by']}; the label twin against the calibrated twin on "
                  "rows each fold left out):", "", "| term | rows | label twin RMSE | calibrated RMSE |",
                  "|---|---|---|---|"]
        for key in ("heldout", "heldout_by_transmitter"):
            h = inf.get(key)
            for f, v in (h or {}).get("features", {}).items():
                lines.append(f"| {f} (by {h['by']}) | {v['rows']} | {v['label_rmse']:.3f} {v['unit']} | "
                             f"{v['calibrated_rmse']:.3f} {v['unit']} |")
        lines.append("")
    f = (ho or {}).get("features", {}).get("path_gain")
    if f is not None:
        lines += [f"Paired test (path gain): held-out MSE difference calibrated - labels {f['mse_difference']:+.3g} "
                  f"{f['unit']}^2, standard error {f['mse_difference_se']:.2g}; beyond 2 standard errors decides.", ""]
    if inf.get("rows_without_paths"):
        lines += [f"{inf['rows_without_paths']} measured rows lie on links the trace reached with no path; no "
                  "material explains them: they are left out of the likelihood and the check.", ""]
    hint = outlier_hint(inf)
    if hint:
        lines += [hint[0].upper() + hint[1:] + ".", ""]
    verdict = inf.get("verdict")
    msg = {"improves": "The calibrated twin predicts held-out links better than the labels.",
           "no_difference": "The calibration does not beat the labels beyond the noise on held-out links; the "
                            "values stay close to their priors.",
           "worse": "The calibration predicts held-out links worse than the labels, beyond the noise."
                    + (" **The exported twin keeps the label values.**" if inf.get("reverted_to_labels") else ""),
           "not_checked": "No held-out check was run (--folds 0)."}.get(verdict, "")
    return lines + [f"**Verdict:** {msg}", ""]

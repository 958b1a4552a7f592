"""Trace + calibrate, with optional re-tracing at the calibrated materials.

Which rare reflection/refraction chains Sionna's sampler finds depends (weakly) on the materials used while
tracing, so paths traced at the prior differ slightly from those of the true scene. Re-tracing once at the
calibrated materials and refining from there removes that mismatch (Sionna-based calibration re-traces at
every step; we do it once or twice).

Diffuse reflection: Sionna samples diffuse paths only on surfaces whose trace-time scattering coefficient S is
> 0, and the Monte-Carlo weights of the samples (kept in the PathSet) make the engine's estimate unbiased for any
S. So when S (or K_xpd) is calibrated, every object is traced with diffuse reflection on and a trace-time S of at
least ``min_trace_scattering``; the engine then evaluates the current S. Diffuse candidates share Sionna's
per-source path budget, which overflows silently: a trace that reached it is repeated with a 4x larger budget.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from rftwin.calibrate.bayes import links_with_paths
from rftwin.calibrate.inference import BayesSetup, finish, plausible_bounds, posterior_round
from rftwin.calibrate.loop import CalibrationConfig, CalibrationResult, calibrate
from rftwin.calibrate.problem import Targets
from rftwin.calibrate.sweep import coordinate_sweep
from rftwin.calibrate.uncertainty import laplace
from rftwin.materials.groups import MaterialGroups, material_model
from rftwin.materials.per_object import MaterialPrior, PerObjectMaterials, draw_start_values
from rftwin.pathset import PathSet
from rftwin.physics.engine import link_gain_db
from rftwin.progress import Stopwatch, timed
from rftwin.scene.load import TwinScene
from rftwin.scene.scene_materials import SceneMaterials
from rftwin.trace.tracer import AntennaSpec, SolverSettings, trace

MIN_TRACE_SCATTERING = 0.2  # trace-time S floor on objects whose S is calibrated (sampling density only)
LATER_ROUNDS = ("sweep", "restart", "carry")  # how a re-trace round starts (calibrate_scene's ``later_rounds``)
BUDGET_RETRIES = 2  # re-traces with a 4x larger max_num_paths_per_src when the budget overflowed


def trace_checked(twin: TwinScene, tx_pos: np.ndarray, rx_pos: np.ndarray, settings: SolverSettings,
                  tx_antenna: AntennaSpec, rx_antenna: AntennaSpec, cache_dir=None, progress: bool = True,
                  materials: SceneMaterials | None = None) -> PathSet:
    """:func:`rftwin.trace.trace` at ``materials`` (None: the scene's own), repeated with a 4x larger per-source
    path budget (up to ``BUDGET_RETRIES`` times) while some transmitter overflowed it (Sionna drops further
    candidates silently, NVlabs/sionna#1172)."""
    st = settings
    for attempt in range(BUDGET_RETRIES + 1):
        last = attempt == BUDGET_RETRIES
        with warnings.catch_warnings():
            if not last:
                warnings.simplefilter("ignore", RuntimeWarning)
            ps = trace(twin, tx_pos, rx_pos, st, tx_antenna, rx_antenna, cache_dir=cache_dir, progress=progress,
                       materials=materials)
        if not ps.meta.get("overflowed_sources", 0) or last:
            return ps
        st = replace(st, max_num_paths_per_src=4 * st.max_num_paths_per_src)
    return ps


def path_keys(ps: PathSet, depth: int | None = None) -> np.ndarray:
    """One row per path [N, 1 + 3 D] (int64): link, then the interaction type, object and primitive of every
    depth (what identifies a path; its geometry follows from them); ``depth`` pads the records to D with -1."""
    D = ps.itype.shape[1] if depth is None else depth

    def pad(x: torch.Tensor) -> np.ndarray:
        x = x.numpy().astype(np.int64)
        return np.pad(x, ((0, 0), (0, D - x.shape[1])), constant_values=-1)

    return np.concatenate([ps.link.numpy()[:, None].astype(np.int64), pad(ps.itype), pad(ps.obj), pad(ps.prim)], 1)


def same_paths(a: PathSet, b: PathSet) -> bool:
    """Whether two traces of the same links found the same paths (the same multiset of :func:`path_keys`, in any
    order; the records are exactly those of a trace of these paths whatever the materials were)."""
    if a.num_links != b.num_links or a.num_paths != b.num_paths or a.itype.shape != b.itype.shape:
        return False
    ka, kb = path_keys(a), path_keys(b)
    return bool(np.array_equal(ka[np.lexsort(ka.T[::-1])], kb[np.lexsort(kb.T[::-1])]))


def path_change(old: PathSet, new: PathSet, model, frequency_hz: float) -> dict:
    """What a re-trace of the same links changed in their paths: the links whose paths (:func:`path_keys`) differ,
    the links only one trace reaches, and the change of the link gain [dB] at one and the same materials
    (``model``'s start 0, at ``frequency_hz``) over the links both reach: RMS and largest. Sionna draws reflection or
    refraction at every hit with probabilities from the materials, so a trace at other materials can find other
    paths; this is the part of a prediction's error that no material value removes."""
    D = max(old.itype.shape[1], new.itype.shape[1])
    ua, ca = np.unique(path_keys(old, D), axis=0, return_counts=True)
    ub, cb = np.unique(path_keys(new, D), axis=0, return_counts=True)
    rows, n = np.unique(np.concatenate([np.c_[ua, ca], np.c_[ub, cb]]), axis=0, return_counts=True)
    changed = np.unique(rows[n == 1, 0])
    f = torch.tensor([frequency_hz], dtype=torch.float64)
    with torch.no_grad():
        g = [link_gain_db(p, model(p, f), f, check=False)[0, 0].cpu().numpy() for p in (old, new)]
    reach = [links_with_paths(p).numpy() for p in (old, new)]
    both = reach[0] & reach[1]
    d = (g[1] - g[0])[both]
    return {"links": int(old.num_links), "links_with_other_paths": int(len(changed)),
            "links_reached_by_one_trace": int((reach[0] ^ reach[1]).sum()),
            "gain_change_rms_db": float(np.sqrt(np.mean(d**2))) if d.size else 0.0,
            "gain_change_max_db": float(np.abs(d).max()) if d.size else 0.0}


def _diffuse_values(twin: TwinScene, prior: MaterialPrior, fit: tuple[str, ...], num_starts: int, seed: int
                    ) -> dict[str, np.ndarray | None]:
    """Start values [B, K] of every quantity; S / K_xpd held fixed come from the prior, else from the scene
    (None when zero everywhere and not fitted: the engine then uses S = K_xpd = 0 like Sionna)."""
    scene_s = np.array([o.scattering_coefficient for o in twin.objects])
    scene_x = np.array([o.xpd_coefficient for o in twin.objects])
    p = prior
    if "scattering" not in fit and p.scattering is None and np.any(scene_s > 0):
        p = replace(p, scattering=scene_s)
    if "xpd" not in fit and p.xpd is None and np.any(scene_x > 0):
        p = replace(p, xpd=scene_x)
    return draw_start_values(p, num_starts, seed, fit)


def calibrate_scene(twin: TwinScene, tx_pos: np.ndarray, rx_pos: np.ndarray,
                    targets: Targets | Callable[[PathSet], Targets], prior: MaterialPrior,
                    cfg: CalibrationConfig | None = None, settings: SolverSettings | None = None,
                    num_starts: int = 32, retrace: int = 1, power_law: bool = False, seed: int = 0,
                    truth: tuple[np.ndarray, np.ndarray] | dict | None = None, progress: bool = True, cache_dir=None,
                    tx_antenna: AntennaSpec | None = None, rx_antenna: AntennaSpec | None = None, *,
                    fit: tuple[str, ...] = ("eps_r", "sigma"), diffuse: bool | None = None,
                    min_trace_scattering: float = MIN_TRACE_SCATTERING, checkpoint_dir: str | Path | None = None,
                    checkpoint_every: int = 0, resume: bool = False, callback=None, global_sweeps: int = 0,
                    bounded: bool = False, sweep_grid: tuple[int, int] = (48, 12), later_rounds: str = "sweep",
                    groups: MaterialGroups | None = None, bayes: BayesSetup | None = None,
                    stopwatch: Stopwatch | None = None, first_samples_per_src: int | None = None
                    ) -> tuple[CalibrationResult, PathSet]:
    """Calibrate per-object materials of ``twin`` from ``targets`` (rows refer to links ``tx_pos[i] -> rx_pos[i]``).

    ``fit``: quantities to calibrate (eps_r, sigma, scattering, xpd). ``diffuse``: trace diffuse reflection (None:
    when ``settings`` asks for it, S / K_xpd are fitted or the fixed S is > 0 somewhere; False with S fitted and
    True without any S are errors). Checkpoints of round k
    go to ``checkpoint_dir/round{k}.pt`` every ``checkpoint_every`` iterations; ``resume`` continues them.
    ``global_sweeps`` > 0: before each local round, that many per-object grid sweeps over the prior ranges
    (:func:`rftwin.calibrate.sweep.coordinate_sweep`) move the start into the basin of the lowest path-gain loss
    (eps_r/sigma fits of constant materials without diffuse reflection only) on grids of ``sweep_grid``
    (eps_r, sigma) points. ``bounded``: eps_r and sigma stay inside the prior ranges during the local fit (a box
    prior; projected steps), which keeps the fit out of resonance-order aliases outside the range.
    ``later_rounds``: how a re-trace round starts from the result it carries: "sweep" (the global sweeps again,
    when ``global_sweeps`` > 0, then a local refinement), "restart" (next to the carried result ``num_starts - 1``
    fresh random starts, another seed per round, inside the prior range, so a round that ended in a wrong basin
    gets another chance; no sweeps) or "carry" (a local refinement of the carried result alone).
    ``targets`` may also be a callable ``PathSet -> Targets``, called with every new trace (the first and each
    re-trace): targets that refer to individual paths (per-MPC powers matched to the traced paths) are rebuilt
    for the paths of that trace.
    ``groups``: objects of a group share parameters (:mod:`rftwin.materials.groups`; no sweeps then).
    ``bayes``: calibrate as inference (:mod:`rftwin.calibrate.bayes`): the objective is the negative log
    posterior under the label priors of ``bayes.priors`` (``prior`` then only supplies start values and ranges),
    noise levels and prior strength are estimated, labels are corrected in the first round, every fit stays inside
    the plausible ranges, and the result carries the held-out check in ``result.inference``.
    A re-trace that finds exactly the paths of the trace before it (:func:`same_paths`) ends the re-trace rounds:
    a calibration on the same paths would repeat the last one.
    ``first_samples_per_src``: rays per source of the first trace only (the one at the prior, whose paths the
    re-traces replace; None: ``settings.samples_per_src``); useful with ``retrace`` >= 2.
    ``stopwatch``: records the wall time of every trace, sweep and calibration round
    (:class:`rftwin.progress.Stopwatch`).
    Every trace takes its materials as an argument (:class:`rftwin.scene.scene_materials.SceneMaterials`): the
    twin's scene is never changed; :func:`calibrated_materials` gives the record of the result (what to trace the
    calibrated twin at). ``result.mechanisms`` lists what was traced.
    """
    if later_rounds not in LATER_ROUNDS:
        raise ValueError(f"later_rounds must be one of {', '.join(LATER_ROUNDS)}, not {later_rounds!r}")
    make_targets = targets if callable(targets) else (lambda _ps: targets)
    cfg = CalibrationConfig() if cfg is None else cfg
    settings = SolverSettings() if settings is None else settings
    tx_antenna = AntennaSpec() if tx_antenna is None else tx_antenna
    rx_antenna = AntennaSpec() if rx_antenna is None else rx_antenna
    fit = tuple(fit)
    wants_diffuse = "scattering" in fit or "xpd" in fit
    if diffuse is False and wants_diffuse:
        raise ValueError("calibrating the scattering coefficient or K_xpd needs diffuse reflection in the trace "
                         "(drop --no-diffuse)")
    starts = _diffuse_values(twin, prior, fit, num_starts, seed)
    has_s = starts["scattering"] is not None and bool(np.any(starts["scattering"] > 0))
    if "xpd" in fit and not has_s:
        raise ValueError("K_xpd acts on the diffuse field only: fitting xpd needs S > 0 (a prior S via "
                         "--scattering / --roughness, or --fit ...,scattering)")
    if diffuse and not has_s:
        raise ValueError("diffuse reflection needs a scattering coefficient S > 0 somewhere: give a prior S "
                         "(--scattering / --roughness), fit it (--fit ...,scattering) or use a scene with S > 0")
    # default: trace diffuse reflection whenever the model has S > 0 (a specular-only trace would lose that energy)
    use_diffuse = bool(diffuse) or wants_diffuse or (diffuse is None and (settings.diffuse_reflection or has_s))
    settings = replace(settings, diffuse_reflection=use_diffuse)
    thickness = [o.thickness_m for o in twin.objects]
    f_ref = float(prior.frequency_hz)
    pl = prior.power_law if prior.power_law is not None and not np.isnan(prior.power_law).any() else None
    kw = {"power_law": power_law, "reference_frequency_hz": f_ref, "b": None if pl is None else pl[:, 1],
          "d": None if pl is None else pl[:, 3], "fit": fit,
          "eps_bounds": prior.eps_range if bounded else None, "sigma_bounds": prior.sigma_range if bounded else None}
    if bayes is not None and not bounded:  # the posterior fit never leaves the plausible ranges
        kw["eps_bounds"], kw["sigma_bounds"] = plausible_bounds(len(thickness))
    ckdir = Path(checkpoint_dir) if checkpoint_dir is not None else None

    def trace_at(eps, sig, s, x, k_trace: int, samples: int | None = None) -> PathSet:
        """Trace with the given materials; fitted S gets at least ``min_trace_scattering`` (sampling only)."""
        s_tr = None if s is None else np.asarray(s, dtype=np.float64).copy()
        if s_tr is not None and "scattering" in fit:
            s_tr = np.maximum(s_tr, min_trace_scattering)
        with timed(stopwatch, f"trace {k_trace} (Sionna)"):
            st = settings if samples is None else replace(settings, samples_per_src=samples)
            return trace_checked(twin, tx_pos, rx_pos, st, tx_antenna, rx_antenna, cache_dir, progress,
                                 SceneMaterials.of(eps, sig, scattering=s_tr, xpd=x))

    def sweepable(targets: Targets) -> bool:
        return (global_sweeps > 0 and set(fit) <= {"eps_r", "sigma"} and not power_law and not use_diffuse
                and targets.path_gain_db is not None and groups is None)

    def swept(ps, eps, sig, targets: Targets):
        """Global per-object grid sweeps from (eps, sig) [K] on the path-gain rows (NaN rows left out)."""
        ok = ~torch.isnan(targets.path_gain_db)
        f = targets.frequencies_hz[targets.freq_index]
        eb = prior.eps_range if "eps_r" in fit else np.stack([eps, eps], 1)
        sb = prior.sigma_range if "sigma" in fit else np.stack([sig, sig], 1)
        with timed(stopwatch, "sweeps"):
            sw = coordinate_sweep(ps, targets.link[ok].numpy(), f[ok].numpy(), targets.path_gain_db[ok].numpy(), eps,
                                  sig, np.asarray(thickness), eb, sb, grid=sweep_grid[0], sigma_grid=sweep_grid[1],
                                  sweeps=global_sweeps, estimate_offset=cfg.offset_mode != "none", progress=progress)
        return sw.eps_r, sw.sigma

    def make_model(v) -> PerObjectMaterials:
        return material_model(groups, v["eps_r"], v["sigma"], thickness, scattering=v.get("scattering"),
                              xpd=v.get("xpd"), **kw)

    def run(ps, model, k, targets: Targets):
        with timed(stopwatch, f"calibration round {k}"):
            return run_round(ps, model, k, targets)

    def run_round(ps, model, k, targets: Targets):
        if bayes is not None:
            return posterior_round(ps, model, targets, cfg, bayes, make_model, fit, power_law, k == 0, progress,
                                   checkpoint=None if ckdir is None else ckdir / f"round{k}.pt",
                                   checkpoint_every=checkpoint_every, resume=resume)
        return calibrate(ps, model, targets, cfg, truth=truth, progress=progress, uncertainty=k == retrace,
                         prior=prior, checkpoint=None if ckdir is None else ckdir / f"round{k}.pt",
                         checkpoint_every=checkpoint_every, resume=resume, callback=callback)

    def first(x):
        return None if x is None else x[0]

    ps = trace_at(prior.eps_r, prior.sigma, first(starts["scattering"]), first(starts["xpd"]), 0,
                  first_samples_per_src)
    tg = make_targets(ps)
    label_eval = (ps, tg)
    if sweepable(tg):  # the swept point joins the multi-start draws as an extra start
        e0, s0 = swept(ps, prior.eps_r, prior.sigma, tg)
        starts["eps_r"] = np.concatenate([e0[None], starts["eps_r"]])
        starts["sigma"] = np.concatenate([s0[None], starts["sigma"]])
    model = material_model(groups, starts["eps_r"], starts["sigma"], thickness, scattering=starts["scattering"],
                           xpd=starts["xpd"], **kw)
    res = run(ps, model, 0, tg)
    history = list(res.history)
    changes: list[dict] = []
    for k in range(retrace):
        new = trace_at(res.eps_r, res.sigma, res.scattering, res.xpd, k + 1)
        changes.append({"retrace": k + 1, **path_change(ps, new, res.model, f_ref)})
        if same_paths(new, ps):  # the calibration would see the paths it has seen: done
            if res.uncertainty is None and bayes is None:  # computed in the last round only
                res = replace(res, uncertainty=laplace(ps, res.model, tg, cfg))
            break
        ps = new
        tg = make_targets(ps)
        if sweepable(tg) and later_rounds == "sweep":
            res = replace(res, **dict(zip(("eps_r", "sigma"), swept(ps, res.eps_r, res.sigma, tg))))
        pl_now = res.power_law
        kw.update(b=pl_now[:, 1] if power_law else None, d=pl_now[:, 3] if power_law else None)
        E, S = res.eps_r[None], res.sigma[None]
        if later_rounds == "restart" and num_starts > 1:  # fresh random starts next to the carried result
            d = draw_start_values(prior, num_starts, seed + k + 1, fit)
            E, S = np.concatenate([E, d["eps_r"][1:]]), np.concatenate([S, d["sigma"][1:]])

        def rep(x):
            return None if x is None else np.repeat(x[None], len(E), 0)

        model = material_model(groups, E, S, thickness, scattering=rep(res.scattering), xpd=rep(res.xpd), **kw)
        prev_seconds, prev_iters = res.seconds, res.iterations
        res = run(ps, model, k + 1, tg)
        offset = history[-1]["iteration"] if history else 0
        history += [dict(r, iteration=r["iteration"] + offset, retrace=k + 1) for r in res.history[1:]]
        res = replace(res, seconds=res.seconds + prev_seconds, iterations=res.iterations + prev_iters)
    if bayes is not None:
        _, link_tx = np.unique(np.asarray(tx_pos, dtype=np.float64), axis=0, return_inverse=True)
        res = finish(ps, tg, cfg, bayes, res, make_model, fit, power_law, link_tx.reshape(-1), label_eval)
    mech = list(ps.meta.get("mechanisms", settings.mechanisms()))
    return replace(res, history=history, mechanisms=mech, path_changes=changes), ps


def calibrated_materials(res: CalibrationResult) -> SceneMaterials:
    """The trace-time materials of a calibration result: its ε_r, σ and, where fitted or carried, S and K_xpd
    (the others stay the scene's own)."""
    return SceneMaterials(res.eps_r, res.sigma, res.scattering, res.xpd)

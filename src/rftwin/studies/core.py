"""Core benchmark: one calibration step on cached paths vs one Sionna RT gradient step (re-trace with Dr.Jit AD)."""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from rftwin.calibrate import CalibrationConfig, Targets
from rftwin.calibrate.objectives import path_gain_loss
from rftwin.calibrate.problem import simulate_path_gain_db
from rftwin.demo import DemoConfig, demo_links
from rftwin.materials import PerObjectMaterials
from rftwin.runtime import sionna_rt
from rftwin.scene import room
from rftwin.trace.simulate import trace_path_gain_db
from rftwin.trace.tracer import SolverSettings, reset_devices

# the traces of this study as they were made (the demo itself now traces with 5e5 rays and its seed)
SETTINGS = SolverSettings(max_depth=4, samples_per_src=1_000_000)


def _median_time(fn, reps: int) -> float:
    fn()  # warm-up (compilation, caches)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def engine_step_seconds(ps, twin, targets, dtype=torch.float64, reps: int = 20, threads: int = 1) -> float:
    torch.set_num_threads(threads)
    e = np.array([[o.relative_permittivity for o in twin.objects]])
    s = np.array([[o.conductivity for o in twin.objects]])
    model = PerObjectMaterials(e, s, [o.thickness_m for o in twin.objects], dtype=dtype)
    p = ps.to(dtype=dtype)
    t = Targets(targets.link, targets.freq_index, targets.frequencies_hz.to(dtype), targets.path_gain_db.to(dtype))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    cfg = CalibrationConfig(loss="nae", optimizer="adam")

    def step():
        opt.zero_grad()
        loss, _ = path_gain_loss(simulate_path_gain_db(p, model, t), t, cfg)
        loss.sum().backward()
        opt.step()

    return _median_time(step, reps)


def lm_jacobian_seconds(ps, twin, targets, starts: int = 1, reps: int = 5) -> dict[str, float]:
    """Time of one LM Jacobian (all 18 columns, ``starts`` starts) by the one-pass per-interaction reverse mode
    (:mod:`rftwin.calibrate.path_jacobian`) and by batched forward-mode AD (the general fallback)."""
    from rftwin.calibrate.jacobians import flat_params, forward_columns, jacobian, trainable_params  # noqa: PLC0415

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    e = np.array([o.relative_permittivity for o in twin.objects]) * rng.uniform(0.8, 1.2, (starts, len(twin.objects)))
    s = np.array([o.conductivity for o in twin.objects]) * rng.uniform(0.8, 1.2, (starts, len(twin.objects)))
    model = PerObjectMaterials(e, s, [o.thickness_m for o in twin.objects])
    p64 = ps.to(dtype=torch.float64)
    cfg = CalibrationConfig()
    params = trainable_params(model)
    names = [n for n, q in model.named_parameters() if q.requires_grad]
    sizes = [q.shape[1] for q in params]
    return {"one_pass_s": _median_time(lambda: jacobian(p64, model, targets, cfg), reps),
            "forward_mode_s": _median_time(lambda: forward_columns(p64, model, targets, cfg, None, None, names,
                                                                    sizes, flat_params(params)), reps)}


def sionna_step_seconds(twin, tx, rx, meas_db: np.ndarray, settings, reps: int = 3) -> float:
    """Time of one loss + gradient evaluation done the Sionna way: trace with AD enabled on eta_r and sigma of every
    material (``loop_mode='evaluated'``), NAE loss on per-link power, ``dr.backward``."""
    rt = sionna_rt()
    import drjit as dr  # noqa: PLC0415
    import mitsuba as mi  # noqa: PLC0415

    sc = twin.scene
    reset_devices(sc)
    ut, ti = np.unique(tx, axis=0, return_inverse=True)
    for i, p in enumerate(ut):
        sc.add(rt.Transmitter(name=f"tx{i}", position=[float(v) for v in p]))
    for j, p in enumerate(rx):
        sc.add(rt.Receiver(name=f"rx{j}", position=[float(v) for v in p]))
    solver = rt.PathSolver(deterministic=True)
    solver.loop_mode = "evaluated"
    params = mi.traverse(sc.mi_scene)
    keys = [k for k in params.keys() if k.endswith(".eta_r") or k.endswith(".sigma")]
    meas_lin = mi.Float((10 ** (meas_db / 10)).astype(np.float32))
    rx_idx = mi.UInt(np.arange(len(rx), dtype=np.uint32))
    tx_idx = mi.UInt(ti.reshape(-1).astype(np.uint32))

    def step():
        for k in keys:
            dr.enable_grad(params[k])
        params.update()
        paths = solver(sc, max_depth=settings.max_depth, samples_per_src=settings.samples_per_src,
                       seed=settings.seed, refraction=settings.refraction)
        a_r, a_i = paths.a  # [n_rx, 1, n_tx, 1, P]
        pw = dr.sum(dr.square(a_r) + dr.square(a_i), axis=4)  # [n_rx, 1, n_tx, 1]
        n_tx = pw.shape[2]
        flat = dr.gather(mi.Float, pw.array, rx_idx * n_tx + tx_idx)  # the measured (rx, tx) pairs
        loss = dr.mean(dr.abs(flat - meas_lin) / meas_lin)
        dr.backward(loss)
        grads = [np.array(dr.grad(params[k])) for k in keys]  # host read: waits for the kernels
        for k in keys:
            dr.disable_grad(params[k])
        return grads

    return _median_time(step, reps)


def run_core_benchmark(demo: bool = True, reps: int = 20, sionna_reps: int = 3, progress: bool = False) -> dict:
    # the step comparison uses seed 004's 3 x 8 links: Sionna's AD re-trace on the demo's 96 links was killed
    # (exit 137, out of memory on a 24 GiB machine); the demo itself runs with its defaults below
    cfg = DemoConfig(receivers=8)
    twin = room(cfg.frequency_hz)
    tx, rx = demo_links(twin, cfg)
    t = time.perf_counter()
    ps, meas = trace_path_gain_db(twin, tx, rx, SETTINGS, cache_dir=False, progress=progress)
    trace_s = time.perf_counter() - t
    targets = Targets.build(np.arange(len(tx)), np.full(len(tx), cfg.frequency_hz), meas)
    threads_default = torch.get_num_threads()
    out = dict(num_links=len(tx), num_paths=ps.num_paths, trace_seconds=trace_s,
               engine_step_s=engine_step_seconds(ps, twin, targets, torch.float64, reps, 1),
               engine_step_f32_s=engine_step_seconds(ps, twin, targets, torch.float32, reps, 1),
               engine_step_f64_all_threads_s=engine_step_seconds(ps, twin, targets, torch.float64, reps,
                                                                  threads_default))
    for b in (1, 33):  # one start; the demo's 32 random starts + the swept one
        jt = lm_jacobian_seconds(ps, twin, targets, b)
        out[f"lm_jacobian_one_pass_{b}_starts_s"] = jt["one_pass_s"]
        out[f"lm_jacobian_forward_mode_{b}_starts_s"] = jt["forward_mode_s"]
    torch.set_num_threads(1)
    out["sionna_step_s"] = sionna_step_seconds(twin, tx, rx, meas, SETTINGS, sionna_reps)
    out["speedup"] = out["sionna_step_s"] / out["engine_step_s"]
    if demo:
        from rftwin.demo import demo_json, run_demo  # noqa: PLC0415

        j = demo_json(run_demo(DemoConfig(), progress=progress))
        out.update(demo_seconds=j["seconds"], demo_calibration_seconds=j["calibration_seconds"],
                   demo_mre_sigma=j["mre_sigma"], demo_mre_eps=j["mre_eps"], demo_iterations=j["iterations"])
    return out

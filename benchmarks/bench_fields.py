"""Benchmark: spatially varying material fields vs per-object calibration vs a black-box MLP on the split-wall scene.

Sionna RT simulates the measurements at ``--bands`` frequencies in 2.4-5.8 GHz (seed 000: 8 bands) in the true
split-wall room (north wall = concrete | wood + a 1 x 1 m metal patch, ONE calibration unit for rftwin; every part
keeps its ITU material, so the truth is frequency dependent): per-link path gain and per-path (MPC) powers. The
twin that is calibrated is traced once with the whole north wall labelled ``--prior`` (it knows neither the split
nor the patch; paths through the patch exist in the twin and are absent from the measurements). Fitted on the
training links:
- per-object power-law calibration (PerObjectMaterials(power_law=True), path gain + finite MPC powers),
- the hash-grid field (Adam with separate MLP / hash learning rates, ReduceLROnPlateau, L-BFGS fine-tuning) on
  path gain + MPC powers (blocked paths as upper bounds below ``--mpc-floor``),
- the same hash-grid field on path gain only (the ablation that shows why per-path data is needed),
- the Fourier-feature field (same training, power-law read-out),
- the seed-000 MLP baseline (tx, rx, f -> path gain dB).
Reported per region of the split wall (concrete half, wood parts, metal patch) and over the wall: eps_r / sigma
MRE per interaction point (eps_r leaves out the conductor), |R| MRE (normal-incidence slab reflection) and the
conductor recall / false-alarm rates; path-gain errors on training and unseen links; wall-clock seconds. ``--rank``
adds the numerical rank of the measurement Jacobian w.r.t. per-point (log eps_r, log sigma) of the wall's
dielectric interactions, with and without the MPC rows (finite differences, batched). JSON to ``--out``.

    .venv/bin/python benchmarks/bench_fields.py --bands 8 --samples 50000 --out benchmarks/results/fields.json
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bands", type=int, default=8)
    ap.add_argument("--samples", type=int, default=50_000)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--rx-in", type=int, default=24, help="receivers inside the room")
    ap.add_argument("--rx-out", type=int, default=24, help="receivers behind the split wall")
    ap.add_argument("--holdout", type=float, default=0.2, help="fraction of links held out (unseen)")
    ap.add_argument("--prior", default="wood", help="ITU label of the whole split wall in the twin")
    ap.add_argument("--no-patch", action="store_true", help="no metal patch on the wall")
    ap.add_argument("--adam", type=int, default=400)
    ap.add_argument("--lbfgs", type=int, default=30)
    ap.add_argument("--lr-mlp", type=float, default=3e-3)
    ap.add_argument("--lr-hash", type=float, default=1e-2)
    ap.add_argument("--mpc-weight", type=float, default=4.0)
    ap.add_argument("--mpc-floor", type=float, default=-150.0, help="MPC detection floor (dB)")
    ap.add_argument("--po-iter", type=int, default=40, help="L-BFGS iterations of the per-object calibration")
    ap.add_argument("--mlp-iterations", type=int, default=1000)
    ap.add_argument("--no-ablation", action="store_true", help="skip the gain-only hash-grid field")
    ap.add_argument("--no-fourier", action="store_true")
    ap.add_argument("--rank", action="store_true", help="Jacobian rank with / without MPC rows (slow)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--maps", type=Path, default=None, help="folder for field / truth material-map PNGs")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fields.json"))
    args = ap.parse_args()

    import rftwin  # noqa: F401 - LLVM set-up before Sionna
    from rftwin.baselines.mlp_channel import MLPChannelConfig, fit_mlp_channel
    from rftwin.calibrate import CalibrationConfig, calibrate
    from rftwin.calibrate.losses import LossTerm
    from rftwin.fields import (
        FieldTrainConfig,
        FourierField,
        HashGridField,
        field_values,
        interaction_points,
        link_errors,
        material_errors,
        train_field,
    )
    from rftwin.io import write_json
    from rftwin.materials import PerObjectMaterials, itu_power_law
    from rftwin.physics.engine import link_gain_db
    from rftwin.runtime import configure_torch_threads
    from rftwin.scene.split_wall import SPLIT_UNIT, SplitWallSpec, split_wall
    from rftwin.studies.split_wall import simulate_measurements
    from rftwin.trace import SolverSettings

    configure_torch_threads()
    t_all = time.perf_counter()
    spec = SplitWallSpec(patch=None) if args.no_patch else SplitWallSpec()
    sw = split_wall(spec)
    rng = np.random.default_rng(args.seed)
    hx, hy = spec.size_x / 2, spec.size_y / 2
    tx = np.array([[-2.0, -1.0, 1.5], [2.0, -1.5, 1.2], [0.5, 1.0, 2.0], [-1.0, 2.0, 1.0]])
    rx_in = np.column_stack([rng.uniform(-hx + 0.3, hx - 0.3, args.rx_in), rng.uniform(0.5, hy - 0.3, args.rx_in),
                             rng.uniform(0.5, 2.5, args.rx_in)])
    rx_out = np.column_stack([rng.uniform(-hx + 0.2, hx - 0.2, args.rx_out),
                              rng.uniform(hy + 0.3, hy + 2.0, args.rx_out), rng.uniform(0.3, 2.7, args.rx_out)])
    rx = np.vstack([rx_in, rx_out])
    TX, RX = np.repeat(tx, len(rx), 0), np.tile(rx, (len(tx), 1))
    freqs = np.linspace(2.4e9, 5.8e9, args.bands)
    settings = SolverSettings(max_depth=args.depth, samples_per_src=args.samples, seed=args.seed)
    t0 = time.perf_counter()
    meas = simulate_measurements(sw, args.prior, TX, RX, freqs, settings)
    trace_s = time.perf_counter() - t0
    ps, G = meas.ps, meas.gain_db
    L = ps.num_links
    perm = rng.permutation(L)
    test = np.sort(perm[: int(round(args.holdout * L))])
    train = np.setdiff1d(np.arange(L), test)
    t_mpc = meas.targets(train)  # path gain + MPC powers (blocked paths -inf: upper bounds in the field loss)
    t_mpc_finite = meas.targets(train, blocked=False)
    t_gain = meas.targets(train, mpc=False)
    labels, e0, s0 = sw.unit_prior(3.5e9, {SPLIT_UNIT: args.prior})
    abcd = np.array([[getattr(itu_power_law(lab, 3.5e9), k) for k in "abcd"] for lab in labels])
    th = [spec.thickness] * len(e0)
    lo, hi = sw.twin.bbox()
    lo, hi = lo - 0.05, hi + 0.05

    # truth at interaction points
    part = meas.part
    pts, obj = interaction_points(ps)
    et = np.stack([sw.true_eps_sigma(part, f)[0] for f in freqs])
    st = np.stack([sw.true_eps_sigma(part, f)[1] for f in freqs])
    unit = sw.units.index(SPLIT_UNIT)
    wall = (obj == unit).numpy()
    names = [p.name for p in sw.parts]
    regions = {"left_half": np.isin(part, [names.index(f"{SPLIT_UNIT}__left")]),
               "right_half": np.isin(part, [i for i, n in enumerate(names) if n.startswith(f"{SPLIT_UNIT}__right")]),
               "patch": np.isin(part, [i for i, n in enumerate(names) if n == f"{SPLIT_UNIT}__patch"])}

    def errors(e, s) -> dict:
        kw = dict(frequency_hz=freqs, thickness_m=spec.thickness)
        out = {"wall": material_errors(e, s, et, st, wall[None], **kw).as_dict(),
               "all_objects": material_errors(e, s, et, st, None, **kw).as_dict()}
        for r, m in regions.items():
            if m.any():
                out[r] = material_errors(e, s, et, st, m[None], **kw).as_dict()
        return out

    def predict_db(mv) -> np.ndarray:
        with torch.no_grad():
            return link_gain_db(ps, mv, freqs)[0].numpy()

    results: dict = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
                     "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                                "frequencies_hz": freqs.tolist(), "num_links": int(L), "train_links": len(train),
                                "unseen_links": len(test), "num_paths": ps.num_paths,
                                "mpc_rows_train": int(t_mpc.mpc_path.numel()),
                                "mpc_blocked_rows_train": int((~torch.isfinite(t_mpc.mpc_power_db)).sum()),
                                "wall_interactions": int(wall.sum()),
                                "region_interactions": {r: int(m.sum()) for r, m in regions.items()},
                                "patch": spec.patch, "thickness_m": spec.thickness},
                     "trace_seconds": trace_s, "methods": {}}

    # per-object power law on the same data (a dB loss cannot use the blocked, -inf MPC rows)
    t0 = time.perf_counter()
    po = PerObjectMaterials(e0[None], s0[None], th, power_law=True, reference_frequency_hz=3.5e9, b=abcd[:, 1],
                            d=abcd[:, 3])
    pres = calibrate(ps, po, t_mpc_finite, CalibrationConfig(optimizer="lbfgs", max_iter=args.po_iter,
                                                             terms=(LossTerm("path_gain"), LossTerm("mpc_power"))),
                     progress=False, uncertainty=False)
    with torch.no_grad():
        ek, sk = pres.model.eps_sigma(torch.as_tensor(freqs))
    ek, sk = ek[0].numpy(), sk[0].numpy()
    pred = predict_db(pres.model(torch.as_tensor(freqs)))
    results["methods"]["per_object"] = {
        "seconds": time.perf_counter() - t0, "data": "path_gain+mpc", "iterations": args.po_iter,
        "train": link_errors(pred[:, train], G[:, train]), "unseen": link_errors(pred[:, test], G[:, test]),
        "materials": errors(ek[:, obj.numpy()], sk[:, obj.numpy()]), "wall_power_law": pres.power_law[unit].tolist()}

    # fields
    def hashgrid():
        return HashGridField((lo, hi), th, e0, s0, prior_abcd=abcd, readout={"kind": "power_law", "b_max": 0.0},
                             levels=6, finest_resolution=64, log2_table_size=14, seed=args.seed)

    def fourier():
        return FourierField((lo, hi), th, e0, s0, readout={"kind": "power_law", "b_max": 0.0}, prior_abcd=abcd,
                            num_features=32, scale=2.0, width=64, depth=3, seed=args.seed)

    runs = [("hashgrid", hashgrid, t_mpc, "path_gain+mpc")]
    if not args.no_ablation:
        runs.append(("hashgrid_gain_only", hashgrid, t_gain, "path_gain"))
    if not args.no_fourier:
        runs.append(("fourier", fourier, t_mpc, "path_gain+mpc"))
    trained = {}
    for name, make, targets, what in runs:
        fld = make()
        cfg = FieldTrainConfig(adam_iterations=args.adam, lr_mlp=args.lr_mlp, lr_hash=args.lr_hash,
                               lbfgs_iterations=args.lbfgs, mpc_weight=args.mpc_weight, mpc_floor_db=args.mpc_floor,
                               seed=args.seed)
        res = train_field(ps, fld, targets, cfg, progress=True)
        e, s = field_values(fld, pts, obj, freqs)
        pred = predict_db(fld(ps, freqs))
        results["methods"][name] = {"seconds": res.seconds, "data": what, "adam_iterations": res.adam_iterations,
                                    "lbfgs_iterations": res.lbfgs_iterations,
                                    "parameters": sum(p.numel() for p in fld.parameters()),
                                    "train": link_errors(pred[:, train], G[:, train]),
                                    "unseen": link_errors(pred[:, test], G[:, test]), "materials": errors(e, s)}
        trained[name] = fld

    # black-box MLP baseline
    t0 = time.perf_counter()
    F = len(freqs)
    mlp = fit_mlp_channel(np.tile(TX[train], (F, 1)), np.tile(RX[train], (F, 1)), np.repeat(freqs, len(train)),
                          G[:, train].reshape(-1), MLPChannelConfig(iterations=args.mlp_iterations, seed=args.seed),
                          progress=True)
    p_tr = mlp.predict_db(np.tile(TX[train], (F, 1)), np.tile(RX[train], (F, 1)), np.repeat(freqs, len(train)))
    p_te = mlp.predict_db(np.tile(TX[test], (F, 1)), np.tile(RX[test], (F, 1)), np.repeat(freqs, len(test)))
    results["methods"]["mlp_baseline"] = {"seconds": time.perf_counter() - t0, **mlp.summary(),
                                          "train": link_errors(p_tr, G[:, train].reshape(-1)),
                                          "unseen": link_errors(p_te, G[:, test].reshape(-1))}

    if args.rank:
        results["information"] = jacobian_rank(ps, meas, et, st, regions["left_half"] | regions["right_half"],
                                               spec.thickness)

    if args.maps is not None:
        from rftwin.fields.maps import build_map, object_mesh, write_map
        from rftwin.fields.surface import surface_grid

        v, fc = object_mesh(sw.twin.meshes(), sw.twin.names, SPLIT_UNIT)
        grid = surface_grid(v, fc, 0.05)
        k = torch.full((len(grid.points),), unit, dtype=torch.long)
        for name, fld in trained.items():
            e, s = field_values(fld, grid.points, k, [3.5e9])
            write_map(build_map(f"{SPLIT_UNIT} ({name} field)", grid, e[0], s[0], 3.5e9, spec.thickness),
                      args.maps / name)
        pidx = sw.part_at(grid.points)
        e, s = sw.true_eps_sigma(pidx, 3.5e9)
        write_map(build_map(f"{SPLIT_UNIT} (truth)", grid, e, s, 3.5e9, spec.thickness), args.maps / "truth")

    results["total_seconds"] = time.perf_counter() - t_all
    write_json(args.out, results)
    m = results["methods"]
    for name in [n for n in m if n != "mlp_baseline"]:
        mat = m[name]["materials"]
        row = "  ".join(f"{r} eps {mat[r]['mre_eps']:.3f} sig {mat[r]['mre_sigma']:.3f} "
                        f"|R| {mat[r]['mre_reflection']:.3f}" for r in ("left_half", "right_half") if r in mat)
        if "patch" in mat:
            row += f"  patch |R| {mat['patch']['mre_reflection']:.3f} cond {mat['patch']['conductor_recall']:.2f}"
        print(f"{name:20s} {row}  unseen RMSE {m[name]['unseen']['rmse_db']:.2f} dB ({m[name]['seconds']:.0f} s)")
    print(f"{'mlp_baseline':20s} unseen RMSE {m['mlp_baseline']['unseen']['rmse_db']:.2f} dB")
    print(f"wrote {args.out}")


def jacobian_rank(ps, meas, eps_true, sigma_true, points, thickness: float, batch: int = 16,
                  step: float = 1e-5) -> dict:
    """Numerical rank of d(measurements in dB)/d(log eps_r, log sigma) at the truth for every interaction point
    selected by ``points`` [P] (central finite differences, ``batch`` perturbations per engine call), with the
    path-gain rows only and with the finite MPC rows added; plus the median Laplace std per unknown (1 dB noise)."""
    from rftwin.physics.channel import path_gain, path_power, to_db
    from rftwin.physics.engine import MaterialValues, path_coefficients

    f = torch.as_tensor(meas.frequencies_hz)
    mask = ps.itype != 0
    N, D = mask.shape
    F = len(f)
    idx = np.nonzero(points)[0]
    W = len(idx)
    fin = torch.as_tensor(np.isfinite(meas.mpc_power_db))
    e0 = torch.as_tensor(eps_true)
    s0 = torch.as_tensor(sigma_true)

    def sim(delta: torch.Tensor) -> torch.Tensor:
        """delta [B, 2W] log multipliers -> measurements [B, rows]."""
        B = delta.shape[0]
        e = e0[None].repeat(B, 1, 1)
        s = s0[None].repeat(B, 1, 1)
        e[:, :, idx] *= torch.exp(delta[:, None, :W])
        s[:, :, idx] *= torch.exp(delta[:, None, W:])
        full = [torch.full((B, F, N, D), v, dtype=torch.float64).masked_scatter(mask.expand(B, F, N, D), x)
                for v, x in ((2.0, e), (0.0, s))]
        mv = MaterialValues(full[0], full[1], torch.full((1, 1, N, D), thickness, dtype=torch.float64),
                            per_object=False)
        with torch.no_grad():
            a = path_coefficients(ps, mv, f)
        g = to_db(path_gain(a, ps.link, ps.num_links)).reshape(B, -1)
        return torch.cat([g, to_db(path_power(a))[:, fin]], 1)

    cols = []
    eye = torch.eye(2 * W, dtype=torch.float64) * step
    for k in range(0, 2 * W, batch):
        d = eye[k:k + batch]
        cols.append(((sim(d) - sim(-d)) / (2 * step)).T)
    J = torch.cat(cols, 1)  # [rows, 2W]
    n_gain = meas.gain_db.size
    out = {"unknowns": 2 * W, "gain_rows": n_gain, "mpc_rows": int(J.shape[0] - n_gain)}
    for tag, Jx in (("gain_only", J[:n_gain]), ("gain_and_mpc", J)):
        sv = torch.linalg.svdvals(Jx)
        H = Jx.T @ Jx + 1e-8 * torch.eye(2 * W, dtype=torch.float64)
        sd = torch.linalg.inv(H).diagonal().sqrt()
        out[tag] = {"rank": int((sv > sv[0] * 1e-6).sum()),
                    "median_laplace_std_log_eps_1db": float(sd[:W].median()),
                    "median_laplace_std_log_sigma_1db": float(sd[W:].median())}
    return out


if __name__ == "__main__":
    main()

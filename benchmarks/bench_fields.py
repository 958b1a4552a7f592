"""Benchmark: spatially varying material fields vs per-object calibration vs a black-box MLP on the split-wall scene.

Sionna RT simulates path gains at ``--bands`` frequencies in 2.4-5.8 GHz (seed 000: 8 bands) on the split-wall
room (north wall = concrete | wood + a metal patch, ONE calibration unit for rftwin; every part keeps its ITU
material, so the truth is frequency dependent). Training links and held-out links are traced once; then
- per-object power-law calibration (PerObjectMaterials(power_law=True), Levenberg-Marquardt),
- the hash-grid field (Adam with separate MLP / hash learning rates, ReduceLROnPlateau, L-BFGS fine-tuning),
- the Fourier-feature field (same training, power-law read-out),
- the seed-000 MLP baseline (tx, rx, f -> path gain dB)
are fitted on the training rows. Reported: per-point eps_r / sigma errors on the split wall (all parts and per
part; eps_r leaves out the metal patch, where it has no effect), path-gain RMSE on training and unseen links, and
wall-clock seconds, as JSON (default benchmarks/results/fields.json). ``--maps DIR`` also writes material maps.

    .venv/bin/python benchmarks/bench_fields.py --bands 8 --samples 100000 --out benchmarks/results/fields.json
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bands", type=int, default=8)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--rx-in", type=int, default=24, help="receivers inside the room")
    ap.add_argument("--rx-out", type=int, default=24, help="receivers behind the split wall")
    ap.add_argument("--holdout", type=float, default=0.2, help="fraction of links held out (unseen)")
    ap.add_argument("--prior", default="wood", help="ITU label of the split wall used as prior")
    ap.add_argument("--no-patch", action="store_true", help="no metal patch on the wall")
    ap.add_argument("--adam", type=int, default=600)
    ap.add_argument("--lbfgs", type=int, default=50)
    ap.add_argument("--mlp-iterations", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--maps", type=Path, default=None, help="folder for field / truth material-map PNGs")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fields.json"))
    args = ap.parse_args()

    import rftwin  # noqa: F401 - LLVM set-up before Sionna
    from rftwin.baselines.mlp_channel import MLPChannelConfig, fit_mlp_channel
    from rftwin.calibrate import CalibrationConfig, Targets, calibrate
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
    from rftwin.physics.channel import path_gain, to_db
    from rftwin.physics.engine import path_coefficients
    from rftwin.runtime import configure_torch_threads
    from rftwin.scene.split_wall import SPLIT_UNIT, SplitWallSpec, merge_parts, split_wall
    from rftwin.trace import SolverSettings, trace

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
    gains, parts = [], None
    for f in freqs:
        sw.twin.set_frequency(f)
        ps_f = trace(sw.twin, TX, RX, settings, progress=False)
        p = np.bincount(ps_f.link.numpy(), (ps_f.a_ref.abs() ** 2).mean(dim=(1, 2)).numpy(), minlength=ps_f.num_links)
        gains.append(10 * np.log10(p))
        parts = ps_f if parts is None else parts
    trace_s = time.perf_counter() - t0
    ps = merge_parts(parts)
    G = np.stack(gains)
    L = ps.num_links
    perm = rng.permutation(L)
    test = np.sort(perm[: int(round(args.holdout * L))])
    train = np.setdiff1d(np.arange(L), test)
    t = Targets.build(np.tile(train, len(freqs)), np.repeat(freqs, len(train)), G[:, train].reshape(-1))
    labels, e0, s0 = sw.unit_prior(3.5e9, {SPLIT_UNIT: args.prior})
    abcd = np.array([[getattr(itu_power_law(lab, 3.5e9), k) for k in "abcd"] for lab in labels])
    th = [spec.thickness] * len(e0)
    lo, hi = sw.twin.bbox()
    lo, hi = lo - 0.05, hi + 0.05

    # truth at interaction points
    part = parts.obj[parts.itype != 0].numpy()
    pts, obj = interaction_points(ps)
    et = np.stack([sw.true_eps_sigma(part, f)[0] for f in freqs])
    st = np.stack([sw.true_eps_sigma(part, f)[1] for f in freqs])
    unit = sw.units.index(SPLIT_UNIT)
    wall = (obj == unit).numpy()

    def errors(e, s) -> dict:
        out = {"wall": material_errors(e, s, et, st, wall[None], freqs).as_dict(),
               "all_objects": material_errors(e, s, et, st, None, freqs).as_dict()}
        for i, p in enumerate(sw.parts):
            if p.unit == SPLIT_UNIT and (part == i).any():
                out[p.name] = material_errors(e, s, et, st, (part == i)[None], freqs).as_dict()
        return out

    def predict_db(mv) -> np.ndarray:
        with torch.no_grad():
            return to_db(path_gain(path_coefficients(ps, mv, freqs), ps.link, ps.num_links))[0].numpy()

    results: dict = {"machine": {"cpu_count": __import__("os").cpu_count(), "platform": platform.platform()},
                     "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                                "frequencies_hz": freqs.tolist(), "num_links": int(L), "train_links": len(train),
                                "unseen_links": len(test), "num_paths": ps.num_paths,
                                "wall_interactions": int(wall.sum()), "patch": spec.patch},
                     "trace_seconds": trace_s, "methods": {}}

    # per-object power law
    t0 = time.perf_counter()
    po = PerObjectMaterials(e0[None], s0[None], th, power_law=True, reference_frequency_hz=3.5e9, b=abcd[:, 1],
                            d=abcd[:, 3])
    pres = calibrate(ps, po, t, CalibrationConfig(optimizer="lm", max_iter=200), progress=False, uncertainty=False)
    ek, sk = pres.model.eps_sigma(torch.as_tensor(freqs))
    ek, sk = ek[0].detach().numpy(), sk[0].detach().numpy()
    pred = predict_db(pres.model(torch.as_tensor(freqs)))
    results["methods"]["per_object"] = {
        "seconds": time.perf_counter() - t0, "train": link_errors(pred[:, train], G[:, train]),
        "unseen": link_errors(pred[:, test], G[:, test]), "materials": errors(ek[:, obj.numpy()], sk[:, obj.numpy()]),
        "wall_power_law": pres.power_law[unit].tolist()}

    # fields
    fields = {
        "hashgrid": lambda: HashGridField((lo, hi), th, e0, s0, prior_abcd=abcd,
                                          readout={"kind": "power_law", "b_max": 0.0}, levels=6, finest_resolution=64,
                                          log2_table_size=14, seed=args.seed),
        "fourier": lambda: FourierField((lo, hi), th, e0, s0, readout={"kind": "power_law", "b_max": 0.0},
                                        prior_abcd=abcd, num_features=32, scale=2.0, width=64, depth=3,
                                        seed=args.seed),
    }
    trained = {}
    for name, make in fields.items():
        fld = make()
        cfg = FieldTrainConfig(adam_iterations=args.adam, lr_mlp=1e-3, lr_hash=1e-2, lbfgs_iterations=args.lbfgs,
                               seed=args.seed)
        res = train_field(ps, fld, t, cfg, progress=True)
        e, s = field_values(fld, pts, obj, freqs)
        pred = predict_db(fld(ps, freqs))
        results["methods"][name] = {"seconds": res.seconds, "adam_iterations": res.adam_iterations,
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
    for name in ("per_object", "hashgrid", "fourier"):
        w = m[name]["materials"]["wall"]
        print(f"{name:12s} wall eps MRE {w['mre_eps']:.3f}  sigma MRE {w['mre_sigma']:.3f}  "
              f"unseen RMSE {m[name]['unseen']['rmse_db']:.2f} dB  ({m[name]['seconds']:.1f} s)")
    print(f"{'mlp_baseline':12s} unseen RMSE {m['mlp_baseline']['unseen']['rmse_db']:.2f} dB")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

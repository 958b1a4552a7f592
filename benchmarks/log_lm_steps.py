"""Run ``rftwin calibrate`` in this process and log every Levenberg-Marquardt step it takes (how a calibration's
fits converge, or creep to the iteration cap).

One JSON line per step to OUT.jsonl: step number, starts B, the best start's loss after the step, its damping mu,
the largest parameter change of the best start (0 for a rejected step) and which parameter, how many moved by more
than 1e-4, the parameters P of the fit, seconds since the start. OUT.json summarises the fits (a new fit starts
where B or P changes or the loss rises: an LM fit's best loss never does): steps, first and last loss, seconds.

Run (in the folder of the command's inputs, e.g. a case folder of bench_unseen.py; the arguments after OUT are
``rftwin calibrate``'s):
    .venv/bin/python benchmarks/log_lm_steps.py OUT etoile meas_train.csv --out T --max-depth 2 \\
        --samples-per-src 100000 --diffraction
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def summarise(rows: list[dict]) -> list[dict]:
    """Fits of a step log: a new fit starts where B or P changes or the loss rises."""
    fits: list[dict] = []
    for r in rows:
        last = fits[-1] if fits else None
        if last is None or r["B"] != last["B"] or r["P"] != last["P"] or r["loss"] > last["last_loss"]:
            fits.append({"first_step": r["n"], "B": r["B"], "P": r["P"], "first_loss": r["loss"], "steps": 0,
                         "t0": r["t"]})
            last = fits[-1]
        last.update(steps=last["steps"] + 1, last_loss=r["loss"], seconds=round(r["t"] - last["t0"], 2))
    for f in fits:
        f.pop("t0")
    return fits


def main(out: Path) -> None:
    import torch

    import rftwin.calibrate.loop as loop
    from rftwin.calibrate.jacobians import flat_params
    from rftwin.io import write_json

    step = loop.lm_step
    log = open(out.with_suffix(".jsonl"), "w")
    rows: list[dict] = []
    t0 = time.perf_counter()

    def logged(ps, model, targets, cfg, params, mu, *rest):
        before = flat_params(params).detach().clone()
        res = step(ps, model, targets, cfg, params, mu, *rest)
        d = (flat_params(params).detach() - before).abs()
        b = int(torch.argmin(torch.nan_to_num(res[0], nan=float("inf"))))
        row = {"n": len(rows) + 1, "B": int(d.shape[0]), "P": int(d.shape[1]), "loss": float(res[0][b]),
               "mu": float(res[2][b]), "dp": float(d[b].max()), "argmax": int(d[b].argmax()),
               "n_moving": int((d[b] > 1e-4).sum()), "t": round(time.perf_counter() - t0, 2)}
        rows.append(row)
        log.write(json.dumps(row) + "\n")
        log.flush()
        return res

    loop.lm_step = logged
    from rftwin.cli.main import app

    try:
        app(["calibrate", *sys.argv[2:]], standalone_mode=False)
    finally:
        log.close()
        doc = {"command": ["rftwin", "calibrate", *sys.argv[2:]], "steps": len(rows),
               "seconds": round(time.perf_counter() - t0, 1), "fits": summarise(rows)}
        write_json(out.with_suffix(".json"), doc)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: log_lm_steps.py OUT SCENE MEASUREMENTS [rftwin calibrate options]")
    import rftwin  # noqa: F401  (sets DRJIT_LIBLLVM_PATH)

    main(Path(sys.argv[1]))

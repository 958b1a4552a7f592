"""An LM calibration with its Laplace report imports neither sympy nor pandas: torch imports its symbolic shapes
(with sympy, ~0.5 s) for any backward pass given a tensor of cotangents, and the demo used to import pandas with
its plot. Checked in a fresh interpreter on a PathSet written by the test (Sionna-traced)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import _floor_wall as fw

ROOT = Path(__file__).resolve().parents[2]

_CHILD = """
import json, sys
import numpy as np
from rftwin.calibrate import CalibrationConfig, Targets, calibrate
from rftwin.convergence_plot import convergence_png
from rftwin.materials import PerObjectMaterials
from rftwin.pathset import PathSet
folder = sys.argv[1]
z = np.load(folder + "/problem.npz")
model = PerObjectMaterials(z["eps"][None].repeat(3, 0) * np.array([[1.0], [0.8], [1.2]]), z["sig"][None].repeat(3, 0),
                           z["th"].tolist())
t = Targets.build(np.arange(len(z["meas"])), np.full(len(z["meas"]), 3.5e9), z["meas"])
res = calibrate(PathSet.load(folder + "/paths.npz"), model, t, CalibrationConfig(max_iter=6), progress=False)
convergence_png(res.history, folder + "/convergence.png")
print(json.dumps({"iterations": res.iterations, "std": res.uncertainty.eps_std.tolist(),
                  "modules": sorted(m for m in ("sympy", "pandas", "torch.fx.experimental.symbolic_shapes")
                                    if m in sys.modules)}))
"""


def test_lm_calibration_and_laplace_import_neither_sympy_nor_pandas(tmp_path):
    ps, meas, eps, sig, th = fw.traced_at_truth(links_per_tx=6)
    ps.save(tmp_path / "paths.npz")
    np.savez(tmp_path / "problem.npz", meas=meas, eps=eps, sig=sig, th=th)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), RFTWIN_PROGRESS="0")
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["iterations"] >= 1 and all(np.isfinite(r["std"])) and (tmp_path / "convergence.png").is_file()
    assert r["modules"] == [], r

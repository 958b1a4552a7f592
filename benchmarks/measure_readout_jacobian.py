"""Peak memory and time of the material read-out Jacobian (``path_jacobian``'s dv/dtheta, dense [B, F, K, P]) of a
per-object model with K objects (or K objects in ``--groups`` material groups), each size in a fresh child process,
for this checkout and optionally another one.

Per-object models of city scenes have thousands of objects (``munich``: 2 367), and the Levenberg-Marquardt
Jacobian takes this read-out Jacobian every step. The child reports the growth of its peak RSS (VmHWM) over the
call and the call's time. Results: benchmarks/results/readout_jacobian.json.

Run: .venv/bin/python benchmarks/measure_readout_jacobian.py [--objects 9,500,2000] [--starts 4] [--groups G]
     [--compare OTHER/src]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "readout_jacobian.json"
CHILD = r"""
import json, sys, time, numpy as np, torch
from rftwin.calibrate.path_jacobian import _readout_jacobian
from rftwin.materials import PerObjectMaterials
from rftwin.materials.groups import GroupedMaterials
K, B, G = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
n = G if G else K
e, s = rng.uniform(2, 6, (B, n)), 10 ** rng.uniform(-3, -1, (B, n))
m = GroupedMaterials(e, s, [0.1] * K, np.arange(K) % G) if G else PerObjectMaterials(e, s, [0.1] * K)
names = [n for n, p in m.named_parameters() if p.requires_grad]
params = [p for p in m.parameters() if p.requires_grad]
theta = torch.cat([p.detach() for p in params], 1)
def kib(key):
    return int(next(x for x in open("/proc/self/status") if x.startswith(key)).split()[1])
before = kib("VmRSS")
t0 = time.perf_counter()
_, jac = _readout_jacobian(m, names, [p.shape[1] for p in params], theta, torch.tensor([3.5e9], dtype=torch.float64))
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_growth_mib": (kib("VmHWM") - before) / 1024,
                  "jacobian_mib": sum(j.numel() * j.element_size() for j in jac.values()) / 2**20}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objects", default="9,500,2000", help="object counts K, comma-separated")
    ap.add_argument("--starts", type=int, default=4)
    ap.add_argument("--groups", type=int, default=0, help="material groups the objects share (0: per object)")
    ap.add_argument("--compare", type=Path, default=None, help="another checkout's src folder")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    sides = ([("before", a.compare.resolve())] if a.compare else []) + [("now", ROOT / "src")]
    rows = []
    for k in (int(x) for x in a.objects.split(",")):
        for label, src in sides:
            env = dict(os.environ, PYTHONPATH=str(src), RFTWIN_PROGRESS="0")
            out = subprocess.run([sys.executable, "-c", CHILD, str(k), str(a.starts), str(a.groups)], env=env,
                                 capture_output=True, text=True, check=True)
            r = dict(json.loads(out.stdout.strip().splitlines()[-1]), objects=k, starts=a.starts, groups=a.groups,
                     side=label)
            rows.append(r)
            print(f"K {k:5d} {label:6s}: {r['seconds']:6.2f} s, peak +{r['peak_growth_mib']:7.0f} MiB "
                  f"(the Jacobian itself {r['jacobian_mib']:.0f} MiB)", flush=True)
    from rftwin.io import write_json  # noqa: PLC0415 - staged, then renamed

    write_json(a.out, {"command": " ".join(["benchmarks/measure_readout_jacobian.py", *sys.argv[1:]]),
                       "rows": rows})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

"""Ray fan-out of tracing: 2 local workers give the serial result; an unreachable cluster is a clear error."""
import numpy as np
import pytest
import torch

from rftwin.scene import load
from rftwin.trace import SolverSettings, trace
from rftwin.trace.fanout import FanoutError, fan_out_trace

S = SolverSettings(max_depth=2, samples_per_src=20_000, seed=9)


def test_two_local_ray_workers_equal_serial(tmp_path):
    twin = load("room")
    tx = np.array([[0.0, 0.0, 2.5], [-3.0, 3.0, 1.5], [2.0, 1.0, 2.0]])
    rx = np.array([[1.0, -3.0, 1.2], [-2.0, -1.0, 1.5], [3.5, 3.5, 1.0]])
    txl, rxl = np.repeat(tx, 3, 0), np.tile(rx, (3, 1))
    serial = trace(twin, txl, rxl, S, cache_dir=False, progress=False)
    n = fan_out_trace(twin, txl, rxl, S, cache_dir=tmp_path, workers=2)
    assert n == len(txl)
    shards = list(tmp_path.glob("*.shards/*.npz"))
    assert len(shards) >= 2  # written by the workers
    fanned = trace(twin, txl, rxl, S, cache_dir=tmp_path, progress=False)  # reads the workers' shards
    assert fanned.num_paths == serial.num_paths
    torch.testing.assert_close(fanned.link, serial.link)
    for lk in range(len(txl)):
        a = np.sort(fanned.a_ref[fanned.link == lk].abs().flatten().numpy())
        b = np.sort(serial.a_ref[serial.link == lk].abs().flatten().numpy())
        np.testing.assert_allclose(a, b, rtol=1e-5)
    assert fan_out_trace(twin, txl, rxl, S, cache_dir=tmp_path, workers=2) == 0  # all cached: nothing to do


def test_unreachable_ray_address_is_a_clear_error(tmp_path):
    twin = load("room")
    tx = np.array([[0.0, 0.0, 2.5]])
    rx = np.array([[1.0, -3.0, 1.2]])
    with pytest.raises(FanoutError, match=r"--ray-address '127.0.0.1:9': no Ray cluster reachable"):
        fan_out_trace(twin, tx, rx, S, cache_dir=tmp_path, address="127.0.0.1:9")
    with pytest.raises(FanoutError, match="expected host:port"):
        fan_out_trace(twin, tx, rx, S, cache_dir=tmp_path, address="nowhere")
    assert not any(tmp_path.iterdir())


def test_cli_predict_unreachable_ray_address_writes_nothing(tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner

    from rftwin.cli.main import app

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "pred.csv"
    res = CliRunner().invoke(app, ["predict", "room", str(root / "examples/links.csv"), "--out", str(out),
                                   "--max-depth", "1", "--samples-per-src", "10000", "--ray-address", "127.0.0.1:9"])
    assert res.exit_code == 2 and "--ray-address '127.0.0.1:9'" in res.output
    assert "Traceback" not in res.output and not out.exists()


def test_workers_trace_at_the_materials_argument(tmp_path):
    """The record travels to the workers as values: their cache key (which hashes the trace-time materials) is
    the driver's, their shards equal a serial trace at the record, and the driver's scene is unchanged."""
    from rftwin.scene.scene_materials import SceneMaterials

    twin = load("room")
    own = [(o.relative_permittivity, o.conductivity) for o in twin.objects]
    mats = SceneMaterials(eps_r=[1.5 * e for e, _ in own], sigma=[0.5 * s for _, s in own])
    tx = np.array([[0.0, 0.0, 2.5], [-3.0, 3.0, 1.5]])
    rx = np.array([[1.0, -3.0, 1.2], [3.5, 3.5, 1.0]])
    txl, rxl = np.repeat(tx, 2, 0), np.tile(rx, (2, 1))
    assert fan_out_trace(twin, txl, rxl, S, cache_dir=tmp_path, workers=2, materials=mats) == len(txl)
    assert [(o.relative_permittivity, o.conductivity) for o in twin.objects] == own
    shards = sorted(tmp_path.glob("*.shards/*.npz"))
    fanned = trace(twin, txl, rxl, S, cache_dir=tmp_path, progress=False, materials=mats)  # the workers' shards
    serial = trace(twin, txl, rxl, S, cache_dir=False, progress=False, materials=mats)
    assert len(shards) >= 2 and fanned.num_paths == serial.num_paths > 0
    for lk in range(len(txl)):
        a = np.sort(fanned.a_ref[fanned.link == lk].abs().flatten().numpy())
        b = np.sort(serial.a_ref[serial.link == lk].abs().flatten().numpy())
        np.testing.assert_allclose(a, b, rtol=1e-5)
    np.testing.assert_allclose([m["eps_r"] for m in fanned.meta["trace_materials"]], mats.eps_r, rtol=1e-6)
    assert fan_out_trace(twin, txl, rxl, S, cache_dir=tmp_path, workers=2, materials=mats) == 0  # cached
    assert [(o.relative_permittivity, o.conductivity) for o in twin.objects] == own

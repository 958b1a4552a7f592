"""``rftwin dataset``: export -> load equals ``rftwin predict``; resume; determinism; Ray; bad inputs."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from rftwin.cli.main import app
from rftwin.dataset import DatasetError, DatasetSpec, LinkDataset, export_dataset, plan_links
from rftwin.predict.predict import WidebandGrid, predict_channels
from rftwin.scene import load
from rftwin.trace import SolverSettings

S = SolverSettings(max_depth=2, samples_per_src=20_000)
TX = "0,0,2.5;-3,3,1.5"
RX = "random:10,-4.5:4.5,-4.5:4.5,0.5:2.5"
ALL = ("path_gain_db", "mean_delay_s", "delay_spread_s", "k_factor_db", "angular_spread_deg",
       "angular_spread_departure_deg", "num_paths", "aoa_azimuth_deg", "aoa_elevation_deg", "aod_azimuth_deg",
       "aod_elevation_deg", "cfr", "cir")
SOLVER = ["--max-depth", "2", "--samples-per-src", "20000"]


def spec(**kw) -> DatasetSpec:
    base = dict(tx=TX, rx=RX, seed=3, fields=ALL, num_subcarriers=16, bandwidth_hz=100e6, links_per_shard=7,
                settings=S)
    base.update(kw)
    return DatasetSpec(**base)


@pytest.fixture(scope="module")
def twin():
    return load("room")


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def flip(path: Path, offset: int, n: int = 4) -> None:
    """Damage ``n`` bytes of a file in place (every bit inverted)."""
    b = bytearray(path.read_bytes())
    b[offset:offset + n] = bytes(x ^ 0xFF for x in b[offset:offset + n])
    path.write_bytes(bytes(b))


def run(args):
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.output


def test_export_load_equals_predict(twin, tmp_path):
    sp = spec()
    res = export_dataset(twin, None, sp, tmp_path / "ds", progress=False)
    assert (res.num_links, res.num_shards, res.shards_written) == (20, 3, 3)
    ds = LinkDataset(tmp_path / "ds", dtype=torch.float64)
    assert len(ds) == 20 and ds[5]["cfr"].shape == (16,) and ds[5]["tx_pos"].shape == (3,)
    t = ds.tensors()
    tx, rx = t["tx_pos"].numpy(), t["rx_pos"].numpy()
    assert np.array_equal(t["link_id"].numpy(), np.arange(20))
    # the CLI `rftwin predict` on the same links gives the same scalar features
    links = pd.DataFrame({"link_id": [f"L{i}" for i in range(20)], "tx_x": tx[:, 0], "tx_y": tx[:, 1],
                          "tx_z": tx[:, 2], "rx_x": rx[:, 0], "rx_y": rx[:, 1], "rx_z": rx[:, 2],
                          "frequency_hz": 3.5e9})
    links.to_csv(tmp_path / "links.csv", index=False)
    code, out = run(["predict", "room", str(tmp_path / "links.csv"), "--out", str(tmp_path / "pred.csv"),
                     *SOLVER, "--seed", "3"])
    assert code == 0, out
    pred = pd.read_csv(tmp_path / "pred.csv")
    for c in ALL[:7]:
        np.testing.assert_allclose(t[c].numpy(), pred[c].to_numpy(), rtol=1e-6, atol=1e-15, err_msg=c)  # CSV round trip
    assert np.isfinite(t["path_gain_db"].numpy()).all() and (t["num_paths"].numpy() > 0).all()
    # CFR equals predict's wideband sidecar on the same grid (stored as complex64; predict traces all 20 links in
    # one Sionna call, the export 7 per shard: float32 path lengths differ by ~1e-6 m, carrier phases by ~1e-5)
    p = predict_channels(twin, None, tx, rx, np.full(20, 3.5e9), sp.solver(), progress=False,
                         link_ids=[str(i) for i in range(20)], wideband=WidebandGrid(100e6, 16, "cfr"))
    H = np.stack([p.wideband[str(i)].cfr for i in range(20)])
    np.testing.assert_allclose(t["cfr"].numpy(), H, rtol=0, atol=1e-4 * np.abs(H).max())
    # CIR taps carry the CFR's power (Parseval), angles are angles of the strongest path
    np.testing.assert_allclose((t["cir"].abs() ** 2).sum(-1).numpy(), (t["cfr"].abs() ** 2).mean(-1).numpy(),
                               rtol=1e-4)
    los = np.isfinite(t["k_factor_db"].numpy())
    d = rx - tx
    az = np.degrees(np.arctan2(-d[:, 1], -d[:, 0]))  # arrival direction points back towards the transmitter
    strong_los = los & (t["k_factor_db"].numpy() > 3)
    assert strong_los.any()
    np.testing.assert_allclose(t["aoa_azimuth_deg"].numpy()[strong_los], az[strong_los], atol=1e-3)
    schema = json.loads((tmp_path / "ds" / "schema.json").read_text())
    assert schema["spec"]["seed"] == 3 and schema["num_links"] == 20
    units = {f["name"]: f["unit"] for f in schema["fields"]}
    assert units["path_gain_db"] == "dB" and units["delay_spread_s"] == "s"


def test_resume_rewrites_only_missing_shard_and_same_seed_is_identical(twin, tmp_path):
    sp = spec(fields=("path_gain_db", "cfr"))
    a, b = tmp_path / "a", tmp_path / "b"
    export_dataset(twin, None, sp, a, progress=False)
    before = {p.name: sha(p) for p in a.glob("shard-*.parquet")}
    assert len(before) == 3
    # delete a shard and its manifest entry, damage another: only those two are rewritten, bytes identical
    (a / "shard-00001.parquet").unlink()
    man = json.loads((a / "manifest.json").read_text())
    del man["shards"]["shard-00001.parquet"]
    (a / "manifest.json").write_text(json.dumps(man))
    flip(a / "shard-00002.parquet", 40)
    with pytest.raises(DatasetError, match=r"shard-00001\.parquet: shard missing or unfinished"):
        LinkDataset(a)
    r = export_dataset(twin, None, sp, a, progress=False)
    assert (r.shards_written, r.shards_skipped) == (2, 1)
    assert {p.name: sha(p) for p in a.glob("shard-*.parquet")} == before
    # same seed, another folder: the same dataset; another seed: other random receivers
    export_dataset(twin, None, sp, b, progress=False)
    assert {p.name: sha(p) for p in b.glob("shard-*.parquet")} == before
    assert torch.equal(LinkDataset(a).tensors()["cfr"], LinkDataset(b).tensors()["cfr"])
    other = plan_links(twin, None, spec(seed=4))
    assert not np.allclose(other.rx, plan_links(twin, None, sp).rx)


def test_two_ray_workers_equal_serial(twin, tmp_path):
    sp = spec(fields=("path_gain_db", "delay_spread_s", "cfr"), links_per_shard=20)
    export_dataset(twin, None, sp, tmp_path / "serial", progress=False, cache_dir=False)
    r = export_dataset(twin, None, sp, tmp_path / "ray", progress=False, workers=2, cache_dir=tmp_path / "c")
    assert r.shards_written == 1 and any((tmp_path / "c").iterdir())  # traced into the shared cache
    s, f = LinkDataset(tmp_path / "serial", dtype=torch.float64).tensors(), \
        LinkDataset(tmp_path / "ray", dtype=torch.float64).tensors()
    np.testing.assert_allclose(f["path_gain_db"].numpy(), s["path_gain_db"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(f["delay_spread_s"].numpy(), s["delay_spread_s"].numpy(), rtol=1e-4)
    np.testing.assert_allclose(f["cfr"].numpy(), s["cfr"].numpy(), atol=1e-5 * s["cfr"].abs().max().item())


def test_cli_export_radio_map_and_resume_message(tmp_path):
    out = tmp_path / "ds"
    args = ["dataset", "room", "--tx", "0,0,2.5", "--rx", "grid:-4:4:3,-4:4:3,1.2", "--out", str(out),
            "--fields", "path_gain_db,aod_azimuth_deg", "--radio-map", "--radio-map-cell", "1.0", *SOLVER]
    code, msg = run(args)
    assert code == 0, msg
    assert "wrote 1 of 1 shards (9 links; 0 already finished)" in msg
    m = np.load(out / "radio_maps" / "tx-00000.npz")
    assert m["path_gain_db"].shape == (1, 10, 10) and np.isfinite(m["path_gain_db"]).any()
    code, msg = run(args)  # finished: nothing to do
    assert code == 0 and "wrote 0 of 1 shards (9 links; 1 already finished)" in msg


@pytest.mark.parametrize("args,needle", [
    (["--fields", "path_gain_db,gain"], "--fields: unknown field(s) gain; known: path_gain_db"),
    (["--rx", "grid:-4:4:0,-4:4:3,1.2"], "the x axis '-4:4:0' must be lo:hi:n with a whole n >= 1"),
    (["--rx", "random:5,-4:40,-4:4,1:2"], "the x range [-4, 40] m leaves the scene's bounds"),
    (["--rx", "grid:-4:4:3,-4:4:3"], "expected grid:X0:X1:NX,Y0:Y1:NY,Z[0:Z1:NZ] (three axes)"),
    (["--tx", "1,2"], "'1,2' is not a point X,Y,Z (m)"),
    (["--rx", "random:0,-4:4,-4:4,1:2"], "the count must be at least 1"),
    (["--links-per-shard", "0"], "--links-per-shard must be at least 1"),
])
def test_bad_options_are_clear_errors(tmp_path, args, needle):
    out = tmp_path / "ds"
    base = {"--tx": "0,0,2.5", "--rx": "grid:-4:4:3,-4:4:3,1.2"}
    for k in list(base):
        if k in args:
            del base[k]
    code, msg = run(["dataset", "room", *[x for kv in base.items() for x in kv], *args, "--out", str(out),
                     *SOLVER])
    assert code == 2 and needle in msg and "Traceback" not in msg, msg
    assert not out.exists()


def test_bad_position_files_name_file_row_column(tmp_path):
    f = tmp_path / "rx.csv"
    f.write_text("x,y,z\n1,1,1.5\n2,abc,1.5\n3,3,99\n")
    code, msg = run(["dataset", "room", "--tx", "0,0,2.5", "--rx", f"file:{f}", "--out", str(tmp_path / "o"),
                     *SOLVER])
    assert code == 2
    assert f"{f}, row 2 (line 3), column 'y': 'abc' is not a finite number (m)" in msg
    assert "row 3 (line 4), column 'z': 99 m is outside the scene's bounds" in msg
    g = tmp_path / "rx2.csv"
    g.write_text("x,y,height\n1,1,1.5\n")
    code, msg = run(["dataset", "room", "--tx", "0,0,2.5", "--rx", str(g), "--out", str(tmp_path / "o"), *SOLVER])
    assert code == 2 and "missing column(s) z; expected x,y,z (m), found x, y, height" in msg
    code, msg = run(["dataset", "room", "--tx", "0,0,2.5", "--rx", str(tmp_path / "none.csv"), "--out",
                     str(tmp_path / "o"), *SOLVER])
    assert code == 2 and "none.csv: no such position file" in msg
    assert not (tmp_path / "o").exists()


def test_refuses_other_spec_and_foreign_folders_and_bad_loads(twin, tmp_path):
    out = tmp_path / "ds"
    sp = spec(fields=("path_gain_db",), links_per_shard=10)
    export_dataset(twin, None, sp, out, progress=False)
    with pytest.raises(DatasetError, match=r"holds a dataset of a different spec \(differs in: spec.seed, "):
        export_dataset(twin, None, spec(fields=("path_gain_db",), links_per_shard=10, seed=9), out, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty and holds no rftwin dataset"):
        export_dataset(twin, None, sp, foreign, progress=False)
    with pytest.raises(DatasetError, match=r"unknown field\(s\) cfr; this dataset holds link_id"):
        LinkDataset(out, fields=["cfr"])
    flip(out / "shard-00001.parquet", 4, 8)
    with pytest.raises(DatasetError, match=r"shard-00001\.parquet: damaged shard \(SHA-256 differs"):
        LinkDataset(out)
    with pytest.raises(DatasetError, match=r"shard-00001\.parquet: cannot read the shard"):
        LinkDataset(out, verify=False)
    with pytest.raises(DatasetError, match="not an rftwin dataset"):
        LinkDataset(foreign)


def test_unreachable_ray_address_writes_nothing(tmp_path):
    out = tmp_path / "ds"
    code, msg = run(["dataset", "room", "--tx", "0,0,2.5", "--rx", "1,1,1.5", "--out", str(out), "--ray-address",
                     "127.0.0.1:9", *SOLVER])
    assert code == 2 and "--ray-address '127.0.0.1:9'" in msg and "Traceback" not in msg
    assert not out.exists()


def test_other_carrier_equals_predict_at_that_carrier(tmp_path):
    """The scene's ITU materials are taken at --frequency-hz, as `rftwin predict` takes them at the links'."""
    code, msg = run(["dataset", "room", "--tx", "0,0,2.5", "--rx", "grid:-4:4:2,-4:4:2,1.2", "--frequency-hz", "28e9",
                     "--out", str(tmp_path / "ds"), "--fields", "path_gain_db", *SOLVER])
    assert code == 0, msg
    t = LinkDataset(tmp_path / "ds", dtype=torch.float64).tensors()
    rx = t["rx_pos"].numpy()
    pd.DataFrame({"link_id": ["a", "b", "c", "d"], "tx_x": 0.0, "tx_y": 0.0, "tx_z": 2.5, "rx_x": rx[:, 0],
                  "rx_y": rx[:, 1], "rx_z": rx[:, 2], "frequency_hz": 28e9}).to_csv(tmp_path / "l.csv", index=False)
    code, msg = run(["predict", "room", str(tmp_path / "l.csv"), "--out", str(tmp_path / "p.csv"), *SOLVER])
    assert code == 0, msg
    g = pd.read_csv(tmp_path / "p.csv")["path_gain_db"].to_numpy()
    np.testing.assert_allclose(t["path_gain_db"].numpy(), g, rtol=1e-6)
    assert (t["frequency_hz"] == 28e9).all()


def test_killed_export_resumes_to_the_uninterrupted_dataset(tmp_path):
    """SIGKILL a CLI export after its first shards; the rerun writes only the rest, byte-identical shards."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["dataset", "room", "--tx", "0,0,2.5;-3,3,1.5", "--rx", "random:12,-4.5:4.5,-4.5:4.5,0.5:2.5",
            "--links-per-shard", "1", "--fields", "path_gain_db,cfr", "--subcarriers", "8", *SOLVER]
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    p = subprocess.Popen([sys.executable, "-c", "from rftwin.cli.main import app; app()", *args, "--out", str(out)],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    man = out / "manifest.json"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and p.poll() is None:
        try:
            done = len(json.loads(man.read_text())["shards"])
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= 2:
            break
        time.sleep(0.05)
    assert p.poll() is None, "the export finished before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    finished = len(json.loads(man.read_text())["shards"])
    assert 2 <= finished < 24
    with pytest.raises(DatasetError, match="shard missing or unfinished"):
        LinkDataset(out)
    code, msg = run([*args, "--out", str(out)])
    assert code == 0 and f"wrote {24 - finished} of 24 shards (24 links; {finished} already finished)" in msg, msg
    code, msg = run([*args, "--out", str(tmp_path / "whole")])
    assert code == 0, msg
    whole = {p.name: sha(p) for p in (tmp_path / "whole").glob("shard-*")}
    assert {p.name: sha(p) for p in out.glob("shard-*")} == whole and len(whole) == 24
    assert not list(out.glob(".*"))  # a temporary of the killed run is removed by the rerun

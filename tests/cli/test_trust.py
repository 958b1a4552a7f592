"""Issue 13: nothing wrong is silent, nothing we read runs code, files come from where they are named.

One test (or a few) per numbered item of the issue; the malformed-input corpus is in test_bad_inputs.py.
"""
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rftwin.calibrate.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rftwin.cli.main import app
from rftwin.data import MeasurementError, read_measurements
from rftwin.scene import load
from rftwin.scene.export import export_scene
from rftwin.scene.xml_paths import SceneFileError

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
HEADER = "link_id,tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz,path_gain_db\n"


@pytest.fixture(scope="module")
def floor_wall_xml(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fw")
    export_scene(load("floor_wall"), d / "twin")
    return d / "twin" / "scene.xml"


# ------------------------------------------------------------------------------------- 1 + 12: checkpoints
class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_tampered_pickle_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    ck = tmp_path / "round0.pt"
    ck.write_bytes(pickle.dumps({"fingerprint": _Evil(marker)}))
    with pytest.raises(CheckpointError, match=str(ck)):
        load_checkpoint(ck)
    assert not marker.exists()
    torch.save({"fingerprint": "x", "model": {}}, ck)  # a pickle-based torch checkpoint is refused as well
    with pytest.raises(CheckpointError, match="cannot be read as an rftwin checkpoint"):
        load_checkpoint(ck)


def test_checkpoint_roundtrip_and_truncation(tmp_path):
    state = {"fingerprint": "abc", "iteration": 3, "done": False, "prev_loss": None, "mu": torch.rand(4),
             "model": {"u": torch.randn(4, 2, dtype=torch.float64)},
             "opt": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
                     "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]},
             "history": [{"iteration": 0, "loss": float("nan"), "eps_r": [1.0, 2.0]}]}
    ck = tmp_path / "c.pt"
    save_checkpoint(ck, state)
    back = load_checkpoint(ck)
    assert back["opt"]["state"][0]["step"].item() == 3.0 and back["opt"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(back["model"]["u"], state["model"]["u"]) and back["prev_loss"] is None
    assert np.isnan(back["history"][0]["loss"]) and back["iteration"] == 3
    data = ck.read_bytes()
    for cut in (0, 7, len(data) // 2, len(data) - 1):
        ck.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=f"checkpoint {ck}"):
            load_checkpoint(ck)


def test_sigint_during_checkpoint_writes_leaves_no_temporary(tmp_path):
    """A real SIGINT while checkpoints of ~40 MB are being written: the process stops, the last complete
    checkpoint is readable and no temporary (0-byte or partial) file is left."""
    script = textwrap.dedent(f"""
        import sys, torch
        from rftwin.calibrate.checkpoint import save_checkpoint
        big = torch.zeros(5_000_000, dtype=torch.float64)
        i = 0
        while True:
            save_checkpoint({str(tmp_path / 'c.pt')!r}, {{"i": i, "x": big}})
            i += 1
            if i == 2:
                print("ready", flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert p.stdout.readline().strip() == b"ready"
    time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=60) != 0
    assert sorted(x.name for x in tmp_path.iterdir()) == ["c.pt"]
    assert load_checkpoint(tmp_path / "c.pt")["i"] >= 1


def test_sigint_message_from_the_cli():
    """Ctrl-C on a running command says what happened (exit 130) instead of exiting silently."""
    script = textwrap.dedent("""
        import os, signal, threading
        from rftwin.cli.main import app
        threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        app(["doctor", "--json"], standalone_mode=True)
    """)
    # doctor is too quick to interrupt; keep the process busy inside a command through a sleeping links file read
    script = script.replace('app(["doctor", "--json"], standalone_mode=True)',
                            'import rftwin.cli.common as c, time\n'
                            'import typer\n'
                            '@app.command("sleep-test")\n'
                            'def _s():\n    time.sleep(30)\n'
                            'app(["sleep-test"], standalone_mode=True)')
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env, timeout=120)
    assert r.returncode == 130
    assert b"interrupted (SIGINT)" in r.stderr and b"Traceback" not in r.stderr


def test_plain_progress_lines_when_not_a_terminal(monkeypatch, capsys):
    from rftwin.progress import track

    monkeypatch.setenv("RFTWIN_PROGRESS", "1")
    assert list(track(range(20), "working", enabled=True)) == list(range(20))
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "working: 0/20" and err[-1].startswith("working: done, 20/20")
    assert any(line.startswith("working: 10/20") for line in err)
    for i in track(range(1000), "fitting", enabled=True):  # a loop left early (an optimiser that converged)
        if i == 6:
            break
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "fitting: 0/1000" and err[-1].startswith("fitting: stopped, 7/1000 in ")


# -------------------------------------------------------------------------------------------- 2: meshes
def _mesh_digest_in(cwd: Path, scene: str) -> str:
    """SHA-256 of all object vertices of ``scene`` loaded by a fresh process started in ``cwd`` (Mitsuba's file
    resolver takes the working folder at import, so the process must start there)."""
    script = ("import hashlib, sys; import rftwin; from rftwin.scene import load\n"
              "h = hashlib.sha256()\n"
              "for v, f in load(sys.argv[1]).meshes(): h.update(v.tobytes())\n"
              "print(h.hexdigest())")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    r = subprocess.run([sys.executable, "-c", script, scene], cwd=cwd, capture_output=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    return r.stdout.decode().strip().splitlines()[-1]


def test_meshes_resolve_against_the_scene_folder_not_the_working_folder(floor_wall_xml, tmp_path):
    """Run from a folder with its own meshes/floor.ply (another mesh): the scene's own meshes are used, for an
    exported scene and for a built-in one (the issue: 6 dB wrong gains)."""
    twin_dir = floor_wall_xml.parent
    clean = tmp_path / "clean"
    clean.mkdir()
    other = tmp_path / "elsewhere"
    (other / "meshes").mkdir(parents=True)
    shutil.copy(twin_dir / "meshes" / "wall.ply", other / "meshes" / "floor.ply")  # a different floor
    for scene in (str(floor_wall_xml), "floor_wall"):
        assert _mesh_digest_in(other, scene) == _mesh_digest_in(clean, scene), scene
    # a truncated mesh in the scene folder is an error, not silently replaced by the working folder's
    bad = tmp_path / "bad"
    shutil.copytree(twin_dir, bad)
    (bad / "meshes" / "floor.ply").write_bytes(b"")
    with pytest.raises(SceneFileError, match=r"filename 'meshes/floor.ply': empty file"):
        load(bad / "scene.xml")


@pytest.mark.parametrize("target", ["../../outside.ply", "/etc/passwd", "ABS"])
def test_scene_files_outside_its_folder_need_an_opt_in(floor_wall_xml, tmp_path, target):
    secret = tmp_path / "outside.ply"
    secret.write_text("SECRET-CONTENT\n")
    scene_dir = tmp_path / "a" / "b"
    shutil.copytree(floor_wall_xml.parent, scene_dir)
    target = str(secret) if target == "ABS" else target
    xml = scene_dir / "scene.xml"
    xml.write_text(xml.read_text().replace("meshes/floor.ply", target))
    r = runner.invoke(app, ["predict", str(xml), str(ROOT / "examples" / "links.csv"), "--out",
                            str(tmp_path / "p.csv")])
    assert r.exit_code == 2 and "points outside the scene's folder" in r.output
    assert "SECRET" not in r.output and "root:" not in r.output and not (tmp_path / "p.csv").exists()
    if target != "/etc/passwd":  # with the opt-in the file is read, and its bad content is never echoed
        with pytest.raises(ValueError) as ei:
            load(xml, allow_external=True)
        assert "SECRET" not in str(ei.value)


# ---------------------------------------------------------------------------------- 4 + 13: measurements
@pytest.mark.parametrize("gain,match", [("12.5", "above 0 dB"), ("-480", "below -250 dB")])
def test_impossible_path_gain(tmp_path, gain, match):
    f = tmp_path / "m.csv"
    f.write_text(HEADER + f"A,0,0,2,1,1,1.5,3.5e9,-50\nB,0,0,2,1,-1,1.5,3.5e9,{gain}\n")
    with pytest.raises(MeasurementError, match=rf"m.csv, row 2 \(line 3\), column 'path_gain_db': .*{match}"):
        read_measurements(f)


def test_rss_implies_impossible_path_gain(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz,rss_dbm,tx_power_dbm\n0,0,2,1,1,1.5,3.5e9,500,20\n")
    with pytest.raises(MeasurementError, match=r"row 1 \(line 2\), columns 'rss_dbm', 'tx_power_dbm'.*480 dB"):
        read_measurements(f)


def test_all_problems_listed_at_once(tmp_path):
    """Parse errors, frequencies and positions in one message (the docs promise one pass)."""
    twin = load("floor_wall")
    f = tmp_path / "m.csv"
    f.write_text(HEADER + "A,0,0,2,1,1,1.5,abc,-50\nB,0,0,2,1,1,1.5,3.5,-50\nC,0,0,2,99,1,1.5,3.5e9,-50\n")
    with pytest.raises(MeasurementError) as ei:
        read_measurements(f, twin)
    msg = str(ei.value)
    assert "row 1 (line 2), column 'frequency_hz': expected a number" in msg
    assert "row 2 (line 3), column 'frequency_hz': 3.5 Hz is below 1 MHz" in msg
    assert "row 3 (line 4), column 'rx_x': 99 m is outside the scene's bounding box" in msg


# ------------------------------------------------------------------------------------------- 7: markup
@pytest.mark.parametrize("lid", ["[/red]", "[bold]X"])
def test_user_text_is_not_rich_markup(tmp_path, lid):
    f = tmp_path / "links.csv"
    f.write_text(HEADER.replace(",path_gain_db", "") + f"{lid},0,0,2,1,1,1.5,3.5e9\n{lid},0,0,2,1,-1,1.5,3.5e9\n")
    r = runner.invoke(app, ["predict", "floor_wall", str(f), "--out", str(tmp_path / "o.csv")])
    assert r.exit_code == 2 and (r.exception is None or isinstance(r.exception, SystemExit))
    assert f"duplicate link_id '{lid}'" in r.output and "Traceback" not in r.output


# ----------------------------------------------------------------------------------- 3: materials.json
@pytest.fixture(scope="module")
def twin_dir(tmp_path_factory) -> Path:
    import json

    from rftwin.twin_io import materials_document

    d = tmp_path_factory.mktemp("twin") / "twin"
    tw = load("floor_wall")
    export_scene(tw, d)
    doc = materials_document(tw, np.array([o.relative_permittivity for o in tw.objects]),
                             np.array([o.conductivity for o in tw.objects]), 3.5e9)
    (d / "materials.json").write_text(json.dumps(doc))
    return d


def _links_file(tmp_path: Path) -> Path:
    f = tmp_path / "links.csv"
    f.write_text("link_id,tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz\nA,0.5,0,1.5,1.5,1,1.2,3.5e9\n")
    return f


def _edited_twin(twin_dir: Path, tmp_path: Path, edit) -> Path:
    import json

    d = tmp_path / "edited"
    shutil.copytree(twin_dir, d)
    doc = json.loads((d / "materials.json").read_text())
    edit(doc)
    (d / "materials.json").write_text(json.dumps(doc))
    return d


def _set(obj, key, value):
    def f(doc):
        doc["objects"][obj][key] = value
    return f


def _drop(obj, key):
    def f(doc):
        del doc["objects"][obj][key]
    return f


@pytest.mark.parametrize("edit,match", [
    (_set("wall", "relative_permittivity", -5), r"object 'wall', key 'relative_permittivity': -5 is outside"),
    (_set("wall", "conductivity", -1), r"object 'wall', key 'conductivity': -1 S/m is outside"),
    (_set("floor", "conductivity", float("nan")), r"object 'floor', key 'conductivity': expected a finite number"),
    (_set("floor", "conductivity", "0.1"), r"object 'floor', key 'conductivity': expected a finite number"),
    (_drop("floor", "relative_permittivity"), r"object 'floor', key 'relative_permittivity': missing"),
    (_set("floor", "label", "unobtainium"), r"object 'floor', key 'label': 'unobtainium' is not an ITU"),
    (lambda d: d["objects"].update(ghost={"relative_permittivity": 2, "conductivity": 0}),
     r"object 'ghost': not in the scene"),
    (lambda d: d["objects"]["floor"].update(a=1.0, b=0.0, c=0.1, d=float("nan")),
     r"object 'floor', key 'd': expected a finite number"),
    (lambda d: d["objects"]["floor"].update(a=1.0, b=0.0), r"object 'floor': power-law keys a, b without c, d"),
], ids=["eps-negative", "sigma-negative", "sigma-nan", "sigma-string", "missing-key", "unknown-label",
        "unknown-object", "power-law-nan", "power-law-partial"])
def test_twin_materials_are_validated_before_tracing(twin_dir, tmp_path, edit, match):
    d = _edited_twin(twin_dir, tmp_path, edit)
    out = tmp_path / "p.csv"
    r = runner.invoke(app, ["predict", str(d), str(_links_file(tmp_path)), "--out", str(out),
                            "--max-depth", "1", "--samples-per-src", "1000"])
    assert r.exit_code == 2 and "Traceback" not in r.output and not out.exists()
    assert str(d / "materials.json") in r.output
    import re

    assert re.search(match, r.output), r.output


def test_valid_twin_predicts_finite_gains(twin_dir, tmp_path):
    out = tmp_path / "p.csv"
    r = runner.invoke(app, ["predict", str(twin_dir), str(_links_file(tmp_path)), "--out", str(out),
                            "--max-depth", "1", "--samples-per-src", "10000"])
    assert r.exit_code == 0, r.output
    import pandas as pd

    assert np.isfinite(pd.read_csv(out)["path_gain_db"]).all()


# --------------------------------------------------------------------------------------- 5: destinations
def test_output_destinations_are_checked_before_any_work(tmp_path):
    links = _links_file(tmp_path)
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [
        (["predict", "floor_wall", str(links), "--out", str(tmp_path / "adir")], "is a folder; expected a file"),
        (["predict", "floor_wall", str(links), "--out", str(tmp_path / "afile" / "x.csv")], "is a file, not a folder"),
        (["calibrate", "floor_wall", str(links), "--out", str(tmp_path / "afile")], "is a file; expected a folder"),
        (["radiomap", "floor_wall", "--tx", "0 0 1", "--out", str(tmp_path / "afile")], "is a file; expected a"),
    ]
    for args, match in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and match in r.output, (args, r.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile", "links.csv"]


def test_calibrate_refuses_an_unrelated_non_empty_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "materials.json").write_text('{"precious": true}')
    meas = tmp_path / "m.csv"
    meas.write_text(HEADER + "A,0.5,0,1.5,1.5,1,1.2,3.5e9,-50\n")
    r = runner.invoke(app, ["calibrate", "floor_wall", str(meas), "--out", str(mine)])
    assert r.exit_code == 2 and "is not empty (materials.json)" in r.output
    assert (mine / "materials.json").read_text() == '{"precious": true}'


def test_staged_dir_writes_all_or_nothing(tmp_path):
    from rftwin.cli.outputs import staged_dir

    out = tmp_path / "o"
    with pytest.raises(RuntimeError), staged_dir(out) as st:
        (st / "a.txt").write_text("1")
        raise RuntimeError("step 2 failed")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with staged_dir(out) as st:
        (st / "a.txt").write_text("1")
        (st / "sub").mkdir()
    with staged_dir(out) as st:  # a re-run replaces files and folders of the same name
        (st / "a.txt").write_text("2")
        (st / "sub").mkdir()
        (st / "sub" / "b").write_text("3")
    assert (out / "a.txt").read_text() == "2" and (out / "sub" / "b").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


# ------------------------------------------------------------------------------ 8: wideband link ids
def test_wideband_link_id_with_slash_fails_before_tracing(tmp_path):
    f = tmp_path / "links.csv"
    f.write_text("link_id,tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz\na/b,0.5,0,1.5,1.5,1,1.2,3.5e9\n")
    out, wb = tmp_path / "p.csv", tmp_path / "w.h5"
    r = runner.invoke(app, ["predict", "floor_wall", str(f), "--out", str(out), "--wideband", str(wb)])
    assert r.exit_code == 2 and "links.csv, row 1, column 'link_id': link_id 'a/b' cannot name" in r.output
    assert not out.exists() and not wb.exists()


# ------------------------------------------------------------------------------------------ 6: path cache
def test_path_cache_entries_carry_their_key_and_a_checksum(tmp_path):
    from rftwin.physics.channel import path_gain
    from rftwin.trace import SolverSettings, trace
    from rftwin.trace.cache import CacheError
    from rftwin.trace.tracer import cache_key

    twin = load("floor_wall")
    S = SolverSettings(max_depth=1, samples_per_src=10_000)
    tx1, rx1 = np.array([[0.5, 0.0, 1.5]]), np.array([[1.5, 1.0, 1.2]])
    tx2, rx2 = np.array([[-1.0, 0.5, 2.0]]), np.array([[1.0, -1.0, 0.5]])

    def gain_db(ps):
        return 10 * np.log10(path_gain(ps.a_ref[None, None], ps.link, ps.num_links)[0, 0].numpy())

    cache = tmp_path / "cache"
    g1 = gain_db(trace(twin, tx1, rx1, S, cache_dir=cache))
    g2 = gain_db(trace(twin, tx2, rx2, S, cache_dir=cache))
    assert abs(g1 - g2).max() > 1.0
    from rftwin.trace.tracer import AntennaSpec

    e1 = cache / f"{cache_key(twin, tx1, rx1, S, AntennaSpec(), AntennaSpec())}.npz"
    e2 = cache / f"{cache_key(twin, tx2, rx2, S, AntennaSpec(), AntennaSpec())}.npz"
    assert e1.is_file() and e2.is_file()
    # an entry swapped for another trace is detected by its key and traced afresh
    shutil.copy(e2, e1)
    with pytest.warns(RuntimeWarning, match="holds another trace"):
        np.testing.assert_allclose(gain_db(trace(twin, tx1, rx1, S, cache_dir=cache)), g1, atol=1e-6)
    # an altered array (checksum left as it was) is detected
    with np.load(e1, allow_pickle=False) as z:
        arrays = {n: z[n] for n in z.files}
    arrays["length_m"] = arrays["length_m"] * 1.1
    np.savez(e1, **arrays)
    with pytest.warns(RuntimeWarning, match="checksum mismatch"):
        np.testing.assert_allclose(gain_db(trace(twin, tx1, rx1, S, cache_dir=cache)), g1, atol=1e-6)
    # a truncated entry, and a folder in an entry's place
    e1.write_bytes(e1.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="cannot be read as a PathSet"):
        trace(twin, tx1, rx1, S, cache_dir=cache)
    e1.unlink()
    e1.mkdir()
    with pytest.warns(RuntimeWarning, match="is not a regular file"):
        np.testing.assert_allclose(gain_db(trace(twin, tx1, rx1, S, cache_dir=cache)), g1, atol=1e-6)
    # a cache location that is a file: a clear error before tracing
    (tmp_path / "cfile").write_text("x")
    with pytest.raises(CacheError, match="is a file; expected a folder"):
        trace(twin, tx1, rx1, S, cache_dir=tmp_path / "cfile")


def test_cli_refuses_a_cache_that_is_a_file_up_front(tmp_path, monkeypatch):
    (tmp_path / "cfile").write_text("x")
    monkeypatch.setenv("RFTWIN_CACHE", str(tmp_path / "cfile"))
    r = runner.invoke(app, ["predict", "floor_wall", str(_links_file(tmp_path)), "--out", str(tmp_path / "p.csv")])
    assert r.exit_code == 2 and f"path cache {tmp_path / 'cfile'} (set by $RFTWIN_CACHE): is a file" in r.output
    assert not (tmp_path / "p.csv").exists()


# ------------------------------------------------------------------------- 10 + 11: calibrate options
def _meas_file(tmp_path: Path) -> Path:
    f = tmp_path / "m.csv"
    f.write_text(HEADER + "A,0.5,0,1.5,1.5,1,1.2,3.5e9,-48\nB,0.5,0,1.5,-1.5,1,1.0,3.5e9,-52\n"
                 "C,0.5,0,1.5,1.0,-1.5,0.5,3.5e9,-50\n")
    return f


def test_wideband_without_a_cfr_term_is_an_error_like_mpcs(tmp_path):
    r = runner.invoke(app, ["calibrate", "floor_wall", str(_meas_file(tmp_path)), "--wideband",
                            str(ROOT / "examples" / "wideband_v2.h5"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "has no cfr term" in r.output and not (tmp_path / "o").exists()
    r = runner.invoke(app, ["calibrate", "floor_wall", str(_meas_file(tmp_path)), "--terms", "path_gain,cfr:nmse:1",
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "the cfr term needs a wideband sidecar" in r.output


def test_bounded_random_init_stays_in_the_label_box(tmp_path):
    import json

    from rftwin.materials.itu import itu_eps_sigma

    twin = load("floor_wall")
    out = tmp_path / "o"
    r = runner.invoke(app, ["calibrate", "floor_wall", str(_meas_file(tmp_path)), "--out", str(out),
                            "--init", "random", "--bounded", "--prior-spread", "0.2", "--starts", "3", "--refine",
                            "2", "--retrace", "0", "--sweeps", "0", "--max-iter", "10", "--max-depth", "1",
                            "--samples-per-src", "10000"])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "materials.json").read_text())
    for o in twin.objects:
        e0, s0 = itu_eps_sigma(o.label, 3.5e9)
        rec = doc["objects"][o.name]
        assert e0 * 0.8 - 1e-9 <= rec["relative_permittivity"] <= e0 * 1.2 + 1e-9, (o.name, rec, e0)
        assert s0 * 0.8 - 1e-12 <= rec["conductivity"] <= s0 * 1.2 + 1e-12, (o.name, rec, s0)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.partial")]


# ------------------------------------------------------------------- 9: transmitter in the radio-map plane
def test_radiomap_with_the_transmitter_in_the_plane_matches_predict(tmp_path):
    """Sionna's RadioMapSolver scores a ray where it crosses the plane: a transmitter in the plane gets no LoS
    term (the issue: ~-60 dB flat near it). rftwin adds the LoS term exactly; the map then agrees with point
    predictions at the cell centres, and the printed coverage is the NPZ's."""
    import re

    from rftwin.predict import predict_links
    from rftwin.scene import room
    from rftwin.trace import SolverSettings

    out = tmp_path / "rmap"
    r = runner.invoke(app, ["radiomap", "room", "--tx", "-1 0 1.5", "--cell", "0.25", "--max-depth", "2",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    z = np.load(out / "radiomap.npz")
    pg, cc = z["path_gain_db"][0], z["cell_centers_m"]
    tx = np.array([-1.0, 0.0, 1.5])
    d = np.linalg.norm(cc - tx, axis=-1)
    cells = [np.unravel_index(np.argmin(np.abs(d - x)), d.shape) for x in (0.66, 3.1, 4.8)]
    pts = np.array([cc[c] for c in cells])
    pred = predict_links(room(3.5e9), None, np.tile(tx, (3, 1)), pts, np.full(3, 3.5e9),
                         SolverSettings(max_depth=2, samples_per_src=100_000), progress=False)["path_gain_db"]
    got = np.array([pg[c] for c in cells])
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, pred.to_numpy(), atol=2.0)  # was -59.7 / -67.3 / NaN vs -39.4 / -52.8 / -56
    m = re.search(r"(\d+) of (\d+) cells \(([\d.]+) %\) with a value", " ".join(r.output.split()))
    assert m and int(m.group(1)) == int(np.isfinite(pg).sum()) and int(m.group(2)) == pg.size

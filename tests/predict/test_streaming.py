"""Prediction streams over PathSet shards: peak memory does not grow with the link count; streamed = whole."""
import threading

import numpy as np
import psutil
import pytest

from rftwin.predict.predict import predict_channels
from rftwin.scene import load
from rftwin.trace import SolverSettings
from rftwin.trace import budget as B

S = SolverSettings(max_depth=2, samples_per_src=10_000, seed=5)


def _links(n: int, seed: int):
    rng = np.random.default_rng(seed)
    rx = np.c_[rng.uniform(-4.5, 4.5, (n, 2)), rng.uniform(0.5, 2.5, n)]
    tx = np.repeat([[0.0, 0.0, 2.5]], n, 0)
    return tx, rx


class PeakRSS:
    """Peak resident memory above the level at entry, polled every 2 ms from a thread of this process."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.start = self.proc.memory_info().rss
        self.peak = self.start
        self.stop = False
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self.stop_event_wait()

    def stop_event_wait(self):
        threading.Event().wait(0.002)

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.start


def test_predict_peak_memory_flat_when_links_double():
    twin = load("room")
    pair = B.CallSizer(0, S.max_depth * S.samples_per_src, 0).pair_cost
    budget = B.current_rss() + int(100 * pair)  # 64 pairs per solver call
    f = None
    tx, rx = _links(16, 0)
    predict_channels(twin, None, tx, rx, np.full(16, 3.5e9), S, progress=False, memory_budget=budget)  # compile
    growth = {}
    for n in (400, 800):
        tx, rx = _links(n, n)
        f = np.full(n, 3.5e9)
        with PeakRSS() as m:
            pred = predict_channels(twin, None, tx, rx, f, S, progress=False,
                                    memory_budget=B.current_rss() + int(100 * pair))
        assert pred.pathset is None and pred.table["path_gain_db"].notna().mean() > 0.9
        growth[n] = m.growth
    # a PathSet of all links would take ~0.4 MB per link here (measured: 0.75 MB per link incl. the solver)
    assert growth[800] <= 1.3 * growth[400] + 40 * 2**20, growth


def test_streamed_prediction_equals_whole_pathset_prediction():
    twin = load("room")
    tx, rx = _links(40, 1)
    f = np.r_[np.full(20, 3.5e9), np.full(20, 5.0e9)]
    pair = B.CallSizer(0, S.max_depth * S.samples_per_src, 0).pair_cost
    streamed = predict_channels(twin, None, tx, rx, f, S, progress=False, cache_dir=False,
                                memory_budget=B.current_rss() + int(12 * pair))  # 8 pairs per call
    whole = predict_channels(twin, None, tx, rx, f, S, progress=False, cache_dir=False, keep_pathset=True,
                             memory_budget=1 << 40)
    assert streamed.pathset is None and whole.pathset is not None
    for c in whole.table.columns:
        np.testing.assert_allclose(streamed.table[c].to_numpy(), whole.table[c].to_numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=c)
    np.testing.assert_array_equal(streamed.link_los, whole.link_los)


@pytest.mark.parametrize("budget", ["1KiB"])
def test_cli_predict_budget_too_small_writes_nothing(tmp_path, budget):
    from pathlib import Path

    from typer.testing import CliRunner

    from rftwin.cli.main import app

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "pred.csv"
    res = CliRunner().invoke(app, ["predict", "room", str(root / "examples/links.csv"), "--out", str(out),
                                   "--max-depth", "2", "--samples-per-src", "10000", "--memory-budget", budget])
    assert res.exit_code == 2 and "too small" in res.output and "give at least" in res.output
    assert "Traceback" not in res.output and not out.exists()
    res = CliRunner().invoke(app, ["predict", "room", str(root / "examples/links.csv"), "--out", str(out),
                                   "--memory-budget", "lots"])
    assert res.exit_code == 2 and "--memory-budget" in res.output and not out.exists()


def test_cli_predict_device_cuda_without_gpu_is_refused(tmp_path):
    from pathlib import Path

    import torch
    from typer.testing import CliRunner

    from rftwin.cli.main import app

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda is valid here")
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "pred.csv"
    res = CliRunner().invoke(app, ["predict", "room", str(root / "examples/links.csv"), "--out", str(out),
                                   "--device", "cuda"])
    assert res.exit_code == 2 and "--device cuda" in res.output and "no CUDA GPU" in res.output
    assert "Traceback" not in res.output and not out.exists()
    res = CliRunner().invoke(app, ["predict", "room", str(root / "examples/links.csv"), "--out", str(out),
                                   "--device", "auto", "--max-depth", "1", "--samples-per-src", "10000"])
    assert res.exit_code == 0, res.output
    assert out.exists()


def test_streamed_wideband_prediction_equals_whole_pathset_prediction():
    """CFR and taps of every row, computed shard by shard (8 pairs per solver call), equal those of the whole
    PathSet; rows keep their order and ids."""
    from rftwin.predict.predict import WidebandGrid

    twin = load("room")
    tx, rx = _links(24, 2)
    f = np.r_[np.full(12, 3.5e9), np.full(12, 5.0e9)]
    ids = [f"row{i:02d}" for i in range(24)][::-1]
    grid = WidebandGrid(bandwidth_hz=100e6, num_subcarriers=32, kind="both")
    pair = B.CallSizer(0, S.max_depth * S.samples_per_src, 0).pair_cost
    streamed = predict_channels(twin, None, tx, rx, f, S, progress=False, cache_dir=False, link_ids=ids,
                                wideband=grid, memory_budget=B.current_rss() + int(12 * pair))
    whole = predict_channels(twin, None, tx, rx, f, S, progress=False, cache_dir=False, link_ids=ids,
                             wideband=grid, keep_pathset=True, memory_budget=1 << 40)
    assert streamed.pathset is None and whole.pathset is not None
    assert streamed.wideband.link_ids == whole.wideband.link_ids == ids
    for i in ids:
        a, b = streamed.wideband[i], whole.wideband[i]
        assert a.carrier_hz == b.carrier_hz
        np.testing.assert_allclose(a.cfr, b.cfr, rtol=1e-6, atol=1e-12, err_msg=i)
        np.testing.assert_allclose(np.sort(a.delay_s), np.sort(b.delay_s), rtol=1e-9, err_msg=i)
    assert np.abs(whole.wideband.cfr_matrix(ids)).max() > 0
    for c in ("path_gain_cfr_db", "mean_delay_cfr_s", "delay_spread_cfr_s", "path_gain_db"):
        np.testing.assert_allclose(streamed.table[c].to_numpy(), whole.table[c].to_numpy(), rtol=1e-5, atol=1e-9,
                                   err_msg=c)

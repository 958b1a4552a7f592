"""Fan tracing of many transmitters out over Ray workers that share the content-addressed cache.

The links are split by transmitter into tasks; every task loads the scene in its worker (by its reference: a
built-in name or an absolute XML path), traces its links at the driver's trace-time materials (passed as
values, applied only while tracing) into the shard folder of the whole link list's cache entry
(:func:`rftwin.trace.tracer.trace_into_cache`) and returns only a count. The driver then reads the finished
shards with :func:`rftwin.trace.tracer.iter_trace` / :func:`~rftwin.trace.tracer.trace`, so the result is the
serial code path's, shard for shard.

Without an address a local Ray instance with ``workers`` CPUs is started (and shut down afterwards); with
``address`` (``host:port``, ``ray://host:port`` or ``auto``) the cluster must see the same cache folder and scene
files under the same paths.
"""
from __future__ import annotations

import os
import socket
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from rftwin.runtime import default_cache_dir
from rftwin.scene.load import TwinScene
from rftwin.scene.scene_materials import SceneMaterials, as_scene_materials, resolve_materials
from rftwin.trace.budget import default_budget
from rftwin.trace.dedup_table import policy as table_policy
from rftwin.trace.tracer import AntennaSpec, SolverSettings, _prepare


class FanoutError(RuntimeError):
    """Ray could not be started or reached (message names the option)."""


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    if address == "auto":
        return
    u = urlparse(address if "://" in address else f"tcp://{address}")
    if not u.hostname or not u.port:
        raise FanoutError(f"--ray-address '{address}': expected host:port, ray://host:port or auto")
    try:
        with socket.create_connection((u.hostname, u.port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise FanoutError(f"--ray-address '{address}': no Ray cluster reachable there ({exc})") from None


def _start_ray(address: str | None, workers: int):
    """(ray module, whether this call started it)."""
    try:
        import ray  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - install problem
        raise FanoutError("Ray is not installed: pip install ray==2.60.0 (see pyproject.toml)") from exc
    if ray.is_initialized():
        return ray, False
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 - any connection failure becomes a clear error
            raise FanoutError(f"--ray-address '{address}': cannot connect to the Ray cluster: {exc}") from None
        return ray, True
    import rftwin  # noqa: PLC0415

    src = str(Path(rftwin.__file__).resolve().parents[1])
    env = {"PYTHONPATH": os.pathsep.join([src] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                  if p]),
           "RFTWIN_PROGRESS": "0"}
    try:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    except Exception as exc:  # noqa: BLE001
        raise FanoutError(f"cannot start a local Ray instance with {workers} workers: {exc}") from None
    return ray, True


def _task(source: str, frequency_hz: float, materials: np.ndarray, tx_pos, rx_pos, links, settings: dict,
          tx_ant: dict, rx_ant: dict, cache_dir: str, budget: int | None, key: str, tables: str) -> int:
    """Ray task body: load the scene and trace ``links`` into the cache at the driver's trace-time materials
    ``materials`` [K, 5] (:func:`rftwin.scene.scene_materials.resolve_materials`) with the driver's specular-chain
    table policy ``tables`` (:mod:`rftwin.trace.dedup_table`; a worker's own environment may say otherwise)."""
    from rftwin.runtime import configure_torch_threads  # noqa: PLC0415
    from rftwin.scene.load import load  # noqa: PLC0415
    from rftwin.trace.tracer import trace_into_cache  # noqa: PLC0415

    os.environ["RFTWIN_CHAIN_TABLES"] = tables
    configure_torch_threads()
    twin = load(source, frequency_hz)
    return trace_into_cache(twin, tx_pos, rx_pos, links, SolverSettings(**settings), AntennaSpec(**tx_ant),
                            AntennaSpec(**rx_ant), cache_dir, budget, key, materials=as_scene_materials(materials))


def fan_out_trace(twin: TwinScene, tx_pos, rx_pos, settings: SolverSettings = SolverSettings(),
                  tx_antenna: AntennaSpec = AntennaSpec(), rx_antenna: AntennaSpec = AntennaSpec(),
                  cache_dir: str | os.PathLike | None = None, *, workers: int = 2, address: str | None = None,
                  memory_budget: int | None = None, tasks_per_worker: int = 2,
                  materials: SceneMaterials | None = None) -> int:
    """Trace the links (``tx_pos[i]`` -> ``rx_pos[i]``) at ``materials`` (None: the scene's own) on Ray workers
    into the shared cache; returns the number of
    links the workers traced (0 when everything was cached). Each worker gets ``memory_budget / workers`` (default
    budget of this machine / workers; with a cluster, give the per-machine budget x workers per machine)."""
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if cache_dir is False:
        raise ValueError("a fanned-out trace needs a cache folder shared by the workers")
    root = Path(cache_dir or default_cache_dir()).resolve()
    tx_pos, rx_pos, key, _ = _prepare(twin, tx_pos, rx_pos, settings, tx_antenna, rx_antenna, root, materials)
    if (root / f"{key}.npz").is_file():
        return 0
    source = twin.source
    if Path(source).is_file():
        source = str(Path(source).resolve())
    ut, ti = np.unique(tx_pos, axis=0, return_inverse=True)
    ti = ti.reshape(-1)
    groups = np.array_split(np.arange(len(ut)), min(len(ut), workers * tasks_per_worker))
    ray, started = _start_ray(address, workers)
    try:
        remote = ray.remote(num_cpus=1)(_task)
        txr, rxr = ray.put(tx_pos), ray.put(rx_pos)
        budget = (default_budget() if memory_budget is None else int(memory_budget)) // workers  # local share
        values = resolve_materials(twin, materials)  # every quantity of every object, as the driver would trace
        refs = [remote.remote(source, float(twin.scene.frequency[0]), values, txr, rxr,
                              np.nonzero(np.isin(ti, g))[0], asdict(settings), asdict(tx_antenna),
                              asdict(rx_antenna), str(root), budget, key, table_policy()) for g in groups if len(g)]
        return int(sum(ray.get(refs)))
    finally:
        if started:
            ray.shutdown()


__all__ = ["FanoutError", "fan_out_trace"]

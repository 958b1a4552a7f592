"""Torch's intra-op threads: RFTWIN_TORCH_THREADS wins; the demo takes the cores other work leaves idle (one less
for a core kept busy by another process); OpenMP threads of a fresh rftwin process sleep when idle."""
import os
import subprocess
import sys
import time

import torch

from rftwin.runtime import configure_torch_threads, idle_cores


def test_environment_variable_sets_the_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("RFTWIN_TORCH_THREADS", "1")
        assert configure_torch_threads(idle=True) == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("RFTWIN_TORCH_THREADS")
        assert configure_torch_threads() == 1
        n = configure_torch_threads(idle=True)
        assert 1 <= n <= len(os.sched_getaffinity(0)) and torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)


def test_a_busy_core_is_not_counted_as_idle():
    cores = len(os.sched_getaffinity(0))
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert idle_cores(0.5) <= max(1, cores - 1)
    finally:
        busy.kill()
        busy.wait()


def test_rftwin_sets_a_passive_openmp_wait_policy():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", "import os, rftwin; print(os.environ['OMP_WAIT_POLICY'])"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # a user's own choice stays
    out = subprocess.run([sys.executable, "-c", "import os, rftwin; print(os.environ['OMP_WAIT_POLICY'])"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == "ACTIVE"

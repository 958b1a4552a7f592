import os

import pytest
import torch

os.environ.setdefault("RFTWIN_PROGRESS", "0")

import rftwin  # noqa: E402,F401  (sets DRJIT_LIBLLVM_PATH before Sionna is imported)


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RFTWIN_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Small engine workloads run several times faster single-threaded on a shared CPU (see SIONNA_NOTES)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

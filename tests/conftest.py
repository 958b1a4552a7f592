import os

import pytest

os.environ.setdefault("RFTWIN_PROGRESS", "0")

import rftwin  # noqa: E402,F401  (sets DRJIT_LIBLLVM_PATH before Sionna is imported)


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RFTWIN_CACHE", str(tmp_path / "cache"))

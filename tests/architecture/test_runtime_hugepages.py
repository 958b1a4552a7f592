"""Transparent huge pages are off in processes that load Sionna (rftwin.runtime.disable_transparent_hugepages):
read back from the kernel (/proc/self/status) in fresh child processes."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import ctypes, json
ctypes.CDLL(None).prctl(41, 0, 0, 0, 0)  # huge pages on again (the setting is inherited from the test process)
from rftwin.runtime import sionna_rt
sionna_rt()
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
print(json.dumps({"thp_enabled": status["THP_enabled"].strip()}))
"""


def _child(env_extra: dict) -> dict:
    import json

    env = {k: v for k, v in os.environ.items() if k != "RFTWIN_THP"}
    env.update(env_extra, PYTHONPATH=str(ROOT / "src"))
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").is_file()
                    or "THP_enabled" not in Path("/proc/self/status").read_text(),
                    reason="the kernel does not report THP_enabled (Linux >= 5.0)")
def test_sionna_processes_run_without_transparent_hugepages_unless_asked():
    assert _child({})["thp_enabled"] == "0"
    assert _child({"RFTWIN_THP": "1"})["thp_enabled"] == "1"

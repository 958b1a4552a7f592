"""Run ``rftwin`` in a fresh interpreter under a wrapper that, at exit, prints which heavy modules (torch, Sionna,
Mitsuba, Dr.Jit) it loaded: used by tests/cli/test_cli_fast.py and benchmarks/bench_cli.py."""
import json

HEAVY = ("torch", "sionna", "mitsuba", "drjit")
MARK = "RFTWIN_HEAVY_MODULES="
WRAPPER = f"""
import atexit, json, sys
atexit.register(lambda: print({MARK!r} + json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)),
                              file=sys.stderr))
sys.argv = ["rftwin"] + sys.argv[1:]
from rftwin.cli.main import app
app()
"""


def heavy_modules(lines: list[str]) -> list[str] | None:
    """The heavy modules the wrapper reported in output ``lines`` (None: no marker line)."""
    marks = [ln for ln in lines if ln.startswith(MARK)]
    return json.loads(marks[-1][len(MARK):]) if marks else None

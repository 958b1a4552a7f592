"""Process-wide runtime set-up: find an LLVM that Dr.Jit can use, import Sionna RT, pick torch devices.

Dr.Jit 1.5 (used by Sionna RT 2.2) emits ``llvm.maximum``, which LLVM 14/15 cannot lower. Debian's
``libllvm19`` works; this module points ``DRJIT_LIBLLVM_PATH`` at it before the first ``import drjit``.
"""
from __future__ import annotations

import glob
import os
import re
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType

CACHE_ENV = "RFTWIN_CACHE"

_SEARCH_GLOBS = (
    "/usr/lib/x86_64-linux-gnu/libLLVM-*.so*",
    "/usr/lib/aarch64-linux-gnu/libLLVM-*.so*",
    "/usr/lib/llvm-*/lib/libLLVM*.so*",
    "/usr/lib64/libLLVM*.so*",
    "/usr/local/lib/libLLVM*.so*",
    "/opt/homebrew/opt/llvm/lib/libLLVM*.dylib",
)
MIN_LLVM_MAJOR = 16


def _llvm_major(path: str) -> int:
    m = re.search(r"LLVM[-.]?(\d+)", os.path.basename(path)) or re.search(r"llvm-(\d+)", path)
    return int(m.group(1)) if m else -1


def find_libllvm() -> str | None:
    """Return the path of the newest libLLVM (major >= 16) found in the usual places, or None."""
    cands = {p for g in _SEARCH_GLOBS for p in glob.glob(g) if os.path.isfile(p)}
    good = [p for p in cands if _llvm_major(p) >= MIN_LLVM_MAJOR]
    if not good:
        return None
    return max(good, key=lambda p: (_llvm_major(p), -len(p)))


def ensure_llvm() -> str | None:
    """Set ``DRJIT_LIBLLVM_PATH`` when unset and a suitable libLLVM exists. Returns the path in use."""
    current = os.environ.get("DRJIT_LIBLLVM_PATH")
    if current:
        return current
    if "drjit" in sys.modules:  # too late to influence Dr.Jit
        return None
    path = find_libllvm()
    if path:
        os.environ["DRJIT_LIBLLVM_PATH"] = path
    return path


def default_cache_dir() -> Path:
    """Folder of the path cache: ``$RFTWIN_CACHE`` or ``~/.cache/rftwin/paths`` (built scenes go beside it)."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "rftwin" / "paths"))


THP_ENV = "RFTWIN_THP"
_PR_SET_THP_DISABLE = 41  # linux/prctl.h


def disable_transparent_hugepages() -> bool:
    """Turn transparent huge pages off for this process (Linux ``prctl(PR_SET_THP_DISABLE)``; inherited by child
    processes) unless ``$RFTWIN_THP=1``; returns whether it was turned off.

    Dr.Jit asks the kernel for huge pages (``madvise``) on its large buffers, and Sionna's solver allocates and frees
    buffers of up to ~10^8 lanes whose pages it only partly touches: with huge pages every first touch zeroes 2 MiB.
    On this project's 2-vCPU VM the demo's simulation (its first solver call: 96 links, depth 4, 5 10^5 rays)
    took 15.7 s with them and 6.4 s without, with the same paths to the last bit (``benchmarks/bench_demo.py
    --thp``, docs/scale.md). Torch does not ask for huge pages, so on the usual
    ``madvise`` setting only Dr.Jit's buffers are affected."""
    if os.environ.get(THP_ENV) == "1" or not sys.platform.startswith("linux"):
        return False
    import ctypes  # noqa: PLC0415

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):  # no prctl (not glibc): leave the setting alone
        return False


@lru_cache(maxsize=1)
def sionna_rt() -> ModuleType:
    """Import and return ``sionna.rt`` after the LLVM set-up (CUDA variant is chosen by Sionna when present) and
    with transparent huge pages off (:func:`disable_transparent_hugepages`)."""
    ensure_llvm()
    disable_transparent_hugepages()
    try:
        import sionna.rt as rt  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - install problem
        raise RuntimeError(
            "Sionna RT is not installed: run the set-up command in README.md (pip install sionna-rt==2.2.0)"
        ) from exc
    return rt


JIT_HISTORY_ENV = "RFTWIN_JIT_HISTORY"


def jit_times() -> dict:
    """Dr.Jit's work since the last call: ``jit_compile_s`` (code generation and LLVM compilation of kernels found
    in none of Dr.Jit's caches), ``jit_kernels_s`` (kernel execution), ``jit_kernels`` (launches) and
    ``jit_compiled`` (kernels compiled). Empty unless ``$RFTWIN_JIT_HISTORY=1`` (recording every launch costs a
    little time): the first call after Dr.Jit was loaded switches its kernel history on and returns nothing (this
    function never loads Dr.Jit itself, so the import stays in the stage that needs it)."""
    if os.environ.get(JIT_HISTORY_ENV) != "1" or "drjit" not in sys.modules:
        return {}
    import drjit as dr  # noqa: PLC0415

    if not dr.flag(dr.JitFlag.KernelHistory):
        dr.set_flag(dr.JitFlag.KernelHistory, True)
        return {}
    hist = dr.kernel_history()  # the launches since the last call (reading it clears it)
    ms = {k: sum(float(h.get(k, 0.0)) for h in hist) for k in ("codegen_time", "backend_time", "execution_time")}
    return {"jit_compile_s": (ms["codegen_time"] + ms["backend_time"]) / 1e3, "jit_kernels_s":
            ms["execution_time"] / 1e3, "jit_kernels": len(hist),
            "jit_compiled": sum(1 for h in hist if not h.get("cache_hit", False))}


def torch_device(prefer: str | None = None):
    """Torch device: ``prefer`` if given, else CUDA when available, else CPU."""
    import torch  # noqa: PLC0415

    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(choice: str = "cpu"):
    """Torch device of ``--device``: ``auto`` (CUDA when a GPU is present, else CPU), ``cpu`` or ``cuda``
    (ValueError naming the option when no GPU is present)."""
    import torch  # noqa: PLC0415

    if choice not in DEVICE_CHOICES:
        raise ValueError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, not '{choice}'")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available to torch "
                         f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --device cpu")
    if choice == "auto":
        return torch_device()
    return torch.device(choice)


def idle_cores(sample_s: float = 0.1) -> int:
    """Cores of this process's CPU affinity that other work leaves idle: the idle share of all cores over a
    ``sample_s`` second psutil sample, rounded, between 1 and the affinity's core count."""
    import psutil  # noqa: PLC0415

    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        allowed = os.cpu_count() or 1
    busy = psutil.cpu_percent(interval=sample_s, percpu=True)
    idle = sum(max(0.0, 100.0 - b) for b in busy) / 100.0
    return max(1, min(allowed, int(idle + 0.5)))


def quiet_openmp() -> None:
    """Idle OpenMP threads of torch sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE`` unless set; read when
    torch loads): with 2 threads on 2 cores one of which another process keeps busy, the demo's calibration took
    about the single-threaded time with PASSIVE and 1.7 x with the spinning default
    (benchmarks/bench_demo_threads.py)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def configure_torch_threads(idle: bool = False) -> int:
    """Set torch's intra-op threads and return the count: ``RFTWIN_TORCH_THREADS`` when set; else with ``idle``
    the cores other work leaves idle now (:func:`idle_cores`; for large batched work such as the multi-start LM
    of many paths, 0.6-0.7 x the single-threaded time on 2 idle cores), else 1 (small cached-path workloads run
    faster single-threaded on few-core VMs)."""
    import torch  # noqa: PLC0415

    n = os.environ.get("RFTWIN_TORCH_THREADS")
    threads = int(n) if n else (idle_cores() if idle else 1)
    torch.set_num_threads(threads)
    return threads

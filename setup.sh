#!/usr/bin/env bash
# Installs everything rftwin needs on a fresh Debian/Ubuntu machine: Debian's libllvm19 (Dr.Jit/Sionna RT on CPU
# needs LLVM >= 16), a virtual environment in .venv with the CPU build of torch 2.13.0, Sionna RT 2.2.0, and rftwin.
set -euo pipefail
cd "$(dirname "$0")"

have_llvm() { ls /usr/lib/*-linux-gnu/libLLVM-1[6-9]*.so* /usr/lib/*-linux-gnu/libLLVM-[2-9][0-9]*.so* >/dev/null 2>&1; }
if ! have_llvm; then
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libllvm19 >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The CPU wheel first, so that nothing later pulls the multi-GB CUDA build.
.venv/bin/pip install -q "torch==2.13.0"
.venv/bin/pip install -q -e ".[test]"

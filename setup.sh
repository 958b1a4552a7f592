#!/usr/bin/env bash
# Installs everything rftwin needs on a fresh Debian/Ubuntu machine: Debian's libllvm19 (Dr.Jit/Sionna RT on CPU
# needs LLVM >= 16) and the shared libraries Open3D loads (libusb, GL, EGL, OpenMP) when missing, and a virtual
# environment in .venv with the CPU build of torch 2.13.0, Sionna RT 2.2.0 and rftwin.
set -euo pipefail
cd "$(dirname "$0")"

have_llvm() { ls /usr/lib/*-linux-gnu/libLLVM-1[6-9]*.so* /usr/lib/*-linux-gnu/libLLVM-[2-9][0-9]*.so* >/dev/null 2>&1; }
# shared libraries Open3D loads (a minimal Debian image may lack them) -> the Debian package that ships each
has_lib() { ldconfig -p 2>/dev/null | grep -q "$1" || ls /usr/lib/*-linux-gnu/"$1"* /lib/*-linux-gnu/"$1"* >/dev/null 2>&1; }
PKGS=()
have_llvm || PKGS+=(libllvm19)
for pair in libusb-1.0.so.0:libusb-1.0-0 libGL.so.1:libgl1 libEGL.so.1:libegl1 libgomp.so.1:libgomp1; do
  has_lib "${pair%%:*}" || PKGS+=("${pair##*:}")
done
if [ ${#PKGS[@]} -gt 0 ]; then
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${PKGS[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The CPU wheel first, so that nothing later pulls the multi-GB CUDA build.
.venv/bin/pip install -q "torch==2.13.0"
.venv/bin/pip install -q -e ".[test]"

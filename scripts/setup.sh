#!/usr/bin/env bash
# Sets up a fresh machine: system packages (when root), a virtual environment in .venv with
# CPU PyTorch first (so pip never pulls a CUDA build), the project, and the test peers.
#   scripts/setup.sh          runtime only (enough for `twin demo`)
#   scripts/setup.sh --test   also test tools: chromium, mbpoll, node-opcua, pytest, playwright,
#                             Ray (the fleet extra) for the fleet tests, and a PostgreSQL server
#                             with psycopg (the postgres extra) for the state-store tests
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TESTS=0
[[ "${1:-}" == "--test" ]] && WITH_TESTS=1
PY="${PYTHON:-python3}"

if [[ $WITH_TESTS == 1 && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  pkgs=(chromium mbpoll postgresql)
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v npm >/dev/null || pkgs+=(npm)
  missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    echo "setup: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
# CPU build first: a plain "torch" requirement would otherwise fetch several GB of CUDA.
python -c "import torch" 2>/dev/null || pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
if [[ $WITH_TESTS == 1 ]]; then
  pip install -q --disable-pip-version-check -e ".[dev,fleet,postgres]" 2>&1 | grep -v "^WARNING: Location" || true
  if [[ -f tests/peers/package.json ]]; then
    (cd tests/peers && npm install --no-audit --no-fund --silent)
  fi
else
  pip install -q --disable-pip-version-check -e . 2>&1 | grep -v "^WARNING: Location" || true
fi
python -c "import twin.cli, torch; print('setup: ok, torch', torch.__version__)"

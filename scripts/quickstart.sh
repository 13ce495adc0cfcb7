#!/usr/bin/env bash
# Quick start: install cirgraph into .venv and answer one composed query on the embedded defaults (an embedded Chroma
# gallery, the in-process all-MiniLM-L6-v2 caption embedder), with no GPU and no model hub.
#
# The gallery is caption-only: CIRR's image captions (../shared/data/cirr/mllm_captions.json, or $CAPTIONS) stand in
# for the images, so no image model is needed. The search runs the default preset for the configured models: with
# CIRGRAPH_LLM_BASE_URL set (e.g. by scripts/llama-server.sh) small-model (the LLM recomposes the target
# description); without it, modification+reference (no model call).
set -euo pipefail
cd "$(dirname "$0")/.."
CAPTIONS=${CAPTIONS:-../shared/data/cirr/mllm_captions.json}
[ -f "$CAPTIONS" ] || { echo "quickstart: captions file $CAPTIONS not found (set CAPTIONS=FILE)" >&2; exit 1; }

bash scripts/install.sh
. .venv/bin/activate

export CIRGRAPH_EMBEDDER=""        # caption-only gallery

cirgraph index --captions "$CAPTIONS" --gallery cirr-captions
# CIRR val pair 12062: the reference shows a pack of paper towels; the wanted image has fewer rolls per pack.
cirgraph search --gallery cirr-captions --ref-id dev-63-0-img1 --text "Fewer paper towels per pack" \
  -k 5 --explain

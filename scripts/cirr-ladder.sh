#!/usr/bin/env bash
# Reproduce the caption-space CIRR ladder of docs/evaluation.md: CIRR val dev subset (2,107 queries), reference and
# gallery images represented by their MLLM captions, caption embeddings from all-MiniLM-L6-v2, and the LLM
# Qwen2.5-Coder-0.5B-Instruct behind llama.cpp's llama-server on 127.0.0.1 (scripts/llama-server.sh: built for this
# CPU on first use, about 11 minutes on 2 cores).
#
#   bash scripts/cirr-ladder.sh        # the small-model rungs on the held-out queries 501-2107 (the weights were
#                                      # chosen on queries 1-500) and the rerank rung on 501-700
#
# The older JSON-prompt rungs (cirevl ... reflect) are measured in docs/evaluation.md with their own command:
# `cirgraph eval ladder cirr ... --presets cirevl,anchored --limit 60`.
#   HELD_OUT_LIMIT=1000 bash scripts/cirr-ladder.sh
#
# `eval ladder` exits 3 when some queries failed (3 CIRR val queries always do: their reference has no caption in
# mllm_captions.json; they count as misses and the summaries list them): this script goes on after exit 3, and
# stops on any other failure.
#
# A rerun resumes finished queries and answers repeated model calls from the cache (their original cost is still
# reported, as "model s/q"); FRESH=1 recomputes every ranking.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
data=${DATA:-../shared/data/cirr}
[ -f "$data/cap.rc2.val.dev.json" ] || { echo "cirr-ladder: $data/cap.rc2.val.dev.json not found (set DATA)" >&2; exit 1; }
bash scripts/install.sh               # .venv, if this clone has none yet
. .venv/bin/activate

server_env=$(scripts/llama-server.sh)   # an assignment, so that set -e stops here when the server fails
eval "$server_env"                      # exports CIRGRAPH_LLM_BASE_URL and CIRGRAPH_LLM_MODEL
export CIRGRAPH_EMBEDDER="" HF_HUB_OFFLINE=1
out=${OUT:-${CIRGRAPH_HOME:-$HOME/.local/share/cirgraph}/runs/cirr-ladder}
fresh=(); [ "${FRESH:-0}" = 1 ] && fresh=(--fresh)
common=(cirr --split val --data "$data" --captions "$data/mllm_captions.json" "${fresh[@]}")
limit=(); [ -n "${HELD_OUT_LIMIT:-}" ] && limit=(--limit "$HELD_OUT_LIMIT")

# Held out: the small-model weights and the modification+reference weight were chosen on queries 1-500.
# The server runs 4 slots: 4 queries in flight keep it busy.
# exit 3: some queries failed (listed in the summaries); anything else stops the script
some_failed_ok() { local rc=0; "$@" || rc=$?; [ "$rc" = 0 ] || [ "$rc" = 3 ] || exit "$rc"; }
some_failed_ok cirgraph eval ladder "${common[@]}" --presets modification-only,modification+reference,small-model \
  --offset 500 "${limit[@]}" -c 4 --out "$out/held-out"
# small-model+rerank makes 11 calls a query (one recompose, ten checks): a shorter held-out slice, the rungs it
# is compared with repeated on it.
some_failed_ok cirgraph eval ladder "${common[@]}" \
  --presets modification-only,modification+reference,small-model,small-model+rerank \
  --offset 500 --limit "${RERANK_LIMIT:-200}" -c 4 --out "$out/rerank"
echo "== held-out queries 501-$((500 + ${HELD_OUT_LIMIT:-1607}))"
cirgraph eval compare "$out"/held-out/*/ --plot "$out/held-out/compare.png"
echo "== held-out queries 501-$((500 + ${RERANK_LIMIT:-200}))"
cirgraph eval compare "$out"/rerank/*/ --plot "$out/rerank/compare.png"

#!/usr/bin/env bash
# Serve a small real GGUF chat model over the OpenAI protocol on 127.0.0.1 (llama-cpp-python's server), for live
# runs and benchmarks without a GPU.
#
#   scripts/llama-server.sh [start]   install llama-cpp-python[server] if needed, fetch the model if absent, start the
#                                     server in the background, wait until /v1/models answers, print the env lines
#   scripts/llama-server.sh stop      stop the server started for $PORT
#   scripts/llama-server.sh status    say whether it runs and answers
#
# Environment: PORT (8765); LLAMA_MODEL, a file name in the models folder or a path
# (qwen2.5-coder-0.5b-instruct-q4_k_m.gguf; smollm2-135m-instruct-q4_1.gguf is the fastest); CIRGRAPH_MODELS_DIR
# (~/.cache/local-models); N_CTX (4096); N_THREADS (1: ggml's threads spin at barriers, so on a shared 2-core machine
# 2 threads run 3-10x slower than 1; raise it on an idle machine with more cores);
# PYTHON (python of the active environment, else the repository's .venv, else python on PATH); BUSY_WAIT_S (300:
# how long to wait for a running server that is busy with a long generation before giving up on it).
# Pid file and log: ${TMPDIR:-/tmp}/cirgraph-llama-server-$PORT.{pid,log}.
#
# Why the build flags: a native build (-march=native) on this AMX-capable Xeon compiles ggml's AMX backend, which
# crashes (SIGSEGV/#GP on `ldtilecfg` in ggml_backend_amx_mul_mat, llama.cpp issue #20824) in the first decode.
# So build portable x86-64 with AVX-512 kept and AMX left out.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=${PORT:-8765}
py=${PYTHON:-python}
if [[ -z ${PYTHON:-} && -z ${VIRTUAL_ENV:-} && -x $root/.venv/bin/python ]]; then py=$root/.venv/bin/python; fi
run_dir=${TMPDIR:-/tmp}
pidfile=$run_dir/cirgraph-llama-server-$port.pid
logfile=$run_dir/cirgraph-llama-server-$port.log
models_dir=${CIRGRAPH_MODELS_DIR:-$HOME/.cache/local-models}
model=${LLAMA_MODEL:-qwen2.5-coder-0.5b-instruct-q4_k_m.gguf}
[[ $model == */* ]] || model=$models_dir/$model
alias_name=$(basename "$model" .gguf)
url=http://127.0.0.1:$port/v1
threads=${N_THREADS:-1}
busy_wait=${BUSY_WAIT_S:-300}
llama_version=0.3.36
cmake_args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"

answers() { curl --noproxy '*' -sf -m 5 "$url/models" >/dev/null 2>&1; }
running() { [[ -s $pidfile ]] && ps -p "$(cat "$pidfile")" -o args= 2>/dev/null | grep -q llama_cpp.server; }

stop() {
  if running; then
    local pid; pid=$(cat "$pidfile"); kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "stopped llama server $pid (port $port)"
  else
    echo "no llama server of ours on port $port"
  fi
  rm -f "$pidfile"
}

ensure_installed() {
  # Importable and built without the AMX backend (a native build reports AMX_INT8 = 1 and crashes here).
  if "$py" -c 'import sys, llama_cpp, llama_cpp.server.app
sys.exit("AMX" in llama_cpp.llama_print_system_info().decode())' 2>/dev/null; then return; fi
  echo "installing llama-cpp-python[server]==$llama_version (a source build: 10 CPU-minutes, 5-25 minutes on 2 shared cores)..." >&2
  CMAKE_ARGS=$cmake_args "$py" -m pip install -q --no-cache-dir --force-reinstall --no-deps \
    "llama-cpp-python==$llama_version" >&2
  "$py" -m pip install -q "llama-cpp-python[server]==$llama_version" >&2   # the server's own dependencies
}

start() {
  if running; then
    # it serves one request at a time, so a busy server answers only between generations: give it time
    local waited=0
    until answers; do
      if (( waited >= busy_wait )); then
        echo "llama server $(cat "$pidfile") on port $port does not answer after ${busy_wait}s; see $logfile" >&2
        exit 1
      fi
      sleep 5; waited=$((waited + 10))
    done
    print_env; return
  fi
  answers && { echo "port $port already serves something else; choose another PORT" >&2; exit 1; }
  command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }
  ensure_installed
  if [[ ! -s $model ]]; then
    [[ $model == "$models_dir"/* ]] || { echo "model file $model not found" >&2; exit 1; }
    bash "$root/../shared/tools/fetch-local-models.sh" "$models_dir" >&2
  fi
  nohup "$py" -m llama_cpp.server --model "$model" --model_alias "$alias_name" --host 127.0.0.1 --port "$port" \
    --n_ctx "${N_CTX:-4096}" --n_threads "$threads" --n_threads_batch "$threads" --n_gpu_layers 0 >"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 240); do
    answers && { print_env; return; }
    running || { echo "llama server exited; last lines of $logfile:" >&2; tail -n 20 "$logfile" >&2; rm -f "$pidfile"; exit 1; }
    sleep 0.5
  done
  echo "llama server did not answer within 120 s; see $logfile" >&2; stop >&2; exit 1
}

print_env() {
  echo "llama server $(cat "$pidfile") serving $alias_name at $url (log: $logfile)" >&2
  echo "export CIRGRAPH_LLM_BASE_URL=$url CIRGRAPH_LLM_MODEL=$alias_name"
  echo "export CIRGRAPH_LIVE_BASE_URL=$url CIRGRAPH_LIVE_MODEL=$alias_name  # live tests"
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  status) if running && answers; then print_env; else echo "not running on port $port" >&2; exit 1; fi ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Serve a small real GGUF chat model over the OpenAI protocol on 127.0.0.1 with llama.cpp's own `llama-server`
# (parallel slots, continuous batching, prompt-prefix caching, JSON schema -> grammar, log-probabilities), for live
# runs and benchmarks without a GPU.
#
#   scripts/llama-server.sh [start]   build llama-server for this CPU if needed, fetch the model if absent, start the
#                                     server in the background, wait until it answers, print the env lines
#   scripts/llama-server.sh build     only build (or find) the binary and print its path
#   scripts/llama-server.sh stop      stop the server started for $PORT
#   scripts/llama-server.sh status    say whether it runs and answers
#
# Environment: PORT (8765); LLAMA_MODEL, a file name in the models folder or a path
# (qwen2.5-coder-0.5b-instruct-q4_k_m.gguf; smollm2-135m-instruct-q4_1.gguf is the fastest); CIRGRAPH_MODELS_DIR
# (~/.cache/local-models); N_PARALLEL (4 slots: requests served at once, batched together); N_CTX (2048 tokens per
# slot); N_THREADS (the machine's cores); LLAMA_BUILD_DIR (~/.cache/cirgraph/llama.cpp).
# Pid file and log: ${TMPDIR:-/tmp}/cirgraph-llama-server-$PORT.{pid,log}.
#
# The build: llama.cpp's source comes from the llama-cpp-python sdist on PyPI (vendor/llama.cpp), and only the
# llama-server target is compiled (about 10 minutes on 2 cores, once per CPU kind). The CPU's own flags choose the
# instruction sets: machines here differ (an AVX2-only EPYC, AVX-512 EPYCs, AMX-capable Xeons), a binary built for
# AVX-512 dies on an AVX2-only CPU, and ggml's AMX kernels have crashed here (SIGSEGV on `ldtilecfg`), so AMX is
# never enabled. Each instruction-set combination gets its own build folder, so a shared home never runs a binary
# built for another CPU.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=${PORT:-8765}
py=${PYTHON:-python3}
run_dir=${TMPDIR:-/tmp}
pidfile=$run_dir/cirgraph-llama-server-$port.pid
logfile=$run_dir/cirgraph-llama-server-$port.log
models_dir=${CIRGRAPH_MODELS_DIR:-$HOME/.cache/local-models}
model=${LLAMA_MODEL:-qwen2.5-coder-0.5b-instruct-q4_k_m.gguf}
[[ $model == */* ]] || model=$models_dir/$model
alias_name=$(basename "$model" .gguf)
url=http://127.0.0.1:$port/v1
parallel=${N_PARALLEL:-4}
ctx=${N_CTX:-2048}
threads=${N_THREADS:-$(nproc)}
llama_version=0.3.36   # the llama-cpp-python sdist whose vendored llama.cpp is built
build_root=${LLAMA_BUILD_DIR:-$HOME/.cache/cirgraph/llama.cpp}

answers() { curl --noproxy '*' -sf -m 5 "http://127.0.0.1:$port/health" >/dev/null 2>&1; }
running() { [[ -s $pidfile ]] && ps -p "$(cat "$pidfile")" -o args= 2>/dev/null | grep -q llama-server; }

# The ggml instruction-set options this CPU supports (AMX always off), and a short name for them.
cpu_options() {
  local flags; flags=" $(grep -m1 -E '^flags' /proc/cpuinfo | cut -d: -f2) "
  has() { [[ $flags == *" $1 "* ]]; }
  local opts="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" key=x86-64
  local pair
  for pair in sse4_2:SSE42 avx:AVX f16c:F16C fma:FMA avx2:AVX2 bmi2:BMI2 avx_vnni:AVX_VNNI avx512f:AVX512 \
              avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
    if has "${pair%%:*}"; then opts+=" -DGGML_${pair#*:}=ON"; key+="-${pair%%:*}"; else opts+=" -DGGML_${pair#*:}=OFF"; fi
  done
  echo "$key|$opts"
}

build() {
  [[ $(uname -m) == x86_64 ]] || { echo "llama-server.sh builds for x86-64 only (this is $(uname -m))" >&2; exit 1; }
  local spec key opts dir bin
  spec=$(cpu_options); key=${spec%%|*}; opts=${spec#*|}
  dir=$build_root/$llama_version-$(echo "$key" | md5sum | cut -c1-10)
  bin=$dir/build/bin/llama-server
  if [[ -x $bin ]]; then echo "$bin"; return; fi
  command -v cmake >/dev/null && command -v c++ >/dev/null || { echo "cmake and a C++ compiler are needed" >&2; exit 1; }
  mkdir -p "$dir"
  if [[ ! -f $dir/src/CMakeLists.txt ]]; then
    local tmp; tmp=$(mktemp -d)
    echo "fetching llama.cpp's source (llama-cpp-python==$llama_version sdist)..." >&2
    "$py" -m pip download -q --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$llama_version" >&2
    tar xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
    rm -rf "$dir/src"; mv "$tmp"/llama_cpp_python-*/vendor/llama.cpp "$dir/src"; rm -rf "$tmp"
  fi
  echo "building llama-server for ${key} (about 10 minutes on 2 cores; log: $dir/build.log)..." >&2
  # shellcheck disable=SC2086  # $opts is a list of options
  if ! { cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
           -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_OPENMP=OFF $opts \
         && cmake --build "$dir/build" --target llama-server -j"$(nproc)"; } >"$dir/build.log" 2>&1; then
    echo "the llama-server build failed; last lines of $dir/build.log:" >&2; tail -n 20 "$dir/build.log" >&2; exit 1
  fi
  echo "$bin"
}

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

start() {
  if running && answers; then print_env; return; fi
  running && stop >&2
  answers && { echo "port $port already serves something else; choose another PORT" >&2; exit 1; }
  command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }
  local bin; bin=$(build)
  if [[ ! -s $model ]]; then
    [[ $model == "$models_dir"/* ]] || { echo "model file $model not found" >&2; exit 1; }
    bash "$root/../shared/tools/fetch-local-models.sh" "$models_dir" >&2
  fi
  # --ctx-size is shared by the slots; prompt caching and continuous batching are on by default.
  nohup "$bin" --model "$model" --alias "$alias_name" --host 127.0.0.1 --port "$port" \
    --parallel "$parallel" --ctx-size $((ctx * parallel)) --threads "$threads" --threads-batch "$threads" \
    --no-webui --metrics >"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 240); do
    answers && { print_env; return; }
    running || { echo "llama server exited; last lines of $logfile:" >&2; tail -n 20 "$logfile" >&2; rm -f "$pidfile"; exit 1; }
    sleep 0.5
  done
  echo "llama server did not answer within 120 s; see $logfile" >&2; stop >&2; exit 1
}

print_env() {
  echo "llama server $(cat "$pidfile") serving $alias_name at $url, $parallel slots (log: $logfile)" >&2
  echo "export CIRGRAPH_LLM_BASE_URL=$url CIRGRAPH_LLM_MODEL=$alias_name"
  echo "export CIRGRAPH_LIVE_BASE_URL=$url CIRGRAPH_LIVE_MODEL=$alias_name  # live tests"
}

case ${1:-start} in
  start) start ;;
  build) build ;;
  stop) stop ;;
  status) if running && answers; then print_env; else echo "not running on port $port" >&2; exit 1; fi ;;
  *) echo "usage: $0 [start|build|stop|status]" >&2; exit 2 ;;
esac

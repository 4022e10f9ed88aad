#!/usr/bin/env bash
# Load benchmark: evald's benchmark job against a fixed nginx completion endpoint on 127.0.0.1,
# beside wrk (and oha, if installed) on the same endpoint and body, at concurrency 1, 8 and 64.
# evald stores and scores nothing extra here, but does store every request record (redb).
#   bench/load.sh [REQUESTS]      (default 100000 per evald run; wrk runs 10 s)
# Needs Debian's nginx-light and wrk (installed if missing); builds evald in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
command -v nginx >/dev/null || apt-get install -y -qq nginx-light >/dev/null
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
cargo build --release -q -p evald
BIN=${EVALD_BIN:-target/release/evald}
T=$(mktemp -d)
cleanup() { [ -f "$T/nginx.pid" ] && kill "$(cat "$T/nginx.pid")" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NP=$(port)
mkdir -p "$T/logs" "$T/tmp" "$T/site/jobs" "$T/site/data"
cat >"$T/nginx.conf" <<NGX
worker_processes auto;
pid $T/nginx.pid;
error_log $T/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $T/tmp/body;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_buffer_size 1m;
  server {
    listen 127.0.0.1:$NP reuseport backlog=4096;
    default_type application/json;
    location = /v1/chat/completions {
      return 200 '{"id":"chatcmpl-stub","object":"chat.completion","created":1700000000,"model":"stub-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the nginx stub."},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":6,"total_tokens":16}}';
    }
    location = /v1/models { return 200 '{"object":"list","data":[{"id":"stub-model"}]}'; }
  }
}
NGX
nginx -p "$T" -c "$T/nginx.conf"
cat >"$T/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"stub-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}'
LUA
cat >"$T/site/evald.toml" <<TOML
listen = "127.0.0.1:$(port)"
data_dir = "data"
[endpoints.stub]
url = "http://127.0.0.1:$NP/v1"
timeout = "10s"
max_retries = 0
TOML
printf '| concurrency | wrk req/s | wrk p50 | wrk p99 | evald req/s (wall, incl. start and store) | evald p50 | evald p99 | evald ÷ wrk |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for C in 1 8 64; do
  TH=$(( C < 2 ? 1 : 2 ))
  W=$(wrk -t$TH -c$C -d10s --latency -s "$T/post.lua" "http://127.0.0.1:$NP/v1/chat/completions")
  WR=$(awk '/Requests\/sec/{print $2}' <<<"$W")
  W50=$(awk '$1=="50%"{print $2}' <<<"$W"); W99=$(awk '$1=="99%"{print $2}' <<<"$W")
  cat >"$T/site/jobs/load.toml" <<JOB
kind = "benchmark"
targets = ["stub/stub-model"]
stream = false
[params]
max_tokens = 16
[[cases]]
id = "hello"
prompt = "Say hello."
[load]
concurrency = $C
requests = $N
warmup = 100
JOB
  S=$(date +%s.%N)
  "$BIN" run load --json --config "$T/site/evald.toml" >"$T/run.json"
  E=$(date +%s.%N)
  read -r ER E50 E99 <<<"$(python3 -c "
import json; r=json.load(open('$T/run.json'))['summary']['targets'][0]; b=r['bench']
print(round($N/($E-$S)), round(b['e2e_ms']['p50'],3), round(b['e2e_ms']['p99'],3))")"
  printf '| %s | %s | %s | %s | %s | %s ms | %s ms | %s |\n' "$C" "$WR" "$W50" "$W99" "$ER" "$E50" "$E99" "$(python3 -c "print(round($ER/$WR,3))")"
  rm -rf "$T/site/data"; mkdir -p "$T/site/data"
done
if command -v oha >/dev/null; then
  echo; echo "oha at concurrency 64:"
  oha -n 200000 -c 64 --no-tui -m POST -H 'Content-Type: application/json' \
    -d '{"model":"stub-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}' \
    "http://127.0.0.1:$NP/v1/chat/completions" | grep -E "Requests/sec|50.00%|99.00%"
fi
